"""The run folder (course_lib.runs): the Run API, checked loading, the lock and a safe
--overwrite (issues 13 and 15)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.mimic import write_mimic
from course_lib.runs import Run, RunError, RunWriter, load_run, read_run_log
from course_lib.training import TrainConfig, train

CODES = ["4019", "4280", "42731", "5849", "25000", "2724", "51881", "5990", "53081", "2449"]
TINY = {
    "d_model": 16,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "ffn_dim": 32,
    "attention_heads": 2,
}


@pytest.fixture(autouse=True)
def one_cpu_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_cohort(n: int) -> Cohort:
    patients = []
    for index in range(n):
        codes = [CODES[(index + k) % len(CODES)] for k in range(1 + index % 3)]
        age = 20.0 + (7.0 * index) % 70
        patients.append(Patient(index + 1, "FM"[index % 2], age, [Visit(codes, age)]))
    return Cohort(patients)


def config_for(out: Path, **changes) -> TrainConfig:
    values = dict(
        out=str(out), batch_size=4, max_length=16, model=dict(TINY), sample_every_epoch=0,
        patience=None, log_every=1, progress=False, max_steps=2,
    )  # fmt: skip
    return TrainConfig(**(values | changes))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Cohort]:
    with torch.random.fork_rng():
        cohort = make_cohort(20)
        out = tmp_path_factory.mktemp("runs") / "run"
        train(config_for(out), cohort)
    return out, cohort


def copy_of(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "copy"))


def digest_tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------ reading
def test_run_gives_every_part_of_the_folder(trained):
    folder, cohort = trained
    run = Run.load(folder)
    splits = json.loads((folder / "splits.json").read_text())
    assert [p.subject_id for p in run.split(cohort, "test")] == sorted(splits["test"])
    assert sum(len(part) for part in run.splits(cohort).values()) == len(cohort)
    assert len(run.train_demographics) == len(splits["train"])
    steps = run.log("train")
    assert steps["step"].tolist() == [1, 2] and "terms.lm.raw" in steps.columns
    assert read_run_log(folder, "epochs")["epoch"].tolist() == run.log("epochs")["epoch"].tolist()
    model, vocabulary, normalizer, config = load_run(folder)
    assert model.config.vocab_size == len(vocabulary) and config.max_steps == 2
    with pytest.raises(ValueError, match="which"):
        run.log("nope")


def test_a_truncated_model_file_is_named(trained, tmp_path):
    run = copy_of(trained[0], tmp_path)
    weights = run / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(RunError, match=r"model\.safetensors is damaged or truncated"):
        Run.load(run)


def test_a_corrupt_byte_in_the_weights_is_found(trained, tmp_path):
    run = copy_of(trained[0], tmp_path)
    weights = run / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(RunError, match=r"model\.safetensors"):
        Run.load(run)


def test_a_missing_model_config_says_so(trained, tmp_path):
    run = copy_of(trained[0], tmp_path)
    (run / "model" / "config.json").unlink()
    with pytest.raises(RunError, match=r"config\.json is missing"):
        Run.load(run)


def test_a_vocabulary_with_two_codes_swapped_is_refused(trained, tmp_path):
    run = copy_of(trained[0], tmp_path)
    vocab = json.loads((run / "vocab.json").read_text())
    vocab["codes"][0], vocab["codes"][1] = vocab["codes"][1], vocab["codes"][0]
    (run / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(RunError, match="not the vocabulary the model was trained with"):
        Run.load(run)


def test_a_folder_that_is_not_a_run_is_named(tmp_path):
    with pytest.raises(RunError, match="no such run folder"):
        Run.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match=r"config\.yaml is missing"):
        Run.load(tmp_path / "empty")


# ------------------------------------------------------------------------------ writing
def test_overwrite_with_bad_data_leaves_the_old_run_byte_identical(trained, tmp_path):
    run = copy_of(trained[0], tmp_path)
    before = digest_tree(run)
    bad = tmp_path / "bad_data"
    write_mimic(make_cohort(10), bad)
    (bad / "PATIENTS.csv").write_text("SUBJECT_ID,GENDER,DOB\n1,X,yesterday\n")
    with pytest.raises(ValueError):
        train(config_for(run), str(bad), overwrite=True)
    assert digest_tree(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_data", "copy"]  # no leftovers


def cli_flags(out: Path) -> list[str]:
    """``course_lib train`` flags of :func:`config_for`."""
    model = ",".join(f"{key}={value}" for key, value in TINY.items())
    return [
        "--out", str(out), "--batch-size", "4", "--max-length", "16", "--model-options", model,
        "--sample-every-epoch", "0", "--patience", "0", "--log-every", "1", "--no-progress",
        "--max-steps", "2", "--cpu", "--cpu-threads", "1",
    ]  # fmt: skip


@pytest.mark.parametrize("bad", ["PATIENTS.csv", "missing"])
def test_overwrite_at_the_command_line_with_bad_data_keeps_the_old_run(
    trained, tmp_path, capsys, bad
):
    """``course_lib train --overwrite`` onto a finished run, with data that fails to load:
    one line, exit code 1, the old run byte-identical, no staging folder or lock left."""
    from course_lib.cli import main

    run = copy_of(trained[0], tmp_path)
    before = digest_tree(run)
    data = tmp_path / "bad_data"
    write_mimic(make_cohort(10), data)
    if bad == "missing":
        (data / "ADMISSIONS.csv").unlink()
    else:
        (data / bad).write_text("SUBJECT_ID,GENDER,DOB\n1,X,yesterday\n")
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--overwrite", *cli_flags(run)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("course_lib train: error: ")
    assert str(data) in err
    assert digest_tree(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_data", "copy"]  # no leftovers


def test_overwrite_at_the_command_line_replaces_a_finished_run(trained, tmp_path, capsys):
    run = copy_of(trained[0], tmp_path)
    data = tmp_path / "data"
    write_mimic(make_cohort(20), data)
    flags = cli_flags(run)
    flags[flags.index("--max-steps") + 1] = "3"
    from course_lib.cli import main

    assert main(["train", "--data", str(data), *flags]) == 2  # refused without --overwrite
    assert "pass --overwrite" in capsys.readouterr().err
    assert Run(run).log("train")["step"].tolist() == [1, 2]
    assert main(["train", "--data", str(data), "--overwrite", *flags]) == 0
    assert Run.load(run).log("train")["step"].tolist() == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "data"]


def test_overwrite_replaces_the_run_only_when_complete(trained, tmp_path):
    run = copy_of(trained[0], tmp_path)
    result = train(config_for(run, max_steps=3), make_cohort(20), overwrite=True)
    assert result.run_dir == run
    assert Run(run).log("train")["step"].tolist() == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no staging, no lock


def test_a_live_lock_stops_a_second_writer(tmp_path):
    out = tmp_path / "run"
    (tmp_path / ".run.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": 1}))
    with pytest.raises(RunError, match=r"being written by process 1 .*lock"):
        train(config_for(out), make_cohort(20))
    assert not out.exists()


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    lock = tmp_path / ".run.lock"
    lock.write_text(json.dumps({"host": os.uname().nodename, "pid": int(finished.stdout)}))
    result = train(config_for(tmp_path / "run"), make_cohort(20))
    assert result.steps == 2 and not lock.exists()


def test_out_at_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file"):
        RunWriter(tmp_path / "file", resume=False, overwrite=True)
