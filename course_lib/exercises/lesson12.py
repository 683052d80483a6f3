"""Lesson 12's exercises: the memory of AdamW training and a checkpoint retention policy (lesson 12).

The first is checked against tensors weighed after a real optimiser step, so it cannot be
satisfied by a formula that merely looks plausible; the second against hand-worked cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from course_lib.exercises import Exercise, ExerciseFailed, not_attempted, passed, require

# --- Exercise 1: bytes of the training state (weights, gradients, AdamW moments) ----------


def solution_training_state_bytes(n_parameters: int) -> int:
    """float32 AdamW: weights, gradients, first and second moments: 4 tensors of 4 bytes."""
    return 16 * n_parameters


def _measured_training_state(model: torch.nn.Module) -> tuple[int, int]:
    """``(parameters, bytes)`` after one AdamW step: every tensor training keeps, weighed."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = torch.randn(4, model[0].in_features)
    model(inputs).square().mean().backward()
    optimizer.step()
    parameters = list(model.parameters())
    total = sum(p.nbytes + p.grad.nbytes for p in parameters)
    for state in optimizer.state.values():
        total += sum(value.nbytes for value in state.values() if torch.is_tensor(value))
    return sum(p.numel() for p in parameters), total


def check_training_state_bytes(training_state_bytes: Callable[[int], int] | None) -> bool:
    """The estimate must be within 1% of the measured bytes for two model sizes."""
    name = "training_state_bytes"
    if training_state_bytes is None:
        return not_attempted(name, "write training_state_bytes(n_parameters) -> int")
    torch.manual_seed(0)
    models = [
        torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 64)),
        torch.nn.Sequential(torch.nn.Linear(64, 2048), torch.nn.Tanh(), torch.nn.Linear(2048, 8)),
    ]
    for model in models:
        n_parameters, measured = _measured_training_state(model)
        estimate = training_state_bytes(n_parameters)
        require(
            isinstance(estimate, int | float) and estimate > 0,
            name,
            f"{n_parameters:,} parameters: expected a positive number of bytes, got {estimate!r}",
        )
        require(
            abs(estimate - measured) <= 0.01 * measured,
            name,
            f"{n_parameters:,} parameters: estimated {estimate:,.0f} bytes, but the weights, "
            f"gradients and AdamW state weigh {measured:,} bytes "
            f"({measured / n_parameters:.2f} per parameter)",
        )
    return passed(name, "matches the weighed tensors of two models within 1%")


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


RETENTION_CASES = [
    # (saved steps, keep_last, keep_every, expected)
    (list(range(100, 1001, 100)), 2, 500, {500, 900, 1000}),
    (list(range(1, 11)), 1, 3, {3, 6, 9, 10}),
    ([5, 1, 3], 1, 0, {5}),  # order of saving is not the order of steps
    ([10, 20], 5, 0, {10, 20}),  # fewer saved than keep_last
    ([10, 20, 30], 0, 0, set()),
    ([10, 20, 30], 0, 20, {20}),
    ([], 3, 10, set()),
]


def check_checkpoint_retention(
    checkpoints_to_keep: Callable[[list[int], int, int], set[int]] | None,
) -> bool:
    """Hand-worked cases, then a negative argument, which must raise ValueError."""
    name = "checkpoint_retention"
    if checkpoints_to_keep is None:
        return not_attempted(name, "write checkpoints_to_keep(saved_steps, keep_last, keep_every)")
    for saved, keep_last, keep_every, expected in RETENTION_CASES:
        call = f"checkpoints_to_keep({saved}, keep_last={keep_last}, keep_every={keep_every})"
        try:
            kept = checkpoints_to_keep(list(saved), keep_last, keep_every)
        except ExerciseFailed:
            raise
        except Exception as error:  # a crash is a wrong answer, reported as such
            raise ExerciseFailed(
                f"exercise {name}: {call} raised {type(error).__name__}: {error}"
            ) from None
        require(
            set(kept) == expected and all(step in saved for step in kept),
            name,
            f"{call} returned {sorted(kept)}, expected {sorted(expected)}",
        )
    try:
        checkpoints_to_keep([1, 2, 3], -1, 0)
    except ValueError:
        pass
    except Exception as error:
        raise ExerciseFailed(
            f"exercise {name}: keep_last=-1 raised {type(error).__name__}, expected ValueError"
        ) from None
    else:
        raise ExerciseFailed(f"exercise {name}: keep_last=-1 must raise ValueError")
    return passed(name, f"{len(RETENTION_CASES)} cases and the bad argument")


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
