"""Write cohorts in the MIMIC-III CSV layout (lesson 01; re-exported by :mod:`course_lib.mimic`).

The synthetic and generated cohorts are written in the layout the loader reads, so every
later lesson reads one format. Writing synthesises what a generated cohort lacks (see
:func:`write_mimic`), is deterministic byte for byte and replaces the files only once all of
them are complete.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from course_lib.cohort import SEXES, Cohort, Patient, Visit
from course_lib.mimic_csv import DATE_FORMAT

DAYS_PER_YEAR = 365.25

# The columns write_mimic emits: MIMIC-III's names and order (a subset for ADMISSIONS).
PATIENTS_COLUMNS = (
    "ROW_ID",
    "SUBJECT_ID",
    "GENDER",
    "DOB",
    "DOD",
    "DOD_HOSP",
    "DOD_SSN",
    "EXPIRE_FLAG",
)
ADMISSIONS_COLUMNS = (
    "ROW_ID",
    "SUBJECT_ID",
    "HADM_ID",
    "ADMITTIME",
    "DISCHTIME",
    "DEATHTIME",
    "ADMISSION_TYPE",
    "HOSPITAL_EXPIRE_FLAG",
)
DIAGNOSES_COLUMNS = ("ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE")

# Synthesised dates: first admissions spread over ten years from this day, in an order
# fixed by SUBJECT_ID, so that temporal splits of a generated cohort are not degenerate.
ANCHOR_DATE = datetime(2150, 1, 1)
SPREAD_DAYS = 3653
SPREAD_STRIDE = 7919  # a prime: consecutive SUBJECT_IDs land far apart in the ten years
FIRST_HADM_ID = 100001  # MIMIC-III's HADM_IDs are six digits starting with 1


# --------------------------------------------------------------------------------- writing


def write_mimic(cohort: Cohort, out_dir: str | Path) -> None:
    """Write ``cohort`` as PATIENTS.csv, ADMISSIONS.csv, DIAGNOSES_ICD.csv (and OUTCOMES.csv
    when ``cohort.outcomes`` is set) in ``out_dir``, created if missing.

    Values the cohort lacks are synthesised deterministically:

    * ``dob`` (None): midnight of the day ``age`` years (of 365.25 days) before a reference
      first admission: ``ANCHOR_DATE + (SUBJECT_ID * 7919 mod 3653)`` days, or the first
      visit with an ``admit_time`` (minus that visit's age).
    * ``admit_time`` (None): ``dob + visit.age`` years, rounded to the minute, so ages
      read back within a day of ``Visit.age`` (within a minute when ``dob`` is synthesised).
    * ``hadm_id`` (None): numbered in cohort order from ``max(100000, largest given) + 1``.

    The cohort carries no discharge or death data: DISCHTIME, DEATHTIME, ADMISSION_TYPE,
    DOD* are empty and the flags 0. The whole cohort is checked and formatted before any
    file is written (ValueError naming the patient otherwise); the files go to temporary
    files in ``out_dir`` that replace the final names only once all are complete. A stale
    OUTCOMES.csv is removed when the cohort has no outcomes, so it cannot be read back
    with the wrong patients.
    """
    out_dir = Path(out_dir)
    texts = _format_cohort(cohort)
    out_dir.mkdir(parents=True, exist_ok=True)
    _replace_files(out_dir, texts)
    if cohort.outcomes is None:
        (out_dir / "OUTCOMES.csv").unlink(missing_ok=True)


def _format_cohort(cohort: Cohort) -> dict[str, str]:
    """Check every patient and return file name -> file text."""
    given_hadm_ids = [
        visit.hadm_id for patient in cohort for visit in patient.visits if _is_int(visit.hadm_id)
    ]
    next_hadm_id = max([FIRST_HADM_ID - 1, *given_hadm_ids]) + 1
    seen_subjects: set[int] = set()
    seen_hadm_ids: set[int] = set()
    patient_lines = [_header(PATIENTS_COLUMNS)]
    admission_lines = [_header(ADMISSIONS_COLUMNS)]
    diagnosis_lines = [_header(DIAGNOSES_COLUMNS)]
    for position, patient in enumerate(cohort.patients):
        where = f"patient {position} (SUBJECT_ID {patient.subject_id!r})"
        _check_patient(patient, where, seen_subjects)
        dob = patient.dob if patient.dob is not None else _synthetic_dob(patient)
        patient_lines.append(
            f'{len(patient_lines)},{patient.subject_id},"{patient.sex}",{_date(dob)},,,,0'
        )
        previous_admit: datetime | None = None
        for index, visit in enumerate(patient.visits):
            visit_where = f"{where}, visit {index}"
            _check_visit(visit, visit_where)
            admit_time = visit.admit_time
            if admit_time is None:
                admit_time = _round_to_minute(
                    dob + timedelta(days=float(visit.age) * DAYS_PER_YEAR)
                )
            if admit_time < dob:
                raise ValueError(f"{visit_where}: admit_time {admit_time} is before dob {dob}")
            if previous_admit is not None and admit_time < previous_admit:
                raise ValueError(
                    f"{visit_where}: admitted at {admit_time}, before the previous visit "
                    f"({previous_admit}); expected visits in admission order (ages non-decreasing)"
                )
            previous_admit = admit_time
            hadm_id = visit.hadm_id
            if hadm_id is None:
                hadm_id = next_hadm_id
                next_hadm_id += 1
            if hadm_id in seen_hadm_ids:
                raise ValueError(f"{visit_where}: hadm_id {hadm_id} is used twice")
            seen_hadm_ids.add(hadm_id)
            admission_lines.append(
                f"{len(admission_lines)},{patient.subject_id},{hadm_id},{_date(admit_time)},,,,0"
            )
            for seq_num, code in enumerate(visit.codes, start=1):
                diagnosis_lines.append(
                    f'{len(diagnosis_lines)},{patient.subject_id},{hadm_id},{seq_num},"{code}"'
                )
    texts = {
        "PATIENTS.csv": _lines(patient_lines),
        "ADMISSIONS.csv": _lines(admission_lines),
        "DIAGNOSES_ICD.csv": _lines(diagnosis_lines),
    }
    if cohort.outcomes is not None:
        texts["OUTCOMES.csv"] = _format_outcomes(cohort.outcomes, seen_subjects)
    return texts


def _check_patient(patient: Patient, where: str, seen_subjects: set[int]) -> None:
    if not _is_int(patient.subject_id):
        raise ValueError(f"{where}: subject_id must be an int")
    if patient.subject_id in seen_subjects:
        raise ValueError(f"{where}: subject_id is used by an earlier patient")
    seen_subjects.add(patient.subject_id)
    if patient.sex not in SEXES:
        raise ValueError(f"{where}: sex must be 'F' or 'M', got {patient.sex!r}")
    _check_age(patient.age, where)
    if patient.dob is not None and not isinstance(patient.dob, datetime):
        raise ValueError(f"{where}: dob must be a datetime or None, got {patient.dob!r}")


def _check_visit(visit: Visit, where: str) -> None:
    _check_age(visit.age, where)
    if visit.admit_time is not None and not isinstance(visit.admit_time, datetime):
        raise ValueError(f"{where}: admit_time must be a datetime or None")
    if visit.hadm_id is not None and not _is_int(visit.hadm_id):
        raise ValueError(f"{where}: hadm_id must be an int or None, got {visit.hadm_id!r}")
    for code in visit.codes:
        if not isinstance(code, str) or not code or code.strip() != code or _unsafe(code):
            raise ValueError(
                f"{where}: code {code!r} is not a dotless ICD-9-CM code "
                "(expected a non-empty string without spaces, commas or quotes)"
            )


def _check_age(age: float, where: str) -> None:
    if not isinstance(age, int | float | np.number) or not math.isfinite(age) or age < 0:
        raise ValueError(f"{where}: age must be a finite number >= 0, got {age!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _unsafe(code: str) -> bool:
    return any(char in code for char in ',"\n\r')


def _synthetic_dob(patient: Patient) -> datetime:
    """Midnight of the day ``age`` years before the first admission (see write_mimic)."""
    for visit in patient.visits:
        if visit.admit_time is not None:
            _check_visit(visit, f"SUBJECT_ID {patient.subject_id}")
            admit_time, age = visit.admit_time, visit.age
            break
    else:
        age = patient.visits[0].age if patient.visits else patient.age
        _check_age(age, f"SUBJECT_ID {patient.subject_id}")
        offset = (int(patient.subject_id) * SPREAD_STRIDE) % SPREAD_DAYS
        admit_time = ANCHOR_DATE + timedelta(days=offset)
    birth = admit_time - timedelta(days=float(age) * DAYS_PER_YEAR)
    return datetime(birth.year, birth.month, birth.day)


def _round_to_minute(moment: datetime) -> datetime:
    return (moment + timedelta(seconds=30)).replace(second=0, microsecond=0)


def _date(moment: datetime) -> str:
    return moment.strftime(DATE_FORMAT)


def _header(columns: Iterable[str]) -> str:
    return ",".join(f'"{column}"' for column in columns)


def _lines(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _format_outcomes(outcomes: pd.DataFrame, subject_ids: set[int]) -> str:
    if not isinstance(outcomes, pd.DataFrame) or "SUBJECT_ID" not in outcomes.columns:
        raise ValueError("cohort.outcomes must be a DataFrame with a SUBJECT_ID column")
    if outcomes["SUBJECT_ID"].duplicated().any():
        raise ValueError("cohort.outcomes has more than one row for a SUBJECT_ID")
    unknown = set(outcomes["SUBJECT_ID"].tolist()) - subject_ids
    if unknown:
        raise ValueError(f"cohort.outcomes has SUBJECT_IDs with no patient: {sorted(unknown)[:5]}")
    return outcomes.to_csv(index=False, lineterminator="\n")


def _replace_files(out_dir: Path, texts: dict[str, str]) -> None:
    """Write every text to a temporary file in ``out_dir``, then rename them all.

    A failure while writing leaves the previous files untouched and removes the temporary
    ones; only a failing rename (same folder, so practically never) can mix old and new.
    """
    temporary: dict[str, Path] = {}
    try:
        for name, text in texts.items():
            handle, path = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
            temporary[name] = Path(path)
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
                stream.write(text)
            os.chmod(path, 0o644)  # mkstemp makes 0600; data files are meant to be shared
        for name, path in temporary.items():
            os.replace(path, out_dir / name)
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
