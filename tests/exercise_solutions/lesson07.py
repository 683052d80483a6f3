"""Reference solutions and wrong answers for lesson07's exercises (tests only)."""

from __future__ import annotations

import math

import torch

from course_lib.exercises.lesson07 import check_inverse_initial_loss
from course_lib.weighting import LossWeighting
from exercise_solutions import Exercise


# --- reference solution ------------------------------------------------------------------
class InverseInitialLoss(LossWeighting):
    """``w_i = 1 / L_i(0)``: every term starts at 1 in the total, whatever its scale.

    ``L_i(0)`` is the term's loss at the first call in ``train()`` mode, kept in a buffer so
    ``state_dict()`` carries it; calls in ``eval()`` mode record nothing (weights are 1 until
    the first training call).
    """

    def __init__(self, terms, min_loss: float = 1e-12):
        super().__init__(terms)
        self.min_loss = float(min_loss)
        self.register_buffer("initial_losses", torch.full((len(self.terms),), math.nan))

    def forward(self, losses, *, step, epoch):
        raw = self.stack_losses(losses)
        if self.training and torch.isnan(self.initial_losses).any():
            self.initial_losses.copy_(raw.detach().clamp(min=self.min_loss))
        if torch.isnan(self.initial_losses).any():
            weights = torch.ones_like(raw)
        else:
            weights = 1.0 / self.initial_losses
        return (weights * raw).sum(), self.weights_dict(weights)


def solution_inverse_initial_loss() -> type[LossWeighting]:
    return InverseInitialLoss


# --- wrong answers the check must reject -------------------------------------------------
class _CurrentLossWeighting(InverseInitialLoss):
    """Divides by the current loss: every term contributes exactly 1 at every step."""

    def forward(self, losses, *, step, epoch):
        raw = self.stack_losses(losses)
        weights = 1.0 / raw.detach().clamp(min=self.min_loss)
        return (weights * raw).sum(), self.weights_dict(weights)


class _RecordsInEval(InverseInitialLoss):
    """Records the first losses whatever the mode."""

    def forward(self, losses, *, step, epoch):
        was_training = self.training
        self.training = True
        try:
            return super().forward(losses, step=step, epoch=epoch)
        finally:
            self.training = was_training


class _PlainAttribute(LossWeighting):
    """Keeps the first losses in a plain attribute: lost by state_dict()."""

    def __init__(self, terms):
        super().__init__(terms)
        self.initial = None

    def forward(self, losses, *, step, epoch):
        raw = self.stack_losses(losses)
        if self.training and self.initial is None:
            self.initial = raw.detach().clone()
        weights = torch.ones_like(raw) if self.initial is None else 1.0 / self.initial
        return (weights * raw).sum(), self.weights_dict(weights)


class _DetachedTotal(InverseInitialLoss):
    """Returns a total without a gradient."""

    def forward(self, losses, *, step, epoch):
        total, weights = super().forward(losses, step=step, epoch=epoch)
        return total.detach(), weights


class _StubInverseInitialLoss(LossWeighting):
    """What lesson 07 ships."""

    def forward(self, losses, *, step, epoch):
        raise NotImplementedError("TODO: weights 1 / L_i(0)")


EXERCISES = [
    Exercise(
        "inverse_initial_loss",
        check_inverse_initial_loss,
        solution_inverse_initial_loss(),
        stub=_StubInverseInitialLoss,
        wrong_answers=(
            _CurrentLossWeighting,
            _RecordsInEval,
            _PlainAttribute,
            _DetachedTotal,
            dict,  # not a LossWeighting
        ),
    ),
]
