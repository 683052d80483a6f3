"""Test helper: small folders in the two layouts a user's real MIMIC-III download comes in.

* ``"v1.4"``: the PhysioNet credentialed release: ``NAME.csv.gz``, upper-case quoted headers,
  ``ROW_ID`` and every real column, quoted strings (some with commas), unquoted numbers/dates.
* ``"demo"``: the open demo's plain ``NAME.csv`` with lower-case unquoted headers.

Both hold what real exports hold and the loader must survive: codes outside ICD-9-CM v32
(``7793``, ``99999``), a diagnosis row with no code and no SEQ_NUM, an admission without
diagnoses and a patient over 89 (DOB shifted ~300 years back).
"""

from __future__ import annotations

import csv
import gzip
import io
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

PATIENT_COLUMNS = ["ROW_ID", "SUBJECT_ID", "GENDER", "DOB", "DOD", "DOD_HOSP", "DOD_SSN"]
PATIENT_COLUMNS += ["EXPIRE_FLAG"]
ADMISSION_COLUMNS = [
    "ROW_ID", "SUBJECT_ID", "HADM_ID", "ADMITTIME", "DISCHTIME", "DEATHTIME", "ADMISSION_TYPE",
    "ADMISSION_LOCATION", "DISCHARGE_LOCATION", "INSURANCE", "LANGUAGE", "RELIGION",
    "MARITAL_STATUS", "ETHNICITY", "EDREGTIME", "EDOUTTIME", "DIAGNOSIS",
    "HOSPITAL_EXPIRE_FLAG", "HAS_CHARTEVENTS_DATA",
]  # fmt: skip
DIAGNOSIS_COLUMNS = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"]
# Valid ICD-9-CM v32 codes an adult may have whatever the sex.
ADULT_CODES = ["4019", "41401", "4280", "42731", "25000", "5849", "486", "0389", "2724", "5990"]
UNKNOWN_CODES = ("7793", "99999")  # in real MIMIC-III, not in ICD-9-CM v32
STAMP = "%Y-%m-%d %H:%M:%S"


def _csv_text(columns: list[str], rows: list[list[object]], style: str) -> str:
    """Quote as the layout does: v1.4 quotes headers and strings, the demo quotes nothing
    but a field holding a comma."""
    buffer = io.StringIO()
    if style == "v1.4":
        buffer.write(",".join(f'"{column}"' for column in columns) + "\n")
        for row in rows:
            cells = [f'"{cell}"' if isinstance(cell, str) and cell else str(cell) for cell in row]
            buffer.write(",".join(cells) + "\n")
        return buffer.getvalue()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.lower() for column in columns])
    writer.writerows(rows)
    return buffer.getvalue()


def _stamp(moment: datetime) -> str:
    return moment.strftime(STAMP)


def mimic_layout_rows(n_patients: int = 12, seed: int = 0):
    """(patients, admissions, diagnoses) rows; dates and numbers as the real tables hold them.

    Patient 0 is over 89 (DOB 300 years before admission); the last admission of patient 1 has
    no diagnoses; the rows of patients 2 and 3 carry the two unknown codes; patient 4's last
    row has neither SEQ_NUM nor ICD9_CODE.
    """
    rng = np.random.default_rng(seed)
    patients, admissions, diagnoses = [], [], []
    hadm_id = 100000
    for index in range(n_patients):
        subject_id = 200 + index
        sex = "F" if index % 2 else "M"
        first_admit = datetime(2100, 1, 1) + timedelta(days=int(rng.integers(0, 20000)))
        age_days = int(rng.integers(20, 80) * 365.25)
        if index == 0:
            age_days = int(300 * 365.25)
        dob = (first_admit - timedelta(days=age_days)).replace(hour=0, minute=0, second=0)
        patients.append([len(patients) + 1, subject_id, sex, _stamp(dob), "", "", "", 0])
        for visit in range(int(rng.integers(1, 4)) + (index == 1)):
            hadm_id += 1
            admit = first_admit + timedelta(days=200 * visit, hours=int(rng.integers(0, 24)))
            admissions.append(
                [len(admissions) + 1, subject_id, hadm_id, _stamp(admit)]
                + [_stamp(admit + timedelta(days=5)), "", "EMERGENCY", "EMERGENCY ROOM ADMIT"]
                + ["HOME", "Medicare", "ENGL", "CATHOLIC", "MARRIED", "WHITE", "", ""]
                + ["GI BLEED, SYNCOPE", 0, 1]
            )
            if index == 1 and visit > 0:
                continue  # an admission without diagnoses
            codes = list(rng.choice(ADULT_CODES, size=int(rng.integers(2, 5)), replace=False))
            if index in (2, 3) and visit == 0:
                codes.append(UNKNOWN_CODES[index - 2])
            for seq_num, code in enumerate(codes, start=1):
                diagnoses.append([len(diagnoses) + 1, subject_id, hadm_id, seq_num, code])
            if index == 4 and visit == 0:
                diagnoses.append([len(diagnoses) + 1, subject_id, hadm_id, "", ""])
    return patients, admissions, diagnoses


def write_mimic_layout(folder: Path, style: str = "v1.4", n_patients: int = 12) -> Path:
    """Write PATIENTS, ADMISSIONS and DIAGNOSES_ICD in ``style`` ("v1.4" or "demo")."""
    folder.mkdir(parents=True, exist_ok=True)
    patients, admissions, diagnoses = mimic_layout_rows(n_patients)
    tables = {
        "PATIENTS": (PATIENT_COLUMNS, patients),
        "ADMISSIONS": (ADMISSION_COLUMNS, admissions),
        "DIAGNOSES_ICD": (DIAGNOSIS_COLUMNS, diagnoses),
    }
    for name, (columns, rows) in tables.items():
        text = _csv_text(columns, rows, style)
        if style == "v1.4":
            (folder / f"{name}.csv.gz").write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
        else:
            (folder / f"{name}.csv").write_text(text, encoding="utf-8")
    return folder
