"""Prediction heads (issue 5): labels, censoring, class weights, ECE, training against
baselines, versioned storage, untrained-head detection, input-size checks, features, CLI."""

from __future__ import annotations

import json
import math
import os
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.heads import (
    FitConfig,
    HeadInputSizeError,
    LabelsFileError,
    UntrainedHeadWarning,
    build_targets,
    cached_features,
    class_weights,
    compare_joint_and_separate,
    expected_calibration_error,
    extract_features,
    list_heads,
    load_head,
    make_head,
    patient_split,
    read_outcomes,
    save_head,
    temporal_split,
    train_heads,
)
from course_lib.heads.modules import horizon_loss
from course_lib.heads.targets import horizon_targets


def run_heads_cli(argv: list[str]) -> int:
    """``python -m course_lib heads ARGV`` without relying on the command's registration."""
    import argparse

    from course_lib.heads import cli

    parser = argparse.ArgumentParser(prog="course_lib heads")
    cli.configure_parser(parser)
    return cli.run_cli(parser.parse_args(argv))


FAST = FitConfig(epochs=40, patience=5, batch_size=128, lr=3e-3)


# --------------------------------------------------------------------------- labels file
def write_outcomes(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "OUTCOMES.csv").write_text(text)
    return folder


GOOD = (
    "SUBJECT_ID,LVEF_REDUCED,EVENT_DAYS,EVENT_OBSERVED,RISK_CATEGORY\n1,0,10.5,1,2\n2,1,400,0,0\n"
)


def test_read_outcomes_reads_a_good_file_and_keeps_empty_cells_as_no_label(tmp_path):
    folder = write_outcomes(tmp_path, GOOD + "3,,20,0,\n")
    table = read_outcomes(folder)
    assert table["SUBJECT_ID"].tolist() == [1, 2, 3]
    assert table["EVENT_DAYS"].tolist() == [10.5, 400.0, 20.0]
    assert math.isnan(table["LVEF_REDUCED"][2]) and math.isnan(table["RISK_CATEGORY"][2])


def test_missing_outcomes_file_is_a_clear_error(tmp_path):
    with pytest.raises(LabelsFileError, match=r"OUTCOMES\.csv: not found"):
        read_outcomes(tmp_path)


def test_missing_column_names_file_column_and_head(tmp_path):
    folder = write_outcomes(tmp_path, "SUBJECT_ID,LVEF_REDUCED\n1,0\n")
    assert read_outcomes(folder, ["binary"])["LVEF_REDUCED"].tolist() == [0.0]
    with pytest.raises(
        LabelsFileError,
        match=r"OUTCOMES\.csv: header line: missing column RISK_CATEGORY \(needed by risk",
    ):
        read_outcomes(folder, ["binary", "risk"])


@pytest.mark.parametrize(
    "row, pattern",
    [
        ("3,yes,1,1,0", r"data row 3 .*column LVEF_REDUCED: 'yes' is not a number"),
        (
            "3,0,1,1,5",
            r"data row 3 .*column RISK_CATEGORY: 5 is out of range \(expected one of 0, 1, 2\)",
        ),
        ("3,0,-2,1,0", r"data row 3 .*column EVENT_DAYS: -2 is out of range"),
        ("3,0,1,2,0", r"data row 3 .*column EVENT_OBSERVED: 2 is out of range"),
        ("x,0,1,1,0", r"data row 3 .*column SUBJECT_ID: 'x' is not an integer"),
        ("1,0,1,1,0", r"data row 3 .*SUBJECT_ID: 1 repeats data row 1"),
    ],
)
def test_bad_label_values_name_file_row_and_column(tmp_path, row, pattern):
    folder = write_outcomes(tmp_path, GOOD + row + "\n")
    with pytest.raises(LabelsFileError, match=pattern) as error:
        read_outcomes(folder)
    assert str(folder / "OUTCOMES.csv") in str(error.value)


# ------------------------------------------------------------------------- censoring, losses
def test_horizon_targets_mask_patients_censored_before_the_horizon():
    days = np.array([20.0, 20.0, 100.0, 400.0])
    observed = np.array([1, 0, 1, 0])
    target, mask = horizon_targets(days, observed, (30, 90, 365))
    # event at day 20: positive at every horizon
    assert target[0].tolist() == [1, 1, 1] and mask[0].all()
    # censored at day 20: unknown at every horizon >= 20
    assert not mask[1].any()
    # event at day 100: event-free at 30 and 90, positive at 365
    assert target[2].tolist() == [0, 0, 1] and mask[2].all()
    # censored at day 400: event-free (known) at all three
    assert target[3].tolist() == [0, 0, 0] and mask[3].all()


def test_horizon_loss_ignores_censored_entries():
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    logits = torch.tensor([[2.0, 2.0], [-2.0, 50.0]])  # the masked logit is absurd on purpose
    by_hand = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([2.0, -2.0]), torch.tensor([1.0, 0.0])
    )  # horizon 0: two patients; horizon 1: one
    horizon_1 = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(2.0), torch.tensor(1.0)
    )
    assert torch.isclose(horizon_loss(logits, target, mask), (by_hand + horizon_1) / 2)


def test_class_weights_balance_the_training_split():
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, -100])
    weights = class_weights(labels, 3)
    # n / (k * count): 9 / (3 * 6), 9 / (3 * 2), 9 / (3 * 1)
    assert torch.allclose(weights, torch.tensor([0.5, 1.5, 3.0]))
    assert class_weights(torch.tensor([0, 1, 1]), 3)[2] == 0.0  # absent class: no term to weigh


# ----------------------------------------------------------------------------------- ECE
def test_ece_matches_a_hand_computation():
    probabilities = [0.05, 0.05, 0.35, 0.35, 0.95, 1.0]
    outcomes = [0, 1, 0, 0, 1, 1]
    # bins: [0,.1): mean p .05, freq .5 -> |.5-.05| = .45, weight 2/6
    #       [.3,.4): .35 vs 0 -> .35, weight 2/6
    #       [.9,1]: .975 vs 1 -> .025, weight 2/6 (1.0 falls in the last bin)
    expected = (0.45 + 0.35 + 0.025) * 2 / 6
    assert expected_calibration_error(probabilities, outcomes) == pytest.approx(expected)
    assert expected_calibration_error([0.3] * 10, [1] * 3 + [0] * 7) == pytest.approx(0.0)


# -------------------------------------------------------------------------- training
def separable_problem(n: int = 600, seed: int = 0):
    """Features where column 0 carries LVEF, column 1 the risk class, column 2 the event hazard."""
    rng = np.random.default_rng(seed)
    lvef = rng.integers(0, 2, n)
    risk = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    hazard = rng.normal(size=n)
    event_days = rng.exponential(200 * np.exp(-1.5 * hazard))
    censor_days = rng.uniform(30, 900, n)
    outcomes = pd.DataFrame(
        {
            "SUBJECT_ID": np.arange(1, n + 1),
            "LVEF_REDUCED": lvef.astype(float),
            "EVENT_DAYS": np.minimum(event_days, censor_days),
            "EVENT_OBSERVED": (event_days <= censor_days).astype(float),
            "RISK_CATEGORY": risk.astype(float),
        }
    )
    features = rng.normal(size=(n, 6))
    features[:, 0] += 3 * lvef
    features[:, 1] += 2.5 * risk
    features[:, 2] = hazard
    targets = build_targets(outcomes, outcomes["SUBJECT_ID"].tolist())
    split = patient_split(outcomes["SUBJECT_ID"].tolist(), seed=seed)
    return torch.tensor(features, dtype=torch.float32), targets, split


def test_heads_trained_on_separable_features_beat_their_baselines():
    torch.manual_seed(0)
    features, targets, split = separable_problem()
    result = train_heads(features, targets, split, ["binary", "horizon", "risk"], config=FAST)
    binary, risk, horizon = (result.metrics[n] for n in ("binary", "risk", "horizon"))
    assert binary["auroc"] > 0.9 and binary["macro_f1"] > binary["baseline"]["macro_f1"] + 0.3
    assert binary["brier"] < binary["baseline"]["brier"]
    assert risk["macro_f1"] > risk["baseline"]["macro_f1"] + 0.2 and risk["auroc"] > 0.8
    assert horizon["per_horizon"]["365d"]["auroc"] > 0.7
    assert all(head.trained for head in result.heads.values())
    assert len(binary["confusion_matrix"]) == 2 and len(risk["f1_per_class"]) == 3


def test_joint_training_and_comparison_return_both_metric_sets():
    features, targets, split = separable_problem(n=300)
    config = FitConfig(epochs=15, patience=3, batch_size=128, lr=3e-3)
    both = compare_joint_and_separate(
        features, targets, split, ["binary", "risk", "confidence"], config=config
    )
    assert set(both) == {"separate", "joint"}
    for mode in both.values():
        assert set(mode) == {"binary", "risk", "confidence"}
        assert mode["binary"]["auroc"] > 0.8
    # the confidence target is "the binary head is right": 0/1 with NaN only where unlabelled
    confidence = targets.confidence
    assert set(confidence[~torch.isnan(confidence)].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("weighting", ["static", "dwa", "gradnorm", "normalize"])
def test_joint_training_accepts_the_weighting_strategies(weighting):
    features, targets, split = separable_problem(n=200)
    config = FitConfig(epochs=3, patience=3, batch_size=64)
    result = train_heads(
        features, targets, split, ["binary", "risk"], joint=True, weighting=weighting, config=config
    )
    assert result.mode == "joint" and all(h.trained for h in result.heads.values())
    # saved heads do not share their trunk any more
    assert result.heads["binary"].trunk is not result.heads["risk"].trunk


# --------------------------------------------------------------------- storage, flags
def test_versions_save_list_load_latest_and_named(tmp_path):
    first = make_head("binary", 8)
    first.mark_trained()
    second = make_head("binary", 8)
    second.mark_trained()
    now = datetime(2030, 1, 2, 3, 4, 5)
    path_1 = save_head(first, tmp_path, "binary", metrics={"auroc": 0.7}, now=now)
    path_2 = save_head(second, tmp_path, "binary", metrics={"auroc": 0.8}, now=now)  # same second
    assert path_1.name == "binary_20300102_030405" and path_2.name == "binary_20300102_030405_2"
    for name in ("weights.safetensors", "config.json", "metrics.json", "README.md"):
        assert (path_2 / name).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    rows = list_heads(tmp_path)
    assert [row.version for row in rows] == [path_1.name, path_2.name]
    latest = load_head(tmp_path, "binary")
    assert latest.version == path_2.name and latest.metrics["auroc"] == 0.8
    named = load_head(tmp_path, "binary", path_1.name)
    x = torch.randn(4, 8)
    assert torch.allclose(named.head(x), first.eval()(x))
    assert not torch.allclose(latest.head(x), named.head(x))
    with pytest.raises(ValueError, match="no such head version"):
        load_head(tmp_path, "binary", "binary_20300102_030406")


def test_a_failed_save_leaves_no_version_behind(tmp_path):
    head = make_head("risk", 4)
    with pytest.raises(FileNotFoundError):
        save_head(head, tmp_path, "risk", extra_files={"reliability.png": tmp_path / "missing.png"})
    assert list(tmp_path.iterdir()) == []


def test_loading_a_head_with_the_wrong_input_size_is_a_clear_error(tmp_path):
    head = make_head("binary", 32)
    head.mark_trained()
    save_head(head, tmp_path, "binary", config={"feature_kind": "decoder_end", "d_model": 32})
    assert load_head(tmp_path, "binary", expected_input_size=32).head.input_size == 32
    with pytest.raises(HeadInputSizeError, match=r"takes 32-dim features .* gives 64-dim"):
        load_head(tmp_path, "binary", expected_input_size=64)
    with pytest.raises(ValueError, match="expects 32-dim features, got 64"):
        head(torch.randn(2, 64))


def test_an_untrained_head_is_flagged_saved_listed_and_warns(tmp_path, capsys):
    untrained = make_head("horizon", 8)
    assert not untrained.trained
    with pytest.warns(UntrainedHeadWarning, match="untrained"):
        untrained.predict(torch.randn(3, 8))
    path = save_head(untrained, tmp_path, "horizon")
    assert json.loads((path / "config.json").read_text())["trained"] is False
    assert "UNTRAINED" in (path / "README.md").read_text()
    loaded = load_head(tmp_path, "horizon")
    assert not loaded.head.trained
    with pytest.warns(UntrainedHeadWarning):
        loaded.head.predict(torch.randn(3, 8))
    trained = make_head("binary", 8)
    trained.mark_trained()
    save_head(trained, tmp_path, "binary")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_head(tmp_path, "binary").head.predict(torch.randn(3, 8))  # no warning
    assert {(row.head, row.trained) for row in list_heads(tmp_path)} == {
        ("horizon", False),
        ("binary", True),
    }
    assert run_heads_cli(["list", "--heads-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "UNTRAINED" in out and "1 untrained" in out and path.name in out


# ------------------------------------------------------------------------------ splits
def test_temporal_split_orders_patients_by_last_admission():
    patients = [
        Patient(i, "F", 50.0, [Visit(["4019"], 50.0, datetime(2100 + (i * 7) % 10, 1, 1))])
        for i in range(1, 11)
    ]
    cohort = Cohort(patients)
    ids = [p.subject_id for p in patients]
    split = temporal_split(cohort, ids)
    last = {p.subject_id: p.visits[-1].admit_time for p in patients}
    train_latest = max(last[ids[r]] for r in split.train)
    test_earliest = min(last[ids[r]] for r in split.test)
    assert split.sizes() == {"train": 7, "val": 1, "test": 2}
    assert train_latest < test_earliest


def test_patient_split_reuses_the_runs_splits(tmp_path):
    (tmp_path / "splits.json").write_text(json.dumps({"train": [1, 2, 3], "val": [4], "test": [5]}))
    split = patient_split([5, 4, 3, 2, 1], run_dir=tmp_path)
    assert split.test.tolist() == [0] and split.val.tolist() == [1]
    fallback = patient_split(list(range(1, 21)), run_dir=tmp_path, seed=0)  # ids not covered
    assert fallback.sizes() == {"train": 16, "val": 2, "test": 2}


# ---------------------------------------------------------------------------- features
@pytest.fixture(scope="module")
def tiny_model_and_cohort():
    from course_lib.dataset import AgeNormalizer
    from course_lib.model import build_model
    from course_lib.presets import get_preset
    from course_lib.tokens import Vocabulary

    codes = ["4019", "4280", "25000", "5849", "2724", "41401"]
    patients = [
        Patient(
            i,
            "FM"[i % 2],
            40.0 + i,
            [Visit(codes[: 1 + i % 5], 40.0 + i), Visit(codes[i % 3 :], 41.0 + i)][: 1 + i % 2],
        )
        for i in range(1, 9)
    ]
    cohort = Cohort(patients)
    vocab = Vocabulary.build(cohort)
    torch.manual_seed(0)
    model = build_model(
        vocab,
        get_preset("tiny"),
        d_model=32,
        attention_heads=2,
        ffn_dim=64,
        encoder_layers=1,
        decoder_layers=1,
        max_sequence_length=32,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 32-wide model: thread hand-offs cost more than they save
    yield model.eval(), cohort, AgeNormalizer.fit(cohort)
    torch.set_num_threads(threads)


def test_features_have_the_stated_shape_and_do_not_depend_on_batching(tiny_model_and_cohort):
    model, cohort, normalizer = tiny_model_and_cohort
    batched = extract_features(model, cohort, normalizer, kind="concat", batch_size=4)
    single = extract_features(model, cohort, normalizer, kind="concat", batch_size=1)
    assert batched.features.shape == (len(cohort), 64)  # decoder_end then encoder_mean
    assert batched.subject_ids.tolist() == [p.subject_id for p in cohort]
    assert torch.allclose(batched.features, single.features, atol=1e-5)  # padding never leaks
    decoder = extract_features(model, cohort, normalizer, kind="decoder_end")
    assert decoder.features.shape == (len(cohort), 32)
    assert torch.allclose(decoder.features, batched.features[:, :32], atol=1e-5)


def test_features_are_cached_under_a_key_of_model_data_and_kind(tiny_model_and_cohort, tmp_path):
    model, cohort, normalizer = tiny_model_and_cohort
    first = cached_features(model, cohort, normalizer, tmp_path)
    again = cached_features(model, cohort, normalizer, tmp_path)
    assert not first.from_cache and again.from_cache and again.cache_path == first.cache_path
    assert first.cache_path.name == f"features_{first.key}.pt"
    assert torch.equal(first.features, again.features)
    other_kind = cached_features(model, cohort, normalizer, tmp_path, kind="encoder_mean")
    fewer = cached_features(model, Cohort(cohort.patients[:-1]), normalizer, tmp_path)
    assert len({first.key, other_kind.key, fewer.key}) == 3
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# ---------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def run_and_data(tmp_path_factory):
    """A hand-built run folder (random-init tiny model: the CLI's plumbing, not its accuracy)
    and a small simulated cohort with OUTCOMES.csv."""
    from course_lib.dataset import AgeNormalizer
    from course_lib.mimic import load_mimic, write_mimic
    from course_lib.model import build_model
    from course_lib.presets import get_preset
    from course_lib.simulate import simulate_cohort
    from course_lib.tokens import Vocabulary
    from course_lib.training import TrainConfig

    root = tmp_path_factory.mktemp("heads_cli")
    data = root / "data"
    write_mimic(simulate_cohort(120, seed=3), data)
    cohort = load_mimic(data)
    vocab = Vocabulary.build(cohort)
    torch.manual_seed(0)
    model = build_model(vocab, get_preset("tiny"), d_model=32, attention_heads=2, ffn_dim=64)
    run = root / "run"
    model.save_pretrained(run / "model")
    vocab.save(run / "vocab.json")
    (run / "normalizer.json").write_text(json.dumps(AgeNormalizer.fit(cohort).to_dict()))
    (run / "config.yaml").write_text(TrainConfig(max_length=64).to_yaml())
    return run, data


def test_cli_train_list_evaluate(run_and_data, tmp_path, capsys):
    run, data = run_and_data
    heads_dir = tmp_path / "heads"
    common = ["--run", str(run), "--data", str(data)]
    argv = ["train", *common, "--out", str(heads_dir), "--heads", "binary,confidence"]
    assert run_heads_cli([*argv, "--epochs", "3", "--split", "temporal"]) == 0
    out = capsys.readouterr().out
    assert "written to" in out and "split: temporal" in out
    assert sorted(row.head for row in list_heads(heads_dir)) == ["binary", "confidence"]
    assert len(list((heads_dir / "features").glob("features_*.pt"))) == 1
    binary_dir = next(heads_dir.glob("binary_*"))
    assert (binary_dir / "reliability.png").stat().st_size > 0
    config = json.loads((binary_dir / "config.json").read_text())
    assert (
        config["trained"] and config["split"]["kind"] == "temporal" and config["input_size"] == 32
    )
    assert run_heads_cli(["list", "--heads-dir", str(heads_dir)]) == 0
    assert "UNTRAINED" not in capsys.readouterr().out
    report = tmp_path / "eval.json"
    evaluate = ["evaluate", *common, "--heads-dir", str(heads_dir), "--json", str(report)]
    assert run_heads_cli(evaluate) == 0
    assert "read from" not in capsys.readouterr().out  # evaluate reuses the cache silently
    saved = json.loads(report.read_text())
    assert set(saved["metrics"]) == {"binary", "confidence"}
    at_training = json.loads((binary_dir / "metrics.json").read_text())
    for key in ("n", "auroc", "accuracy", "confusion_matrix"):  # same split, same test rows
        assert saved["metrics"]["binary"][key] == at_training[key]


def heads_main(argv: list[str], capsys) -> tuple[int, str]:
    """``python -m course_lib heads ARGV`` through ``cli.main``: the exit code and the one
    error line (the test fails if stderr holds more than one line)."""
    from course_lib.cli import main

    code = main(["heads", *argv])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) <= 1, err
    return code, lines[0] if lines else ""


def test_cli_reports_a_bad_labels_file(run_and_data, tmp_path, capsys):
    import shutil

    run, data = run_and_data
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    table = pd.read_csv(bad / "OUTCOMES.csv")
    table["RISK_CATEGORY"] = table["RISK_CATEGORY"].astype(object)
    table.loc[4, "RISK_CATEGORY"] = "high"
    table.to_csv(bad / "OUTCOMES.csv", index=False)
    argv = ["train", "--run", str(run), "--data", str(bad), "--out", str(tmp_path / "h")]
    code, line = heads_main(argv, capsys)
    assert code == 1  # bad data
    assert line.startswith("course_lib heads: error: ")
    assert "OUTCOMES.csv: data row 5" in line and "column RISK_CATEGORY: 'high'" in line
    assert not (tmp_path / "h").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--epochs", "0"], "--epochs 0: expected an integer >= 1"),
        (["train", "--lr", "0"], "--lr 0.0: expected a positive learning rate"),
        (["train", "--run", "{tmp}/absent"], "--run {tmp}/absent: no such folder"),
        (["train", "--data", "{run}/vocab.json"], "vocab.json: is a file, not a folder"),
        (["train", "--out", "{run}/vocab.json"], "--out {run}/vocab.json: exists and is a file"),
        (["evaluate", "--heads-dir", "{tmp}/none"], "--heads-dir {tmp}/none: no such folder"),
        (["evaluate", "--version", "binary_x"], "--version binary_x: no such head version"),
        (["evaluate", "--json", "{run}"], "--json {run}: is a folder"),
    ],
    ids=["epochs", "lr", "run", "data", "out", "heads-dir", "version", "json"],
)
def test_cli_usage_errors_exit_2_before_any_work(run_and_data, tmp_path, capsys, argv, expected):
    run, data = run_and_data
    (tmp_path / "heads").mkdir()
    values = {
        "--run": str(run),
        "--data": str(data),
        "--out": str(tmp_path / "heads"),
        "--heads-dir": str(tmp_path / "heads"),
    }
    command, changes = argv[0], argv[1:]
    for flag, value in zip(changes[::2], changes[1::2], strict=True):
        values[flag] = value.format(tmp=tmp_path, run=run)
    if command == "evaluate":
        values.pop("--out")
    else:
        values.pop("--heads-dir")
    code, line = heads_main([command, *(x for pair in values.items() for x in pair)], capsys)
    assert code == 2
    assert expected.format(tmp=tmp_path, run=run) in line
    assert not list((tmp_path / "heads").iterdir())  # nothing written


def test_cli_unknown_codes_flag_reaches_the_loader(run_and_data, tmp_path, capsys):
    import shutil

    from course_lib.heads.workflow import load_head_data

    run, data = run_and_data
    spoiled = tmp_path / "spoiled"
    shutil.copytree(data, spoiled)
    diagnoses = pd.read_csv(spoiled / "DIAGNOSES_ICD.csv", dtype={"ICD9_CODE": str})
    diagnoses.loc[2, "ICD9_CODE"] = "99999"  # outside ICD-9-CM v32, as real exports hold
    diagnoses.to_csv(spoiled / "DIAGNOSES_ICD.csv", index=False)
    out = tmp_path / "heads"
    argv = ["train", "--run", str(run), "--data", str(spoiled), "--out", str(out)]
    code, line = heads_main([*argv, "--unknown-codes", "error"], capsys)
    assert code == 1 and "99999" in line
    assert not out.exists()
    loaded = load_head_data(
        run, spoiled, ["binary"], tmp_path / "cache", "decoder_end", unknown_codes="skip"
    )
    assert any("skipped 1 rows" in note and "99999" in note for note in loaded.cohort.notes)


def test_features_of_a_run_trained_with_the_validity_loss(tiny_model_and_cohort):
    """A run that stores a validity weight (the default recipe) still gives its features."""
    model, cohort, normalizer = tiny_model_and_cohort
    stored = model.config.loss_weights
    model.config.loss_weights = {"age": 0.001, "sex": 0.001, "validity": 10.0}
    try:
        features = extract_features(model, cohort, normalizer, kind="decoder_end")
    finally:
        model.config.loss_weights = stored
    assert features.features.shape == (len(cohort), 32)
