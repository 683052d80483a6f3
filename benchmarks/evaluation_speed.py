"""Time the evaluation on simulated cohorts (lesson 09): prints seconds per step.

    python benchmarks/evaluation_speed.py [--patients 2000] [--resamples 10] [--privacy-patients 5000]

The first figure is the whole ``evaluate_cohorts`` call, ``--patients`` synthetic against as
many real test patients, with a same-size reference (floors), a training split twice that
size and every bootstrap interval; then the parts that cost most, each for the synthetic
sample only (the floor repeats them for the reference); the last is the privacy family alone
at the size the brief asks to stay fast on (5,000 synthetic x 5,000 training patients).
Pin the cores to compare with the figures quoted in the notes (``taskset -c 0,1``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from course_lib.cohort import Cohort
from course_lib.evaluation import evaluate_cohorts
from course_lib.evaluation.coherence import CooccurrenceStats
from course_lib.evaluation.fidelity import detection_auc, precision_recall_metrics
from course_lib.evaluation.privacy import privacy_evaluation
from course_lib.evaluation.suite import cohort_statistics
from course_lib.evaluation.uncertainty import bootstrap_cohort
from course_lib.simulate import simulate_cohort, simulate_outcomes


def timed(label: str, step: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = step()
    print(f"  {label}: {time.perf_counter() - start:.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=10)
    parser.add_argument("--privacy-patients", type=int, default=5000)
    args = parser.parse_args()

    n = args.patients
    real, reference, synthetic = (simulate_cohort(n, seed) for seed in (1, 2, 3))
    train = simulate_cohort(2 * n, 4)
    synthetic = Cohort(synthetic.patients)  # generated patients carry no outcomes
    start = time.perf_counter()
    evaluation = evaluate_cohorts(
        synthetic,
        real,
        train=train,
        reference=reference,
        outcome_labeler=lambda patients: simulate_outcomes(patients, 7),
        n_resamples=args.resamples,
    )
    seconds = time.perf_counter() - start
    print(f"evaluate_cohorts, {n} vs {n} (+ floor, train {2 * n}): {seconds:.2f} s")
    print(f"  {len(evaluation)} keys, {len(evaluation.intervals)} intervals")
    print(f"  detection_auc {evaluation['detection_auc']:.3f} (floor "
          f"{evaluation['detection_auc_floor']:.3f}), alarms: {evaluation.alarms or 'none'}")  # fmt: skip

    print("parts, synthetic sample only:")
    stats = CooccurrenceStats.from_cohort(train)

    def cheap(cohort: Cohort) -> dict[str, float]:
        return cohort_statistics(cohort, real, stats)

    observed = timed("cohort statistics, once", lambda: cheap(synthetic))
    timed(
        f"their bootstrap ({args.resamples} resamples)",
        lambda: bootstrap_cohort(cheap, synthetic, observed, n_resamples=args.resamples),
    )
    timed(
        "detection (3-fold gradient boosting + 200 resamples)",
        lambda: detection_auc(synthetic, real),
    )
    timed(
        "alpha-precision / beta-recall / authenticity",
        lambda: precision_recall_metrics(synthetic, real),
    )
    timed("privacy (all attacks + intervals)", lambda: privacy_evaluation(synthetic, train, real))

    m = args.privacy_patients
    big_synthetic, big_train, holdout = (simulate_cohort(m, seed) for seed in (5, 6, 7))
    start = time.perf_counter()
    privacy_evaluation(big_synthetic, big_train, holdout)
    seconds = time.perf_counter() - start
    print(f"privacy_evaluation, {m} synthetic x {m} train (+ {m} holdout): {seconds:.2f} s")


if __name__ == "__main__":
    main()
