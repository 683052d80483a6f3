"""Lesson 07's exercise: an "inverse initial loss" weighting strategy (lesson 07)."""

from __future__ import annotations

import math

import torch

from course_lib.exercises import exercise_check, not_attempted, passed, require
from course_lib.weighting import LossWeighting

TERMS = ["lm", "age", "sex"]
FIRST_LOSSES = {"lm": 8.0, "age": 2.0, "sex": 0.5}
LATER_LOSSES = {"lm": 4.0, "age": 1.5, "sex": 0.01}


# --- the check ---------------------------------------------------------------------------
def _losses(values: dict[str, float]) -> dict[str, torch.Tensor]:
    return {term: torch.tensor(value, requires_grad=True) for term, value in values.items()}


def _expected(values: dict[str, float]) -> dict[str, float]:
    return {term: 1.0 / FIRST_LOSSES[term] * values[term] for term in values}


@exercise_check
def check_inverse_initial_loss(strategy: type | None) -> bool:
    """Build the learner's class for lm/age/sex and compare it with ``w_i = 1 / L_i(0)``."""
    name = "inverse_initial_loss"
    if strategy is None:
        return not_attempted(name, "write class InverseInitialLoss(LossWeighting)")
    require(
        isinstance(strategy, type) and issubclass(strategy, LossWeighting),
        name,
        f"expected a subclass of course_lib.weighting.LossWeighting, got {strategy!r}",
    )
    weighting = strategy(TERMS)
    weighting.train()

    # An eval call before training (a validation pass) must not fix the first losses.
    weighting.eval()
    weighting(_losses(LATER_LOSSES), step=0, epoch=0)
    weighting.train()

    for step, values in enumerate([FIRST_LOSSES, LATER_LOSSES, FIRST_LOSSES]):
        losses = _losses(values)
        total, weights = weighting(losses, step=step, epoch=0)
        require(
            isinstance(weights, dict) and set(weights) == set(TERMS),
            name,
            f"step {step}: weights must be a dict over {TERMS}, got {weights!r}",
        )
        require(
            all(isinstance(w, float) for w in weights.values()),
            name,
            f"step {step}: weights must be python floats (for the logs), got "
            f"{ {term: type(w).__name__ for term, w in weights.items()} }",
        )
        for term in TERMS:
            expected = 1.0 / FIRST_LOSSES[term]
            require(
                math.isclose(weights[term], expected, rel_tol=1e-5),
                name,
                f"step {step}: weight of {term} is {weights[term]:.6g}, expected "
                f"1 / L(0) = 1 / {FIRST_LOSSES[term]} = {expected:.6g}"
                + (" (did an eval() call record the first losses?)" if step == 0 else "")
                + (" (the weight must stay fixed after the first step)" if step > 0 else ""),
            )
        expected_total = sum(_expected(values).values())
        require(
            torch.is_tensor(total)
            and math.isclose(float(total.detach()), expected_total, rel_tol=1e-5),
            name,
            f"step {step}: total {float(total.detach()):.6g}, expected sum_i L_i / L_i(0) = "
            f"{expected_total:.6g}",
        )
        require(total.requires_grad, name, f"step {step}: the total has no gradient")
        total.backward()
        for term in TERMS:
            grad = losses[term].grad
            require(
                grad is not None
                and math.isclose(float(grad), 1.0 / FIRST_LOSSES[term], rel_tol=1e-5),
                name,
                f"step {step}: d total / d {term} should be its weight {1.0 / FIRST_LOSSES[term]:.6g}",
            )

    restored = strategy(TERMS)
    restored.load_state_dict(weighting.state_dict())
    restored.train()
    _, weights = restored(_losses(LATER_LOSSES), step=3, epoch=0)
    require(
        all(math.isclose(weights[t], 1.0 / FIRST_LOSSES[t], rel_tol=1e-5) for t in TERMS),
        name,
        "a copy made with load_state_dict(state_dict()) does not reuse the first losses: keep "
        "them in a buffer (register_buffer) so a resumed run keeps its weights",
    )
    return passed(name, "weights 1 / L(0), fixed after the first training step, in state_dict")
