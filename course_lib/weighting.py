"""Loss-weighting strategies: how named per-term losses become one scalar (lesson 07).

One interface, :class:`LossWeighting`, and one small class per strategy:

==============  =====================================================================
``static``      fixed weights (the notes' ``lm + 0.005 age + 0.005 sex``)
``scheduled``   a schedule per term: warm-up, off after an epoch, off once converged
``uncertainty`` learned homoscedastic uncertainty (Kendall, Gal & Cipolla, 2018)
``dwa``         Dynamic Weight Average from epoch-mean loss ratios (Liu et al., 2019)
``gradnorm``    weights that balance gradient norms on a shared layer (Chen et al., 2018)
``normalize``   each term divided by its running mean, so every term weighs ~1
==============  =====================================================================

How a trainer uses any of them::

    weighting = make_weighting("uncertainty", ["lm", "age", "sex"]).to(device)
    optimizer = torch.optim.AdamW([
        {"params": model.parameters()},
        {"params": weighting.parameters(), "weight_decay": 0.0},  # empty for most strategies
    ], lr=lr)
    if weighting.needs_shared_parameters:  # GradNorm only
        weighting.attach(model.last_shared_layer().parameters())
    for epoch in range(epochs):
        for batch in loader:
            terms = model(**batch).loss_terms  # {"lm": tensor, "age": tensor, ...}
            total, weights = weighting(terms, step=global_step, epoch=epoch)
            total.backward(); optimizer.step(); optimizer.zero_grad(); global_step += 1
        weighting.end_epoch(epoch, epoch_mean_losses)  # {"lm": float, ...}
    checkpoint["weighting"] = weighting.state_dict()  # resumes exactly

``weights`` are python floats (the effective multiplier of each raw term) for logging.
State lives in buffers, parameters or ``get_extra_state``, so ``state_dict()`` and
``load_state_dict()`` carry it. GradNorm and LossNormalization update their weights
only in ``train()`` mode (switch the weighting with the model: ``weighting.eval()`` for
validation); DWA and the schedules change only in ``end_epoch``.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from course_lib.losses import LOSS_TERMS
from course_lib.schedules import (  # noqa: F401 (re-exported: part of the weighting API)
    Constant,
    LinearWarmup,
    OffAfterEpoch,
    OffBelowThreshold,
    Schedule,
)

Losses = Mapping[str, torch.Tensor]


class LossWeighting(nn.Module):
    """Combine named per-term losses into one scalar."""

    needs_shared_parameters = False

    def __init__(self, terms: Sequence[str]):
        super().__init__()
        terms = list(terms)
        if not terms:
            raise ValueError(f"{type(self).__name__}: no loss term given")
        if len(set(terms)) != len(terms):
            raise ValueError(f"{type(self).__name__}: repeated loss terms in {terms}")
        self.terms: list[str] = terms

    def forward(
        self, losses: Losses, *, step: int, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the total to call ``backward()`` on and the effective weight of each term."""
        raise NotImplementedError

    def end_epoch(self, epoch: int, mean_losses: Mapping[str, float]) -> None:
        """Called once per epoch with each term's epoch-mean raw loss; most strategies ignore it."""

    def stack_losses(self, losses: Losses) -> torch.Tensor:
        """``[n_terms]`` raw losses in ``self.terms`` order; any other set of names is an error.

        Public so a new strategy (lesson 07's exercise) is written like the built-in ones."""
        if set(losses) != set(self.terms):
            raise ValueError(
                f"{type(self).__name__}: expected loss terms {self.terms}, got {list(losses)}"
            )
        return torch.stack([losses[term].reshape(()).float() for term in self.terms])

    def _epoch_means(self, mean_losses: Mapping[str, float]) -> list[float]:
        missing = [term for term in self.terms if term not in mean_losses]
        if missing:
            raise ValueError(f"{type(self).__name__}.end_epoch: no epoch mean for {missing}")
        return [float(mean_losses[term]) for term in self.terms]

    def _require_non_negative(self, values: Sequence[float] | torch.Tensor) -> None:
        """Ratio and likelihood strategies break on a negative loss (the diversity loss)."""
        negative = [term for term, value in zip(self.terms, values, strict=True) if value < 0]
        if negative:
            raise ValueError(
                f"{type(self).__name__} needs losses >= 0, but {negative} are negative; "
                "shift such a term first (e.g. diversity + log(n_codes) >= 0)"
            )

    def weights_dict(self, weights: torch.Tensor) -> dict[str, float]:
        """``{term: weight}`` as python floats, the second value ``forward`` returns (for logs)."""
        return dict(zip(self.terms, weights.detach().cpu().tolist(), strict=True))


# --- static ------------------------------------------------------------------------------
def _per_term(
    owner: str, given: Mapping[str, Any], terms: Sequence[str] | None, default_lm: Any
) -> dict[str, Any]:
    """``given`` in ``terms`` order, ``lm`` filled with ``default_lm`` unless given.

    Without ``terms``: ``lm`` first (when the caller did not name it), then ``given``.
    With ``terms``: ``given`` must cover every term but ``lm`` and nothing else.
    """
    if terms is None:
        terms = ([] if "lm" in given else ["lm"]) + list(given)
    missing = [term for term in terms if term != "lm" and term not in given]
    stray = [name for name in given if name not in terms]
    if missing or stray:
        raise ValueError(
            f"{owner}: need a value for every term of {list(terms)} (lm defaults to 1); "
            f"missing {missing}, unknown {stray}"
        )
    return {term: given.get(term, default_lm) for term in terms}


class StaticWeighting(LossWeighting):
    """``total = sum_i w_i L_i`` with fixed weights; ``lm`` is 1 unless given.

    ``terms`` (optional) fixes the order and set of terms, e.g. heads without an LM loss.
    """

    def __init__(self, weights: Mapping[str, float], terms: Sequence[str] | None = None):
        weights = _per_term("StaticWeighting", weights, terms, 1.0)
        super().__init__(list(weights))
        self.register_buffer("weights", torch.tensor([float(w) for w in weights.values()]))

    def forward(self, losses, *, step, epoch):
        raw = self.stack_losses(losses)
        return (self.weights * raw).sum(), self.weights_dict(self.weights)


# --- scheduled ---------------------------------------------------------------------------
class ScheduledWeighting(LossWeighting):
    """``total = sum_i w_i(step, epoch) L_i``; a bare number means :class:`Constant`.

    ``lm`` gets ``Constant(1.0)`` unless given; ``terms`` as in :class:`StaticWeighting`.
    Schedules with state (:class:`OffBelowThreshold`) are saved through ``get_extra_state``.
    """

    def __init__(
        self, schedules: Mapping[str, Schedule | float], terms: Sequence[str] | None = None
    ):
        schedules = _per_term("ScheduledWeighting", schedules, terms, Constant(1.0))
        super().__init__(list(schedules))
        # Copies: two weightings built from the same Schedule objects must not share state.
        self.schedules: dict[str, Schedule] = {
            term: copy.deepcopy(schedule)
            if isinstance(schedule, Schedule)
            else Constant(float(schedule))
            for term, schedule in schedules.items()
        }

    def forward(self, losses, *, step, epoch):
        raw = self.stack_losses(losses)
        weights = [self.schedules[term].weight(step, epoch) for term in self.terms]
        total = (raw * raw.new_tensor(weights)).sum()
        return total, dict(zip(self.terms, weights, strict=True))

    def end_epoch(self, epoch, mean_losses):
        for term, mean_loss in zip(self.terms, self._epoch_means(mean_losses), strict=True):
            self.schedules[term].end_epoch(epoch, mean_loss)

    def get_extra_state(self) -> dict[str, Any]:
        return {term: schedule.state() for term, schedule in self.schedules.items()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        for term, schedule_state in state.items():
            self.schedules[term].load_state(schedule_state)


# --- uncertainty (Kendall, Gal & Cipolla 2018) -------------------------------------------
TaskKind = Literal["regression", "classification"]
DEFAULT_KINDS: dict[str, TaskKind] = {name: term.kind for name, term in LOSS_TERMS.items()}


class UncertaintyWeighting(LossWeighting):
    """Learned task uncertainty: one log-variance ``s_i = log sigma_i^2`` per term.

    * regression (Gaussian likelihood): ``L_i / (2 sigma_i^2) + log sigma_i
      = 0.5 exp(-s_i) L_i + s_i / 2``, effective weight ``0.5 exp(-s_i)``;
    * classification (softmax likelihood): ``L_i / sigma_i^2 + log sigma_i
      = exp(-s_i) L_i + s_i / 2``, effective weight ``exp(-s_i)``.

    For a fixed loss the optimum is ``s = log L`` (regression) or ``log 2L``
    (classification): a term whose loss goes to 0 (the notes' sex loss) drives ``s`` to
    -inf and its weight to infinity. So ``s`` is projected onto ``clamp = (-4, 4)``
    before every use: the weight of a term stays within ``e^-4 ~ 0.018`` and ``e^4 ~ 55``
    times its unit weight, a 3,000-fold range that still lets the strategy reorder the
    terms but cannot switch one off or let a converged one dominate. Projection (not a
    clamp inside the graph) keeps the gradient alive at the bounds.

    ``s`` is a parameter: the trainer adds ``weighting.parameters()`` to the optimizer,
    without weight decay (decay would pull every ``s`` towards 0, i.e. weight 1).
    The total can be negative (the ``s / 2`` terms); only its gradient matters.
    """

    def __init__(
        self,
        terms: Sequence[str],
        kinds: Mapping[str, TaskKind] | None = None,
        clamp: tuple[float, float] = (-4.0, 4.0),
    ):
        super().__init__(terms)
        kinds = {**DEFAULT_KINDS, **dict(kinds or {})}
        missing = [term for term in self.terms if term not in kinds]
        bad = {
            term: kinds[term]
            for term in self.terms
            if term in kinds and kinds[term] not in ("regression", "classification")
        }
        if missing or bad:
            raise ValueError(
                "UncertaintyWeighting: every term needs kind 'regression' or 'classification'; "
                f"missing {missing}, invalid {bad}"
            )
        low, high = clamp
        if not low < high:
            raise ValueError(f"UncertaintyWeighting: clamp must be (low, high), got {clamp}")
        self.clamp = (float(low), float(high))
        self.kinds = {term: kinds[term] for term in self.terms}
        scale = [0.5 if self.kinds[term] == "regression" else 1.0 for term in self.terms]
        self.register_buffer("likelihood_scale", torch.tensor(scale))
        self.log_vars = nn.Parameter(torch.zeros(len(self.terms)))

    def forward(self, losses, *, step, epoch):
        raw = self.stack_losses(losses)
        with torch.no_grad():
            self.log_vars.clamp_(*self.clamp)
        self._require_non_negative(raw.detach().cpu().tolist())
        weights = self.likelihood_scale * torch.exp(-self.log_vars)
        total = (weights * raw + 0.5 * self.log_vars).sum()
        return total, self.weights_dict(weights)


# --- Dynamic Weight Average (Liu, Johns & Davison 2019) ----------------------------------
class DynamicWeightAverage(LossWeighting):
    """``w_i(t) = K exp(r_i(t-1) / T) / sum_j exp(r_j(t-1) / T)``,
    ``r_i(t-1) = L_i(t-1) / L_i(t-2)`` from epoch-mean losses; ``K`` terms, temperature ``T``.

    A term whose loss fell more slowly than the others (ratio closer to 1) gets more
    weight. The weights sum to K and are all 1 for the first two epochs (no ratio yet).
    A larger T flattens them towards 1. A term whose loss is near 0 (the notes' sex loss
    at 0.000) has a ratio of noise, 2e-5 / 1e-5 = 2, and can grab the weight: switch such
    a term off first (:class:`OffBelowThreshold`) or leave it out of ``terms``.
    """

    def __init__(self, terms: Sequence[str], temperature: float = 2.0):
        super().__init__(terms)
        if temperature <= 0:
            raise ValueError(f"DynamicWeightAverage: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        # The last two epochs' means, oldest first; NaN until that many epochs have ended.
        self.register_buffer("history", torch.full((2, len(self.terms)), math.nan))
        self.register_buffer("weights", torch.ones(len(self.terms)))

    def forward(self, losses, *, step, epoch):
        raw = self.stack_losses(losses)
        return (self.weights * raw).sum(), self.weights_dict(self.weights)

    def end_epoch(self, epoch, mean_losses):
        means = self._epoch_means(mean_losses)
        self._require_non_negative(means)
        means = torch.tensor(means, device=self.history.device)
        self.history.copy_(torch.stack([self.history[1], means]))
        if torch.isnan(self.history).any():
            return
        ratios = self.history[1] / self.history[0].clamp(min=1e-12)
        self.weights.copy_(len(self.terms) * torch.softmax(ratios / self.temperature, dim=0))


# --- GradNorm (Chen, Badrinarayanan, Lee & Rabinovich 2018) ------------------------------
class GradNorm(LossWeighting):
    """Weights that give every term a gradient on the shared layer in proportion to how
    far behind it is.

    At each training step, on the last shared layer ``W``:

    * ``G_i = ||grad_W (w_i L_i)|| = w_i ||grad_W L_i||``;
    * ``r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))`` (``L(0)``: the first step's losses);
    * target ``G_avg * r_i ** alpha``, detached; ``L_grad = sum_i |G_i - target_i|``;
    * ``w <- w - lr * dL_grad/dw``, kept >= ``min_weight``, then rescaled to ``sum w = K``.

    ``total = sum_i w_i L_i`` uses the weights of this step as constants: the model never
    pushes on the weights, only ``L_grad`` does, so the weights are buffers, not
    parameters, and GradNorm updates them itself with plain gradient descent at ``lr``.
    ``dL_grad/dw_i = sign(G_i - target_i) ||grad_W L_i||``: a step moves a weight by
    ``lr`` times a gradient norm, so choose ``lr`` for the model's norms (0.025 suits
    norms near 1; ``last_gradnorm_loss`` is logged to judge).

    The trainer calls :meth:`attach` once with the last shared layer's parameters
    (``model.last_shared_layer().parameters()``); then each ``forward`` in train mode with
    grad enabled does K extra ``torch.autograd.grad`` passes (``retain_graph=True``) from
    the losses to ``W`` only, before the trainer's own ``total.backward()``.
    """

    needs_shared_parameters = True

    def __init__(
        self,
        terms: Sequence[str],
        alpha: float = 1.5,
        lr: float = 0.025,
        min_weight: float = 1e-3,
    ):
        super().__init__(terms)
        if lr <= 0:
            raise ValueError(f"GradNorm: lr must be > 0, got {lr}")
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.min_weight = float(min_weight)
        self.register_buffer("weights", torch.ones(len(self.terms)))
        self.register_buffer("initial_losses", torch.full((len(self.terms),), math.nan))
        self.shared_parameters: list[nn.Parameter] = []
        self.last_gradnorm_loss = math.nan  # for logging

    def attach(self, shared_parameters: Iterable[nn.Parameter]) -> GradNorm:
        """Name ``W``, the last layer shared by every term (a plain list: not in the state)."""
        params = [p for p in shared_parameters if p.requires_grad]
        if not params:
            raise ValueError("GradNorm.attach: no trainable shared parameter given")
        self.shared_parameters = params
        return self

    def forward(self, losses, *, step, epoch):
        raw = self.stack_losses(losses)
        weights = self.weights.clone()  # this step's weights, untouched by the update below
        if self.training and torch.is_grad_enabled():
            self._update_weights(losses)
        return (weights * raw).sum(), self.weights_dict(weights)

    def _update_weights(self, losses: Losses) -> None:
        if not self.shared_parameters:
            raise RuntimeError(
                "GradNorm: call attach(model.last_shared_layer().parameters()) first"
            )
        raw = torch.stack([losses[term].detach().reshape(()).float() for term in self.terms])
        self._require_non_negative(raw.cpu().tolist())
        if torch.isnan(self.initial_losses).any():
            self.initial_losses.copy_(raw.clamp(min=1e-12))
        grad_norms = torch.stack([self._grad_norm(losses[term]) for term in self.terms])

        weights = self.weights.clone().requires_grad_(True)
        scaled_norms = weights * grad_norms  # G_i
        relative = raw / self.initial_losses
        target = (scaled_norms.mean() * (relative / relative.mean()) ** self.alpha).detach()
        gradnorm_loss = (scaled_norms - target).abs().sum()
        (weight_grad,) = torch.autograd.grad(gradnorm_loss, weights)
        with torch.no_grad():
            updated = (self.weights - self.lr * weight_grad).clamp(min=self.min_weight)
            self.weights.copy_(len(self.terms) * updated / updated.sum())
        self.last_gradnorm_loss = float(gradnorm_loss.detach())

    def _grad_norm(self, loss: torch.Tensor) -> torch.Tensor:
        """``||grad_W L||`` (0 for a term that does not reach W), detached."""
        grads = torch.autograd.grad(
            loss, self.shared_parameters, retain_graph=True, allow_unused=True
        )
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        return torch.stack(squares).sum().sqrt() if squares else loss.new_zeros(()).float()


# --- loss normalisation ------------------------------------------------------------------
class LossNormalization(LossWeighting):
    """``total = sum_i b_i L_i / m_i``, ``m_i`` the running mean of ``|L_i|`` (EMA, detached).

    ``m_i <- momentum * m_i + (1 - momentum) * |L_i|`` at each training step (the first
    step sets ``m_i = |L_i|``), so every term contributes about ``b_i`` (default 1) whatever
    its scale: an MSE in the hundreds and a cross-entropy of 0.01 weigh the same. ``m_i`` is
    floored at ``min_scale`` so a term that reaches 0 (the sex loss) is amplified at most
    ``1 / min_scale`` times instead of without bound.
    """

    def __init__(
        self,
        terms: Sequence[str],
        momentum: float = 0.99,
        weights: Mapping[str, float] | None = None,
        min_scale: float = 1e-3,
    ):
        super().__init__(terms)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"LossNormalization: momentum must be in [0, 1), got {momentum}")
        weights = dict(weights or {})
        stray = [name for name in weights if name not in self.terms]
        if stray:
            raise ValueError(f"LossNormalization: weights for unknown term(s) {stray}")
        self.momentum = float(momentum)
        self.min_scale = float(min_scale)
        base = [float(weights.get(term, 1.0)) for term in self.terms]
        self.register_buffer("base_weights", torch.tensor(base))
        self.register_buffer("running_mean", torch.full((len(self.terms),), math.nan))

    def forward(self, losses, *, step, epoch):
        raw = self.stack_losses(losses)
        if self.training:
            magnitude = raw.detach().abs()
            if torch.isnan(self.running_mean).any():
                self.running_mean.copy_(magnitude)
            else:
                self.running_mean.lerp_(magnitude, 1.0 - self.momentum)
        scale = self.running_mean
        if torch.isnan(scale).any():  # evaluated before any training step: this batch's own
            scale = raw.detach().abs()
        weights = self.base_weights / scale.clamp(min=self.min_scale)
        return (weights * raw).sum(), self.weights_dict(weights)


# --- construction from names -------------------------------------------------------------
STRATEGIES: dict[str, type[LossWeighting]] = {
    "static": StaticWeighting,
    "scheduled": ScheduledWeighting,
    "uncertainty": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
    "gradnorm": GradNorm,
    "normalize": LossNormalization,
}


def make_weighting(name: str, terms: Sequence[str], **options: Any) -> LossWeighting:
    """The strategy called ``name`` for ``terms``.

    Options are the strategy's keyword arguments: ``static`` takes ``weights={...}`` and
    ``scheduled`` ``schedules={...}`` (each covering every term but ``lm``, which defaults
    to 1); e.g. ``make_weighting("dwa", terms, temperature=2.0)``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown loss weighting {name!r}; choose one of {sorted(STRATEGIES)}")
    cls = STRATEGIES[name]
    parameters = inspect.signature(cls.__init__).parameters
    accepted = [p for p in parameters if p not in ("self", "terms")]
    unknown = [option for option in options if option not in accepted]
    if unknown:
        raise ValueError(
            f"loss weighting {name!r}: unknown option(s) {unknown}; accepts {accepted}"
        )
    required = [
        p for p in accepted if parameters[p].default is inspect.Parameter.empty and p not in options
    ]
    if required:
        raise ValueError(f"loss weighting {name!r} needs the option(s) {required}")
    return cls(terms=list(terms), **options)


def parse_loss_weights(text: str) -> dict[str, float]:
    """``"age=0.001,sex=0.001"`` -> ``{"age": 0.001, "sex": 0.001}`` (command-line form).

    Blank text gives ``{}``; spaces around items are ignored. Weights must be finite and
    >= 0, each name given once.
    """
    weights: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = (piece.strip() for piece in item.partition("="))
        if not sep or not name:
            raise ValueError(f"loss weight {item!r}: expected NAME=VALUE, e.g. 'age=0.001'")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"loss weight {item!r}: {value!r} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"loss weight {item!r}: expected a finite number >= 0")
        if name in weights:
            raise ValueError(f"loss weight {item!r}: {name!r} is given twice")
        weights[name] = weight
    return weights
