"""Read and write cohorts in the MIMIC-III CSV layout (lesson 01).

The course's real-data path reads ``PATIENTS.csv``, ``ADMISSIONS.csv`` and
``DIAGNOSES_ICD.csv`` as PhysioNet exports them (v1.4: upper-case quoted headers, quoted
strings, unquoted numbers and dates, ``.csv`` or ``.csv.gz``); the synthetic cohorts are
written in the same layout so that every later lesson reads one format.

Reading checks every row with vectorised pandas and raises :class:`MimicFormatError`
naming the file, the data row (1-based, the header not counted) and what was expected.
What real exports do contain (diagnosis rows with an empty ``ICD9_CODE`` or ``SEQ_NUM``,
admissions and patients without diagnoses, ages over 89 shifted to ~300) is skipped
or mapped and counted in ``Cohort.notes``.

Reading one file (encodings, gzip, cut rows, numbers, dates) lives in
:mod:`course_lib.mimic_csv`; writing (:func:`write_mimic`, deterministic byte for byte and
all files replaced only once complete) in :mod:`course_lib.mimic_write`; both are re-exported
here, the one module the lessons import.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from course_lib.cohort import SEXES, Cohort, Patient, Visit
from course_lib.icd9 import code_table, to_dotless
from course_lib.mimic_csv import (
    DATE_FORMAT,
    MimicFormatError,
    check_encoding,
    check_short_rows,
    find_file,
    first_duplicate,
    integers,
    normalised,
    read_csv_checked,
    where,
)
from course_lib.mimic_csv import datetimes as parse_datetimes
from course_lib.mimic_csv import read_table as _read_table
from course_lib.mimic_write import (
    ADMISSIONS_COLUMNS,
    ANCHOR_DATE,
    DAYS_PER_YEAR,
    DIAGNOSES_COLUMNS,
    PATIENTS_COLUMNS,
    SPREAD_DAYS,
    SPREAD_STRIDE,
    write_mimic,
)

__all__ = [
    "ADMISSIONS_COLUMNS",
    "ANCHOR_DATE",
    "DATE_FORMAT",
    "DAYS_PER_YEAR",
    "DEFAULT_UNKNOWN_CODES",
    "DIAGNOSES_COLUMNS",
    "MAX_UNKNOWN_CODE_SHARE",
    "PATIENTS_COLUMNS",
    "SPREAD_DAYS",
    "SPREAD_STRIDE",
    "UNKNOWN_CODES",
    "MimicFormatError",
    "load_mimic",
    "write_mimic",
]

# The columns load_mimic needs; every other column of a real export is ignored.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "PATIENTS": ("SUBJECT_ID", "GENDER", "DOB"),
    "ADMISSIONS": ("SUBJECT_ID", "HADM_ID", "ADMITTIME"),
    "DIAGNOSES_ICD": ("SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"),
}

# What load_mimic does with diagnosis codes outside ICD-9-CM v32 (``--unknown-codes``).
UNKNOWN_CODES = ("error", "skip")
DEFAULT_UNKNOWN_CODES = "skip"
# Above this share of coded rows, unknown codes are not stray retired codes but another code
# system (ICD-10, procedure codes, token ids): refused even with "skip".
MAX_UNKNOWN_CODE_SHARE = 0.10


# --------------------------------------------------------------------------------- reading


def load_mimic(
    directory: str | Path, *, max_age: float = 90.0, unknown_codes: str = DEFAULT_UNKNOWN_CODES
) -> Cohort:
    """Read a MIMIC-III folder (or one written by :func:`write_mimic`) into a Cohort.

    Ages are (ADMITTIME - DOB) in days / 365.25. MIMIC-III shifts the DOB of patients older
    than 89 so that their ages read ~300: every age above ``max_age`` is one of those and is
    set to ``max_age`` (counted in ``notes``). Patients keep the order of PATIENTS.csv;
    visits are ordered by ADMITTIME (then HADM_ID), codes by SEQ_NUM; ``Patient.age`` is the
    age at the first visit kept.

    ``unknown_codes`` says what to do with a non-empty code missing from the ICD-9-CM v32
    table: ``"skip"`` (the default, as on the command line) drops and counts those rows in
    ``notes``, because every real MIMIC-III export holds a few codes retired before v32
    (``7793``, ``99999``); more than ``MAX_UNKNOWN_CODE_SHARE`` of them is refused all the same,
    as another code system (ICD-10, dotted or cut codes). ``"error"`` stops at the first one.
    A folder with no diagnosis left after the skips is an error, not an empty cohort.

    OUTCOMES.csv, when present, becomes ``cohort.outcomes`` (rows of dropped patients
    removed). Each file may also be ``NAME.csv.gz``; headers are matched case-insensitively.
    The notes always state the age mapping, whatever it changed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MimicFormatError(
            f"MIMIC-III folder not found: {directory} (expected a folder holding "
            "PATIENTS.csv, ADMISSIONS.csv and DIAGNOSES_ICD.csv)"
        )
    if unknown_codes not in UNKNOWN_CODES:
        raise ValueError(f"unknown_codes must be 'error' or 'skip', got {unknown_codes!r}")
    notes: list[str] = []
    patients = _read_patients(directory)
    admissions = _read_admissions(directory, patients)
    diagnoses = _read_diagnoses(directory, admissions, unknown_codes, notes)

    has_diagnoses = admissions["HADM_ID"].isin(diagnoses["HADM_ID"])
    if not has_diagnoses.all():
        notes.append(
            f"ADMISSIONS.csv: dropped {int((~has_diagnoses).sum())} admissions without diagnoses"
        )
    admissions = admissions[has_diagnoses]
    if admissions.empty:
        raise MimicFormatError(
            f"{directory}: no patients left: no admission has a usable diagnosis "
            f"({'; '.join(notes) or 'no diagnosis row matches an admission'}); expected "
            "DIAGNOSES_ICD.csv rows with a SEQ_NUM and an ICD-9-CM code"
        )
    kept_patient = patients["SUBJECT_ID"].isin(admissions["SUBJECT_ID"])
    if not kept_patient.all():
        notes.append(
            f"PATIENTS.csv: dropped {int((~kept_patient).sum())} patients without diagnoses"
        )
    shifted = admissions["AGE"] > max_age
    notes.append(
        f"ADMISSIONS.csv: age = (ADMITTIME - DOB) in days / {DAYS_PER_YEAR}; "
        f"{int(shifted.sum())} admissions of {admissions.loc[shifted, 'SUBJECT_ID'].nunique()} "
        f"patients had ages over {max_age:g} (MIMIC-III shifts patients older than 89 to ~300): "
        f"set to {max_age:g}"
    )
    admissions = admissions.assign(AGE=admissions["AGE"].where(~shifted, float(max_age)))

    cohort_patients = _build_patients(patients[kept_patient], admissions, diagnoses)
    outcomes = _read_outcomes(directory, patients, set(admissions["SUBJECT_ID"].tolist()), notes)
    notes.append(
        f"loaded {len(cohort_patients)} patients, {len(admissions)} admissions and "
        f"{len(diagnoses)} diagnosis rows from {directory}"
    )
    return Cohort(cohort_patients, outcomes, notes)


def _read_patients(directory: Path) -> pd.DataFrame:
    path, table = _read_table(directory, "PATIENTS", REQUIRED_COLUMNS["PATIENTS"])
    subject_ids = integers(path, table, "SUBJECT_ID")
    first_duplicate(path, subject_ids.to_frame(), "one row per SUBJECT_ID")
    sexes = normalised(table["GENDER"], lambda sex: sex.strip().upper())
    bad_sex = ~sexes.isin(SEXES)
    if bad_sex.any():
        row = int(np.flatnonzero(bad_sex.to_numpy())[0])
        raise MimicFormatError(
            f"{where(path, row)}: GENDER must be 'F' or 'M', got {table['GENDER'].iloc[row]!r}"
        )
    dobs = parse_datetimes(path, table, "DOB")
    return pd.DataFrame(
        {"SUBJECT_ID": subject_ids, "SEX": sexes.astype(object), "DOB": dobs, "ROW": table.index}
    )


def _read_admissions(directory: Path, patients: pd.DataFrame) -> pd.DataFrame:
    path, table = _read_table(directory, "ADMISSIONS", REQUIRED_COLUMNS["ADMISSIONS"])
    subject_ids = integers(path, table, "SUBJECT_ID")
    hadm_ids = integers(path, table, "HADM_ID")
    first_duplicate(path, hadm_ids.to_frame(), "one row per HADM_ID")
    by_subject = patients.set_index("SUBJECT_ID")
    unknown = ~subject_ids.isin(by_subject.index)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise MimicFormatError(
            f"{where(path, row)}: SUBJECT_ID {subject_ids.iloc[row]} is not in PATIENTS.csv "
            "(expected every admission's patient in PATIENTS.csv)"
        )
    admit_times = parse_datetimes(path, table, "ADMITTIME")
    dobs = subject_ids.map(by_subject["DOB"])
    ages = (admit_times - dobs) / pd.Timedelta(days=1) / DAYS_PER_YEAR
    before_birth = ages < 0
    if before_birth.any():
        row = int(np.flatnonzero(before_birth.to_numpy())[0])
        patient_row = int(by_subject["ROW"].loc[subject_ids.iloc[row]]) + 1
        raise MimicFormatError(
            f"{where(path, row)}: ADMITTIME {table['ADMITTIME'].iloc[row]} is before the "
            f"DOB {dobs.iloc[row]} of SUBJECT_ID {subject_ids.iloc[row]} (PATIENTS.csv data "
            f"row {patient_row}); expected an admission at or after birth"
        )
    return pd.DataFrame(
        {
            "SUBJECT_ID": subject_ids,
            "HADM_ID": hadm_ids,
            "ADMITTIME": admit_times,
            "AGE": ages.astype(float),
        }
    )


def _read_diagnoses(
    directory: Path, admissions: pd.DataFrame, unknown_codes: str, notes: list[str]
) -> pd.DataFrame:
    path, table = _read_table(directory, "DIAGNOSES_ICD", REQUIRED_COLUMNS["DIAGNOSES_ICD"])
    subject_ids = integers(path, table, "SUBJECT_ID")
    hadm_ids = integers(path, table, "HADM_ID")
    seq_nums = integers(path, table, "SEQ_NUM", allow_empty=True)
    admission_subject = hadm_ids.map(admissions.set_index("HADM_ID")["SUBJECT_ID"])
    unknown = admission_subject.isna()
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise MimicFormatError(
            f"{where(path, row)}: HADM_ID {hadm_ids.iloc[row]} is not in ADMISSIONS.csv "
            "(expected every diagnosis to belong to a listed admission)"
        )
    mismatch = admission_subject.to_numpy() != subject_ids.to_numpy()
    if mismatch.any():
        row = int(np.flatnonzero(mismatch)[0])
        raise MimicFormatError(
            f"{where(path, row)}: SUBJECT_ID {subject_ids.iloc[row]} does not match "
            f"SUBJECT_ID {int(admission_subject.iloc[row])} of HADM_ID {hadm_ids.iloc[row]} "
            "in ADMISSIONS.csv (expected the admission's patient)"
        )
    has_seq = seq_nums.notna()
    numbered = pd.DataFrame({"HADM_ID": hadm_ids[has_seq], "SEQ_NUM": seq_nums[has_seq]})
    first_duplicate(path, numbered, "one row per HADM_ID and SEQ_NUM")

    codes = normalised(table["ICD9_CODE"], to_dotless)
    empty_code = codes.eq("")
    no_seq = ~has_seq & ~empty_code
    if empty_code.any():
        notes.append(
            f"DIAGNOSES_ICD.csv: skipped {int(empty_code.sum())} rows with an empty ICD9_CODE"
        )
    if no_seq.any():
        notes.append(
            f"DIAGNOSES_ICD.csv: skipped {int(no_seq.sum())} rows with a code but no SEQ_NUM"
        )
    keep = ~empty_code & has_seq
    unknown_code = keep & ~codes.isin(code_table().keys())
    if unknown_code.any():
        keep &= ~unknown_code
        _unknown_codes(path, table, codes, unknown_code, int(keep.sum()), unknown_codes, notes)
    return pd.DataFrame(
        {
            "HADM_ID": hadm_ids[keep].to_numpy(),
            "SEQ_NUM": seq_nums[keep].to_numpy(dtype="int64"),
            "ICD9_CODE": codes[keep].to_numpy(dtype=object),
        }
    )


def _unknown_codes(
    path: Path,
    table: pd.DataFrame,
    codes: pd.Series,
    unknown: pd.Series,
    n_known: int,
    policy: str,
    notes: list[str],
) -> None:
    """Stop (``policy == "error"``, or too many to be stray codes) or note the skipped rows."""
    rows = np.flatnonzero(unknown.to_numpy())
    examples = ", ".join(repr(code) for code in sorted(set(codes.iloc[rows].tolist()))[:5])
    share = len(rows) / (len(rows) + n_known)
    if policy == "error":
        raise MimicFormatError(
            f"{where(path, int(rows[0]))}: ICD9_CODE {table['ICD9_CODE'].iloc[rows[0]]!r} "
            f"is not an ICD-9-CM v32 diagnosis code (expected a dotless code such as "
            f"'4019', 'V3000' or 'E8889'; {len(rows)} such rows in all, e.g. {examples}); "
            "to drop and count them pass --unknown-codes skip (unknown_codes='skip' in Python)"
        )
    if share > MAX_UNKNOWN_CODE_SHARE:
        raise MimicFormatError(
            f"{share:.0%} of the {len(rows) + n_known} coded rows of {path} are not ICD-9-CM "
            f"v32 diagnosis codes (e.g. {examples}; the first at data row {rows[0] + 1}); "
            "expected dotless ICD-9-CM codes such as '4019', 'V3000' or 'E8889', with at most "
            f"{MAX_UNKNOWN_CODE_SHARE:.0%} stray ones to skip (is this ICD-10 or another code "
            "system?)"
        )
    notes.append(
        f"DIAGNOSES_ICD.csv: skipped {len(rows)} rows ({share:.2%} of coded rows) with codes "
        f"not in ICD-9-CM v32 (e.g. {examples}); --unknown-codes error stops on them instead"
    )


def _build_patients(
    patients: pd.DataFrame, admissions: pd.DataFrame, diagnoses: pd.DataFrame
) -> list[Patient]:
    """Group sorted diagnoses into visits and visits into patients (the only Python loop)."""
    patient_position = pd.Series(np.arange(len(patients)), index=patients["SUBJECT_ID"].to_numpy())
    admissions = admissions.assign(
        POSITION=admissions["SUBJECT_ID"].map(patient_position).to_numpy()
    ).sort_values(["POSITION", "ADMITTIME", "HADM_ID"], kind="stable")
    visit_rank = pd.Series(np.arange(len(admissions)), index=admissions["HADM_ID"].to_numpy())
    ranks = diagnoses["HADM_ID"].map(visit_rank).to_numpy()
    order = np.lexsort((diagnoses["SEQ_NUM"].to_numpy(), ranks))
    codes = diagnoses["ICD9_CODE"].to_numpy()[order].tolist()
    code_bounds = np.searchsorted(ranks[order], np.arange(len(admissions) + 1)).tolist()
    visit_bounds = np.searchsorted(
        admissions["POSITION"].to_numpy(), np.arange(len(patients) + 1)
    ).tolist()

    ages = admissions["AGE"].to_numpy().tolist()
    admit_times = _python_datetimes(admissions["ADMITTIME"])
    hadm_ids = admissions["HADM_ID"].to_numpy().tolist()
    visits = [
        Visit(codes[code_bounds[i] : code_bounds[i + 1]], ages[i], admit_times[i], hadm_ids[i])
        for i in range(len(admissions))
    ]
    result = []
    dobs = _python_datetimes(patients["DOB"])
    for position, (subject_id, sex, dob) in enumerate(
        zip(patients["SUBJECT_ID"].tolist(), patients["SEX"].tolist(), dobs, strict=True)
    ):
        patient_visits = visits[visit_bounds[position] : visit_bounds[position + 1]]
        result.append(Patient(subject_id, sex, patient_visits[0].age, patient_visits, dob))
    return result


def _python_datetimes(stamps: pd.Series) -> list[datetime]:
    return stamps.to_numpy().astype("datetime64[us]").tolist()


def _read_outcomes(
    directory: Path, patients: pd.DataFrame, kept_subjects: set[int], notes: list[str]
) -> pd.DataFrame | None:
    path = find_file(directory, "OUTCOMES")
    if path is None:
        return None
    check_encoding(path)
    outcomes = read_csv_checked(path)
    check_short_rows(path, outcomes)
    if "SUBJECT_ID" not in outcomes.columns:
        raise MimicFormatError(
            f"{path}: header line: missing column SUBJECT_ID "
            f"(found {', '.join(map(str, outcomes.columns))})"
        )
    subject_ids = integers(path, outcomes, "SUBJECT_ID")
    first_duplicate(path, subject_ids.to_frame(), "one row per SUBJECT_ID")
    unknown = ~subject_ids.isin(patients["SUBJECT_ID"])
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise MimicFormatError(
            f"{where(path, row)}: SUBJECT_ID {subject_ids.iloc[row]} is not in PATIENTS.csv "
            "(expected outcomes of listed patients only)"
        )
    outcomes = outcomes.assign(SUBJECT_ID=subject_ids)
    kept = subject_ids.isin(kept_subjects)
    if not kept.all():
        notes.append(
            f"OUTCOMES.csv: dropped {int((~kept).sum())} rows of patients without diagnoses"
        )
    return outcomes[kept].reset_index(drop=True)
