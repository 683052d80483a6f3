"""The main job end to end on a small simulated cohort (issue: evaluation, main job)."""

from __future__ import annotations

import json

import pytest

from course_lib.cli import main
from course_lib.mimic import load_mimic, write_mimic
from course_lib.pipeline import run_pipeline
from course_lib.runs import Run
from course_lib.simulate import simulate_cohort


@pytest.mark.slow
def test_pipeline_trains_generates_and_writes_a_report(tmp_path, capsys):
    write_mimic(simulate_cohort(300, seed=3), tmp_path / "cohort")
    metrics = run_pipeline(tmp_path / "cohort", tmp_path / "out", max_steps=4, progress=False)
    printed = capsys.readouterr().out
    assert "js_divergence" in printed and "report:" in printed
    report = json.loads((tmp_path / "out" / "report" / "report.json").read_text())
    assert report["js_divergence"] == pytest.approx(metrics["js_divergence"])
    assert 0.0 < report["js_divergence_floor"] < 1.0
    assert report["tstr_oracle_auroc"] is not None  # simulated data: the outcome model labels
    # the cohort has LVEF_REDUCED: trained with it as a prompt, generated for the test labels
    assert report["tstr_auroc"] is not None and report["tstr_auroc_floor"] is not None
    synthetic = load_mimic(tmp_path / "out" / "synthetic")
    run = Run.load(tmp_path / "out" / "run")
    assert run.config.outcome_prompts == ["LVEF_REDUCED"]
    assert len(synthetic) == len(run.split_ids["test"])
    test = run.split(load_mimic(tmp_path / "cohort"), "test")
    wanted = test.outcomes.set_index("SUBJECT_ID").loc[[p.subject_id for p in test]]
    assert synthetic.outcomes["LVEF_REDUCED"].tolist() == wanted["LVEF_REDUCED"].tolist()
    # visit gaps drawn from the training split's: admissions of a patient on different days
    assert run.visit_gaps() is not None and run.visit_gaps().size > 0
    assert any(len({visit.admit_time for visit in p.visits}) > 1 for p in synthetic)
    epochs = run.log("epochs")
    assert "sampled_unique_codes" in epochs.columns  # the pipeline trains with the sample check
    assert (tmp_path / "out" / "report" / "figures").is_dir()


def test_pipeline_command_rejects_a_missing_folder(tmp_path, capsys):
    code = main(["pipeline", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert code == 2 and "no such folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--max-steps", "0"], "--max-steps must be >= 1"), (["--preset", "huge"], "--preset")],
)
def test_pipeline_command_rejects_bad_numbers(tmp_path, capsys, flags, message):
    (tmp_path / "cohort").mkdir()
    code = main(["pipeline", "--data", str(tmp_path / "cohort"), "--out", str(tmp_path), *flags])
    assert code == 2 and message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]  # nothing written


def test_pipeline_command_names_an_outcome_prompt_the_cohort_lacks(tmp_path, capsys):
    write_mimic(simulate_cohort(40, seed=1), tmp_path / "cohort")
    argv = ["pipeline", "--data", str(tmp_path / "cohort"), "--out", str(tmp_path / "out")]
    code = main([*argv, "--outcome-prompts", "LVEF_REDUCED,NOT_A_COLUMN", "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert code == 1 and "outcome prompt NOT_A_COLUMN" in error and "LVEF_REDUCED" in error
    assert len(error.splitlines()) == 1
