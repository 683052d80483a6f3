"""Reference solutions and wrong answers for lesson05's exercises (tests only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.exercises.lesson05 import (
    check_aux_head_parameters,
    check_focal_sex_loss,
    check_mean_decoder_state,
)
from course_lib.losses import IGNORE_INDEX
from course_lib.model import AUX_HIDDEN
from exercise_solutions import Exercise

# --- Exercise 1: how many parameters does an auxiliary head have? -------------------------


def solution_mean_decoder_state(hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[batch, seq, d_model]``, ``[batch, seq]`` -> ``[batch, d_model]``: the mean of the
    hidden states at the scored positions (``labels != -100``); padding does not count."""
    scored = labels.ne(IGNORE_INDEX).unsqueeze(-1).to(hidden.dtype)  # [batch, seq, 1]
    return (hidden * scored).sum(dim=1) / scored.sum(dim=1).clamp(min=1)


def solution_focal_sex_loss(
    sex_logits: torch.Tensor, sex_target: torch.Tensor, gamma: float = 2.0
) -> torch.Tensor:
    """``mean_b -(1 - p_b)^gamma log p_b`` with ``p_b`` the probability of the true class.

    ``sex_logits [batch, classes]``, ``sex_target [batch]``. Confident right answers
    (``p_b`` near 1) weigh almost nothing, so a head that already knows the easy patients
    stops being pushed by them; ``gamma = 0`` is the plain cross-entropy.
    """
    log_p = sex_logits.float().log_softmax(dim=-1).gather(1, sex_target.long().view(-1, 1))[:, 0]
    return (-((1 - log_p.exp()) ** gamma) * log_p).mean()


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
    return solution_focal_sex_loss(sex_logits, sex_target, gamma) * sex_logits.shape[0]


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
        solution_focal_sex_loss,
        wrong_answers=(_focal_without_log, _focal_ignoring_gamma, _focal_summed),
    ),
    Exercise(
        "mean_decoder_state",
        check_mean_decoder_state,
        solution_mean_decoder_state,
        wrong_answers=(_mean_with_padding, _last_position),
    ),
]
