"""Reference solutions and wrong answers for lesson10's exercises (tests only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from course_lib.exercises.lesson10 import check_vanishing_term_alarms
from exercise_solutions import Exercise

StepRecord = Mapping[str, Any]  # one line of logs/train.jsonl


# --- reference solution ------------------------------------------------------------------
def solution_vanishing_term_alarms(
    step_records: Sequence[StepRecord],
    threshold_percent: float = 0.1,
    patience_epochs: int = 2,
) -> list[tuple[str, int]]:
    """``(term, epoch)`` for each term whose share of the total stayed below
    ``threshold_percent`` for ``patience_epochs`` consecutive epochs, at the epoch the streak
    reaches ``patience_epochs`` (one alarm per term, the first time).

    An epoch's share is the mean ``share`` of its logged steps; a term whose weight is 0 at
    every logged step of an epoch was switched off on purpose and breaks a streak without
    raising an alarm.
    """
    by_epoch: dict[int, dict[str, list[tuple[float, float]]]] = {}
    for record in step_records:
        for term, values in record["terms"].items():
            by_epoch.setdefault(int(record["epoch"]), {}).setdefault(term, []).append(
                (float(values["share"]), float(values["weight"]))
            )
    streaks: dict[str, int] = {}
    alarms: list[tuple[str, int]] = []
    alarmed: set[str] = set()
    for epoch in sorted(by_epoch):
        for term, values in by_epoch[epoch].items():
            switched_off = all(weight == 0 for _, weight in values)
            mean_share = sum(share for share, _ in values) / len(values)
            if switched_off or not mean_share < threshold_percent:
                streaks[term] = 0
                continue
            streaks[term] = streaks.get(term, 0) + 1
            if streaks[term] >= patience_epochs and term not in alarmed:
                alarms.append((term, epoch))
                alarmed.add(term)
    return alarms


# --- wrong answers the check must reject -------------------------------------------------
def _last_step_of_epoch(step_records, threshold_percent=0.1, patience_epochs=2):
    last = {}
    for record in step_records:
        last[record["epoch"]] = record
    return solution_vanishing_term_alarms(list(last.values()), threshold_percent, patience_epochs)


def _counts_every_epoch_below(step_records, threshold_percent=0.1, patience_epochs=2):
    """Counts epochs below the threshold, consecutive or not."""
    below: dict[str, int] = {}
    alarms = []
    for epoch in sorted({r["epoch"] for r in step_records}):
        records = [r for r in step_records if r["epoch"] == epoch]
        for term in records[0]["terms"]:
            share = sum(r["terms"][term]["share"] for r in records) / len(records)
            if share < threshold_percent:
                below[term] = below.get(term, 0) + 1
                if below[term] == patience_epochs:
                    alarms.append((term, epoch))
    return alarms


def _ignores_weights(step_records, threshold_percent=0.1, patience_epochs=2):
    records = [
        {**r, "terms": {t: {**v, "weight": 1.0} for t, v in r["terms"].items()}}
        for r in step_records
    ]
    return solution_vanishing_term_alarms(records, threshold_percent, patience_epochs)


def _alarms_every_epoch(step_records, threshold_percent=0.1, patience_epochs=2):
    """Repeats the alarm at every epoch after the first one."""
    alarms = solution_vanishing_term_alarms(step_records, threshold_percent, patience_epochs)
    last_epoch = max(r["epoch"] for r in step_records)
    return [(term, e) for term, first in alarms for e in range(first, last_epoch + 1)]


EXERCISES = [
    Exercise(
        "vanishing_term_alarms",
        check_vanishing_term_alarms,
        solution_vanishing_term_alarms,
        wrong_answers=(
            _last_step_of_epoch,
            _counts_every_epoch_below,
            _ignores_weights,
            _alarms_every_epoch,
            lambda step_records, **options: "sex",  # not a list of pairs
        ),
    ),
]
