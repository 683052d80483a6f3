"""Fuzzing the MIMIC-III loader and the summary command with malformed CSV folders (Hypothesis).

Every case must end in the loader's own :class:`MimicFormatError` (one line naming a file of
the folder) or in a cohort whose skips are counted in its notes: never another exception,
never a half-written output. Runs derandomised (the same cases every time) and small.
"""

from __future__ import annotations

import csv
import gzip
import io
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mimic_layout import (
    ADMISSION_COLUMNS,
    DIAGNOSIS_COLUMNS,
    PATIENT_COLUMNS,
    mimic_layout_rows,
)

from course_lib.cli import main
from course_lib.icd9 import code_table
from course_lib.mimic import MimicFormatError, load_mimic
from course_lib.summary import OVERVIEW_FILE

LOADER_EXAMPLES = 100
CLI_EXAMPLES = 15
TABLES = ("PATIENTS", "ADMISSIONS", "DIAGNOSES_ICD")
COLUMNS = {
    "PATIENTS": PATIENT_COLUMNS,
    "ADMISSIONS": ADMISSION_COLUMNS,
    "DIAGNOSES_ICD": DIAGNOSIS_COLUMNS,
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

NASTY_CELLS = [
    "", " ", "x", "-1", "0", "1.5", "1e30", "nan", "inf", "9" * 25, "9223372036854775808",
    "13/03/2075", "2075-02-30 00:00:00", "99999-01-01 00:00:00", "0001-01-01 00:00:00",
    "2075-03-13", "F", "m", "U", "4019", "401.9", "7793", "I10", "V3000", 'a "quote"',
    "comma, inside", "line\nbreak", "É", "\x00",
]  # fmt: skip
cells = st.one_of(st.sampled_from(NASTY_CELLS), st.text(max_size=12))


def base_tables() -> dict[str, list[list[str]]]:
    patients, admissions, diagnoses = mimic_layout_rows(n_patients=5)
    rows = {"PATIENTS": patients, "ADMISSIONS": admissions, "DIAGNOSES_ICD": diagnoses}
    return {name: [[str(cell) for cell in row] for row in table] for name, table in rows.items()}


# One edit of the tables: (kind, table, row fraction, column fraction, value).
edits = st.tuples(
    st.sampled_from(["set", "cut", "extra", "duplicate", "drop", "blank line"]),
    st.sampled_from(TABLES),
    st.floats(0, 1, exclude_max=True),
    st.floats(0, 1, exclude_max=True),
    cells,
)
# How each file is stored: harmless variations for all, and for at most one file a damage
# (a wrong encoding, a cut gzip, a misnamed .gz, an empty or absent file).
clean_forms = st.fixed_dictionaries(
    {
        "gzip": st.booleans(),
        "header": st.sampled_from(["upper", "lower", "mixed"]),
        "encoding": st.sampled_from(["utf-8", "utf-8-sig"]),
        "newline": st.sampled_from(["\n", "\r\n"]),
        "damage": st.none(),
    }
)
DAMAGES = ["utf-16", "utf-16-le", "latin-1", "cut gzip", "misnamed", "empty", "gone"]


@st.composite
def all_forms(draw) -> dict[str, dict]:
    forms = {name: draw(clean_forms) for name in TABLES}
    damaged = draw(st.sampled_from([None, None, *TABLES]))
    if damaged is not None:
        damage = draw(st.sampled_from(DAMAGES))
        if damage in ("utf-16", "utf-16-le", "latin-1"):
            forms[damaged]["encoding"] = damage
        else:
            forms[damaged]["damage"] = damage
    return forms


def apply_edit(tables: dict[str, list[list[str]]], edit) -> None:
    kind, name, row_at, column_at, value = edit
    rows = tables[name]
    if not rows:
        return
    row = int(row_at * len(rows))
    column = int(column_at * len(COLUMNS[name]))
    if kind == "set" and column < len(rows[row]):
        rows[row][column] = value
    elif kind == "cut":
        rows[row] = rows[row][: max(column, 1)]
    elif kind == "extra":
        rows[row] = [*rows[row], value]
    elif kind == "duplicate":
        rows.insert(row, list(rows[row]))
    elif kind == "drop":
        del rows[row]
    elif kind == "blank line":
        rows.insert(row, [])


def header(columns: list[str], form: str) -> list[str]:
    if form == "lower":
        return [column.lower() for column in columns]
    if form == "mixed":
        return [c.lower() if i % 2 else c for i, c in enumerate(columns)]
    return columns


def write_folder(folder: Path, tables, forms: dict[str, dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        form = forms[name]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator=form["newline"])
        writer.writerow(header(COLUMNS[name], form["header"]))
        writer.writerows(rows)
        text = buffer.getvalue()
        if form["encoding"] == "latin-1":
            text = text.replace("CATHOLIC", "CATHOLIQUE É")  # a byte that is not UTF-8
        data = text.encode(form["encoding"], errors="replace")
        damage = form["damage"]
        if damage == "gone":
            continue
        if damage == "empty":
            data = b""
        gzipped = form["gzip"] != (damage == "misnamed")
        if form["gzip"]:
            data = gzip.compress(data, mtime=0)
            if damage == "cut gzip":
                data = data[: len(data) // 2]
        suffix = ".csv.gz" if gzipped else ".csv"
        (folder / f"{name}{suffix}").write_bytes(data)


cases = st.tuples(
    st.lists(edits, max_size=3),
    all_forms(),
    st.sampled_from(["skip", "skip", "skip", "error"]),
)


def check_cohort(cohort) -> None:
    """What a loaded cohort promises, whatever the input was."""
    table = code_table()
    assert len(cohort) > 0
    for patient in cohort:
        assert patient.sex in ("F", "M") and patient.visits
        assert 0 <= patient.age <= 90
        times = [visit.admit_time for visit in patient.visits]
        assert times == sorted(times)
        for visit in patient.visits:
            assert visit.codes and all(code in table for code in visit.codes)
    assert cohort.notes[-1].startswith("loaded ")


def check_error(error: MimicFormatError, folder: Path) -> None:
    message = str(error)
    assert "\n" not in message
    assert str(folder) in message


def test_loader_fuzz_ends_in_its_own_error_or_a_counted_skip():
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=LOADER_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(cases)
    def one_case(case):
        edits_, forms, unknown_codes = case
        tables = base_tables()
        for edit in edits_:
            apply_edit(tables, edit)
        with tempfile.TemporaryDirectory() as temporary:
            folder = Path(temporary) / "data"
            write_folder(folder, tables, forms)
            try:
                cohort = load_mimic(folder, unknown_codes=unknown_codes)
            except MimicFormatError as error:
                check_error(error, folder)
                outcomes["error"] += 1
                return
            check_cohort(cohort)
            skipped = any("skipped" in note or "dropped" in note for note in cohort.notes)
            outcomes["loaded, rows skipped" if skipped else "loaded"] += 1

    one_case()
    print(f"loader fuzz: {sum(outcomes.values())} cases: {dict(outcomes)}")
    assert sum(outcomes.values()) == LOADER_EXAMPLES
    assert outcomes["error"] > 0 and outcomes["loaded, rows skipped"] > 0


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_summary_fuzz_writes_all_or_nothing(capsys):
    outcomes: Counter[int] = Counter()

    @settings(
        max_examples=CLI_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(cases)
    def one_case(case):
        edits_, forms, unknown_codes = case
        tables = base_tables()
        for edit in edits_:
            apply_edit(tables, edit)
        with tempfile.TemporaryDirectory() as temporary:
            folder = Path(temporary) / "data"
            write_folder(folder, tables, forms)
            plots = Path(temporary) / "plots"
            argv = ["summary", "--data", str(folder), "--plots", str(plots)]
            code = main([*argv, "--unknown-codes", unknown_codes])
            err = capsys.readouterr().err
            outcomes[code] += 1
            if code == 0:
                assert [p.name for p in plots.iterdir()] == [OVERVIEW_FILE]
                assert (plots / OVERVIEW_FILE).read_bytes().startswith(PNG_SIGNATURE)
                assert err == ""
            else:
                assert code == 1, err
                assert len(err.splitlines()) == 1 and "Traceback" not in err
                assert not plots.exists()

    one_case()
    print(f"summary fuzz: {sum(outcomes.values())} cases: exit codes {dict(outcomes)}")
    assert sum(outcomes.values()) == CLI_EXAMPLES
    assert outcomes[0] > 0 and outcomes[1] > 0
