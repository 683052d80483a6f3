"""Lesson 10's exercise: an alarm for a loss term that vanishes from the total (lesson 10)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from course_lib.exercises import Exercise, not_attempted, passed, require

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


# --- test logs ---------------------------------------------------------------------------
def _log(shares_by_epoch: dict[str, list[list[float]]], weights: dict[str, float] | None = None):
    """Step records with the given shares: ``{term: [[share per step] per epoch]}``."""
    weights = weights or {}
    n_epochs = len(next(iter(shares_by_epoch.values())))
    records, step = [], 0
    for epoch in range(n_epochs):
        n_steps = len(next(iter(shares_by_epoch.values()))[epoch])
        for index in range(n_steps):
            step += 1
            terms = {
                term: {
                    "raw": 1.0,
                    "weight": weights.get(term, 0.01),
                    "weighted": 0.0,
                    "share": shares[epoch][index],
                }
                for term, shares in shares_by_epoch.items()
            }
            records.append({"step": step, "epoch": epoch, "terms": terms})
    return records


CASES: list[tuple[str, list[dict], dict[str, Any], list[tuple[str, int]]]] = [
    (
        "the sex share falls below 0.1% from epoch 2 on",
        _log(
            {
                "lm": [[95.0, 96.0]] * 5,
                "sex": [[5.0, 4.0], [2.0, 1.0], [0.05, 0.04], [0.02, 0.01], [0.0, 0.0]],
            }
        ),
        {"threshold_percent": 0.1, "patience_epochs": 2},
        [("sex", 3)],
    ),
    (
        "a one-epoch dip is not an alarm with patience 2",
        _log({"lm": [[95.0]] * 4, "sex": [[5.0], [0.05], [3.0], [0.05]]}),
        {"threshold_percent": 0.1, "patience_epochs": 2},
        [],
    ),
    (
        "the epoch's mean share counts, not its last step",
        _log({"lm": [[90.0, 99.0]] * 3, "sex": [[0.5, 0.01], [0.5, 0.01], [0.5, 0.01]]}),
        {"threshold_percent": 0.1, "patience_epochs": 2},
        [],
    ),
    (
        "a term switched off on purpose (weight 0) is no alarm",
        _log({"lm": [[99.0]] * 3, "sex": [[0.0]] * 3}, weights={"sex": 0.0}),
        {"threshold_percent": 0.1, "patience_epochs": 1},
        [],
    ),
    (
        "one alarm per term, with patience 1 and a custom threshold",
        _log(
            {
                "lm": [[90.0]] * 4,
                "age": [[0.4], [0.3], [0.2], [0.1]],
                "sex": [[2.0], [0.4], [0.6], [0.2]],
            }
        ),
        {"threshold_percent": 0.5, "patience_epochs": 1},
        [("age", 0), ("sex", 1)],
    ),
]


def check_vanishing_term_alarms(alarm_function: Callable[..., Any] | None) -> bool:
    """Run the learner's function on small logs whose right alarms are known."""
    name = "vanishing_term_alarms"
    if alarm_function is None:
        return not_attempted(
            name, "write vanishing_term_alarms(step_records, threshold_percent, patience_epochs)"
        )
    require(callable(alarm_function), name, f"expected a function, got {alarm_function!r}")
    for description, records, options, expected in CASES:
        got = alarm_function(records, **options)
        require(
            isinstance(got, list | tuple),
            name,
            f"{description}: expected a list of (term, epoch), got {type(got).__name__}",
        )
        got = [tuple(alarm) for alarm in got]
        require(
            sorted(got) == sorted(expected),
            name,
            f"{description} ({options}): expected alarms {expected}, got {got}",
        )
    return passed(name, f"{len(CASES)} logs")


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
