"""Issue 15's must-show: a folder in a real MIMIC-III download's layout (gzipped upper-case
v1.4 and the demo's plain lower-case files, both with codes outside ICD-9-CM v32) goes
through ``summary``, ``train --max-steps 5`` and ``generate`` with the default settings, and
every command prints the rows it skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mimic_layout import UNKNOWN_CODES, write_mimic_layout

from course_lib.cli import main
from course_lib.mimic import load_mimic
from course_lib.runs import Run

REPO = Path(__file__).resolve().parents[1]
# fast: 5 steps of a 1-layer model, no end-of-epoch sample check, one thread
FAST = [
    "--max-steps", "5", "--preset", "tiny", "--batch-size", "4", "--sample-every-epoch", "0",
    "--model-options", "d_model=16,encoder_layers=1,decoder_layers=1,ffn_dim=32,"
    "attention_heads=2", "--no-progress", "--cpu", "--cpu-threads", "1", "--log-every", "1",
]  # fmt: skip
SKIPPED = "data: DIAGNOSES_ICD.csv: skipped 2 rows"


def course_lib(*argv: str) -> subprocess.CompletedProcess:
    """``python -m course_lib ARGV`` in a new process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "course_lib", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COURSE_DEBUG": ""},
        timeout=300,
    )


def assert_skips_printed(out: str) -> None:
    assert SKIPPED in out, out
    assert all(f"'{code}'" in out for code in UNKNOWN_CODES), out
    assert "had ages over 90" in out, out  # the age mapping is a note too


@pytest.mark.parametrize("style", ["v1.4", "demo"])
def test_summary_train_generate_on_a_real_layout(tmp_path, capsys, style):
    data = write_mimic_layout(tmp_path / "data", style)
    assert (data / "DIAGNOSES_ICD.csv.gz").exists() == (style == "v1.4")
    summary = course_lib("summary", "--data", str(data))
    assert summary.returncode == 0 and "Traceback" not in summary.stderr, summary.stderr
    assert_skips_printed(summary.stdout)

    out = tmp_path / "run"
    trained = course_lib("train", "--data", str(data), "--out", str(out), *FAST)
    assert trained.returncode == 0, trained.stderr
    assert "Traceback" not in trained.stderr
    assert_skips_printed(trained.stdout)
    assert trained.stdout.count(SKIPPED) == 1  # printed once, not per epoch or process
    assert "trained 5 steps" in trained.stdout
    run = Run.load(out)  # a complete, checked run folder
    assert run.config.unknown_codes == "skip" and run.config.max_steps == 5
    assert not set(UNKNOWN_CODES) & set(run.vocabulary.codes)
    assert run.log("train")["step"].tolist() == [1, 2, 3, 4, 5]
    cohort = load_mimic(data)
    assert sum(len(part) for part in run.splits(cohort).values()) == len(cohort) == 12

    synthetic = tmp_path / "synthetic"
    argv = ["generate", "--run", str(out), "--patients", "4", "--out", str(synthetic)]
    argv += ["--demographics-from", str(data), "--no-progress", "--batch-size", "4"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert_skips_printed(captured.out)
    assert "generated 4 patients" in captured.out
    assert len(load_mimic(synthetic)) == 4
    before = {p.name: p.read_bytes() for p in synthetic.iterdir()}
    assert main(argv) == 2  # the folder now holds a cohort: --overwrite to replace it
    err = capsys.readouterr().err
    assert err.strip() == (
        f"course_lib generate: error: --out {synthetic}: the folder is not empty (expected a "
        "new or empty folder; pass --overwrite to replace it, or choose another path)"
    )
    assert {p.name: p.read_bytes() for p in synthetic.iterdir()} == before
    assert main([*argv, "--overwrite", "--seed", "1"]) == 0
    assert len(load_mimic(synthetic)) == 4


def test_unknown_codes_error_in_a_config_file_stops_train(tmp_path, capsys):
    """The setting is read from a config file too: ``error`` refuses the first stray code."""
    data = write_mimic_layout(tmp_path / "data", "demo")
    settings = tmp_path / "train.yaml"
    settings.write_text("unknown_codes: error\n")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--config", str(settings),
                 *FAST]) == 1  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("course_lib train: error: ")
    assert "is not an ICD-9-CM v32 diagnosis code" in lines[0]
    assert "pass --unknown-codes skip" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "train.yaml"]  # no run, lock
