"""Weight schedules for :class:`~course_lib.weighting.ScheduledWeighting` (lesson 07).

A schedule maps (step, epoch, the term's recent loss) to a weight: constant, a linear
warm-up, off after an epoch (curriculum), or off once the term has converged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Schedule:
    """The weight of one term as a function of the step and epoch (plus optional state)."""

    def weight(self, step: int, epoch: int) -> float:
        raise NotImplementedError

    def end_epoch(self, epoch: int, mean_loss: float) -> None:
        """Hook for schedules that react to the term's epoch-mean loss."""

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` returned."""


@dataclass
class Constant(Schedule):
    """``w`` always."""

    w: float

    def weight(self, step, epoch):
        return self.w


@dataclass
class LinearWarmup(Schedule):
    """``w * min(1, step / warmup_steps)``: 0 at step 0, ``w`` from ``warmup_steps`` on.

    Lets the LM loss shape the shared layers first before an auxiliary head pulls on them.
    """

    w: float
    warmup_steps: int

    def weight(self, step, epoch):
        if self.warmup_steps <= 0:
            return self.w
        return self.w * min(1.0, step / self.warmup_steps)


@dataclass
class OffAfterEpoch(Schedule):
    """``w`` up to and including epoch ``epoch`` (0-based, as the trainer counts), then 0."""

    w: float
    epoch: int

    def weight(self, step, epoch):
        return self.w if epoch <= self.epoch else 0.0


@dataclass
class OffBelowThreshold(Schedule):
    """``w`` until the term's epoch-mean loss has stayed below ``threshold`` for
    ``patience_epochs`` consecutive epochs, then 0 for good.

    The curriculum the notes suggest for the sex loss: it is trivially learnt (0.167 ->
    0.000 by epoch 14) and after that only pushes the decoder towards sex-revealing codes.
    Permanent, so a loss that creeps back up once the term is off does not flip it on again.
    """

    w: float
    threshold: float
    patience_epochs: int = 1
    epochs_below: int = 0
    off: bool = False

    def weight(self, step, epoch):
        return 0.0 if self.off else self.w

    def end_epoch(self, epoch, mean_loss):
        self.epochs_below = self.epochs_below + 1 if mean_loss < self.threshold else 0
        if self.epochs_below >= self.patience_epochs:
            self.off = True

    def state(self):
        return {"epochs_below": self.epochs_below, "off": self.off}

    def load_state(self, state):
        self.epochs_below = int(state["epochs_below"])
        self.off = bool(state["off"])
