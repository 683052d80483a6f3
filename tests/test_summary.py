"""The cohort summary: exact counts on a hand-made cohort, the text, the figure and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from course_lib.cli import main
from course_lib.cohort import Cohort, Patient, Visit
from course_lib.summary import OVERVIEW_FILE, format_summary, plot_cohort_overview, summarize

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data_samples" / "mimic_sample"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def small_cohort() -> Cohort:
    """Three patients; one male has a delivery code (an MCE violation) and a repeated code."""
    patients = [
        Patient(1, "F", 30.0, [Visit(["V270", "650", "4019"], 30.0)]),
        Patient(
            2,
            "M",
            70.0,
            [Visit(["4019", "4280", "4280"], 70.0), Visit(["V270", "4019"], 71.0)],
        ),
        Patient(3, "M", 0.0, [Visit(["V3000", "7742"], 0.0), Visit(["99999"], 1.0)]),
    ]
    outcomes = pd.DataFrame(
        {
            "SUBJECT_ID": [1, 2, 3],
            "LVEF_REDUCED": [0, 1, 0],
            "EVENT_DAYS": [10.0, 200.0, 400.0],
            "EVENT_OBSERVED": [1, 1, 0],
            "RISK_CATEGORY": [0, 2, 0],
        }
    )
    return Cohort(patients, outcomes)


def test_summary_counts_exactly(small_cohort):
    summary = summarize(small_cohort, top=3)
    assert (summary["patients"], summary["visits"], summary["codes"]) == (3, 5, 11)
    assert summary["distinct_codes"] == 7
    assert summary["sex"] == {"F": 1, "M": 2}
    assert summary["visits_per_patient"] == {
        "min": 1.0, "p25": 1.5, "p50": 2.0, "p75": 2.0, "p90": 2.0, "p99": 2.0, "max": 2.0
    }  # fmt: skip
    assert summary["codes_per_patient"]["max"] == 5.0
    assert summary["distinct_codes_per_patient"]["max"] == 3.0
    assert summary["top_codes"][0] == {
        "code": "4019",
        "dotted": "401.9",
        "description": "Hypertension NOS",
        "patients": 2,
        "share": 2 / 3,
    }
    assert [entry["code"] for entry in summary["top_codes"]] == ["4019", "V270", "4280"]
    assert summary["top_code_share"] == pytest.approx(2 / 3)
    # V270 for a man of 71 breaks the female and maternity rules: counted once, as the first.
    assert summary["mce_violations"] == 1 and summary["mce_violations_by_rule"] == {"female": 1}
    assert summary["repeated_codes_in_visit"] == 1 and summary["unknown_codes"] == 1
    outcomes = summary["outcomes"]
    assert outcomes["LVEF_REDUCED"] == pytest.approx(1 / 3)
    assert outcomes["EVENT_WITHIN_30D"] == pytest.approx(1 / 3)
    assert outcomes["EVENT_WITHIN_365D"] == pytest.approx(2 / 3)
    assert outcomes["RISK_CATEGORY"] == {0: pytest.approx(2 / 3), 2: pytest.approx(1 / 3)}
    json.dumps(summary)  # plain data, ready for metrics.json


def test_format_summary_names_the_key_figures(small_cohort):
    text = format_summary(summarize(small_cohort))
    assert "patients 3  visits 5  codes 11  distinct codes 7" in text
    assert "MCE age/sex violations 1 (female 1)" in text
    assert "1. 401.9    66.7%  Hypertension NOS" in text
    assert "LVEF_REDUCED 33.3%" in text and "RISK_CATEGORY 0:67% 2:33%" in text
    assert "outcomes" not in format_summary(summarize(Cohort(small_cohort.patients)))


def test_plot_writes_one_png_atomically(small_cohort, tmp_path):
    target = tmp_path / "figures" / "overview.png"
    assert plot_cohort_overview(small_cohort, target) == target
    assert target.read_bytes().startswith(PNG_SIGNATURE) and target.stat().st_size > 10_000
    assert [p.name for p in target.parent.iterdir()] == ["overview.png"]  # no temporary left


def test_cli_prints_summary_and_saves_the_figure(tmp_path, capsys):
    assert main(["summary", "--data", str(SAMPLE_DIR), "--plots", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    notes, _, summary_text = out.partition("\npatients 2,000  visits ")
    assert notes.startswith("data: ADMISSIONS.csv: age = (ADMITTIME - DOB)")  # loader notes first
    assert "data: loaded 2000 patients" in notes
    assert "MCE age/sex violations 0 " in summary_text
    assert (tmp_path / OVERVIEW_FILE).read_bytes().startswith(PNG_SIGNATURE)


def test_cli_reports_a_missing_folder_clearly(tmp_path, capsys):
    assert main(["summary", "--data", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"course_lib summary: error: --data {tmp_path / 'absent'}: no such folder (expected a "
        "folder in the MIMIC-III layout (PATIENTS.csv, ADMISSIONS.csv, ...); check the path)\n"
    )


@pytest.mark.parametrize("top", ["0", "-3", "many"])
def test_cli_refuses_a_bad_top_as_a_usage_error(top, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["summary", "--data", str(SAMPLE_DIR), "--top", top])
    assert caught.value.code == 2
    assert "argument --top: expected a whole number >= 1" in capsys.readouterr().err
