"""Reference solutions and wrong answers for lesson05's exercises (tests only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.exercises.lesson05 import (
    _reference_focal_sex_loss,
    _reference_mean_decoder_state,
    check_aux_head_parameters,
    check_focal_sex_loss,
    check_mean_decoder_state,
)
from course_lib.model import AUX_HIDDEN
from exercise_solutions import Exercise

# --- Exercise 1: how many parameters does an auxiliary head have? -------------------------


def solution_aux_head_parameters(d_model: int, n_outputs: int, kind: str) -> int:
    """Weights and biases of ``make_aux_head(d_model, n_outputs, kind)``."""
    if kind == "linear":
        return d_model * n_outputs + n_outputs
    return (d_model * AUX_HIDDEN + AUX_HIDDEN) + (AUX_HIDDEN * n_outputs + n_outputs)


def _forgot_biases(d_model: int, n_outputs: int, kind: str) -> int:
    if kind == "linear":
        return d_model * n_outputs
    return d_model * AUX_HIDDEN + AUX_HIDDEN * n_outputs


def _mlp_as_linear(d_model: int, n_outputs: int, kind: str) -> int:
    return d_model * n_outputs + n_outputs


def _focal_without_log(sex_logits, sex_target, gamma=2.0):
    p = sex_logits.softmax(dim=-1).gather(1, sex_target.long().view(-1, 1))[:, 0]
    return ((1 - p) ** gamma).mean()


def _focal_ignoring_gamma(sex_logits, sex_target, gamma=2.0):
    return F.cross_entropy(sex_logits, sex_target.long())


def _focal_summed(sex_logits, sex_target, gamma=2.0):
    return _reference_focal_sex_loss(sex_logits, sex_target, gamma) * sex_logits.shape[0]


def _mean_with_padding(hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return hidden.mean(dim=1)


def _last_position(hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return hidden[:, -1]


EXERCISES = [
    Exercise(
        "aux_head_parameters",
        check_aux_head_parameters,
        solution_aux_head_parameters,
        wrong_answers=(_forgot_biases, _mlp_as_linear),
    ),
    Exercise(
        "focal_sex_loss",
        check_focal_sex_loss,
        _reference_focal_sex_loss,
        wrong_answers=(_focal_without_log, _focal_ignoring_gamma, _focal_summed),
    ),
    Exercise(
        "mean_decoder_state",
        check_mean_decoder_state,
        _reference_mean_decoder_state,
        wrong_answers=(_mean_with_padding, _last_position),
    ),
]
