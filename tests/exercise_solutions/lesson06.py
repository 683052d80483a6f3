"""Reference solutions and wrong answers for lesson06's exercises (tests only)."""

from __future__ import annotations

import torch

from course_lib.exercises.lesson06 import (
    check_pmi_matrix,
    check_smoothed_lm_loss,
)
from course_lib.losses import IGNORE_INDEX, lm_loss
from exercise_solutions import Exercise

# --- Exercise 1: label smoothing for the language-modelling loss ----------------------------


def solution_pmi_matrix(
    cooccurrence_counts: torch.Tensor, code_counts: torch.Tensor, n_patients: int
) -> torch.Tensor:
    """``pmi[i, j] = log(n_ij * N / (n_i * n_j))`` (natural log), ``-inf`` where ``n_ij = 0``.

    ``cooccurrence_counts [vocab, vocab]``: patients holding both codes (diagonal 0, as
    :func:`course_lib.losses.build_cooccurrence_counts` makes it); ``code_counts [vocab]``:
    patients holding each code; ``N = n_patients``. PMI > 0 means "together more often than
    chance": unlike a raw count threshold it does not favour the most frequent codes.
    """
    joint = cooccurrence_counts.double()
    expected = code_counts.double().view(-1, 1) * code_counts.double().view(1, -1) / n_patients
    pmi = torch.log(joint / expected.clamp(min=1e-300))
    return pmi.masked_fill(joint.eq(0), float("-inf")).float()


def solution_smoothed_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, smoothing: float
) -> torch.Tensor:
    """``(1 - eps) * NLL(label) + eps * mean_v(-log p_v)``, averaged over scored positions.

    The target distribution puts ``1 - eps`` on the label and spreads ``eps`` uniformly over
    the whole vocabulary (the label included), as ``torch.nn.functional.cross_entropy``'s
    ``label_smoothing`` does. ``logits [batch, seq, vocab]``, ``labels [batch, seq]``.
    """
    scored = labels.ne(IGNORE_INDEX)  # [batch, seq]
    log_probs = logits[scored].float().log_softmax(dim=-1)  # [n_scored, vocab]
    nll = -log_probs.gather(1, labels[scored].view(-1, 1))[:, 0]
    uniform = -log_probs.mean(dim=-1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


def _smoothing_over_padding(logits, labels, smoothing):
    log_probs = logits.float().log_softmax(dim=-1)
    nll = -log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1))[..., 0]
    return ((1 - smoothing) * nll + smoothing * -log_probs.mean(dim=-1)).mean()


def _smoothing_ignored(logits, labels, smoothing):
    return lm_loss(logits, labels)


def _smoothing_on_other_tokens_only(logits, labels, smoothing):
    """The eps / (V - 1) variant: a different, also common, definition; not the one asked for."""
    scored = labels.ne(IGNORE_INDEX)
    log_probs = logits[scored].float().log_softmax(dim=-1)
    target = labels[scored].view(-1, 1)
    nll = -log_probs.gather(1, target)[:, 0]
    others = -(log_probs.sum(dim=-1) - log_probs.gather(1, target)[:, 0]) / (logits.shape[-1] - 1)
    return ((1 - smoothing) * nll + smoothing * others).mean()


def _pmi_without_n(cooccurrence_counts, code_counts, n_patients):
    return solution_pmi_matrix(cooccurrence_counts, code_counts, 1)


def _pmi_nan_for_unseen(cooccurrence_counts, code_counts, n_patients):
    pmi = solution_pmi_matrix(cooccurrence_counts, code_counts, n_patients)
    return pmi.masked_fill(torch.isinf(pmi), float("nan"))


EXERCISES = [
    Exercise(
        "smoothed_lm_loss",
        check_smoothed_lm_loss,
        solution_smoothed_lm_loss,
        wrong_answers=(
            _smoothing_over_padding,
            _smoothing_ignored,
            _smoothing_on_other_tokens_only,
        ),
    ),
    Exercise(
        "pmi_matrix",
        check_pmi_matrix,
        solution_pmi_matrix,
        wrong_answers=(_pmi_without_n, _pmi_nan_for_unseen),
    ),
]
