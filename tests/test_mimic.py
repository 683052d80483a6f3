"""Tests of the MIMIC-III CSV reader and writer (course_lib.mimic)."""

from __future__ import annotations

import gzip
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from course_lib import mimic, mimic_write
from course_lib.cohort import Cohort, Patient, Visit
from course_lib.mimic import MimicFormatError, load_mimic, write_mimic

ONE_DAY_IN_YEARS = 1 / 365.25

# Small files in the exact PhysioNet MIMIC-III v1.4 layout: quoted upper-case headers,
# quoted strings, unquoted numbers and dates, every column of the real tables. The rows
# are out of order on purpose (visits and SEQ_NUMs), SUBJECT_ID 251 is over 89 (DOB
# 300 years before ADMITTIME), SUBJECT_ID 252 and HADM_ID 158975 have no diagnoses, and
# the last diagnosis row has neither SEQ_NUM nor ICD9_CODE, as some real rows do.
MIMIC_PATIENTS = """\
"ROW_ID","SUBJECT_ID","GENDER","DOB","DOD","DOD_HOSP","DOD_SSN","EXPIRE_FLAG"
234,249,"F",2075-03-13 00:00:00,,,,0
235,250,"F",2164-12-27 00:00:00,2188-11-22 00:00:00,2188-11-22 00:00:00,,1
236,251,"M",1790-07-22 00:00:00,,,,0
237,252,"M",2078-03-06 00:00:00,,,,0
"""
MIMIC_ADMISSIONS = """\
"ROW_ID","SUBJECT_ID","HADM_ID","ADMITTIME","DISCHTIME","DEATHTIME","ADMISSION_TYPE",\
"ADMISSION_LOCATION","DISCHARGE_LOCATION","INSURANCE","LANGUAGE","RELIGION","MARITAL_STATUS",\
"ETHNICITY","EDREGTIME","EDOUTTIME","DIAGNOSIS","HOSPITAL_EXPIRE_FLAG","HAS_CHARTEVENTS_DATA"
244,249,149546,2155-02-03 20:16:00,2155-02-14 11:15:00,,"EMERGENCY","EMERGENCY ROOM ADMIT",\
"HOME HEALTH CARE","Medicare","ENGL","CATHOLIC","DIVORCED","WHITE",2155-02-03 17:43:00,\
2155-02-03 21:26:00,"GI BLEED, SYNCOPE",0,1
243,249,116935,2149-12-17 20:41:00,2149-12-31 14:55:00,,"EMERGENCY","EMERGENCY ROOM ADMIT",\
"HOME HEALTH CARE","Medicare",,"CATHOLIC","DIVORCED","WHITE",2149-12-17 17:41:00,\
2149-12-17 21:29:00,"PNEUMONIA",0,1
245,249,158975,2156-04-27 15:33:00,2156-05-14 15:30:00,,"ELECTIVE","PHYS REFERRAL/NORMAL DELI",\
"HOME HEALTH CARE","Medicare","ENGL","CATHOLIC","DIVORCED","WHITE",,,"SYNCOPE",0,1
246,250,124271,2188-11-12 09:22:00,2188-11-22 12:00:00,2188-11-22 12:00:00,"EMERGENCY",\
"CLINIC REFERRAL/PREMATURE","DEAD/EXPIRED","Self Pay",,"OTHER","SINGLE",\
"BLACK/AFRICAN AMERICAN",,,"PNEUMONIA;TELEMETRY",1,1
247,251,117937,2090-09-01 11:03:00,2090-09-10 13:00:00,,"EMERGENCY","EMERGENCY ROOM ADMIT",\
"SNF","Medicare","ENGL","UNOBTAINABLE","WIDOWED","WHITE",2090-09-01 08:50:00,\
2090-09-01 11:40:00,"HIP FRACTURE",0,1
248,252,101757,2130-03-13 08:00:00,2130-03-20 12:00:00,,"URGENT","TRANSFER FROM HOSP/EXTRAM",\
"HOME","Private","ENGL","JEWISH","MARRIED","WHITE",,,"CHEST PAIN",0,1
"""
MIMIC_DIAGNOSES = """\
"ROW_ID","SUBJECT_ID","HADM_ID","SEQ_NUM","ICD9_CODE"
1630,249,149546,3,"5849"
1628,249,149546,1,"5789"
1629,249,149546,2,"42731"
1625,249,116935,2,"0389"
1624,249,116935,1,"486"
1626,249,116935,3,"V5861"
1700,250,124271,1,"486"
1701,250,124271,2,"E8889"
1750,251,117937,2,"4019"
1749,251,117937,1,"82021"
1751,251,117937,,
"""
MIMIC_FILES = {
    "PATIENTS.csv": MIMIC_PATIENTS,
    "ADMISSIONS.csv": MIMIC_ADMISSIONS,
    "DIAGNOSES_ICD.csv": MIMIC_DIAGNOSES,
}


def write_files(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def years_between(start: str, end: str) -> float:
    """The reference formula, written out independently of the loader."""
    moment = "%Y-%m-%d %H:%M:%S"
    delta = datetime.strptime(end, moment) - datetime.strptime(start, moment)
    return delta.total_seconds() / 86400 / 365.25


def age_at(dob: datetime, admit_time: datetime) -> float:
    return (admit_time - dob).total_seconds() / 86400 / 365.25


def small_cohort() -> Cohort:
    """Hand-made: one patient with every field given, the others as a generator makes them."""
    given_dob = datetime(2080, 5, 1)
    given_admits = [datetime(2147, 5, 1, 10, 30), datetime(2148, 11, 1, 7, 0)]
    return Cohort(
        [
            Patient(
                subject_id=12,
                sex="F",
                age=age_at(given_dob, given_admits[0]),
                dob=given_dob,
                visits=[
                    Visit(
                        ["4019", "0389"],
                        age_at(given_dob, given_admits[0]),
                        given_admits[0],
                        150001,
                    ),
                    Visit(["42731"], age_at(given_dob, given_admits[1]), given_admits[1], 150002),
                ],
            ),
            Patient(5, "M", 0.02, [Visit(["V3000", "7742"], 0.02)]),
            Patient(
                7,
                "M",
                45.3,
                [Visit(["E8889", "82021", "4019"], 45.3), Visit(["5849"], 45.9), Visit([], 47.0)],
            ),
            Patient(40, "F", 88.9, [Visit(["486"], 88.9), Visit(["5789", "486"], 89.4)]),
        ],
        outcomes=pd.DataFrame(
            {
                "SUBJECT_ID": [12, 5, 7, 40],
                "mortality": [0, 0, 1, 1],
                "readmission_risk": [0.1, 0.25, 1 / 3, 0.9],
            }
        ),
    )


# ------------------------------------------------------------------------ round trip


def test_round_trip_keeps_codes_order_ages_sex_and_outcomes(tmp_path):
    cohort = small_cohort()
    write_mimic(cohort, tmp_path / "out")
    loaded = load_mimic(tmp_path / "out")

    assert [p.subject_id for p in loaded] == [12, 5, 7, 40]
    for original, read in zip(cohort, loaded, strict=True):
        assert read.sex == original.sex
        kept_visits = [visit for visit in original.visits if visit.codes]
        assert [v.codes for v in read.visits] == [v.codes for v in kept_visits]
        for original_visit, read_visit in zip(kept_visits, read.visits, strict=True):
            assert read_visit.age == pytest.approx(original_visit.age, abs=ONE_DAY_IN_YEARS)
            assert isinstance(read_visit.admit_time, datetime)
            assert isinstance(read_visit.hadm_id, int)
        assert read.age == pytest.approx(original.visits[0].age, abs=ONE_DAY_IN_YEARS)
        assert isinstance(read.dob, datetime)
    given = loaded.patients[0]
    assert given.dob == datetime(2080, 5, 1)
    assert [v.hadm_id for v in given.visits] == [150001, 150002]
    assert [v.admit_time for v in given.visits] == [
        datetime(2147, 5, 1, 10, 30),
        datetime(2148, 11, 1, 7, 0),
    ]
    # Synthesised HADM_IDs follow the largest given one, in cohort order.
    assert [v.hadm_id for v in loaded.patients[1].visits] == [150003]
    pd.testing.assert_frame_equal(loaded.outcomes, cohort.outcomes)
    assert any("dropped 1 admissions without diagnoses" in note for note in loaded.notes)


def test_written_files_use_the_mimic_layout(tmp_path):
    write_mimic(small_cohort(), tmp_path)
    patients = (tmp_path / "PATIENTS.csv").read_text().splitlines()
    admissions = (tmp_path / "ADMISSIONS.csv").read_text().splitlines()
    diagnoses = (tmp_path / "DIAGNOSES_ICD.csv").read_text().splitlines()
    assert (
        patients[0]
        == '"ROW_ID","SUBJECT_ID","GENDER","DOB","DOD","DOD_HOSP","DOD_SSN","EXPIRE_FLAG"'
    )
    assert patients[1] == '1,12,"F",2080-05-01 00:00:00,,,,0'
    assert admissions[0] == (
        '"ROW_ID","SUBJECT_ID","HADM_ID","ADMITTIME","DISCHTIME","DEATHTIME",'
        '"ADMISSION_TYPE","HOSPITAL_EXPIRE_FLAG"'
    )
    assert admissions[1] == "1,12,150001,2147-05-01 10:30:00,,,,0"
    assert diagnoses[0] == '"ROW_ID","SUBJECT_ID","HADM_ID","SEQ_NUM","ICD9_CODE"'
    assert diagnoses[1:3] == ['1,12,150001,1,"4019"', '2,12,150001,2,"0389"']
    # A synthesised DOB is at midnight, as in MIMIC-III.
    assert patients[2].split(",")[3].endswith(" 00:00:00")
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_synthesised_dates_give_back_the_ages(tmp_path):
    patient = Patient(3, "F", 30.0, [Visit(["486"], 30.0), Visit(["4019"], 31.75)])
    write_mimic(Cohort([patient]), tmp_path)
    admissions = pd.read_csv(tmp_path / "ADMISSIONS.csv", dtype=str)
    dob = pd.read_csv(tmp_path / "PATIENTS.csv", dtype=str)["DOB"].iloc[0]
    ages = [years_between(dob, admit) for admit in admissions["ADMITTIME"]]
    assert ages == pytest.approx([30.0, 31.75], abs=60 / 86400 / 365.25)  # within a minute
    offset_days = (3 * mimic.SPREAD_STRIDE) % mimic.SPREAD_DAYS
    first_admit = datetime.strptime(admissions["ADMITTIME"].iloc[0], "%Y-%m-%d %H:%M:%S")
    assert -1 <= (first_admit - mimic.ANCHOR_DATE).days - offset_days <= 0


def test_write_is_deterministic_byte_for_byte(tmp_path):
    write_mimic(small_cohort(), tmp_path / "first")
    write_mimic(small_cohort(), tmp_path / "second")
    names = sorted(path.name for path in (tmp_path / "first").iterdir())
    assert names == ["ADMISSIONS.csv", "DIAGNOSES_ICD.csv", "OUTCOMES.csv", "PATIENTS.csv"]
    for name in names:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_rewriting_without_outcomes_removes_the_stale_file(tmp_path):
    write_mimic(small_cohort(), tmp_path)
    cohort = small_cohort()
    cohort.outcomes = None
    write_mimic(cohort, tmp_path)
    assert not (tmp_path / "OUTCOMES.csv").exists()
    assert load_mimic(tmp_path).outcomes is None


# ------------------------------------------------------------------- MIMIC-III files


def test_loader_reads_the_real_mimic_layout(tmp_path):
    cohort = load_mimic(write_files(tmp_path, MIMIC_FILES))

    assert [p.subject_id for p in cohort] == [249, 250, 251]  # 252 has no diagnoses
    first, second, old = cohort.patients
    assert first.sex == "F" and old.sex == "M"
    # Visits by ADMITTIME, codes by SEQ_NUM, leading zeros and V/E codes kept as strings.
    assert [v.hadm_id for v in first.visits] == [116935, 149546]
    assert [v.codes for v in first.visits] == [["486", "0389", "V5861"], ["5789", "42731", "5849"]]
    assert second.visits[0].codes == ["486", "E8889"]
    assert old.visits[0].codes == ["82021", "4019"]
    expected_age = years_between("2075-03-13 00:00:00", "2149-12-17 20:41:00")
    assert first.age == pytest.approx(expected_age, abs=1e-6)
    assert first.visits[1].age == pytest.approx(
        years_between("2075-03-13 00:00:00", "2155-02-03 20:16:00"), abs=1e-6
    )
    assert first.visits[0].admit_time == datetime(2149, 12, 17, 20, 41)
    assert first.dob == datetime(2075, 3, 13)
    # DOB shifted 300 years: mapped to 90.
    assert old.age == 90.0 and old.visits[0].age == 90.0
    assert cohort.outcomes is None

    notes = "\n".join(cohort.notes)
    assert "skipped 1 rows with an empty ICD9_CODE" in notes
    assert "dropped 2 admissions without diagnoses" in notes
    assert "dropped 1 patients without diagnoses" in notes
    assert "1 admissions of 1 patients had ages over 90" in notes


def test_loader_reads_gzipped_files_and_lower_case_headers(tmp_path):
    for name, text in MIMIC_FILES.items():
        header, _, rows = text.partition("\n")
        with gzip.open(tmp_path / f"{name}.gz", "wt", encoding="utf-8") as handle:
            handle.write(header.lower() + "\n" + rows)
    cohort = load_mimic(tmp_path)
    assert [p.subject_id for p in cohort] == [249, 250, 251]
    assert cohort.patients[0].visits[0].codes == ["486", "0389", "V5861"]


def test_max_age_sets_the_value_for_shifted_ages(tmp_path):
    cohort = load_mimic(write_files(tmp_path, MIMIC_FILES), max_age=91.4)
    assert cohort.patients[2].age == 91.4
    assert cohort.patients[0].age < 91.4


def test_outcomes_of_dropped_patients_are_dropped_and_counted(tmp_path):
    files = dict(MIMIC_FILES)
    files["OUTCOMES.csv"] = "SUBJECT_ID,mortality\n249,0\n250,1\n251,0\n252,1\n"
    cohort = load_mimic(write_files(tmp_path, files))
    assert cohort.outcomes["SUBJECT_ID"].tolist() == [249, 250, 251]
    assert cohort.outcomes["mortality"].tolist() == [0, 1, 0]
    assert any("OUTCOMES.csv: dropped 1 rows" in note for note in cohort.notes)


# ------------------------------------------------------------------------- bad input


def replace_once(files: dict[str, str], name: str, old: str, new: str) -> None:
    assert files[name].count(old) == 1, f"test setup: {old!r} must occur once in {name}"
    files[name] = files[name].replace(old, new)


def mutation(name: str, old: str, new: str):
    return lambda files: replace_once(files, name, old, new)


def remove_file(name: str):
    return lambda files: files.pop(name)


def set_text(name: str, text: str):
    return lambda files: files.__setitem__(name, text)


HEADER_ONLY_PATIENTS = MIMIC_PATIENTS.splitlines()[0] + "\n"

# (id, mutation of MIMIC_FILES, file named in the message, row named, expectation named)
BAD_INPUTS = [
    ("missing file", remove_file("ADMISSIONS.csv"), "ADMISSIONS.csv", "not found", "expected"),
    (
        "missing column",
        mutation("PATIENTS.csv", '"DOB"', '"BIRTHDATE"'),
        "PATIENTS.csv",
        "header line",
        "missing column(s) DOB",
    ),
    ("empty file", set_text("DIAGNOSES_ICD.csv", ""), "DIAGNOSES_ICD.csv", "", "file is empty"),
    (
        "header only",
        set_text("PATIENTS.csv", HEADER_ONLY_PATIENTS),
        "PATIENTS.csv",
        "",
        "expected at least one row",
    ),
    (
        "ragged line",
        mutation("PATIENTS.csv", "236,251,", "236,251,extra,"),
        "PATIENTS.csv",
        "line 4 ",
        "expected 8 fields as in the header, saw 9",
    ),
    (
        "extra field in the first row",
        mutation("PATIENTS.csv", "234,249,", "234,249,extra,"),
        "PATIENTS.csv",
        "data row 1 ",
        "more fields than the header's 8",
    ),
    (
        "unparseable DOB",
        mutation("PATIENTS.csv", "2075-03-13 00:00:00", "13/03/2075"),
        "PATIENTS.csv",
        "data row 1 ",
        "DOB must be a date 'YYYY-MM-DD HH:MM:SS'",
    ),
    (
        "unparseable ADMITTIME",
        mutation("ADMISSIONS.csv", "124271,2188-11-12", "124271,2188-11-32"),
        "ADMISSIONS.csv",
        "data row 4 ",
        "ADMITTIME must be a date",
    ),
    (
        "unknown sex",
        mutation("PATIENTS.csv", '251,"M"', '251,"U"'),
        "PATIENTS.csv",
        "data row 3 ",
        "GENDER must be 'F' or 'M', got 'U'",
    ),
    (
        "duplicate SUBJECT_ID",
        mutation("PATIENTS.csv", "235,250,", "235,249,"),
        "PATIENTS.csv",
        "data row 2 ",
        "repeats data row 1 (expected one row per SUBJECT_ID)",
    ),
    (
        "duplicate HADM_ID",
        mutation("ADMISSIONS.csv", "245,249,158975", "245,249,116935"),
        "ADMISSIONS.csv",
        "data row 3 ",
        "repeats data row 2 (expected one row per HADM_ID)",
    ),
    (
        "admission of unknown patient",
        mutation("ADMISSIONS.csv", "246,250,124271", "246,999,124271"),
        "ADMISSIONS.csv",
        "data row 4 ",
        "SUBJECT_ID 999 is not in PATIENTS.csv",
    ),
    (
        "admission before birth",
        mutation("ADMISSIONS.csv", "124271,2188-11-12", "124271,2160-11-12"),
        "ADMISSIONS.csv",
        "data row 4 ",
        "expected an admission at or after birth",
    ),
    (
        "non-numeric SEQ_NUM",
        mutation("DIAGNOSES_ICD.csv", "149546,2,", "149546,two,"),
        "DIAGNOSES_ICD.csv",
        "data row 3 ",
        "SEQ_NUM must be a whole number or empty, got 'two'",
    ),
    (
        "non-integer SUBJECT_ID",
        mutation("DIAGNOSES_ICD.csv", "1624,249,", "1624,249.5,"),
        "DIAGNOSES_ICD.csv",
        "data row 5 ",
        "SUBJECT_ID must be a whole number",
    ),
    (
        "duplicate HADM_ID and SEQ_NUM",
        mutation("DIAGNOSES_ICD.csv", "1626,249,116935,3,", "1626,249,116935,1,"),
        "DIAGNOSES_ICD.csv",
        "data row 6 ",
        "repeats data row 5 (expected one row per HADM_ID and SEQ_NUM)",
    ),
    (
        "diagnosis of unknown admission",
        mutation("DIAGNOSES_ICD.csv", "1700,250,124271", "1700,250,124270"),
        "DIAGNOSES_ICD.csv",
        "data row 7 ",
        "HADM_ID 124270 is not in ADMISSIONS.csv",
    ),
    (
        "diagnosis of another patient",
        mutation("DIAGNOSES_ICD.csv", "1701,250,", "1701,251,"),
        "DIAGNOSES_ICD.csv",
        "data row 8 ",
        "expected the admission's patient",
    ),
    (
        "row cut to 3 fields",
        mutation(
            "PATIENTS.csv",
            '235,250,"F",2164-12-27 00:00:00,2188-11-22 00:00:00,2188-11-22 00:00:00,,1',
            '235,250,"F"',
        ),
        "PATIENTS.csv",
        "line 3 (the header is line 1; data row 2)",
        "3 fields, expected 8 as in the header (ROW_ID, SUBJECT_ID, GENDER, DOB, DOD, "
        "DOD_HOSP, DOD_SSN, EXPIRE_FLAG); missing DOB, DOD, DOD_HOSP, DOD_SSN, EXPIRE_FLAG",
    ),
    (
        "SUBJECT_ID past int64",
        mutation("PATIENTS.csv", "236,251,", "236,99999999999999999999999,"),
        "PATIENTS.csv",
        "data row 3 ",
        "SUBJECT_ID must be a whole number of at most 9223372036854775807",
    ),
    (
        "SUBJECT_ID between 2^63 and 2^64",
        mutation("PATIENTS.csv", "236,251,", "236,9223372036854775808,"),
        "PATIENTS.csv",
        "data row 3 ",
        "SUBJECT_ID must be a whole number of at most 9223372036854775807",
    ),
    (
        "a header column twice in another case",
        mutation("PATIENTS.csv", '"DOD"', '"dob"'),
        "PATIENTS.csv",
        "header line",
        "column DOB appears twice ('DOB' and 'dob'",
    ),
    (
        "most codes unknown (another code system)",
        lambda files: files.__setitem__(
            "DIAGNOSES_ICD.csv",
            files["DIAGNOSES_ICD.csv"]
            .replace('"5849"', '"I10"')
            .replace('"5789"', '"E119"')
            .replace('"486"', '"J189"'),
        ),
        "DIAGNOSES_ICD.csv",
        "the first at data row 1",
        "40% of the 10 coded rows of",
    ),
    (
        "no diagnosis left",
        set_text(
            "DIAGNOSES_ICD.csv",
            '"ROW_ID","SUBJECT_ID","HADM_ID","SEQ_NUM","ICD9_CODE"\n1751,251,117937,,\n',
        ),
        "",
        "no patients left",
        "skipped 1 rows with an empty ICD9_CODE",
    ),
    (
        "duplicate outcome",
        set_text("OUTCOMES.csv", "SUBJECT_ID,mortality\n249,0\n250,1\n249,1\n"),
        "OUTCOMES.csv",
        "data row 3 ",
        "expected one row per SUBJECT_ID",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "file_name", "row", "expected"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_a_clear_error(tmp_path, mutate, file_name, row, expected):
    files = dict(MIMIC_FILES)
    mutate(files)
    write_files(tmp_path, files)
    with pytest.raises(MimicFormatError) as caught:
        load_mimic(tmp_path)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert file_name in message
    assert row in message
    if row.startswith("data row"):
        assert "(1-based, header not counted)" in message
    assert expected in message


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(MimicFormatError, match="MIMIC-III folder not found: .*no_such_folder"):
        load_mimic(tmp_path / "no_such_folder")


def test_unknown_codes_option_is_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown_codes must be 'error' or 'skip'"):
        load_mimic(write_files(tmp_path, MIMIC_FILES), unknown_codes="ignore")


def test_codes_outside_v32_are_skipped_by_default_and_stop_on_request(tmp_path):
    files = dict(MIMIC_FILES)
    replace_once(files, "DIAGNOSES_ICD.csv", '"42731"', '"7793"')
    write_files(tmp_path, files)
    cohort = load_mimic(tmp_path)  # the default, as on the command line: skip and count
    assert cohort.patients[0].visits[1].codes == ["5789", "5849"]
    assert any("skipped 1 rows" in note and "'7793'" in note for note in cohort.notes)
    with pytest.raises(MimicFormatError) as caught:
        load_mimic(tmp_path, unknown_codes="error")
    message = str(caught.value)
    assert "DIAGNOSES_ICD.csv: data row 3 (1-based, header not counted)" in message
    assert "'7793' is not an ICD-9-CM v32 diagnosis code" in message
    assert "pass --unknown-codes skip (unknown_codes='skip' in Python)" in message


def test_the_age_mapping_is_always_noted(tmp_path):
    files = dict(MIMIC_FILES)
    replace_once(files, "PATIENTS.csv", "1790-07-22", "2010-07-22")  # 251 is 80, not ~300
    notes = "\n".join(load_mimic(write_files(tmp_path, files)).notes)
    assert "age = (ADMITTIME - DOB) in days / 365.25; 0 admissions of 0 patients" in notes


def encoded(name: str, text: str, encoding: str) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = dict(MIMIC_FILES)
    files[name] = text.encode(encoding)
    return files


LATIN1_ADMISSIONS = MIMIC_ADMISSIONS.replace('"CATHOLIC","DIVORCED"', '"CATHOLIC","DIVORCÉ"', 1)

# (id, files, file named, what the message says)
BAD_BYTES = [
    (
        "UTF-16 with a byte-order mark",
        encoded("PATIENTS.csv", MIMIC_PATIENTS, "utf-16"),
        "PATIENTS.csv",
        "the file is UTF-16-encoded (a UTF-16 byte-order mark; expected UTF-8 text): re-save "
        "it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 IN > OUT`)",
    ),
    (
        "UTF-16 without a byte-order mark",
        encoded("PATIENTS.csv", MIMIC_PATIENTS, "utf-16-le"),
        "PATIENTS.csv",
        "the file holds NUL bytes",
    ),
    (
        "Latin-1",
        encoded("ADMISSIONS.csv", LATIN1_ADMISSIONS, "latin-1"),
        "ADMISSIONS.csv",
        "line 2 (the header is line 1): byte 0xC9 is not UTF-8, so the file is probably "
        "Latin-1 or Windows-1252 encoded (expected UTF-8 text): re-save it as UTF-8",
    ),
    (
        "gzip named .csv",
        {**MIMIC_FILES, "PATIENTS.csv": gzip.compress(MIMIC_PATIENTS.encode())},
        "PATIENTS.csv",
        "gzip-compressed but named .csv (expected plain CSV text); rename it to PATIENTS.csv.gz",
    ),
    (
        "plain text named .csv.gz",
        {
            "PATIENTS.csv.gz": MIMIC_PATIENTS,
            "ADMISSIONS.csv": MIMIC_ADMISSIONS,
            "DIAGNOSES_ICD.csv": MIMIC_DIAGNOSES,
        },
        "PATIENTS.csv.gz",
        "not gzip-compressed although the name ends in .gz",
    ),
    (
        "cut gzip",
        {
            **MIMIC_FILES,
            "DIAGNOSES_ICD.csv": None,
            "DIAGNOSES_ICD.csv.gz": gzip.compress(MIMIC_DIAGNOSES.encode() * 50)[:200],
        },
        "DIAGNOSES_ICD.csv.gz",
        "damaged or cut",
    ),
]


@pytest.mark.parametrize(
    ("files", "file_name", "expected"),
    [case[1:] for case in BAD_BYTES],
    ids=[case[0] for case in BAD_BYTES],
)
def test_bad_bytes_name_the_file_and_the_fix(tmp_path, files, file_name, expected):
    for name, content in files.items():
        if content is None:
            continue
        data = content.encode("utf-8") if isinstance(content, str) else content
        (tmp_path / name).write_bytes(data)
    with pytest.raises(MimicFormatError) as caught:
        load_mimic(tmp_path)
    message = str(caught.value)
    assert f"{tmp_path / file_name}:" in message
    assert expected in message
    assert "\n" not in message


def test_a_utf8_byte_order_mark_is_read(tmp_path):
    write_files(tmp_path, MIMIC_FILES)
    (tmp_path / "PATIENTS.csv").write_bytes(b"\xef\xbb\xbf" + MIMIC_PATIENTS.encode())
    assert [p.subject_id for p in load_mimic(tmp_path)] == [249, 250, 251]


# (id, mutation, the note that counts the skip, the codes of SUBJECT_ID 249 left)
SKIPS = [
    (
        "unknown code skipped",
        mutation("DIAGNOSES_ICD.csv", '"42731"', '"7793"'),
        "skipped 1 rows (10.00% of coded rows) with codes not in ICD-9-CM v32 (e.g. '7793')",
        [["486", "0389", "V5861"], ["5789", "5849"]],
    ),
    (
        "empty SEQ_NUM skipped",
        mutation("DIAGNOSES_ICD.csv", "1626,249,116935,3,", "1626,249,116935,,"),
        "skipped 1 rows with a code but no SEQ_NUM",
        [["486", "0389"], ["5789", "42731", "5849"]],
    ),
    (
        "empty ICD9_CODE skipped",
        mutation("DIAGNOSES_ICD.csv", '1625,249,116935,2,"0389"', "1625,249,116935,2,"),
        "skipped 2 rows with an empty ICD9_CODE",  # this one and the base file's
        [["486", "V5861"], ["5789", "42731", "5849"]],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "note", "codes"), [case[1:] for case in SKIPS], ids=[case[0] for case in SKIPS]
)
def test_what_real_exports_contain_is_a_counted_skip(tmp_path, mutate, note, codes):
    files = dict(MIMIC_FILES)
    mutate(files)
    cohort = load_mimic(write_files(tmp_path, files), unknown_codes="skip")
    assert any(note in line for line in cohort.notes), cohort.notes
    assert [visit.codes for visit in cohort.patients[0].visits] == codes


# ------------------------------------------------------------------------- atomicity


@pytest.mark.parametrize(
    ("bad_patient", "message"),
    [
        (Patient(99, "X", 50.0, [Visit(["486"], 50.0)]), "sex must be 'F' or 'M'"),
        (Patient(12, "F", 50.0, [Visit(["486"], 50.0)]), "subject_id is used by an earlier"),
        (Patient(99, "F", 50.0, [Visit(["48,6"], 50.0)]), "not a dotless ICD-9-CM code"),
        (
            Patient(99, "F", 50.0, [Visit(["486"], 50.0), Visit(["4019"], 49.0)]),
            "expected visits in admission order",
        ),
        (Patient(99, "F", float("nan"), []), "age must be a finite number"),
    ],
)
def test_invalid_cohort_writes_nothing(tmp_path, bad_patient, message):
    cohort = small_cohort()
    cohort.patients.append(bad_patient)
    with pytest.raises(ValueError, match=message):
        write_mimic(cohort, tmp_path / "new")
    assert not (tmp_path / "new").exists()

    write_mimic(small_cohort(), tmp_path / "old")
    before = {path.name: path.read_bytes() for path in (tmp_path / "old").iterdir()}
    with pytest.raises(ValueError, match=message):
        write_mimic(cohort, tmp_path / "old")
    after = {path.name: path.read_bytes() for path in (tmp_path / "old").iterdir()}
    assert after == before


def test_failure_while_writing_leaves_previous_files_and_no_temporaries(tmp_path, monkeypatch):
    old = small_cohort()
    write_mimic(old, tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    real_mkstemp = tempfile.mkstemp
    calls = []

    def mkstemp_failing_on_third_file(*args, **kwargs):
        calls.append(kwargs.get("prefix"))
        if len(calls) == 3:
            raise OSError("disk full")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(mimic_write.tempfile, "mkstemp", mkstemp_failing_on_third_file)
    new = small_cohort()
    new.patients[0].visits[0].codes = ["5849"]
    with pytest.raises(OSError, match="disk full"):
        write_mimic(new, tmp_path)

    assert len(calls) == 3  # two temporary files were complete when the third failed
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert after == before


def test_numpy_scalars_from_a_generator_are_written(tmp_path):
    patient = Patient(
        np.int64(8), "M", np.float32(61.5), [Visit(["486", "4019"], np.float32(61.5))]
    )
    write_mimic(Cohort([patient]), tmp_path)
    loaded = load_mimic(tmp_path)
    assert loaded.patients[0].subject_id == 8
    assert loaded.patients[0].age == pytest.approx(61.5, abs=ONE_DAY_IN_YEARS)
