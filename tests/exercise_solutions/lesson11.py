"""Reference solutions and wrong answers for lesson11's exercises (tests only)."""

from __future__ import annotations

import math

import numpy as np
import torch

from course_lib.exercises.lesson11 import (
    _binary_nll,
    check_cumulative_risk,
    check_temperature_scaling,
)
from exercise_solutions import Exercise


def solution_temperature_scaling(logits: np.ndarray, outcomes: np.ndarray) -> float:
    """The temperature minimising the held-out BCE (searched on log T, so T stays > 0)."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    outcomes = np.asarray(outcomes, dtype=np.float64)
    found = minimize_scalar(
        lambda log_t: _binary_nll(logits, outcomes, math.exp(log_t)),
        bounds=(math.log(0.05), math.log(20.0)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(found.x))


def _no_scaling(logits: np.ndarray, outcomes: np.ndarray) -> float:
    return 1.0


def _inverted_temperature(logits: np.ndarray, outcomes: np.ndarray) -> float:
    return 1.0 / solution_temperature_scaling(logits, outcomes)  # multiplies instead of divides


# --- Exercise 2: a survival output: cumulative risk from discrete-time hazards -------------


def solution_cumulative_risk(hazard_logits: torch.Tensor) -> torch.Tensor:
    """``[batch, H]`` hazard logits -> ``[batch, H]`` P(event by horizon k), non-decreasing in k."""
    # log(1 - sigmoid(l)) = logsigmoid(-l): stable for large logits
    log_survival = torch.nn.functional.logsigmoid(-hazard_logits).cumsum(dim=-1)
    return -torch.expm1(log_survival)


def _independent_sigmoids(hazard_logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(hazard_logits)  # what the horizon head does now: not monotone


def _survival_instead_of_risk(hazard_logits: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(1.0 - torch.sigmoid(hazard_logits), dim=-1)


def _detached(hazard_logits: torch.Tensor) -> torch.Tensor:
    return torch.tensor(solution_cumulative_risk(hazard_logits).detach().numpy())


EXERCISES = [
    Exercise(
        "temperature_scaling",
        check_temperature_scaling,
        solution_temperature_scaling,
        wrong_answers=(_no_scaling, _inverted_temperature),
    ),
    Exercise(
        "cumulative_risk",
        check_cumulative_risk,
        solution_cumulative_risk,
        wrong_answers=(_independent_sigmoids, _survival_instead_of_risk, _detached),
    ),
]
