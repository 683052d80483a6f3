"""The command line on a real MIMIC-III download and on bad input: one line per error, exit
code 2 for bad arguments and 1 for bad data, ``--debug`` for the traceback, no output left.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mimic_layout import UNKNOWN_CODES, write_mimic_layout

from course_lib import cli, summary
from course_lib.cli import (
    UsageError,
    add_cohort_arguments,
    check_output_path,
    describe_error,
    load_cohort_arg,
    main,
)

REPO = Path(__file__).resolve().parents[1]


def run_summary(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["summary", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("course_lib summary: error: ")
    return lines[0]


# ------------------------------------------------------------- a real download, defaults


@pytest.mark.parametrize("style", ["v1.4", "demo"])
def test_summary_reads_a_real_layout_with_codes_outside_v32(tmp_path, style):
    """In a real process: exit 0, the skipped rows and the age mapping printed."""
    data = write_mimic_layout(tmp_path / style, style)
    assert (data / "PATIENTS.csv.gz").exists() == (style == "v1.4")
    done = subprocess.run(
        [sys.executable, "-m", "course_lib", "summary", "--data", str(data)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert "data: DIAGNOSES_ICD.csv: skipped 2 rows" in out
    assert all(f"'{code}'" in out for code in UNKNOWN_CODES)
    assert "data: DIAGNOSES_ICD.csv: skipped 1 rows with an empty ICD9_CODE" in out
    assert "had ages over 90 (MIMIC-III shifts patients older than 89 to ~300): set to 90" in out
    assert "patients 12  visits " in out and "unknown codes 0" in out


def test_unknown_codes_error_stops_with_one_line(tmp_path, capsys):
    data = write_mimic_layout(tmp_path / "real", "v1.4")
    code, out, err = run_summary(capsys, "--data", str(data), "--unknown-codes", "error")
    line = one_error_line(err)
    assert code == 1 and out == ""
    assert f"{data / 'DIAGNOSES_ICD.csv.gz'}: data row " in line
    assert "is not an ICD-9-CM v32 diagnosis code" in line
    assert "pass --unknown-codes skip" in line


def test_cohort_helpers_default_and_override(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_cohort_arguments(parser)
    data = write_mimic_layout(tmp_path / "demo", "demo")
    args = parser.parse_args(["--data", str(data)])
    assert args.unknown_codes is None  # so that a config file's value can win
    cohort = load_cohort_arg(args)
    assert len(cohort) == 12
    assert "data: DIAGNOSES_ICD.csv: skipped 2 rows" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not an ICD-9-CM v32"):
        load_cohort_arg(args, configured_unknown_codes="error")
    args = parser.parse_args(["--data", str(data), "--unknown-codes", "skip"])
    assert len(load_cohort_arg(args, configured_unknown_codes="error", show_notes=False)) == 12


# ------------------------------------------------------------------------ bad input table


def cut_row(folder: Path) -> None:
    path = folder / "PATIENTS.csv"
    lines = path.read_text().splitlines()
    lines[2] = ",".join(lines[2].split(",")[:3])
    path.write_text("\n".join(lines) + "\n")


def recode(folder: Path, encoding: str) -> None:
    path = folder / "ADMISSIONS.csv"
    text = path.read_text().replace("CATHOLIC", "CATHOLIQUE É", 1)
    path.write_bytes(text.encode(encoding))


def icd10(folder: Path) -> None:
    path = folder / "DIAGNOSES_ICD.csv"
    lines = path.read_text().splitlines()
    swapped = [line.rsplit(",", 1)[0] + ",I10" if i % 2 else line for i, line in enumerate(lines)]
    path.write_text("\n".join([lines[0], *swapped[1:]]) + "\n")


def gzip_named_csv(folder: Path) -> None:
    import gzip

    path = folder / "DIAGNOSES_ICD.csv"
    path.write_bytes(gzip.compress(path.read_bytes()))


# (id, change to a good demo folder or the arguments, exit code, what the line says)
BAD_INPUTS = [
    ("no such --data", None, ["--data", "{tmp}/absent"], 2, "--data {tmp}/absent: no such folder"),
    ("--data is a file", None, ["--data", "{data}/PATIENTS.csv"], 2, "is a file, not a folder"),
    ("--plots is a file", None, ["--plots", "{data}/PATIENTS.csv"], 2, "exists and is a file"),
    ("row cut to 3 fields", cut_row, [], 1, "3 fields, expected 8 as in the header"),
    ("UTF-16 file", lambda f: recode(f, "utf-16"), [], 1, "re-save it as UTF-8"),
    ("Latin-1 file", lambda f: recode(f, "latin-1"), [], 1, "probably Latin-1 or Windows-1252"),
    ("gzip named .csv", gzip_named_csv, [], 1, "rename it to DIAGNOSES_ICD.csv.gz"),
    ("ICD-10 codes", icd10, [], 1, "is this ICD-10 or another code system?"),
    ("missing table", lambda f: (f / "ADMISSIONS.csv").unlink(), [], 1, "file not found"),
]


@pytest.mark.parametrize(
    ("change", "extra", "exit_code", "expected"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_one_line_and_leaves_no_files(
    tmp_path, capsys, change, extra, exit_code, expected
):
    data = write_mimic_layout(tmp_path / "data", "demo")
    if change is not None:
        change(data)
    before = sorted(p.name for p in data.iterdir())
    plots = tmp_path / "plots"
    arguments = ["--data", str(data), "--plots", str(plots)]
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        value = value.format(tmp=tmp_path, data=data)
        arguments[arguments.index(flag) + 1] = value
    code, out, err = run_summary(capsys, *arguments)
    line = one_error_line(err)
    assert code == exit_code
    assert expected.format(tmp=tmp_path, data=data) in line
    assert "Traceback" not in err and out == ""
    assert not plots.exists()  # nothing written
    assert sorted(p.name for p in data.iterdir()) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["summary", "--data", "x", "--unknown-codes", "ignore"],
        ["summary", "--top", "3"],
        ["summarise", "--data", "x"],
    ],
    ids=["bad choice", "missing --data", "unknown command"],
)
def test_argparse_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "error:" in capsys.readouterr().err


# ------------------------------------------------------------------- the one error wrapper


@pytest.mark.parametrize(
    ("error", "exit_code", "expected"),
    [
        (UsageError("--out x: bad"), 2, "--out x: bad"),
        (ValueError("PATIENTS.csv: data row 3: bad\nsecond line"), 1, "data row 3: bad second"),
        (FileNotFoundError(2, "No such file or directory", "/no/file"), 1, "/no/file: no such"),
        (NotADirectoryError(20, "Not a directory", "/a/file"), 1, "a file is in the way"),
        (FileExistsError(17, "File exists", "/out.csv"), 1, "/out.csv: already exists"),
        (PermissionError(13, "Permission denied", "/root/x"), 1, "/root/x: permission denied"),
        (TypeError("unsupported operand"), 1, "unexpected TypeError: unsupported operand"),
    ],
    ids=["usage", "value", "not found", "not a folder", "exists", "permission", "bug"],
)
def test_every_error_becomes_one_line(monkeypatch, capsys, tmp_path, error, exit_code, expected):
    def failing(args):
        raise error

    monkeypatch.setattr(summary, "run_cli", failing)
    code, out, err = run_summary(capsys, "--data", str(tmp_path))
    line = one_error_line(err)
    assert code == exit_code
    assert expected in line
    if exit_code == 1 and isinstance(error, TypeError):
        assert "run again with --debug" in line


def test_a_command_own_system_exit_passes_through(monkeypatch, tmp_path):
    def failing(args):
        raise SystemExit("course_lib summary: error: --top must be >= 1, got 0")

    monkeypatch.setattr(summary, "run_cli", failing)
    with pytest.raises(SystemExit, match="--top must be >= 1, got 0"):
        main(["summary", "--data", str(tmp_path)])


@pytest.mark.parametrize("how", ["flag first", "flag last", "variable"])
def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch, how):
    args = ["summary", "--data", str(tmp_path / "absent")]
    if how == "flag first":
        args.insert(0, "--debug")
    elif how == "flag last":
        args.append("--debug")
    else:
        monkeypatch.setenv("COURSE_DEBUG", "1")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "UsageError" in err
    assert err.splitlines()[-1].startswith("course_lib summary: error: --data ")


def test_describe_error_keeps_course_lib_messages():
    class NonFiniteLossError(RuntimeError):
        pass

    NonFiniteLossError.__module__ = "course_lib.training"
    assert describe_error(NonFiniteLossError("loss is nan at step 3")) == (
        1,
        "loss is nan at step 3",
    )


# ------------------------------------------------------------------- output path checks


def test_check_output_path(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.csv").write_text("x")
    assert check_output_path(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing created
    assert check_output_path(tmp_path / "empty", "--out") == tmp_path / "empty"
    assert check_output_path(tmp_path / "full", "--plots", allow_nonempty=True)
    assert check_output_path(tmp_path / "full", "--out", overwrite=True)
    assert check_output_path(tmp_path / "file.csv", "--out", kind="file", overwrite=True)
    refusals = [
        (tmp_path / "full", {}, "the folder is not empty (expected a new or empty folder; pass "
         "--overwrite to replace it, or choose another path)"),
        (tmp_path / "file.csv", {}, "exists and is a file"),
        (tmp_path / "file.csv" / "run", {}, "is a file, not a folder"),
        (tmp_path / "file.csv", {"kind": "file"}, "the file already exists"),
        (tmp_path / "full", {"kind": "file"}, "is a folder (expected a file name"),
        (tmp_path / "full", {"overwrite_flag": None}, "remove it or choose another path"),
    ]  # fmt: skip
    for path, options, expected in refusals:
        with pytest.raises(UsageError) as caught:
            check_output_path(path, "--out", **options)
        assert str(caught.value).startswith(f"--out {path}: ")
        assert expected in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_output_path_refuses_a_read_only_place(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UsageError, match="no permission to write in"):
        check_output_path(locked / "run", "--out")


def test_the_help_names_debug_and_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["summary", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--debug" in out and "COURSE_DEBUG=1" in out
    assert "--unknown-codes {error,skip}" in out
    assert cli.EXIT_USAGE == 2 and cli.EXIT_DATA == 1


@pytest.mark.parametrize(
    "argv",
    [["evaluate"], ["heads", "train"], ["heads", "evaluate"]],
    ids=["evaluate", "heads train", "heads evaluate"],
)
def test_evaluate_and_heads_take_unknown_codes(argv, capsys):
    """Every command that reads a cohort has the flag, once (evaluate reads two folders)."""
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("--unknown-codes {error,skip} diagnosis codes not in ICD-9-CM") == 1
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--unknown-codes", "ignore"])
    assert caught.value.code == 2
    assert "invalid choice: 'ignore'" in capsys.readouterr().err


# ----------------------------------------------- generate, train, pipeline: paths first

# (id, argv with {tmp}/{data}/{file} placeholders, exit code, what the one line says). In
# {tmp}: data/ (a good demo-layout cohort, not a run), file.txt, full/ (a non-empty folder).
BAD_PATHS = [
    ("generate --out at a file",
     ["generate", "--run", "{tmp}/absent", "--patients", "3", "--out", "{file}"], 2,
     "--out {file}: exists and is a file"),
    ("generate --out in a file",
     ["generate", "--run", "{tmp}/absent", "--patients", "3", "--out", "{file}/gen"], 2,
     "--out {file}/gen: {file} is a file, not a folder"),
    ("generate --out not empty",
     ["generate", "--run", "{tmp}/absent", "--patients", "3", "--out", "{tmp}/full"], 2,
     "the folder is not empty (expected a new or empty folder; pass --overwrite"),
    ("generate --patients 0",
     ["generate", "--run", "{data}", "--patients", "0", "--out", "{tmp}/gen"], 2,
     "--patients must be >= 1, got 0"),
    ("generate --top-p 2",
     ["generate", "--run", "{data}", "--patients", "3", "--out", "{tmp}/gen", "--top-p", "2"],
     2, "--top-p must be in (0, 1], got 2.0"),
    ("generate no --demographics-from",
     ["generate", "--run", "{data}", "--patients", "3", "--out", "{tmp}/gen",
      "--demographics-from", "{tmp}/absent"], 2, "--demographics-from {tmp}/absent: no such"),
    ("generate --run not a run",
     ["generate", "--run", "{data}", "--patients", "3", "--out", "{tmp}/gen"], 1,
     "{data}/config.yaml is missing; is {data} a run folder written by train?"),
    ("generate --run absent",
     ["generate", "--run", "{tmp}/absent", "--patients", "3", "--out", "{tmp}/gen"], 1,
     "{tmp}/absent: no such run folder"),
    ("train --out at a file", ["train", "--data", "{data}", "--out", "{file}"], 2,
     "--out {file}: exists and is a file"),
    ("train --out not empty", ["train", "--data", "{data}", "--out", "{tmp}/full"], 2,
     "--out {tmp}/full: the folder is not empty"),
    ("train --data absent", ["train", "--data", "{tmp}/absent", "--out", "{tmp}/run"], 2,
     "--data {tmp}/absent: no such folder"),
    ("train --data a file", ["train", "--data", "{file}", "--out", "{tmp}/run"], 2,
     "--data {file}: is a file, not a folder"),
    ("pipeline --data absent", ["pipeline", "--data", "{tmp}/absent", "--out", "{tmp}/p"], 2,
     "--data {tmp}/absent: no such folder"),
    ("pipeline --out at a file", ["pipeline", "--data", "{data}", "--out", "{file}"], 2,
     "--out {file}: exists and is a file"),
    ("pipeline --out/run a file", ["pipeline", "--data", "{data}", "--out", "{tmp}/full"], 2,
     "--out {tmp}/full/run: exists and is a file"),
    ("pipeline --preset huge",
     ["pipeline", "--data", "{data}", "--out", "{tmp}/p", "--preset", "huge"], 2, "--preset"),
    ("pipeline --unknown-codes error",
     ["pipeline", "--data", "{data}", "--out", "{tmp}/p", "--unknown-codes", "error"], 1,
     "is not an ICD-9-CM v32 diagnosis code"),
]  # fmt: skip


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("argv", "exit_code", "expected"),
    [case[1:] for case in BAD_PATHS],
    ids=[case[0] for case in BAD_PATHS],
)
def test_bad_paths_fail_in_one_line_before_any_work(tmp_path, capsys, argv, exit_code, expected):
    data = write_mimic_layout(tmp_path / "data", "demo")
    (tmp_path / "file.txt").write_text("keep me")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "run").write_text("a file where pipeline writes its run")
    places = {"tmp": tmp_path, "data": data, "file": tmp_path / "file.txt"}
    before = tree(tmp_path)
    code = main([arg.format(**places) for arg in argv])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"course_lib {argv[0]}: error: ")
    assert expected.format(**places) in lines[0]
    assert code == exit_code
    assert "Traceback" not in captured.err
    assert tree(tmp_path) == before  # nothing written, nothing removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "file.txt", "full"]
