"""Lesson 12's exercises: the memory of AdamW training and a checkpoint retention policy (lesson 12).

The first is checked against tensors weighed after a real optimiser step, so it cannot be
satisfied by a formula that merely looks plausible; the second against hand-worked cases.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from course_lib.exercises import ExerciseFailed, exercise_check, not_attempted, passed, require


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


@exercise_check
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


@exercise_check
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
        except NotImplementedError:  # a stub: not done yet, not wrong
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
    except NotImplementedError:  # a stub: not done yet, not wrong
        raise
    except Exception as error:
        raise ExerciseFailed(
            f"exercise {name}: keep_last=-1 raised {type(error).__name__}, expected ValueError"
        ) from None
    else:
        raise ExerciseFailed(f"exercise {name}: keep_last=-1 must raise ValueError")
    return passed(name, f"{len(RETENTION_CASES)} cases and the bad argument")
