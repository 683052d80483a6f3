"""Lesson 10's exercise: an alarm for a loss term that vanishes from the total (lesson 10)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from course_lib.exercises import exercise_check, not_attempted, passed, require


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


@exercise_check
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
