"""Speed of the cohort simulator (lesson 01): patients per second for 10,000 patients on one core.

Run: ``python benchmarks/simulate_speed.py [--patients N] [--seed S]``. The target is under 30 s
for 10,000 patients; the one-off background table (built once per process) is timed apart.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from course_lib import simulate
from course_lib.mimic import write_mimic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    simulate.background_landscape()
    landscape_s = time.perf_counter() - start

    start = time.perf_counter()
    cohort = simulate.simulate_cohort(args.patients, args.seed)
    simulate_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        write_mimic(cohort, out_dir)
        write_s = time.perf_counter() - start

    n_visits = sum(len(p.visits) for p in cohort)
    n_codes = sum(len(v.codes) for p in cohort for v in p.visits)
    print(f"background table (once per process): {landscape_s:.2f} s")
    print(
        f"simulate_cohort({args.patients}, seed={args.seed}): {simulate_s:.2f} s, "
        f"{args.patients / simulate_s:,.0f} patients/s ({n_visits:,} visits, {n_codes:,} codes)"
    )
    print(f"write_mimic: {write_s:.2f} s")


if __name__ == "__main__":
    main()
