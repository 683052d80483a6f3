"""Lesson 11's exercises: temperature scaling and a survival output for the horizon head (lesson 11).

Both extend :mod:`course_lib.heads`: a one-parameter calibrator for a binary head's logits, and
a discrete-time hazard parametrisation that makes the horizon head's risks grow with the horizon.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from course_lib.exercises import exercise_check, not_attempted, passed, require
from course_lib.exercises.expected import EXPECTED
from course_lib.heads.metrics import expected_calibration_error

# --- Exercise 1: temperature scaling --------------------------------------------------------


def _binary_nll(logits: np.ndarray, outcomes: np.ndarray, temperature: float) -> float:
    """Mean binary cross-entropy of ``sigmoid(logits / temperature)``, computed stably."""
    scaled = logits / temperature
    return float(np.mean(np.logaddexp(0.0, scaled) - outcomes * scaled))


def _miscalibrated(scale: float, seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes drawn from ``sigmoid(z)``; logits ``scale * z`` (scale > 1: over-confident)."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 1.5, size=n)
    outcomes = (rng.random(n) < 1.0 / (1.0 + np.exp(-true_logits))).astype(np.float64)
    return scale * true_logits, outcomes


def _grid_temperature(logits: np.ndarray, outcomes: np.ndarray) -> float:
    """The check's own optimum: a dense grid on log T (independent of any solver)."""
    grid = np.exp(np.linspace(math.log(0.05), math.log(20.0), 4001))
    losses = [_binary_nll(logits, outcomes, t) for t in grid]
    return float(grid[int(np.argmin(losses))])


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


@exercise_check
def check_temperature_scaling(
    fit_temperature: Callable[[np.ndarray, np.ndarray], float] | None,
) -> bool:
    """``fit_temperature(logits [N], outcomes [N] of 0/1) -> T`` must find the BCE-optimal T."""
    name = "temperature_scaling"
    if fit_temperature is None:
        return not_attempted(name, "write fit_temperature(logits, outcomes) -> float")
    for scale, kind in ((3.0, "over-confident"), (0.5, "under-confident")):
        logits, outcomes = _miscalibrated(scale, seed=11 if scale > 1 else 12)
        found = fit_temperature(logits.copy(), outcomes.copy())
        require(
            isinstance(found, int | float | np.floating) and math.isfinite(float(found)),
            name,
            f"{kind} logits: expected a finite number, got {found!r}",
        )
        found = float(found)
        require(found > 0, name, f"{kind} logits: temperature {found} must be > 0")
        best = _grid_temperature(logits, outcomes)
        require(
            abs(math.log(found / best)) < 0.02,
            name,
            f"{kind} logits (made {scale}x too large): temperature {found:.4f}, but the "
            f"cross-entropy is lowest at {best:.4f} (divide the logits by T, do not multiply)",
        )
        before = expected_calibration_error(_sigmoid(logits), outcomes)
        after = expected_calibration_error(_sigmoid(logits / found), outcomes)
        require(
            after < before,
            name,
            f"{kind} logits: ECE {before:.4f} before scaling, {after:.4f} after: no better",
        )
    return passed(name, "finds the best temperature for over- and under-confident logits")


def hazard_logits_input() -> torch.Tensor:
    """The check's ``[64, 4]`` hazard logits (64 patients, 4 horizons)."""
    generator = torch.Generator().manual_seed(11)
    return torch.randn(64, 4, generator=generator) * 2.0 - 1.0


@exercise_check
def check_cumulative_risk(cumulative_risk: Callable[[torch.Tensor], torch.Tensor] | None) -> bool:
    """Values, shape, range, monotonicity in the horizon, and a gradient back to the logits."""
    name = "cumulative_risk"
    if cumulative_risk is None:
        return not_attempted(name, "write cumulative_risk(hazard_logits) -> tensor")
    hazard_logits = hazard_logits_input().requires_grad_(True)
    risk = cumulative_risk(hazard_logits)
    require(isinstance(risk, torch.Tensor), name, f"expected a tensor, got {type(risk).__name__}")
    require(
        tuple(risk.shape) == (64, 4),
        name,
        f"shape {tuple(risk.shape)}: expected the logits' shape (64, 4)",
    )
    values = risk.detach().double()
    require(
        bool(values.ge(0).all() and values.le(1).all()),
        name,
        f"risks must lie in [0, 1]; found {values.min():.4f} to {values.max():.4f}",
    )
    steps = values.diff(dim=-1)
    require(
        bool(steps.ge(-1e-7).all()),
        name,
        f"the risk must not fall from one horizon to the next; largest fall {-steps.min():.4f}",
    )
    expected = torch.tensor(EXPECTED["cumulative_risk"], dtype=torch.float64)
    worst = float((values - expected).abs().max())
    require(
        worst < 1e-5,
        name,
        f"values differ from 1 - prod_(j<=k) (1 - sigmoid(l_j)) by up to {worst:.2e}",
    )
    require(risk.requires_grad, name, "the output does not depend on the logits' gradient")
    risk.sum().backward()
    gradient = hazard_logits.grad
    require(
        gradient is not None and bool(torch.isfinite(gradient).all()) and gradient.abs().sum() > 0,
        name,
        "no finite, non-zero gradient reaches the hazard logits",
    )
    return passed(name, "cumulative risk from hazards: right values, monotone, differentiable")
