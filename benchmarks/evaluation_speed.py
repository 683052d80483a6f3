"""Time evaluate_cohorts on simulated cohorts (lesson 05): prints seconds per call.

    python benchmarks/evaluation_speed.py [--patients 2000] [--privacy-patients 5000]

The second figure is the privacy family alone at the size the brief asks to stay fast on
(5,000 synthetic x 5,000 training patients).
"""

from __future__ import annotations

import argparse
import time

from course_lib.evaluation import evaluate_cohorts
from course_lib.evaluation.privacy import privacy_metrics
from course_lib.simulate import simulate_cohort, simulate_outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--privacy-patients", type=int, default=5000)
    args = parser.parse_args()

    real, reference, synthetic, train = (
        simulate_cohort(args.patients, seed) for seed in (1, 2, 3, 4)
    )
    synthetic.outcomes = None
    start = time.perf_counter()
    evaluation = evaluate_cohorts(
        synthetic,
        real,
        train=train,
        reference=reference,
        outcome_labeler=lambda patients: simulate_outcomes(patients, 7),
    )
    seconds = time.perf_counter() - start
    print(f"evaluate_cohorts, {args.patients} vs {args.patients} (+ floor): {seconds:.2f} s")
    print(f"  {len(evaluation)} keys, alarms: {evaluation.alarms or 'none'}")

    n = args.privacy_patients
    synthetic, train, holdout = (simulate_cohort(n, seed) for seed in (5, 6, 7))
    start = time.perf_counter()
    privacy_metrics(synthetic, train, holdout)
    seconds = time.perf_counter() - start
    print(f"privacy_metrics, {n} synthetic x {n} train (+ {n} holdout): {seconds:.2f} s")


if __name__ == "__main__":
    main()
