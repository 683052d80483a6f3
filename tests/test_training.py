"""Tests of the training loop (course_lib.training): overfitting, determinism, exact resume,
NaN stop, atomic checkpoints, configuration errors and the log files."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from course_lib import losses
from course_lib.cohort import Cohort, Patient, Visit
from course_lib.sample_check import default_callbacks, sample_check
from course_lib.training import (
    NonFiniteLossError,
    ResumeError,
    TrainConfig,
    TrainConfigError,
    load_run,
    train,
)

REPO = Path(__file__).resolve().parents[1]
CODES = [
    "4019", "4280", "42731", "5849", "25000", "2724", "51881", "5990", "53081", "2449",
    "41401", "V4581", "2859", "496", "5859", "99592", "0389", "486", "2762", "27800",
]  # fmt: skip
TINY_MODEL = {
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "ffn_dim": 64,
    "attention_heads": 4,
}


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP
    threads waiting on each other make every step many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_cohort(n_patients: int, seed: int = 0) -> Cohort:
    """A small hand-made cohort: 1-3 visits of 1-4 codes drawn from 20 common ICD-9 codes."""
    rng = torch.Generator().manual_seed(seed)
    patients = []
    for index in range(n_patients):
        n_visits = 1 + int(torch.randint(3, (1,), generator=rng))
        age = 20.0 + (7.0 * index) % 70
        visits = []
        for _ in range(n_visits):
            n_codes = 1 + int(torch.randint(4, (1,), generator=rng))
            picked = torch.randperm(len(CODES), generator=rng)[:n_codes].tolist()
            visits.append(Visit([CODES[i] for i in picked], age))
        patients.append(Patient(index + 1, "F" if index % 2 else "M", age, visits))
    return Cohort(patients)


def tiny_config(out: Path, **changes) -> TrainConfig:
    values = dict(
        out=str(out),
        batch_size=4,
        max_length=32,
        model=dict(TINY_MODEL),
        sample_every_epoch=0,
        patience=None,
        log_every=1,
        progress=False,
        split_fractions=[0.75, 0.25, 0.0],
    )
    values.update(changes)
    return TrainConfig(**values)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def term_values(records: list[dict]) -> list[tuple[int, float, float, float]]:
    return [
        (r["step"], r["terms"]["lm"]["raw"], r["terms"]["age"]["raw"], r["total"]) for r in records
    ]


# ------------------------------------------------------------------------------- training
def test_overfits_eight_patients(tmp_path):
    cohort = make_cohort(8)
    config = tiny_config(
        tmp_path / "run",
        batch_size=8,
        split_fractions=[1.0, 0.0, 0.0],
        model={**TINY_MODEL, "d_model": 64, "ffn_dim": 128, "dropout": 0.0},
        aux_head="linear",
        lr=3e-3,
        scheduler="constant_with_warmup",
        warmup_ratio=0.02,
        weight_decay=0.0,
        max_steps=250,
        log_every=50,
    )
    result = train(config, cohort)
    records = read_jsonl(result.run_dir / "logs" / "train.jsonl")
    assert records[0]["terms"]["lm"]["raw"] > 2.0  # random init: about log(vocab)
    assert records[-1]["step"] == 250
    assert records[-1]["terms"]["lm"]["raw"] < 0.1


def test_same_seed_gives_the_same_loss_curve(tmp_path):
    cohort = make_cohort(24)
    curves = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        result = train(tiny_config(tmp_path / name, seed=seed, max_steps=6), cohort)
        curves.append(term_values(read_jsonl(result.run_dir / "logs" / "train.jsonl")))
    assert len(curves[0]) == 6
    assert curves[0] == curves[1]
    assert curves[0] != curves[2]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"objective": "infill", "weighting": "uncertainty", "accumulation": 2, "batch_size": 3},
        {"weighting": "dwa", "extra_losses": ["cooc"], "cooc_threshold": 1, "loss_weights": {}},
        {"weighting": "gradnorm", "extra_losses": ["diversity"], "loss_weights": {}},
    ],
    ids=["static", "infill-uncertainty-accumulation", "dwa-cooc", "gradnorm-diversity"],
)
def test_resume_logs_the_same_losses_as_an_uninterrupted_run(tmp_path, changes):
    cohort = make_cohort(30)
    settings = dict(max_steps=14, model={**TINY_MODEL, "dropout": 0.2}, **changes)
    straight = train(tiny_config(tmp_path / "straight", **settings), cohort)

    config = tiny_config(tmp_path / "resumed", **settings)
    first = train(config, cohort, stop_after_step=5)  # mid-epoch (batches of 4 of 22 patients)
    assert first.stopped == "interrupted" and first.steps == 5
    state = json.loads((first.run_dir / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 5 and state["batch_in_epoch"] > 0
    resumed = train(config, cohort, resume=True)

    expected = term_values(read_jsonl(straight.run_dir / "logs" / "train.jsonl"))
    got = term_values(read_jsonl(resumed.run_dir / "logs" / "train.jsonl"))
    assert [row[0] for row in got] == list(range(1, 15))
    assert len(got) == len(expected)
    for row_expected, row_got in zip(expected, got, strict=True):
        assert row_got[0] == row_expected[0]
        assert row_got[1:] == pytest.approx(row_expected[1:], abs=1e-6)
    epochs_expected = read_jsonl(straight.run_dir / "logs" / "epochs.jsonl")
    epochs_got = read_jsonl(resumed.run_dir / "logs" / "epochs.jsonl")
    assert [e["val_lm"] for e in epochs_got] == pytest.approx(
        [e["val_lm"] for e in epochs_expected], abs=1e-6
    )
    assert resumed.steps == straight.steps == 14


def test_resume_drops_log_lines_written_after_the_checkpoint(tmp_path):
    cohort = make_cohort(20)
    config = tiny_config(tmp_path / "run", max_steps=8, checkpoint_every=3)
    train(config, cohort, stop_after_step=4)  # checkpoints at 3 and (stop) 4
    log = tmp_path / "run" / "logs" / "train.jsonl"
    with open(log, "a") as out:  # as if the job had logged step 5 and died before saving
        out.write(json.dumps({"step": 5, "stale": True}) + "\n")
    train(config, cohort, resume=True)
    records = read_jsonl(log)
    assert [r["step"] for r in records] == list(range(1, 9))
    assert not any(r.get("stale") for r in records)


def test_resume_refuses_a_different_configuration(tmp_path):
    cohort = make_cohort(20)
    config = tiny_config(tmp_path / "run", max_steps=4)
    train(config, cohort, stop_after_step=2)
    with pytest.raises(ResumeError, match="lr"):
        train(config.replace(lr=0.5), cohort, resume=True)
    with pytest.raises(ResumeError, match="no checkpoints"):
        train(tiny_config(tmp_path / "empty", max_steps=4), cohort, resume=True)
    with pytest.raises(ResumeError, match="not empty"):
        train(config, cohort)


def test_nan_loss_stops_with_the_term_and_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_age_loss = losses.age_loss

    def age_loss_nan_on_third_call(age_pred, age_target):
        calls["n"] += 1
        value = real_age_loss(age_pred, age_target)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(losses, "age_loss", age_loss_nan_on_third_call)
    config = tiny_config(
        tmp_path / "run", max_steps=10, checkpoint_every=1, split_fractions=[1.0, 0.0, 0.0]
    )
    with pytest.raises(NonFiniteLossError, match=r"\['age'\].*step 3") as error:
        train(config, make_cohort(20))
    assert "step 2" in str(error.value)  # the checkpoint it keeps
    checkpoint = tmp_path / "run" / "checkpoints" / "last"
    assert json.loads((checkpoint / "state.json").read_text())["step"] == 2
    state_dict = torch.load(checkpoint / "model.pt")
    assert all(torch.isfinite(t).all() for t in state_dict.values() if t.is_floating_point())
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "logs" / "train.jsonl")] == [1, 2]


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = tiny_config(
        tmp_path / "run", max_steps=6, checkpoint_every=2, split_fractions=[1.0, 0.0, 0.0]
    )
    real_save = torch.save
    saves = {"scheduler": 0}

    def failing_save(obj, path, *args, **kwargs):
        if Path(path).name == "scheduler.pt":
            saves["scheduler"] += 1
            if saves["scheduler"] == 2:
                raise OSError("disk full (simulated)")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        train(config, make_cohort(16))
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last"]  # no temporary folder left
    assert json.loads((checkpoints / "last" / "state.json").read_text())["step"] == 2


def test_early_stopping_keeps_the_best_model(tmp_path):
    config = tiny_config(tmp_path / "run", epochs=8, lr=1e-9, patience=2, min_delta=1.0)
    result = train(config, make_cohort(20))
    assert result.stopped == "early_stopping"
    assert [e["epoch"] for e in result.history] == [0, 1, 2]
    assert [e["best"] for e in result.history] == [True, False, False]
    assert result.best_epoch == 0


def test_a_time_budget_stops_after_the_step_that_spends_it(tmp_path):
    config = tiny_config(tmp_path / "run", epochs=5, max_minutes=0.0)
    result = train(config, make_cohort(20))
    assert (result.stopped, result.steps) == ("max_minutes", 1)
    assert [e["epoch"] for e in result.history] == [0]  # the cut epoch is still validated
    roomy = train(tiny_config(tmp_path / "roomy", epochs=2, max_minutes=60.0), make_cohort(20))
    assert roomy.stopped == "completed" and roomy.steps == 2 * 4
    # a resumed run may get a new time budget: the budget changes, not the experiment
    stopped = tiny_config(tmp_path / "resumed", epochs=2)
    train(stopped, make_cohort(20), stop_after_step=2)
    resumed = train(stopped.replace(max_minutes=60.0), make_cohort(20), resume=True)
    assert (resumed.stopped, resumed.steps) == ("completed", 8)


def test_keep_last_stores_the_final_weights_not_the_best_ones(tmp_path):
    from safetensors.torch import load_file

    cohort = make_cohort(20)
    # lr 0.05 makes the validation loss worse after the first epoch: best != last
    changes = dict(epochs=4, lr=0.05, epoch_checkpoints=True)
    kept = {}
    for keep in ("best", "last"):
        result = train(tiny_config(tmp_path / keep, keep=keep, **changes), cohort)
        kept[keep] = load_file(result.run_dir / "model" / "model.safetensors")
        final = torch.load(result.run_dir / "checkpoints" / "last" / "model.pt")
        same = all(torch.equal(kept[keep][k], final[k]) for k in kept[keep] if k in final)
        assert same == (keep == "last" or result.best_epoch == 3), keep
    assert result.best_epoch < 3  # the case this test is about


def test_without_epoch_checkpoints_a_run_keeps_its_model_but_cannot_resume(tmp_path):
    cohort = make_cohort(20)
    config = tiny_config(tmp_path / "run", epochs=2, epoch_checkpoints=False)
    result = train(config, cohort)
    assert not (result.run_dir / "checkpoints").exists()
    assert (result.run_dir / "model" / "model.safetensors").is_file()
    with pytest.raises(ResumeError, match="no checkpoints"):
        train(config, cohort, resume=True)
    stopped = tiny_config(tmp_path / "stopped", max_steps=4, epoch_checkpoints=False)
    train(stopped, cohort, stop_after_step=2)  # an asked-for stop still checkpoints
    assert (tmp_path / "stopped" / "checkpoints" / "last" / "state.json").is_file()


# --------------------------------------------------------------------------- run folder, logs
def test_run_folder_and_log_contents(tmp_path):
    cohort = make_cohort(24)
    config = tiny_config(
        tmp_path / "run",
        epochs=2,
        log_every=2,
        sample_every_epoch=4,
        sample_max_new_tokens=12,
        extra_losses=["cooc"],
        loss_weights={"age": 0.01, "sex": 0.2, "cooc": 0.05},
        cooc_threshold=1,
    )
    result = train(config, cohort, callbacks=default_callbacks(config))
    run = result.run_dir
    for name in (
        "config.yaml",
        "vocab.json",
        "normalizer.json",
        "splits.json",
        "train_demographics.csv",
        "train_visit_gaps.csv",
    ):
        assert (run / name).is_file(), name
    assert (run / "model" / "config.json").is_file()
    assert (run / "checkpoints" / "last" / "state.json").is_file()
    assert not [p for p in run.rglob(".*") if p.name.startswith(".")]  # no temporary leftovers

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["batch_size"] == 4 and saved["epochs"] == 2 and saved["lr"] > 0  # resolved

    steps = read_jsonl(run / "logs" / "train.jsonl")
    assert steps[0]["step"] == 1 and all(r["step"] % 2 == 0 for r in steps[1:])
    for record in steps:
        assert set(record) >= {"step", "epoch", "lr", "total", "terms"}
        assert list(record["terms"]) == ["lm", "age", "sex", "cooc"]
        shares = [t["share"] for t in record["terms"].values()]
        assert sum(shares) == pytest.approx(100.0)
        for term in record["terms"].values():
            assert term["weighted"] == pytest.approx(term["raw"] * term["weight"])
        assert record["terms"]["sex"]["weight"] == pytest.approx(0.2)
        # the optimised total weighs the per-position terms (lm, cooc) by the step's token
        # count over the mean (losses.balance_by_tokens); the per-patient terms enter as logged
        per_patient = sum(record["terms"][t]["weighted"] for t in ("age", "sex"))
        per_position = sum(record["terms"][t]["weighted"] for t in ("lm", "cooc"))
        scale = (record["total"] - per_patient) / per_position
        assert 0.2 < scale < 5.0, scale

    epochs = read_jsonl(run / "logs" / "epochs.jsonl")
    assert [e["epoch"] for e in epochs] == [0, 1]
    for record in epochs:
        assert math.isfinite(record["val_lm"])
        assert set(record["val_terms"]) == {"lm", "age", "sex", "cooc"}
        assert record["sampled_patients"] == 4
        assert record["sampled_unique_codes"] >= 0 and 0 <= record["sampled_top_code_share"] <= 1
        assert isinstance(record["alarms"], list)
    assert result.history == epochs

    model, vocabulary, normalizer, loaded_config = load_run(run)
    assert loaded_config.to_dict() == saved
    assert len(vocabulary) == model.config.vocab_size
    assert model.config.d_model == 32
    batch_x_num = torch.tensor([[normalizer.normalize(50.0)]])
    with torch.no_grad():
        out = model.generate(
            x_num=batch_x_num, x_cat=torch.tensor([[0]]), do_sample=False, max_new_tokens=5
        )
    assert out.shape[0] == 1


def test_sample_check_flags_a_collapsed_model(tmp_path):
    class OneCodeModel(torch.nn.Module):
        """Stands in for a collapsed generator: every patient gets the same single code."""

        device = torch.device("cpu")

        def generate(self, x_num, x_cat, **kwargs):
            from course_lib.tokens import BOS_ID, EOS_ID, VISIT_END_ID, VISIT_START_ID

            code = vocabulary.code_to_id("4019")
            row = [BOS_ID, VISIT_START_ID, code, VISIT_END_ID, EOS_ID]
            return torch.tensor([row] * x_num.shape[0])

    from course_lib.dataset import AgeNormalizer, PatientDataset
    from course_lib.tokens import Vocabulary

    cohort = make_cohort(40)
    vocabulary = Vocabulary.build(cohort)
    dataset = PatientDataset(cohort, vocabulary, AgeNormalizer.fit(cohort), 32)
    report = sample_check(OneCodeModel(), vocabulary, dataset, n=20, max_new_tokens=30, seed=0)
    assert report["sampled_unique_codes"] == 1
    assert report["sampled_top_code"] == "4019" and report["sampled_top_code_share"] == 1.0
    assert report["real_unique_codes"] > 10
    assert any("unique_codes" in alarm for alarm in report["alarms"])
    assert any("top code 4019" in alarm for alarm in report["alarms"])


# ---------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": -1}, "epochs=-1"),
        ({"weighting": "magic"}, "weighting='magic'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"preset": "huge"}, "preset"),
        ({"loss_weights": {"age": "abc"}}, "'age'"),
        ({"loss_weights": {"age": 0.1, "cooc": 0.1}}, "cooc"),
        ({"extra_losses": ["mutual_information"]}, "extra_losses"),
        ({"weighting": "dwa", "weighting_options": {"temprature": 2}}, "temprature"),
        ({"split_fractions": [0.5, 0.5]}, "split_fractions"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
    ],
)
def test_bad_config_values_are_named(changes, message):
    with pytest.raises(TrainConfigError, match=message.replace("[", r"\[")):
        TrainConfig(**changes).validate()


def test_unknown_yaml_keys_are_named(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 2\nlearning_rate: 0.1\nbatchsize: 3\n")
    with pytest.raises(TrainConfigError, match=r"train.yaml.*\['batchsize', 'learning_rate'\]"):
        TrainConfig.from_yaml(path)


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "course_lib", "train", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def cli_in_process(capsys, *argv: str) -> subprocess.CompletedProcess:
    """``course_lib train ARGV`` through ``course_lib.cli.main``, without a new interpreter."""
    from course_lib.cli import main

    capsys.readouterr()
    code = main(["train", *argv])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


def test_cli_rejects_bad_flags_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    data = tmp_path / "no_such_data"

    def cli(*argv):
        return cli_in_process(capsys, *argv)

    result = cli("--data", str(data), "--out", str(out), "--loss-weights", "age=abc,sex=0.1")
    assert result.returncode == 2
    assert "'age=abc'" in result.stderr and "not a number" in result.stderr
    result = cli("--data", str(data), "--out", str(out), "--epochs", "-3")
    assert result.returncode == 2 and "epochs=-3" in result.stderr
    result = cli("--data", str(data), "--out", str(out), "--weighting", "magic")
    assert result.returncode == 2 and "magic" in result.stderr
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("epoch: 3\n")
    result = cli("--data", str(data), "--out", str(out), "--config", str(bad_yaml))
    assert result.returncode == 2 and "['epoch']" in result.stderr and "bad.yaml" in result.stderr
    result = cli("--data", str(data), "--out", str(out))
    assert result.returncode == 2 and "no_such_data" in result.stderr
    assert not out.exists()


def test_cli_config_file_and_flags(tmp_path, capsys):
    from course_lib.cli import build_parser  # noqa: F401  (the sub-command exists)
    from course_lib.mimic import write_mimic

    data = tmp_path / "data"
    write_mimic(make_cohort(20), data)
    settings = tmp_path / "train.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "model": TINY_MODEL,
                "max_length": 32,
                "batch_size": 4,
                "epochs": 5,
                "sample_every_epoch": 0,
            }
        )
    )
    out = tmp_path / "run"
    result = cli_in_process(
        capsys,
        "--data", str(data), "--out", str(out), "--config", str(settings),
        "--max-steps", "3", "--loss-weights", "age=0.01,sex=0.02", "--no-progress",
        "--model-options", "d_model=32,encoder_layers=1,decoder_layers=1,ffn_dim=48",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["max_steps"] == 3 and saved["epochs"] == 5 and saved["batch_size"] == 4
    # the validity_log term (on by default) keeps its registry weight when the flag omits it
    assert saved["loss_weights"] == {"age": 0.01, "sex": 0.02, "validity_log": 1.0}
    # the flag replaces the file's mapping
    assert saved["model"] == {
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "ffn_dim": 48,
    }
    assert json.loads((out / "model" / "config.json").read_text())["ffn_dim"] == 48
    assert [r["step"] for r in read_jsonl(out / "logs" / "train.jsonl")][-1] == 3


def test_cli_resumes_a_stopped_run(tmp_path, capsys):
    from course_lib.mimic import write_mimic

    data = tmp_path / "data"
    write_mimic(make_cohort(20), data)
    out = tmp_path / "run"
    config = tiny_config(out, data=str(data), max_steps=6, split_fractions=[0.8, 0.2, 0.0])
    train(config, stop_after_step=2)
    result = cli("--resume", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "trained 6 steps" in result.stdout
    assert [r["step"] for r in read_jsonl(out / "logs" / "train.jsonl")] == [1, 2, 3, 4, 5, 6]
    result = cli_in_process(capsys, "--resume", "--out", str(out), "--lr", "0.5", "--no-progress")
    assert result.returncode == 2 and "lr" in result.stderr and "cannot resume" in result.stderr


@pytest.mark.slow
def test_two_cpu_processes_train_together(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "train_ddp_cpu.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    evidence = json.loads((tmp_path / "run" / "logs" / "distributed.json").read_text())
    assert evidence["world_size"] == 2
    ranks = evidence["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["parameters_sha256"] == ranks[1]["parameters_sha256"]
    assert ranks[0]["samples"] == ranks[1]["samples"]
    assert "identical on every rank" in result.stdout
