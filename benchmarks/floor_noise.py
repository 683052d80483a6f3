"""How much a real-vs-real floor moves between draws of real patients (the report's goals).

    python -m benchmarks.floor_noise [--data data_samples/mimic_sample] [--draws 40]

The main job's floor is one second real sample: its validation split (200 patients) scored
against its test split. This draws ``--draws`` other samples of the same size from the
training split (real patients too, disjoint from the test split) and scores each against the
test split with the same code, then prints, per goal metric, the validation split's floor
beside the draws' mean, standard deviation and 10/50/90% quantiles, and where the floor
falls among them. A generator as good as real data lands anywhere in that spread, which is
why a goal missed by less than the noise is reported as "within noise"
(:func:`course_lib.evaluation.report_format.miss_within_noise`).
"""

from __future__ import annotations

import argparse

import numpy as np

from course_lib.dataset import split_cohort
from course_lib.evaluation import evaluate_cohorts
from course_lib.evaluation.floor import subsample
from course_lib.evaluation.report_format import GOALS
from course_lib.mimic import load_mimic

METRICS = [key for key, goal in GOALS.items() if goal.relative is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data_samples/mimic_sample")
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="the split seed (the main job's: 0)")
    args = parser.parse_args()
    train, val, test = split_cohort(load_mimic(args.data), seed=args.seed)
    floor = evaluate_cohorts(val, test, train=train, seed=args.seed, n_resamples=0)
    draws = {key: [] for key in METRICS}
    for draw in range(args.draws):
        sample = subsample(train, len(val), seed=1000 + draw)
        scores = evaluate_cohorts(sample, test, train=train, seed=args.seed, n_resamples=0)
        for key in METRICS:
            draws[key].append(float(scores[key]))
    print(
        f"{len(val)} validation patients vs {len(test)} test patients (the floor), and "
        f"{args.draws} draws of {len(val)} training patients vs the same test patients"
    )
    print(f"{'metric':16s} {'floor':>7s} {'mean':>7s} {'sd':>7s} {'q10':>7s} {'q50':>7s} "
          f"{'q90':>7s} {'floor pct':>9s}")  # fmt: skip
    for key in METRICS:
        values = np.array(draws[key])
        q10, q50, q90 = np.quantile(values, [0.1, 0.5, 0.9])
        rank = float(np.mean(values < floor[key])) * 100
        print(
            f"{key:16s} {floor[key]:7.4f} {values.mean():7.4f} {values.std(ddof=1):7.4f} "
            f"{q10:7.4f} {q50:7.4f} {q90:7.4f} {rank:8.0f}%"
        )


if __name__ == "__main__":
    main()
