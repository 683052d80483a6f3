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

Writing synthesises what a generated cohort lacks (see :func:`write_mimic`), is
deterministic byte for byte and replaces the files only once all of them are complete.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from course_lib.cohort import SEXES, Cohort, Patient, Visit
from course_lib.icd9 import code_table, to_dotless

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
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

# The columns load_mimic needs; every other column of a real export is ignored.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "PATIENTS": ("SUBJECT_ID", "GENDER", "DOB"),
    "ADMISSIONS": ("SUBJECT_ID", "HADM_ID", "ADMITTIME"),
    "DIAGNOSES_ICD": ("SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"),
}

# Synthesised dates: first admissions spread over ten years from this day, in an order
# fixed by SUBJECT_ID, so that temporal splits of a generated cohort are not degenerate.
ANCHOR_DATE = datetime(2150, 1, 1)
SPREAD_DAYS = 3653
SPREAD_STRIDE = 7919  # a prime: consecutive SUBJECT_IDs land far apart in the ten years
FIRST_HADM_ID = 100001  # MIMIC-III's HADM_IDs are six digits starting with 1


class MimicFormatError(ValueError):
    """A MIMIC-III file that cannot be read: the message names the file, the row and what was
    expected."""


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


# --------------------------------------------------------------------------------- reading


def load_mimic(
    directory: str | Path, *, max_age: float = 90.0, unknown_codes: str = "error"
) -> Cohort:
    """Read a MIMIC-III folder (or one written by :func:`write_mimic`) into a Cohort.

    Ages are (ADMITTIME - DOB) in days / 365.25. MIMIC-III shifts the DOB of patients older
    than 89 so that their ages read ~300: every age above ``max_age`` is one of those and is
    set to ``max_age`` (counted in ``notes``). Patients keep the order of PATIENTS.csv;
    visits are ordered by ADMITTIME (then HADM_ID), codes by SEQ_NUM; ``Patient.age`` is the
    age at the first visit kept. ``unknown_codes``: ``"error"`` (default) raises on a
    non-empty code missing from the ICD-9-CM v32 table, ``"skip"`` drops and counts it.
    OUTCOMES.csv, when present, becomes ``cohort.outcomes`` (rows of dropped patients
    removed). Each file may also be ``NAME.csv.gz``; headers are matched case-insensitively.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MimicFormatError(
            f"MIMIC-III folder not found: {directory} (expected a folder holding "
            "PATIENTS.csv, ADMISSIONS.csv and DIAGNOSES_ICD.csv)"
        )
    if unknown_codes not in ("error", "skip"):
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
    kept_patient = patients["SUBJECT_ID"].isin(admissions["SUBJECT_ID"])
    if not kept_patient.all():
        notes.append(
            f"PATIENTS.csv: dropped {int((~kept_patient).sum())} patients without diagnoses"
        )
    shifted = admissions["AGE"] > max_age
    if shifted.any():
        notes.append(
            f"ADMISSIONS.csv: {int(shifted.sum())} admissions of "
            f"{admissions.loc[shifted, 'SUBJECT_ID'].nunique()} patients had ages over "
            f"{max_age:g} (MIMIC-III shifts patients older than 89 to ~300): set to {max_age:g}"
        )
        admissions = admissions.assign(AGE=admissions["AGE"].where(~shifted, float(max_age)))

    cohort_patients = _build_patients(patients[kept_patient], admissions, diagnoses)
    outcomes = _read_outcomes(directory, patients, set(admissions["SUBJECT_ID"].tolist()), notes)
    notes.append(
        f"loaded {len(cohort_patients)} patients, {len(admissions)} admissions and "
        f"{len(diagnoses)} diagnosis rows from {directory}"
    )
    return Cohort(cohort_patients, outcomes, notes)


def _where(path: Path, row: int) -> str:
    """``row`` is the 0-based position in the data; the message counts from 1."""
    return f"{path}: data row {row + 1} (1-based, header not counted)"


def _find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.csv", directory / f"{name}.csv.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_table(directory: Path, name: str, required: tuple[str, ...]) -> tuple[Path, pd.DataFrame]:
    """Read the ``required`` columns of NAME.csv(.gz) (index = 0-based data row).

    ID columns (those ending in ``_ID`` or ``_NUM``) are left to pandas' C number parser, with
    empty cells as NaN; every other column is read as text with empty cells as ``""``.
    All columns are parsed, not only ``required``: pandas' ``usecols`` would silently accept
    rows with too many fields. Rows with too few read as empty trailing fields.
    """
    path = _find_file(directory, name)
    if path is None:
        raise MimicFormatError(
            f"{directory / (name + '.csv')}: file not found (expected {name}.csv or "
            f"{name}.csv.gz in {directory})"
        )
    try:
        header = pd.read_csv(path, nrows=0)
    except pd.errors.EmptyDataError as error:
        raise MimicFormatError(
            f"{path}: the file is empty (expected a header with {', '.join(required)})"
        ) from error
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as error:
        raise MimicFormatError(f"{path}: {_describe_parser_error(error)}") from error
    by_name = {str(column).strip().upper(): column for column in header.columns}
    missing = [column for column in required if column not in by_name]
    if missing:
        raise MimicFormatError(
            f"{path}: header line: missing column(s) {', '.join(missing)} "
            f"(expected {', '.join(required)}; found {', '.join(map(str, header.columns))})"
        )
    numeric = {by_name[column] for column in required if column.endswith(("_ID", "_NUM"))}
    try:
        table = pd.read_csv(
            path,
            dtype={column: str for column in header.columns if column not in numeric},
            keep_default_na=False,
            na_values={column: [""] for column in numeric},
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as error:
        raise MimicFormatError(f"{path}: {_describe_parser_error(error)}") from error
    if not table.index.equals(pd.RangeIndex(len(table))):  # pandas took column 1 as index
        raise MimicFormatError(
            f"{_where(path, 0)}: more fields than the header's {len(table.columns)} "
            "(expected one field per header column)"
        )
    if table.empty:
        raise MimicFormatError(f"{path}: no data rows (expected at least one row after the header)")
    table = table[[by_name[column] for column in required]]
    table.columns = list(required)
    return path, table


def _describe_parser_error(error: Exception) -> str:
    """pandas says ``Expected 8 fields in line 4, saw 9``: keep the line, say how it counts."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
    if found:
        expected, line, saw = found.groups()
        return (
            f"line {line} (the header is line 1): expected {expected} fields as in the "
            f"header, saw {saw}"
        )
    return f"not a readable CSV file ({error})"


def _integers(path: Path, table: pd.DataFrame, column: str, *, allow_empty: bool = False):
    """The column as int64 (Int64 with NA for empty cells when ``allow_empty``)."""
    values = table[column]
    if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("Int64") if allow_empty else values.astype("int64")
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(str)
    # A float column (empty cells, 1.0) or text (pandas found a non-number): check each cell.
    numbers = pd.to_numeric(values, errors="coerce")
    empty = values.isna()  # read_csv turned empty cells of ID columns into NaN
    bad = (numbers.isna() & ~empty) | (numbers.notna() & (numbers % 1 != 0))
    if not allow_empty:
        bad |= empty
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        expected = "a whole number" + (" or empty" if allow_empty else "")
        shown = "" if empty.iloc[row] else values.iloc[row]
        raise MimicFormatError(f"{_where(path, row)}: {column} must be {expected}, got {shown!r}")
    return numbers.astype("Int64") if allow_empty else numbers.astype("int64")


def _normalised(values: pd.Series, normalise) -> pd.Series:
    """Apply ``normalise`` to each distinct value only: MIMIC-III's 651k diagnosis rows hold
    ~7k distinct codes, and pandas' string methods loop over every cell in Python."""
    positions, distinct = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=False)
    mapped = np.array([normalise(value) for value in distinct], dtype=object)
    return pd.Series(mapped[positions], index=values.index, dtype=object)


def _datetimes(path: Path, table: pd.DataFrame, column: str) -> pd.Series:
    """The column parsed as ``YYYY-MM-DD HH:MM:SS`` (or a bare ``YYYY-MM-DD``)."""
    text = table[column]
    stamps = pd.to_datetime(text, format=DATE_FORMAT, errors="coerce")
    retry = stamps.isna() & text.ne("")
    if retry.any():
        stamps[retry] = pd.to_datetime(text[retry], format="%Y-%m-%d", errors="coerce")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise MimicFormatError(
            f"{_where(path, row)}: {column} must be a date 'YYYY-MM-DD HH:MM:SS', "
            f"got {text.iloc[row]!r}"
        )
    return stamps


def _first_duplicate(path: Path, keys: pd.DataFrame, what: str) -> None:
    """Raise on the first row whose ``keys`` repeat an earlier row (index = data row)."""
    repeats = keys.duplicated()
    if repeats.any():
        row = repeats.idxmax()
        values = keys.loc[row]
        earlier = (keys == values).all(axis=1).idxmax()
        described = ", ".join(f"{column} {values[column]}" for column in keys.columns)
        raise MimicFormatError(
            f"{_where(path, int(row))}: {described} repeats data row {int(earlier) + 1} "
            f"(expected {what})"
        )


def _read_patients(directory: Path) -> pd.DataFrame:
    path, table = _read_table(directory, "PATIENTS", REQUIRED_COLUMNS["PATIENTS"])
    subject_ids = _integers(path, table, "SUBJECT_ID")
    _first_duplicate(path, subject_ids.to_frame(), "one row per SUBJECT_ID")
    sexes = _normalised(table["GENDER"], lambda sex: sex.strip().upper())
    bad_sex = ~sexes.isin(SEXES)
    if bad_sex.any():
        row = int(np.flatnonzero(bad_sex.to_numpy())[0])
        raise MimicFormatError(
            f"{_where(path, row)}: GENDER must be 'F' or 'M', got {table['GENDER'].iloc[row]!r}"
        )
    dobs = _datetimes(path, table, "DOB")
    return pd.DataFrame(
        {"SUBJECT_ID": subject_ids, "SEX": sexes.astype(object), "DOB": dobs, "ROW": table.index}
    )


def _read_admissions(directory: Path, patients: pd.DataFrame) -> pd.DataFrame:
    path, table = _read_table(directory, "ADMISSIONS", REQUIRED_COLUMNS["ADMISSIONS"])
    subject_ids = _integers(path, table, "SUBJECT_ID")
    hadm_ids = _integers(path, table, "HADM_ID")
    _first_duplicate(path, hadm_ids.to_frame(), "one row per HADM_ID")
    by_subject = patients.set_index("SUBJECT_ID")
    unknown = ~subject_ids.isin(by_subject.index)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise MimicFormatError(
            f"{_where(path, row)}: SUBJECT_ID {subject_ids.iloc[row]} is not in PATIENTS.csv "
            "(expected every admission's patient in PATIENTS.csv)"
        )
    admit_times = _datetimes(path, table, "ADMITTIME")
    dobs = subject_ids.map(by_subject["DOB"])
    ages = (admit_times - dobs) / pd.Timedelta(days=1) / DAYS_PER_YEAR
    before_birth = ages < 0
    if before_birth.any():
        row = int(np.flatnonzero(before_birth.to_numpy())[0])
        patient_row = int(by_subject["ROW"].loc[subject_ids.iloc[row]]) + 1
        raise MimicFormatError(
            f"{_where(path, row)}: ADMITTIME {table['ADMITTIME'].iloc[row]} is before the "
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
    subject_ids = _integers(path, table, "SUBJECT_ID")
    hadm_ids = _integers(path, table, "HADM_ID")
    seq_nums = _integers(path, table, "SEQ_NUM", allow_empty=True)
    admission_subject = hadm_ids.map(admissions.set_index("HADM_ID")["SUBJECT_ID"])
    unknown = admission_subject.isna()
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise MimicFormatError(
            f"{_where(path, row)}: HADM_ID {hadm_ids.iloc[row]} is not in ADMISSIONS.csv "
            "(expected every diagnosis to belong to a listed admission)"
        )
    mismatch = admission_subject.to_numpy() != subject_ids.to_numpy()
    if mismatch.any():
        row = int(np.flatnonzero(mismatch)[0])
        raise MimicFormatError(
            f"{_where(path, row)}: SUBJECT_ID {subject_ids.iloc[row]} does not match "
            f"SUBJECT_ID {int(admission_subject.iloc[row])} of HADM_ID {hadm_ids.iloc[row]} "
            "in ADMISSIONS.csv (expected the admission's patient)"
        )
    has_seq = seq_nums.notna()
    numbered = pd.DataFrame({"HADM_ID": hadm_ids[has_seq], "SEQ_NUM": seq_nums[has_seq]})
    _first_duplicate(path, numbered, "one row per HADM_ID and SEQ_NUM")

    codes = _normalised(table["ICD9_CODE"], to_dotless)
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
        rows = np.flatnonzero(unknown_code.to_numpy())
        if unknown_codes == "error":
            raise MimicFormatError(
                f"{_where(path, int(rows[0]))}: ICD9_CODE {table['ICD9_CODE'].iloc[rows[0]]!r} "
                f"is not an ICD-9-CM v32 diagnosis code (expected a dotless code such as "
                f"'4019', 'V3000' or 'E8889'; {len(rows)} such rows in all; pass "
                "unknown_codes='skip' to drop them)"
            )
        examples = ", ".join(sorted(set(codes.iloc[rows].tolist()))[:5])
        notes.append(
            f"DIAGNOSES_ICD.csv: skipped {len(rows)} rows with codes not in ICD-9-CM v32 "
            f"(e.g. {examples})"
        )
        keep &= ~unknown_code
    return pd.DataFrame(
        {
            "HADM_ID": hadm_ids[keep].to_numpy(),
            "SEQ_NUM": seq_nums[keep].to_numpy(dtype="int64"),
            "ICD9_CODE": codes[keep].to_numpy(dtype=object),
        }
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
    path = _find_file(directory, "OUTCOMES")
    if path is None:
        return None
    try:
        outcomes = pd.read_csv(path)
    except pd.errors.EmptyDataError as error:
        raise MimicFormatError(
            f"{path}: the file is empty (expected a SUBJECT_ID header)"
        ) from error
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise MimicFormatError(f"{path}: not a readable CSV file ({error})") from error
    if "SUBJECT_ID" not in outcomes.columns:
        raise MimicFormatError(
            f"{path}: header line: missing column SUBJECT_ID "
            f"(found {', '.join(map(str, outcomes.columns))})"
        )
    subject_ids = _integers(path, outcomes, "SUBJECT_ID")
    _first_duplicate(path, subject_ids.to_frame(), "one row per SUBJECT_ID")
    unknown = ~subject_ids.isin(patients["SUBJECT_ID"])
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise MimicFormatError(
            f"{_where(path, row)}: SUBJECT_ID {subject_ids.iloc[row]} is not in PATIENTS.csv "
            "(expected outcomes of listed patients only)"
        )
    outcomes = outcomes.assign(SUBJECT_ID=subject_ids)
    kept = subject_ids.isin(kept_subjects)
    if not kept.all():
        notes.append(
            f"OUTCOMES.csv: dropped {int((~kept).sum())} rows of patients without diagnoses"
        )
    return outcomes[kept].reset_index(drop=True)
