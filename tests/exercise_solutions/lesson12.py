"""Reference solutions and wrong answers for lesson12's exercises (tests only)."""

from __future__ import annotations

from collections.abc import Iterable

from course_lib.exercises.lesson12 import check_checkpoint_retention, check_training_state_bytes
from exercise_solutions import Exercise

# --- Exercise 1: bytes of the training state (weights, gradients, AdamW moments) ----------


def solution_training_state_bytes(n_parameters: int) -> int:
    """float32 AdamW: weights, gradients, first and second moments: 4 tensors of 4 bytes."""
    return 16 * n_parameters


def _weights_only(n_parameters: int) -> int:
    return 4 * n_parameters


def _weights_and_gradients(n_parameters: int) -> int:
    return 8 * n_parameters


def _one_moment(n_parameters: int) -> int:
    return 12 * n_parameters  # forgot AdamW's second moment


# --- Exercise 2: which checkpoints to keep ----------------------------------------------


def solution_checkpoint_retention(
    saved_steps: Iterable[int], keep_last: int, keep_every: int
) -> set[int]:
    """The ``keep_last`` most recent steps and every multiple of ``keep_every`` (0: none)."""
    if keep_last < 0 or keep_every < 0:
        raise ValueError(f"keep_last {keep_last} and keep_every {keep_every} must be >= 0")
    steps = sorted(set(saved_steps))
    recent = set(steps[len(steps) - keep_last :]) if keep_last else set()
    milestones = {step for step in steps if keep_every and step % keep_every == 0}
    return recent | milestones


def _last_only(saved_steps, keep_last, keep_every):
    if keep_last < 0:
        raise ValueError("keep_last must be >= 0")
    return set(sorted(saved_steps)[-keep_last:])  # ignores keep_every; [-0:] keeps everything


def _modulo_by_zero(saved_steps, keep_last, keep_every):
    if keep_last < 0:
        raise ValueError("keep_last must be >= 0")
    steps = sorted(saved_steps)
    return set(steps[len(steps) - keep_last :]) | {s for s in steps if s % keep_every == 0}


def _in_saving_order(saved_steps, keep_last, keep_every):
    if keep_last < 0:
        raise ValueError("keep_last must be >= 0")
    recent = set(list(saved_steps)[len(saved_steps) - keep_last :]) if keep_last else set()
    return recent | {s for s in saved_steps if keep_every and s % keep_every == 0}


EXERCISES = [
    Exercise(
        "training_state_bytes",
        check_training_state_bytes,
        solution_training_state_bytes,
        wrong_answers=(_weights_only, _weights_and_gradients, _one_moment),
    ),
    Exercise(
        "checkpoint_retention",
        check_checkpoint_retention,
        solution_checkpoint_retention,
        wrong_answers=(_last_only, _modulo_by_zero, _in_saving_order),
    ),
]
