"""Prediction heads on frozen PromptBart features, their losses and the untrained flag (lesson 11).

Every head is ``Hidden -> Linear(256) -> ReLU -> Dropout(0.1) -> Linear(k)``, preceded by a
fixed standardisation of the features (mean and std of the TRAINING split, stored with the
head, so a saved head is self-contained):

============  ===  ===================================================================
head          k    target and loss
============  ===  ===================================================================
binary        1    LVEF_REDUCED; BCE with logits
horizon       H    event within each horizon (30/90/180/365 days); BCE per horizon,
                   patients censored before a horizon left out of that horizon's term
risk          3    RISK_CATEGORY (low/medium/high); cross-entropy with class weights
confidence    1    "is the binary head right on this patient?"; BCE (self-supervised,
                   targets from held-out predictions: see :mod:`course_lib.heads.train`)
============  ===  ===================================================================

A new head is random-init and says so: ``trained`` is a persistent buffer (saved with the
weights and in ``config.json``) that only :meth:`PredictionHead.mark_trained` sets, and
:meth:`PredictionHead.predict` warns (:class:`UntrainedHeadWarning`) when it is False. The
notes' project shipped three random-init heads next to one trained one, and nothing said so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

HIDDEN = 256
HEAD_NAMES = ("binary", "horizon", "risk", "confidence")


class UntrainedHeadWarning(UserWarning):
    """A random-init head was used for prediction."""


@dataclass(frozen=True)
class HeadSpec:
    """What a head predicts: ``n_outputs`` logits, and whether they are per-class (softmax)."""

    name: str
    n_outputs: int
    multiclass: bool
    description: str


def head_spec(name: str, n_horizons: int = 4) -> HeadSpec:
    specs = {
        "binary": HeadSpec("binary", 1, False, "LVEF_REDUCED (reduced ejection fraction)"),
        "horizon": HeadSpec("horizon", n_horizons, False, "adverse event within each horizon"),
        "risk": HeadSpec("risk", 3, True, "RISK_CATEGORY (0 low, 1 medium, 2 high)"),
        "confidence": HeadSpec("confidence", 1, False, "P(the binary head is right)"),
    }
    if name not in specs:
        raise ValueError(f"unknown head {name!r}; expected one of {list(HEAD_NAMES)}")
    return specs[name]


class PredictionHead(nn.Module):
    """``[batch, input_size]`` features -> ``[batch, n_outputs]`` logits."""

    def __init__(
        self, input_size: int, n_outputs: int, hidden: int = HIDDEN, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.n_outputs = int(n_outputs)
        self.hidden = int(hidden)
        self.dropout = float(dropout)
        self.register_buffer("input_mean", torch.zeros(input_size))
        self.register_buffer("input_std", torch.ones(input_size))
        self.register_buffer("trained_flag", torch.tensor(False))
        self.trunk = nn.Sequential(nn.Linear(input_size, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.output = nn.Linear(hidden, n_outputs)

    @property
    def trained(self) -> bool:
        return bool(self.trained_flag)

    def mark_trained(self) -> None:
        self.trained_flag.fill_(True)

    def set_standardization(self, features: torch.Tensor) -> None:
        """Fix the input scaling to the mean and std of ``features`` [N, input_size]."""
        self.input_mean.copy_(features.mean(dim=0))
        self.input_std.copy_(features.std(dim=0, unbiased=False).clamp(min=1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != self.input_size:
            raise ValueError(
                f"head expects {self.input_size}-dim features, got {features.shape[-1]}"
            )
        scaled = (features - self.input_mean) / self.input_std
        return self.output(self.trunk(scaled))

    @torch.no_grad()
    def predict(self, features: torch.Tensor, multiclass: bool = False) -> torch.Tensor:
        """Probabilities (sigmoid per output, or softmax when ``multiclass``), eval mode."""
        if not self.trained:
            warnings.warn(
                "this prediction head is untrained (random init): its outputs are noise; "
                "train it (course_lib heads train) before using its predictions",
                UntrainedHeadWarning,
                stacklevel=2,
            )
        was_training = self.training
        self.eval()
        logits = self(features)
        self.train(was_training)
        return logits.softmax(dim=-1) if multiclass else logits.sigmoid()


def make_head(name: str, input_size: int, n_horizons: int = 4, dropout: float = 0.1):
    """A random-init (untrained) head for ``name``."""
    return PredictionHead(input_size, head_spec(name, n_horizons).n_outputs, dropout=dropout)


# ----------------------------------------------------------------------------------- losses
def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``n / (n_classes * count_c)`` from the (training) labels; ``-100`` entries ignored.

    The "balanced" rule: every class contributes equally to the loss in expectation. A class
    absent from the labels gets weight 0 (it has no term to weigh).
    """
    labels = labels[labels.ge(0)]
    counts = torch.bincount(labels, minlength=n_classes).double()
    if len(counts) > n_classes:
        raise ValueError(f"labels reach class {len(counts) - 1}, but only {n_classes} classes")
    weights = torch.where(counts > 0, labels.numel() / (n_classes * counts.clamp(min=1)), 0.0)
    return weights.float()


def masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the entries where ``mask`` is True (0 when none is)."""
    logits, target = logits.reshape(mask.shape), target.reshape(mask.shape)
    if not mask.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[mask], target[mask].float())


def horizon_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over horizons of each horizon's BCE over its uncensored patients ``[B, H]``."""
    terms = [masked_bce(logits[:, h], target[:, h], mask[:, h]) for h in range(mask.shape[1])]
    present = [term for h, term in enumerate(terms) if mask[:, h].any()]
    return torch.stack(present).mean() if present else logits.sum() * 0.0


def head_loss(
    name: str,
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    risk_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss of head ``name`` on one batch (masked entries contribute nothing)."""
    if name in ("binary", "confidence"):
        return masked_bce(logits, target, mask)
    if name == "horizon":
        return horizon_loss(logits, target, mask)
    if name == "risk":
        if not mask.any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits[mask], target[mask], weight=risk_weights)
    raise ValueError(f"unknown head {name!r}; expected one of {list(HEAD_NAMES)}")
