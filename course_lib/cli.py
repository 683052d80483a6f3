"""``python -m course_lib``: one entry point, one sub-command per stage of the pipeline.

Each sub-command lives in its own module, which exposes ``configure_parser(parser)`` and
``run_cli(args) -> int``; this file only wires them up, so importing it stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": (
        "course_lib.simulate",
        "write a seeded synthetic cohort in the MIMIC-III CSV layout",
    ),
    "summary": (
        "course_lib.summary",
        "print counts, quantiles and top codes of a cohort; save plots",
    ),
    "train": ("course_lib.training", "train a PromptBart model on a cohort"),
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course_lib", description="Conditional synthetic EHR generation: the course's tools."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # prints help or the "invalid choice" error
        parser.print_help()
        return 0 if not argv else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    sub = argparse.ArgumentParser(prog=f"course_lib {argv[0]}", description=COMMANDS[argv[0]][1])
    module.configure_parser(sub)
    args = sub.parse_args(argv[1:])
    return int(module.run_cli(args) or 0)
