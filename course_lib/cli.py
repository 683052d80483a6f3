"""``python -m course_lib``: one entry point, one sub-command per stage of the pipeline.

Each sub-command lives in its own module, which exposes ``configure_parser(parser)`` and
``run_cli(args) -> int``; this file only wires them up, so importing it stays cheap.

It also holds what every command shares, so that all of them fail the same way:
:func:`main` turns every error into one line (what, where, what was expected, what to do) with
exit code 2 for a bad argument and 1 for bad data (``--debug`` or ``COURSE_DEBUG=1`` adds the
traceback); :func:`add_cohort_arguments` and :func:`load_cohort_arg` read a cohort with
``--unknown-codes`` and print the loader's notes; :func:`check_output_path` refuses an output
path before any work starts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from course_lib.cohort import Cohort

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": (
        "course_lib.simulate_cli",
        "write a seeded synthetic cohort in the MIMIC-III CSV layout",
    ),
    "summary": (
        "course_lib.summary",
        "print counts, quantiles and top codes of a cohort; save plots",
    ),
    "train": ("course_lib.train_cli", "train a PromptBart model on a cohort"),
    "generate": ("course_lib.generation", "generate synthetic patients with a trained run"),
    "evaluate": ("course_lib.evaluation.report", "compare a synthetic cohort with real data"),
    "heads": (
        "course_lib.heads.cli",
        "train, evaluate and list prediction heads on frozen PromptBart features",
    ),
    "pipeline": (
        "course_lib.pipeline",
        "train tiny -> generate -> evaluate on a cohort (the main job)",
    ),
}

DEBUG_FLAG = "--debug"
DEBUG_VARIABLE = "COURSE_DEBUG"
EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell command killed by it
DEBUG_EPILOG = (
    f"{DEBUG_FLAG} (anywhere on the line) or {DEBUG_VARIABLE}=1: show the full traceback of an "
    "error. Exit codes: 0 done, 1 bad data or files, 2 bad arguments."
)

# Errors that mean "the command line is wrong" (exit 2), by module-qualified class name, so
# that this module need not import the heavy modules that define them. Every other ValueError
# or OSError, and course_lib's own error classes, are bad data or a bad file (exit 1).
USAGE_ERRORS = frozenset(
    {
        "course_lib.cli.UsageError",
        "course_lib.training.TrainConfigError",
        "course_lib.config.TrainConfigError",
        "course_lib.training.ResumeError",
        "course_lib.runs.ResumeError",
    }
)


class UsageError(ValueError):
    """A bad command-line argument (exit code 2): the message names the flag and the fix."""


# --------------------------------------------------------------------------- errors -> lines


def _qualified_names(error: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(error).__mro__}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe_os_error(error: OSError) -> str:
    """``[Errno 2] No such file or directory: 'x'`` -> the path first, then what to do."""
    where = error.filename if error.filename is not None else "a path"
    if error.filename2 is not None:
        where = f"{where} -> {error.filename2}"
    fixes = {
        FileNotFoundError: "no such file or folder (expected an existing path; check the spelling)",
        NotADirectoryError: "a file is in the way where a folder is expected (choose another "
        "path or move the file)",
        IsADirectoryError: "is a folder (expected a file; choose another path)",
        FileExistsError: "already exists (expected a new path; pass --overwrite where the "
        "command has it, or choose another path)",
        PermissionError: "permission denied (expected a path you may read or write; choose "
        "another path or change its permissions)",
    }
    for kind, fix in fixes.items():
        if isinstance(error, kind):
            return f"{where}: {fix}"
    return f"{where}: {error.strerror or error}"


def describe_error(error: BaseException) -> tuple[int, str]:
    """The exit code and the one line for ``error``; course_lib's own messages are kept."""
    if _qualified_names(error) & USAGE_ERRORS:
        return EXIT_USAGE, _one_line(str(error))
    if isinstance(error, OSError):
        return EXIT_DATA, _one_line(_describe_os_error(error))
    if isinstance(error, ValueError) or type(error).__module__.startswith("course_lib."):
        return EXIT_DATA, _one_line(str(error))  # e.g. NonFiniteLossError, a RuntimeError
    return EXIT_DATA, _one_line(
        f"unexpected {type(error).__name__}: {error} (a bug in course_lib, not in your input; "
        f"run again with {DEBUG_FLAG} for the traceback and report it)"
    )


def _take_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """Remove ``--debug`` wherever it is (before a ``--``); the variable also turns it on."""
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [arg for arg in argv[:end] if arg != DEBUG_FLAG] + argv[end:]
    wanted = len(kept) != len(argv) or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    return kept, wanted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course_lib",
        description="Conditional synthetic EHR generation: the course's tools.",
        epilog=DEBUG_EPILOG,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; every error ends as one line on stderr and an exit code.

    argparse's own errors (an unknown flag, a bad choice) keep argparse's usage message and
    exit code 2 (raised as SystemExit, as argparse does). A command's own ``SystemExit(message)``
    passes through unchanged (Python prints the message, exit code 1); commands should raise
    :class:`UsageError` for a bad argument instead, to get exit code 2.
    """
    argv, debug = _take_debug_flag(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the "invalid choice" error
        parser.print_help()
        return 0 if not argv else EXIT_USAGE
    command = argv[0]
    try:
        module = importlib.import_module(COMMANDS[command][0])
        sub = argparse.ArgumentParser(
            prog=f"course_lib {command}", description=COMMANDS[command][1], epilog=DEBUG_EPILOG
        )
        module.configure_parser(sub)
        args = sub.parse_args(argv[1:])  # argparse's SystemExit(2) is not an Exception
        return int(module.run_cli(args) or 0)
    except KeyboardInterrupt:
        print(f"course_lib {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `course_lib summary ... | head`: the reader left, not an error
        try:  # silence the interpreter's own flush of the closed pipe at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE
    except Exception as error:  # the one place where errors become lines
        code, line = describe_error(error)
        if debug:
            traceback.print_exc()
    print(f"course_lib {command}: error: {line}", file=sys.stderr)
    return code


# ------------------------------------------------------------------ shared argument helpers


def add_cohort_arguments(
    parser: argparse.ArgumentParser,
    *,
    flag: str = "--data",
    required: bool = True,
    help_text: str = "folder in the MIMIC-III layout (PATIENTS, ADMISSIONS, DIAGNOSES_ICD; "
    ".csv or .csv.gz)",
) -> None:
    """``--data DIR`` and ``--unknown-codes {error,skip}``, the flags of every command that
    reads a cohort.

    ``--unknown-codes`` defaults to None so that a config file's ``unknown_codes`` can win
    over the default; :func:`unknown_codes_arg` resolves it.
    """
    from course_lib.mimic import DEFAULT_UNKNOWN_CODES, MAX_UNKNOWN_CODE_SHARE, UNKNOWN_CODES

    parser.add_argument(flag, type=Path, required=required, metavar="DIR", help=help_text)
    if any("--unknown-codes" in action.option_strings for action in parser._actions):
        return  # a command reading two cohorts adds the setting once
    parser.add_argument(
        "--unknown-codes",
        choices=UNKNOWN_CODES,
        default=None,
        help=f"diagnosis codes not in ICD-9-CM v32 (real MIMIC-III holds a few, e.g. 7793): "
        f"'skip' drops and counts them (default: {DEFAULT_UNKNOWN_CODES}; more than "
        f"{MAX_UNKNOWN_CODE_SHARE * 100:.0f}%% of rows is refused as another code system), "
        "'error' stops at the first",
    )


def unknown_codes_arg(args: argparse.Namespace, configured: str | None = None) -> str:
    """The flag if given, else ``configured`` (a config file's value), else the default."""
    from course_lib.mimic import DEFAULT_UNKNOWN_CODES

    return getattr(args, "unknown_codes", None) or configured or DEFAULT_UNKNOWN_CODES


def format_notes(notes: list[str], prefix: str = "data: ") -> str:
    """The loader's notes (rows skipped and why, the age mapping), one per line."""
    return "\n".join(f"{prefix}{note}" for note in notes)


def check_input_folder(path: Path | str | None, flag: str, what: str | None = None) -> Path:
    """``path`` as an existing folder, or a UsageError naming ``flag`` (before any work)."""
    what = what or "a folder in the MIMIC-III layout (PATIENTS.csv, ADMISSIONS.csv, ...)"
    if path is None:
        raise UsageError(f"{flag} is required (expected {what})")
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{flag} {path}: no such folder (expected {what}; check the path)")
    if not path.is_dir():
        raise UsageError(f"{flag} {path}: is a file, not a folder (expected {what})")
    return path


def load_cohort_arg(
    args: argparse.Namespace,
    *,
    flag: str = "--data",
    configured_unknown_codes: str | None = None,
    show_notes: bool = True,
) -> Cohort:
    """Check ``flag``'s folder, load it with the ``--unknown-codes`` setting and print the
    loader's notes (to stdout), so that no skipped row goes unseen."""
    from course_lib.mimic import load_mimic

    path = check_input_folder(getattr(args, flag.lstrip("-").replace("-", "_")), flag)
    cohort = load_mimic(path, unknown_codes=unknown_codes_arg(args, configured_unknown_codes))
    if show_notes and cohort.notes:
        print(format_notes(cohort.notes), flush=True)
    return cohort


def check_output_path(
    path: Path | str,
    flag: str,
    *,
    kind: Literal["folder", "file"] = "folder",
    overwrite: bool = False,
    allow_nonempty: bool = False,
    overwrite_flag: str | None = "--overwrite",
) -> Path:
    """Refuse an output path before any work starts (UsageError naming ``flag``).

    Refused: a file where a folder goes (or the reverse), a parent that is a file, a place
    that cannot be written, an existing file (``kind="file"``) or a non-empty folder
    (``kind="folder"``, unless ``allow_nonempty``), except with ``overwrite``. Nothing is
    created here; the command writes atomically later.
    """
    path = Path(path)
    fix = f"pass {overwrite_flag} to replace it, or" if overwrite_flag else "remove it or"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(
            f"{flag} {path}: {ancestor} is a file, not a folder (expected a path inside a "
            "folder; choose another path)"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(
            f"{flag} {path}: no permission to write in {ancestor} (expected a writable "
            "place; choose another path)"
        )
    if not path.exists():
        return path
    if kind == "folder":
        if not path.is_dir():
            expected = "a folder" if allow_nonempty else "a folder, new or empty"
            raise UsageError(
                f"{flag} {path}: exists and is a file (expected {expected}; choose another path)"
            )
        if not allow_nonempty and not overwrite and any(path.iterdir()):
            raise UsageError(
                f"{flag} {path}: the folder is not empty (expected a new or empty folder; "
                f"{fix} choose another path)"
            )
    elif path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder (expected a file name; choose another)")
    elif not overwrite:
        raise UsageError(
            f"{flag} {path}: the file already exists (expected a new file; {fix} choose "
            "another path)"
        )
    return path
