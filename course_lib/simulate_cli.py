"""The ``simulate`` command: draw a cohort and write it in the MIMIC-III layout (lesson 01)."""

from __future__ import annotations

import argparse
from pathlib import Path

from course_lib.cli import check_output_path
from course_lib.mimic import write_mimic
from course_lib.simulate import MAX_SEED, SUBJECT_ID_STRIDE, simulate_cohort


def _bounded_int(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high}], got {value}")
        return value

    return parse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--patients",
        type=_bounded_int(1, SUBJECT_ID_STRIDE - 1),
        required=True,
        help="number of patients to simulate (>= 1)",
    )
    parser.add_argument(
        "--seed",
        type=_bounded_int(0, MAX_SEED),
        default=0,
        help=f"random seed in [0, {MAX_SEED}]; also sets the SUBJECT_ID range",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder for PATIENTS/ADMISSIONS/DIAGNOSES_ICD/OUTCOMES.csv",
    )


def run_cli(args: argparse.Namespace) -> int:
    # the draw is deterministic: re-running into the same folder rewrites the same files
    check_output_path(args.out, "--out", allow_nonempty=True)
    cohort = simulate_cohort(args.patients, args.seed)
    write_mimic(cohort, args.out)
    n_visits = sum(len(p.visits) for p in cohort)
    n_codes = sum(len(v.codes) for p in cohort for v in p.visits)
    print(
        f"wrote {len(cohort)} patients, {n_visits} admissions, {n_codes} diagnoses "
        f"(seed {args.seed}) to {args.out}"
    )
    return 0
