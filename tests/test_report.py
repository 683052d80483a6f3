"""Tests of the ``evaluate`` command and its report: files, floors, goals, alarms, bad input."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from course_lib import cli, icd9
from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation import Evaluation
from course_lib.evaluation import report as report_module
from course_lib.evaluation.report import (
    FIGURE_FILES,
    HEADLINE_KEYS,
    MODEL_HEADLINE_KEYS,
    SIMULATOR_OUTCOME_COLUMNS,
    EvaluationInputError,
    evaluate_folders,
    format_report_table,
    write_report,
)
from course_lib.mimic import write_mimic
from course_lib.simulate import simulate_cohort

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Headline keys that need the model (--run): absent from a report without it.
# the likelihood keys come with evaluate --run; the conditioning keys only from the pipeline
RUN_KEYS = MODEL_HEADLINE_KEYS
# Keys that must have a floor in report.json when a reference sample exists.
FLOOR_KEYS = [key for key in HEADLINE_KEYS if key not in ("trtr_auroc", *RUN_KEYS)]
# needs synthetic patients generated for requested labels (their OUTCOMES.csv)
REQUESTED_KEYS = ("tstr_auroc",)
LIKELIHOOD_KEYS = ("mia_likelihood_auc", "perplexity", "unigram_perplexity")


def _strict_json(path: Path) -> dict:
    """Parse report.json refusing NaN/Infinity: the report must write null instead."""

    def refuse(constant: str):
        raise AssertionError(f"report.json contains {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _without_outcomes(cohort: Cohort) -> Cohort:
    return Cohort(cohort.patients, None, list(cohort.notes))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Simulated real, synthetic (no outcomes, as a generator writes), reference and train."""
    root = tmp_path_factory.mktemp("cohorts")
    cohorts = {
        "real": simulate_cohort(300, 1),
        "synthetic": _without_outcomes(simulate_cohort(300, 2)),
        "reference": simulate_cohort(300, 3),
        "train": simulate_cohort(300, 4),
    }
    paths = {}
    for name, cohort in cohorts.items():
        paths[name] = root / name
        write_mimic(cohort, paths[name])
    return paths


@pytest.fixture(scope="module")
def full_report(folders, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("reports") / "report"
    argv = ["evaluate", "--real", str(folders["real"]), "--synthetic", str(folders["synthetic"])]
    argv += ["--reference", str(folders["reference"]), "--train", str(folders["train"])]
    argv += ["--out", str(out), "--seed", "3"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main(argv) == 0
    return out, stdout.getvalue()


def test_cli_writes_json_markdown_and_figures(full_report) -> None:
    out, stdout = full_report
    report = _strict_json(out / "report.json")
    for key in HEADLINE_KEYS:
        assert (key in report) == (key not in RUN_KEYS), key
    assert any("need the model (--run)" in note for note in report["notes"])
    for key in FLOOR_KEYS:
        assert isinstance(report[f"{key}_floor"], float), key
    # The second simulator draw scores near its own floor: no alarm, finite numbers.
    assert report["alarms"] == []
    assert 0 < report["js_divergence"] < 1
    assert report["js_divergence"] <= 1.5 * report["js_divergence_floor"]
    assert report["n_patients"] == 300
    js_goal = report["goals"]["js_divergence"]
    assert js_goal["goal"] == "<= 1.15x floor" and js_goal["floor_met"] is True
    assert js_goal["met"] == (report["js_divergence"] <= 1.15 * report["js_divergence_floor"])
    assert report["goals"]["duplicate_rate"]["met"] is True
    # Synthetic patients had no outcomes: the simulator's outcome model labelled them.
    for key in ("tstr_oracle_auroc", "trtr_auroc", "augmentation_auroc"):
        assert isinstance(report[key], float), key
    assert report["tstr_auroc"] is None  # needs requested labels (OUTCOMES.csv): not faked
    assert isinstance(report["tstr_auroc_floor"], float)  # what a real sample's labels give
    # Every metric with a value has its interval, and the interval holds the value.
    for key in set(FLOOR_KEYS) - set(REQUESTED_KEYS):
        low, high = report[f"{key}_ci"]
        assert low <= report[key] + 1e-9 and report[key] - 1e-9 <= high, key
    assert any("simulate_outcomes(patients, seed=3)" in note for note in report["notes"])
    assert any(str(Path("reference")) in note and "Floors" in note for note in report["notes"])

    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| metric | value | interval | floor | ratio | goal | status |" in markdown
    js_row = next(line for line in markdown.splitlines() if line.startswith("| js_divergence |"))
    cells = [cell.strip() for cell in js_row.strip("|").split("|")]
    assert float(cells[1]) == pytest.approx(report["js_divergence"], rel=1e-3)
    low, high = (float(bound) for bound in cells[2].strip("[]").split(","))
    assert [low, high] == pytest.approx(report["js_divergence_ci"], rel=1e-3)
    assert float(cells[3]) == pytest.approx(report["js_divergence_floor"], rel=1e-3)
    ratio = report["js_divergence"] / report["js_divergence_floor"]
    assert float(cells[4]) == pytest.approx(ratio, rel=1e-3)
    assert cells[5:] == ["<= 1.15x floor", "pass" if ratio <= 1.15 else "FAIL"]
    assert "## Alarms" in markdown and "## Notes" in markdown

    assert sorted(report["figures"]) == sorted(f"figures/{name}" for name in FIGURE_FILES)
    for name in FIGURE_FILES:
        assert (out / "figures" / name).read_bytes().startswith(PNG_MAGIC)
        assert f"(figures/{name})" in markdown
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # staging removed

    assert "js_divergence" in stdout and "alarms: none" in stdout and str(out) in stdout


@pytest.fixture(scope="module")
def split_evaluation(folders):
    """Evaluated without a reference folder: the real folder is split in halves."""
    return evaluate_folders(folders["real"], folders["synthetic"], seed=5)


def test_without_reference_the_real_folder_is_split(split_evaluation, tmp_path) -> None:
    evaluation = split_evaluation
    assert len(evaluation.real) == 150 and len(evaluation.reference) == 150
    real_ids = {p.subject_id for p in evaluation.real}
    assert real_ids.isdisjoint(p.subject_id for p in evaluation.reference)
    assert evaluation.n_patients == 150
    assert math.isfinite(evaluation["js_divergence_floor"])
    assert math.isnan(evaluation["exact_copy_rate"])  # no train folder
    assert any("split at random (seed 5)" in note for note in evaluation.notes)
    out = write_report(
        evaluation, tmp_path / "out", evaluation.real, evaluation.synthetic, figures=False
    )
    report = _strict_json(out / "report.json")
    assert report["exact_copy_rate"] is None  # NaN written as null
    assert report["figures"] == []
    assert any("two disjoint halves" in note for note in report["notes"])


def _collapsed_cohort(real: Cohort) -> Cohort:
    """The notes' failure: every patient two codes, one gastric and one complication code,
    31 codes in all, whatever the prompt."""
    gastric = [code for code in sorted(icd9.code_table()) if code.startswith("536")][:16]
    complication = [code for code in sorted(icd9.code_table()) if code.startswith("999")][:15]
    patients = []
    for row, patient in enumerate(real):
        codes = [gastric[row % len(gastric)], complication[row % len(complication)]]
        patients.append(
            Patient(900000 + row, patient.sex, patient.age, [Visit(codes, patient.age)])
        )
    # One real code, so that the cohorts share a vocabulary (a cohort sharing none is refused).
    patients[0].visits[0].codes.append("4019")
    return Cohort(patients)


def test_collapsed_generator_trips_alarms_in_the_report(folders, tmp_path) -> None:
    write_mimic(_collapsed_cohort(simulate_cohort(300, 1)), tmp_path / "collapsed")
    evaluation = evaluate_folders(
        folders["real"], tmp_path / "collapsed", reference_dir=folders["reference"]
    )
    assert evaluation["unique_codes"] <= 32
    assert evaluation.alarms
    out = write_report(
        evaluation, tmp_path / "out", evaluation.real, evaluation.synthetic, figures=False
    )
    report = _strict_json(out / "report.json")
    assert report["alarms"] == evaluation.alarms
    assert report["goals"]["top100_overlap"]["met"] is False
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for alarm in evaluation.alarms:
        assert f"- {alarm}" in markdown
    table = format_report_table(evaluation)
    assert "FAIL" in table and "! unique_codes" in table


def test_format_report_table_goals_and_missing_values() -> None:
    metrics = {
        "js_divergence": 0.4,
        "js_divergence_floor": 0.25,
        "top100_overlap": 0.9,
        "top100_overlap_floor": 0.95,
        "age_violation_rate": 0.004,
        "sex_violation_rate": 0.006,
        "duplicate_rate": 0.0,
        "coverage": math.nan,
        "detection_auc": 0.97,
        "detection_auc_floor": 0.85,
        "age_violation_rate_all_male": 0.03,
        "age_violation_rate_all_male_floor": 0.02,
        "unigram_r2": 0.3,
        "unigram_r2_floor": 0.2,
        "mia_accuracy": math.nan,
    }
    rows = {
        line.split()[0]: line.split()
        for line in format_report_table(Evaluation(metrics)).splitlines()
        if line.strip()
    }
    assert rows["js_divergence"][1:5] == ["0.4", "n/a", "0.25", "1.6"]  # no interval given
    assert rows["js_divergence"][-1] == "FAIL"  # 0.4 > 1.15 * 0.25
    assert rows["top100_overlap"][-1] == "pass"
    assert rows["age_violation_rate"][-1] == "pass"  # 0.4% < 0.5%
    assert rows["sex_violation_rate"][-1] == "FAIL"  # 0.6% > 0.5%
    assert rows["detection_auc"][-1] == "FAIL"  # 0.97 > 0.85 + 0.1
    # a goal the floor itself misses (2% > 1%) is shown, never failed
    assert rows["age_violation_rate_all_male"][-4:] == ["(floor", "misses", "it", "too)"]
    assert rows["unigram_r2"][-1] == "pass"  # 0.3 >= 0.95 * 0.2
    assert rows["duplicate_rate"][-1] == "pass"
    assert rows["coverage"][1] == "n/a" and rows["coverage"][-1] == "n/a"
    assert rows["mia_accuracy"][1:] == ["n/a", "n/a", "n/a", "n/a"]
    assert "tstr_oracle_auroc" not in rows  # absent keys are skipped, not invented
    no_floor = {"js_divergence": 0.4}
    assert format_report_table(Evaluation(no_floor)).splitlines()[2].split()[-1] == "n/a"


def test_simulator_outcome_columns_match_the_simulator() -> None:
    outcomes = simulate_cohort(5, 0).outcomes
    assert set(SIMULATOR_OUTCOME_COLUMNS) <= set(outcomes.columns)


# ------------------------------------------------------------------------------ atomic writes


def test_failed_figure_keeps_the_previous_report(split_evaluation, tmp_path, monkeypatch) -> None:
    evaluation = split_evaluation
    out = write_report(
        evaluation, tmp_path / "out", evaluation.real, evaluation.synthetic, figures=False
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    from course_lib.evaluation import plots

    def broken(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plots, "top_codes_side_by_side", broken)  # after one figure is drawn
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_report(evaluation, out, evaluation.real, evaluation.synthetic, notes=["second run"])
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # nothing replaced, no staging folder or figures left behind


def test_no_figures_run_removes_figures_of_an_earlier_run(split_evaluation, tmp_path) -> None:
    evaluation = split_evaluation
    out = tmp_path / "out"
    stale = out / "figures" / "frequency_rank.png"  # as an earlier run with figures left it
    stale.parent.mkdir(parents=True)
    stale.write_bytes(PNG_MAGIC)
    write_report(evaluation, out, evaluation.real, evaluation.synthetic, figures=False)
    assert not any((out / "figures").glob("*.png"))
    assert _strict_json(out / "report.json")["figures"] == []


def test_report_folder_that_is_a_file_is_refused(tmp_path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(EvaluationInputError, match="not a folder"):
        write_report(Evaluation({"js_divergence": 0.1}), tmp_path / "taken", None, None)


# ------------------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def small_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("small")
    paths = {"real": root / "real", "other": root / "other"}
    write_mimic(simulate_cohort(40, 11), paths["real"])
    write_mimic(simulate_cohort(40, 12), paths["other"])
    return paths


def _copy_with_codes(source: Path, target: Path, rewrite) -> Path:
    """A copy of a MIMIC-III folder with DIAGNOSES_ICD's codes passed through ``rewrite``."""
    target.mkdir()
    for name in ("PATIENTS.csv", "ADMISSIONS.csv"):
        (target / name).write_bytes((source / name).read_bytes())
    diagnoses = pd.read_csv(source / "DIAGNOSES_ICD.csv", dtype={"ICD9_CODE": str})
    diagnoses["ICD9_CODE"] = rewrite(diagnoses["ICD9_CODE"])
    diagnoses.to_csv(target / "DIAGNOSES_ICD.csv", index=False)
    return target


def test_missing_folder_is_named(small_folders, tmp_path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(EvaluationInputError, match=r"synthetic folder .*nowhere: not found"):
        evaluate_folders(small_folders["real"], missing)
    with pytest.raises(EvaluationInputError, match=r"reference folder .*nowhere: not found"):
        evaluate_folders(small_folders["real"], small_folders["other"], reference_dir=missing)


def test_folder_without_patients_is_refused(small_folders, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("PATIENTS.csv", "ADMISSIONS.csv", "DIAGNOSES_ICD.csv"):
        header = (small_folders["other"] / name).read_text().splitlines()[0]
        (empty / name).write_text(header + "\n")
    with pytest.raises(EvaluationInputError, match=r"synthetic folder .*empty: .*no data rows"):
        evaluate_folders(small_folders["real"], empty)
    # Rows exist but no diagnosis has a code: no patient is left.
    blank = _copy_with_codes(small_folders["other"], tmp_path / "blank", lambda codes: "")
    with pytest.raises(EvaluationInputError, match=r"synthetic folder .*blank: no patients"):
        evaluate_folders(small_folders["real"], blank)


def test_other_code_system_is_refused(small_folders, tmp_path) -> None:
    icd10 = ["I10", "E119", "N179", "J9601", "A419"]
    other = _copy_with_codes(
        small_folders["other"],
        tmp_path / "icd10",
        lambda codes: pd.Series([icd10[i % 5] for i in range(len(codes))]),
    )
    with pytest.raises(EvaluationInputError, match=r"synthetic folder .*icd10: 100% of .*'I10'"):
        evaluate_folders(small_folders["real"], other)
    with pytest.raises(EvaluationInputError, match=r"real folder .*icd10: .*not ICD-9-CM"):
        evaluate_folders(other, small_folders["real"])


def test_no_shared_code_is_refused(small_folders, tmp_path) -> None:
    real_codes = {code for patient in simulate_cohort(40, 11) for code in patient.code_set}
    unused = [code for code in sorted(icd9.code_table()) if code not in real_codes][:50]
    disjoint = _copy_with_codes(
        small_folders["other"],
        tmp_path / "disjoint",
        lambda codes: pd.Series([unused[i % 50] for i in range(len(codes))]),
    )
    with pytest.raises(EvaluationInputError, match=r"synthetic folder .*disjoint: none of its"):
        evaluate_folders(small_folders["real"], disjoint)


def test_reference_overlapping_real_is_refused(small_folders) -> None:
    with pytest.raises(EvaluationInputError, match=r"reference folder .*SUBJECT_IDs also in"):
        evaluate_folders(
            small_folders["real"], small_folders["other"], reference_dir=small_folders["real"]
        )


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("course_lib evaluate: error: ")
    return lines[0]


def test_cli_reports_bad_input_without_writing(small_folders, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    argv = ["evaluate", "--real", str(small_folders["real"])]
    argv += ["--synthetic", str(tmp_path / "nowhere"), "--out", str(out)]
    code, stdout, err = _main(argv, capsys)
    assert code == 2  # a bad argument
    line = _error_line(err)
    assert f"--synthetic {tmp_path / 'nowhere'}: no such folder" in line
    assert "MIMIC-III layout" in line and stdout == ""
    assert not out.exists()
    bad_seed = ["evaluate", "--real", str(small_folders["real"]), "--synthetic"]
    bad_seed += [str(small_folders["other"]), "--out", str(out), "--seed", "-1"]
    code, _, err = _main(bad_seed, capsys)
    assert code == 2 and "--seed -1: expected an integer >= 0" in _error_line(err)
    assert not out.exists()


def test_out_is_checked_before_any_work(small_folders, tmp_path, capsys, monkeypatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("the evaluation ran before --out was checked")

    monkeypatch.setattr(report_module, "evaluate_folders", never)
    base = ["evaluate", "--real", str(small_folders["real"])]
    base += ["--synthetic", str(small_folders["other"]), "--no-figures"]
    (tmp_path / "file").write_text("x")
    code, _, err = _main([*base, "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and "--out" in err and "exists and is a file" in _error_line(err)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "report.json").write_text("{}")
    code, _, err = _main([*base, "--out", str(earlier)], capsys)
    assert code == 2 and "pass --overwrite to replace it" in _error_line(err)
    assert (earlier / "report.json").read_text() == "{}"  # untouched
    code, _, err = _main(
        [*base, "--out", str(tmp_path / "o"), "--likelihood-patients", "0"], capsys
    )
    assert code == 2 and "--likelihood-patients 0" in _error_line(err)
    code, _, err = _main([*base, "--out", str(tmp_path / "o"), "--run", str(tmp_path)], capsys)
    assert code == 1  # an existing folder that is not a run: the run's own error (data)
    assert "config.yaml is missing" in _error_line(err)
    monkeypatch.undo()
    code, _, _ = _main([*base, "--out", str(earlier), "--overwrite"], capsys)
    assert code == 0 and "js_divergence" in (earlier / "report.json").read_text()


def test_unknown_codes_flag_reaches_the_loader(small_folders, tmp_path, capsys) -> None:
    def spoil_two(codes: pd.Series) -> pd.Series:
        spoiled = codes.copy()
        spoiled.iloc[[3, 7]] = "99999"  # a code outside ICD-9-CM v32, as real exports hold
        return spoiled

    folder = _copy_with_codes(small_folders["other"], tmp_path / "two", spoil_two)
    argv = ["evaluate", "--real", str(small_folders["real"]), "--synthetic", str(folder)]
    argv += ["--no-figures", "--unknown-codes"]
    code, stdout, err = _main([*argv, "error", "--out", str(tmp_path / "a")], capsys)
    assert code == 1  # bad data
    line = _error_line(err)
    assert f"synthetic folder {folder}" in line and "99999" in line
    assert stdout == "" and not (tmp_path / "a").exists()
    code, _, err = _main([*argv, "skip", "--out", str(tmp_path / "b")], capsys)
    assert code == 0, err
    report = _strict_json(tmp_path / "b" / "report.json")
    assert any("synthetic: DIAGNOSES_ICD.csv: skipped 2 rows" in n for n in report["notes"])
    assert report["unknown_code_rate"] > 0


def test_report_module_is_the_cli_target() -> None:
    assert cli.COMMANDS["evaluate"][0] == report_module.__name__


def test_a_few_unknown_codes_are_dropped_and_reported(small_folders, tmp_path) -> None:
    def spoil_every_twentieth(codes: pd.Series) -> pd.Series:
        spoiled = codes.copy()
        spoiled.iloc[::20] = "I10"
        return spoiled

    folder = _copy_with_codes(small_folders["other"], tmp_path / "few", spoil_every_twentieth)
    n_codes = len(pd.read_csv(folder / "DIAGNOSES_ICD.csv"))
    expected = len(range(0, n_codes, 20)) / n_codes
    evaluation = evaluate_folders(small_folders["real"], folder)
    assert evaluation["unknown_code_rate"] == pytest.approx(expected)
    assert any("synthetic: DIAGNOSES_ICD.csv: skipped" in note for note in evaluation.notes)


# ------------------------------------------------------------------------------ identity checks


def _evaluate_argv(real: Path, synthetic: Path, out: Path) -> list[str]:
    return ["evaluate", "--real", str(real), "--synthetic", str(synthetic), "--out", str(out)]


def test_synthetic_equal_to_real_is_refused_in_one_line(small_folders, tmp_path, capsys) -> None:
    argv = _evaluate_argv(small_folders["real"], small_folders["real"], tmp_path / "out")
    code, _, err = _main(argv, capsys)
    assert code == 1  # bad data, not a bad flag
    assert "100% of its patients are records of the real folder" in _error_line(err)
    assert not (tmp_path / "out").exists()


def test_synthetic_equal_to_train_is_refused_as_a_privacy_leak(small_folders, tmp_path) -> None:
    with pytest.raises(
        EvaluationInputError, match=r"100% of its patients are records of the train"
    ):
        evaluate_folders(
            small_folders["real"], small_folders["other"], train_dir=small_folders["other"]
        )


def test_reference_overlapping_train_is_refused(folders, tmp_path) -> None:
    with pytest.raises(
        EvaluationInputError, match=r"reference folder .*SUBJECT_IDs also in the train folder"
    ):
        evaluate_folders(
            folders["real"],
            folders["synthetic"],
            train_dir=folders["train"],
            reference_dir=folders["train"],
        )


def test_half_copied_training_split_fires_the_privacy_alarm(folders, tmp_path) -> None:
    """The user's case in issue 14: synthetic patients that are training records (here half of
    them, so the folder is not refused as a plain copy) must raise the privacy alarm, and the
    command must print it."""
    train = simulate_cohort(300, 4)
    generated = simulate_cohort(300, 2).patients
    leaky = Cohort(train.patients[:150] + generated[150:])
    write_mimic(leaky, tmp_path / "leaky")
    argv = ["evaluate", "--real", str(folders["real"]), "--synthetic", str(tmp_path / "leaky")]
    argv += ["--train", str(folders["train"]), "--reference", str(folders["reference"])]
    argv += ["--out", str(tmp_path / "out"), "--no-figures"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main(argv) == 0
    report = _strict_json(tmp_path / "out" / "report.json")
    assert report["exact_copy_rate"] == pytest.approx(0.5, abs=0.02)
    assert report["dcr_holdout_share"] > report["dcr_holdout_share_floor"] + 0.1
    privacy = [alarm for alarm in report["alarms"] if alarm.startswith("privacy:")]
    assert [alarm.split()[1] for alarm in privacy] == ["exact_copy_rate", "dcr_holdout_share"]
    assert "! privacy: exact_copy_rate" in stdout.getvalue()


# ------------------------------------------------------------------------------ likelihood (--run)

TINY_MODEL = {
    "d_model": 16,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "ffn_dim": 32,
    "attention_heads": 2,
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict[str, Path]:
    """A run trained for 2 steps on 150 simulated patients (the plumbing, not a good model),
    its splits written as folders, and a second simulator draw as the synthetic cohort."""
    import torch

    from course_lib.mimic import load_mimic
    from course_lib.runs import Run
    from course_lib.training import TrainConfig, train

    root = tmp_path_factory.mktemp("likelihood")
    paths = {"cohort": root / "cohort", "run": root / "run", "synthetic": root / "synthetic"}
    write_mimic(simulate_cohort(150, 21), paths["cohort"])
    write_mimic(_without_outcomes(simulate_cohort(40, 22)), paths["synthetic"])
    cohort = load_mimic(paths["cohort"])
    config = TrainConfig(
        data=str(paths["cohort"]), out=str(paths["run"]), batch_size=8, max_length=48,
        model=dict(TINY_MODEL), sample_every_epoch=0, patience=None, log_every=1,
        progress=False, max_steps=2,
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            train(config, cohort)
    finally:
        torch.set_num_threads(threads)
    for name, split in Run.load(paths["run"]).splits(cohort).items():
        paths[name] = root / name
        write_mimic(split, paths[name])
    return paths


def test_likelihood_inputs_score_each_side_capped_and_seeded(tiny_run) -> None:
    from course_lib.evaluation.likelihood import patient_log_likelihoods, perplexity
    from course_lib.mimic import load_mimic
    from course_lib.runs import Run

    run = Run.load(tiny_run["run"])
    real, reference = load_mimic(tiny_run["test"]), load_mimic(tiny_run["val"])
    n_train = len(run.split_ids["train"])
    inputs = report_module.likelihood_inputs(run, real, reference, max_patients=10, seed=1)
    assert set(inputs) == {"train", "real", "reference"}
    assert [len(inputs[role]) for role in ("train", "real", "reference")] == [
        10,
        min(10, len(real)),
        min(10, len(reference)),
    ]
    assert all(np.all(scores < 0) for scores in inputs.values())  # log-probabilities
    again = report_module.likelihood_inputs(run, real, reference, max_patients=10, seed=1)
    assert np.array_equal(again["train"], inputs["train"])  # seeded sample
    assert f"10 of {n_train} train" in inputs.notes[0] and "at most 10 patients" in inputs.notes[0]
    # Uncapped, the perplexity is that of the whole real cohort, and the train side is read
    # from the run's own data folder (no train cohort given).
    whole = report_module.likelihood_inputs(run, real, max_patients=10_000)
    assert len(whole["train"]) == n_train and "reference" not in whole
    model, vocabulary, normalizer, config = run.parts()
    table = patient_log_likelihoods(model, vocabulary, normalizer, real, max_length=48)
    assert whole.metrics["perplexity"] == pytest.approx(perplexity(table), rel=1e-5)
    low, high = whole.intervals["perplexity"]
    assert low <= whole.metrics["perplexity"] <= high
    assert whole.metrics["unigram_perplexity"] > 1 and whole.metrics["perplexity_train"] > 1


def test_likelihood_inputs_refuse_training_patients_as_held_out(tiny_run) -> None:
    from course_lib.mimic import load_mimic

    train = load_mimic(tiny_run["train"])
    with pytest.raises(EvaluationInputError, match=r"real patients: \d+ SUBJECT_IDs are in the"):
        report_module.likelihood_inputs(tiny_run["run"], train)
    unrelated = simulate_cohort(20, 23)
    with pytest.raises(EvaluationInputError, match=r"none of its \d+ training patients"):
        report_module.likelihood_inputs(
            tiny_run["run"], load_mimic(tiny_run["test"]), train_cohort=unrelated
        )


def test_evaluate_with_run_reports_likelihood_metrics(tiny_run, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    argv = ["evaluate", "--real", str(tiny_run["test"]), "--synthetic"]
    argv += [str(tiny_run["synthetic"]), "--train", str(tiny_run["train"]), "--reference"]
    argv += [str(tiny_run["val"]), "--run", str(tiny_run["run"]), "--out", str(out)]
    argv += ["--no-figures", "--likelihood-patients", "12", "--seed", "2"]
    code = cli.main(argv)
    stdout = capsys.readouterr().out
    assert code == 0
    report = _strict_json(out / "report.json")
    from course_lib.evaluation.privacy import mia_likelihood_auc
    from course_lib.mimic import load_mimic

    inputs = report_module.likelihood_inputs(
        tiny_run["run"],
        load_mimic(tiny_run["test"]),
        load_mimic(tiny_run["val"]),
        12,
        train_cohort=load_mimic(tiny_run["train"]),
        seed=2,
    )
    expected, _ = mia_likelihood_auc(inputs["train"], inputs["real"], seed=2)
    assert report["mia_likelihood_auc"] == pytest.approx(expected)
    assert 0 <= report["mia_likelihood_auc_floor"] <= 1
    assert report["perplexity"] == pytest.approx(inputs.metrics["perplexity"])
    assert report["unigram_perplexity"] == pytest.approx(inputs.metrics["unigram_perplexity"])
    for key in ("mia_likelihood_auc", "perplexity"):
        low, high = report[f"{key}_ci"]
        assert low <= report[key] <= high, key
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| perplexity |" in markdown and "| unigram_perplexity |" in markdown
    assert "at most 12 patients per side" in markdown
    assert "mia_likelihood_auc" in stdout and "perplexity" in stdout


def test_a_floor_goal_missed_within_the_noise_is_not_a_fail() -> None:
    from course_lib.evaluation.report_format import NOISE_SE, miss_within_noise, report_json

    z = 1.6448536269514722  # the 90% intervals' half-width in standard errors
    metrics = {"unigram_r2": 0.50, "unigram_r2_floor": 0.58, "js_divergence": 0.30}
    metrics["js_divergence_floor"] = 0.20
    # unigram: goal 0.95 x 0.58 = 0.551, missed by 0.051; standard errors 0.03 and 0.05
    # give sqrt(0.03^2 + (0.95 x 0.05)^2) = 0.0562, so 2 SE = 0.112 covers the miss
    intervals = {
        "unigram_r2": (0.50 - 0.03 * z, 0.50 + 0.03 * z),
        "unigram_r2_floor": (0.58 - 0.05 * z, 0.58 + 0.05 * z),
        # js: goal 1.15 x 0.2 = 0.23, missed by 0.07 with SEs 0.01 and 0.01: 2 SE = 0.0305
        "js_divergence": (0.30 - 0.01 * z, 0.30 + 0.01 * z),
        "js_divergence_floor": (0.20 - 0.01 * z, 0.20 + 0.01 * z),
    }
    evaluation = Evaluation(metrics, intervals=intervals)
    assert NOISE_SE == 2.0
    assert miss_within_noise("unigram_r2", evaluation) is True
    assert miss_within_noise("js_divergence", evaluation) is False
    rows = {
        line.split()[0]: line.split()
        for line in format_report_table(evaluation).splitlines()
        if line.strip()
    }
    assert rows["unigram_r2"][-2:] == ["within", "noise"]
    assert rows["js_divergence"][-1] == "FAIL"
    goals = json.loads(report_json(evaluation, [], []))["goals"]
    assert goals["unigram_r2"]["met"] is False and goals["unigram_r2"]["within_noise"] is True
    assert goals["js_divergence"]["within_noise"] is False
    # a met goal, an absolute goal, or a value without intervals is never "within noise"
    assert miss_within_noise("unigram_r2", Evaluation({**metrics, "unigram_r2": 0.6})) is None
    assert miss_within_noise("unigram_r2", Evaluation(metrics)) is None
    assert miss_within_noise("sex_violation_rate", Evaluation({"sex_violation_rate": 0.9})) is None
