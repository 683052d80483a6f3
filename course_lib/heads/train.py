"""Training the prediction heads on frozen features: one by one or jointly (lesson 11).

One by one (:func:`fit_head`): AdamW on mini-batches of the training split, the validation
loss after every epoch, early stopping after ``patience`` epochs without improvement, and the
best epoch's weights restored. Only then is the head marked trained.

Jointly (:func:`fit_joint`): all heads share ONE trunk (``Linear(256) -> ReLU -> Dropout``,
hard parameter sharing; each head keeps its own output layer) and the per-head losses are
combined by a :mod:`course_lib.weighting` strategy (``uncertainty`` by default; ``static``
with every weight 1, ``dwa``, ``normalize`` and ``gradnorm`` on the shared trunk's first layer
work too). Early stopping watches the UNWEIGHTED sum of validation losses, because the
weights themselves move. Each saved head gets a copy of the shared trunk, so it has the same
architecture and file format as a head trained alone.
TODO (documented, not built): adding the generator's LM loss as one more joint term would
need the PromptBart unfrozen and batches of token sequences instead of cached features.

The confidence head's target is self-supervised: "is the binary head right on this patient?"
(prediction at threshold 0.5 equals LVEF_REDUCED). For the training patients this comes from
3-fold cross-fitting (a binary head fitted on two folds predicts the third), so the target
reflects held-out errors, not memorised ones; for validation and test patients it comes from
the reference binary head fitted on the whole training split. The alternative, disagreement
within an ensemble, needs no labels at all but measures model uncertainty, not error.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from course_lib.heads.metrics import binary_metrics, horizon_metrics, multiclass_metrics
from course_lib.heads.modules import (
    HEAD_NAMES,
    PredictionHead,
    class_weights,
    head_loss,
    head_spec,
    make_head,
)
from course_lib.heads.splits import SplitIndex
from course_lib.heads.targets import HeadTargets

CONFIDENCE_FOLDS = 3


@dataclass
class FitConfig:
    """Optimisation settings shared by every head."""

    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 10
    dropout: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    """Fitted heads (trained flag set) and how training went."""

    heads: dict[str, PredictionHead]
    best_epoch: int
    best_val_loss: float
    stopped: str  # "early_stopping" or "max_epochs"
    history: list[dict] = field(default_factory=list)


def _labelled_rows(targets: HeadTargets, names: Sequence[str], rows: np.ndarray) -> np.ndarray:
    keep = np.zeros(len(rows), dtype=bool)
    for name in names:
        _, mask = targets.target(name)
        row_mask = mask[torch.as_tensor(rows)]
        keep |= (row_mask.any(dim=1) if row_mask.dim() == 2 else row_mask).numpy()
    return rows[keep]


def _losses(heads, features, targets, rows, risk_weights) -> dict[str, torch.Tensor]:
    index = torch.as_tensor(rows)
    batch = features[index]
    out = {}
    for name, head in heads.items():
        target, mask = targets.target(name)
        out[name] = head_loss(name, head(batch), target[index], mask[index], risk_weights)
    return out


def _risk_weights(targets: HeadTargets, split: SplitIndex) -> torch.Tensor:
    return class_weights(targets.risk[torch.as_tensor(split.train)], 3)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run tiny-MLP steps on one intra-op thread, then restore the caller's setting.

    A head's step is a few microseconds of arithmetic; on a busy 2-core machine the thread
    hand-offs cost far more (15 epochs of one head: 7.5 s with 2 threads, 0.2 s with 1).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _loop(
    heads, parameters, combine, features, targets, split, config, weighting=None
) -> FitResult:
    """The shared epoch loop of :func:`fit_head` and :func:`fit_joint`."""
    with _one_thread():
        return _epochs(heads, parameters, combine, features, targets, split, config, weighting)


def _epochs(heads, parameters, combine, features, targets, split, config, weighting) -> FitResult:
    names = list(heads)
    train_rows = _labelled_rows(targets, names, split.train)
    val_rows = _labelled_rows(targets, names, split.val)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(f"heads {names}: no labelled patient in the training or validation split")
    for head in heads.values():
        head.set_standardization(features[torch.as_tensor(split.train)])
    risk_weights = _risk_weights(targets, split) if "risk" in heads else None
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    best = (math.inf, -1, None)
    history, step, stopped = [], 0, "max_epochs"
    for epoch in range(config.epochs):
        for module in heads.values():
            module.train()
        order = train_rows[torch.randperm(len(train_rows), generator=generator).numpy()]
        sums = dict.fromkeys(names, 0.0)
        for start in range(0, len(order), config.batch_size):
            losses = _losses(
                heads, features, targets, order[start : start + config.batch_size], risk_weights
            )
            total = combine(losses, step, epoch)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            step += 1
            for name, loss in losses.items():
                sums[name] += float(loss.detach())
        n_batches = math.ceil(len(order) / config.batch_size)
        if weighting is not None:
            weighting.end_epoch(epoch, {name: value / n_batches for name, value in sums.items()})
        for module in heads.values():
            module.eval()
        with torch.no_grad():
            val = {
                k: float(v)
                for k, v in _losses(heads, features, targets, val_rows, risk_weights).items()
            }
        val_loss = sum(val.values())
        history.append({"epoch": epoch, "val_loss": val_loss, "val_terms": val})
        if val_loss < best[0] - 1e-6:
            best = (val_loss, epoch, {n: copy.deepcopy(h.state_dict()) for n, h in heads.items()})
        elif epoch - best[1] >= config.patience:
            stopped = "early_stopping"
            break
    for name, head in heads.items():
        head.load_state_dict(best[2][name])
        head.mark_trained()
        head.eval()
    return FitResult(dict(heads), best[1], best[0], stopped, history)


def fit_head(
    name: str,
    features: torch.Tensor,
    targets: HeadTargets,
    split: SplitIndex,
    config: FitConfig | None = None,
) -> FitResult:
    """Train one head alone on frozen ``features`` [N, D] with early stopping."""
    config = config or FitConfig()
    torch.manual_seed(config.seed)
    head = make_head(name, features.shape[1], len(targets.horizons_days), config.dropout)

    def combine(losses, step, epoch):
        return losses[name]

    return _loop({name: head}, head.parameters(), combine, features, targets, split, config)


def fit_joint(
    names: Sequence[str],
    features: torch.Tensor,
    targets: HeadTargets,
    split: SplitIndex,
    config: FitConfig | None = None,
    weighting: str = "uncertainty",
    weighting_options: dict | None = None,
) -> FitResult:
    """Train ``names`` together: shared trunk, losses combined by a weighting strategy."""
    from course_lib.weighting import make_weighting

    config = config or FitConfig()
    torch.manual_seed(config.seed)
    heads = {
        name: make_head(name, features.shape[1], len(targets.horizons_days), config.dropout)
        for name in names
    }
    shared_trunk = heads[names[0]].trunk
    for head in heads.values():
        head.trunk = shared_trunk  # one module object: its parameters are shared
    options = dict(weighting_options or {})
    if weighting == "static":
        options.setdefault("weights", dict.fromkeys(names, 1.0))
    if weighting == "uncertainty":
        options.setdefault("kinds", dict.fromkeys(names, "classification"))
    combiner = make_weighting(weighting, list(names), **options)
    if combiner.needs_shared_parameters:
        combiner.attach(shared_trunk[0].parameters())
    container = torch.nn.ModuleDict(heads)
    parameters = [
        {"params": list(container.parameters())},
        {"params": list(combiner.parameters()), "weight_decay": 0.0},
    ]

    def combine(losses, step, epoch):
        total, _ = combiner(losses, step=step, epoch=epoch)
        return total

    result = _loop(heads, parameters, combine, features, targets, split, config, combiner)
    result.heads = {name: copy.deepcopy(head) for name, head in heads.items()}  # unshare
    return result


# ------------------------------------------------------------------------ confidence head
def binary_correct(
    head: PredictionHead, features: torch.Tensor, targets: HeadTargets, rows
) -> torch.Tensor:
    """1.0 where the binary head (threshold 0.5) is right on ``rows``, else 0.0."""
    index = torch.as_tensor(rows)
    probabilities = head.predict(features[index]).squeeze(-1)
    return ((probabilities >= 0.5).float() == targets.binary[index]).float()


def confidence_targets(
    features: torch.Tensor,
    targets: HeadTargets,
    split: SplitIndex,
    reference_binary: PredictionHead,
    config: FitConfig | None = None,
) -> torch.Tensor:
    """Float [N]: 1 where the binary head is right, 0 where wrong, NaN without a label.

    Training rows: cross-fitted over :data:`CONFIDENCE_FOLDS` folds; validation and test
    rows: ``reference_binary`` (fitted on the whole training split).
    """
    config = config or FitConfig()
    confidence = torch.full((len(targets.subject_ids),), math.nan)
    labelled = ~torch.isnan(targets.binary)
    train_rows = split.train[labelled[torch.as_tensor(split.train)].numpy()]
    folds = np.array_split(
        np.random.default_rng(config.seed).permutation(train_rows), CONFIDENCE_FOLDS
    )
    for k, held_out in enumerate(folds):
        fitting = np.concatenate([fold for j, fold in enumerate(folds) if j != k])
        fold_split = SplitIndex(np.sort(fitting), split.val, held_out, "patient", f"fold {k}")
        fold_head = fit_head("binary", features, targets, fold_split, config).heads["binary"]
        confidence[torch.as_tensor(held_out)] = binary_correct(
            fold_head, features, targets, held_out
        )
    for rows in (split.val, split.test):
        rows = rows[labelled[torch.as_tensor(rows)].numpy()]
        confidence[torch.as_tensor(rows)] = binary_correct(
            reference_binary, features, targets, rows
        )
    return confidence


# ------------------------------------------------------------------------------- evaluation
def evaluate_head(
    name: str,
    head: PredictionHead,
    features: torch.Tensor,
    targets: HeadTargets,
    rows: np.ndarray,
    train_rows: np.ndarray,
) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Metrics of ``head`` on ``rows`` with baselines from ``train_rows``, and the
    ``label -> (probabilities, outcomes)`` pairs of its reliability diagram."""
    spec = head_spec(name, len(targets.horizons_days))
    target, mask = targets.target(name)
    index, train_index = torch.as_tensor(rows), torch.as_tensor(train_rows)
    probabilities = head.predict(features[index], multiclass=spec.multiclass).numpy()
    if name == "horizon":
        train_target, train_mask = target[train_index], mask[train_index]
        prevalence = [
            float(train_target[train_mask[:, h], h].mean()) for h in range(train_mask.shape[1])
        ]
        y, m = target[index].numpy(), mask[index].numpy()
        metrics = horizon_metrics(probabilities, y, m, targets.horizons_days, prevalence)
        curves = {
            f"{days}d": (probabilities[m[:, h], h], y[m[:, h], h])
            for h, days in enumerate(targets.horizons_days)
        }
        return metrics, curves
    keep = mask[index].numpy()
    y = target[index].numpy()[keep]
    train_y = target[train_index][mask[train_index]].numpy()
    if name == "risk":
        counts = np.bincount(train_y.astype(int), minlength=3).tolist()
        p = probabilities[keep]
        metrics = multiclass_metrics(p, y, counts)
        return metrics, {"top-label": (p.max(axis=1), (p.argmax(axis=1) == y).astype(float))}
    p = probabilities[keep, 0]
    metrics = binary_metrics(p, y, float(train_y.mean()))
    return metrics, {name: (p, y)}


@dataclass
class TrainedHeads:
    """What :func:`train_heads` returns, per head: the head, test metrics, calibration pairs."""

    heads: dict[str, PredictionHead]
    metrics: dict[str, dict]
    curves: dict[str, dict]
    fits: dict[str, dict]
    mode: str


def train_heads(
    features: torch.Tensor,
    targets: HeadTargets,
    split: SplitIndex,
    names: Sequence[str] = HEAD_NAMES,
    *,
    joint: bool = False,
    weighting: str = "uncertainty",
    config: FitConfig | None = None,
) -> TrainedHeads:
    """Train ``names`` (one by one, or jointly) and evaluate each on the test split."""
    config = config or FitConfig()
    unknown = [name for name in names if name not in HEAD_NAMES]
    if unknown or not names:
        raise ValueError(f"heads must be some of {list(HEAD_NAMES)}, got {list(names)}")
    fits: dict[str, dict] = {}
    heads: dict[str, PredictionHead] = {}
    if "confidence" in names or ("binary" in names and not joint):
        reference = fit_head("binary", features, targets, split, config)
        if "confidence" in names:
            targets.confidence = confidence_targets(
                features, targets, split, reference.heads["binary"], config
            )
        if not joint and "binary" in names:
            heads["binary"] = reference.heads["binary"]
            fits["binary"] = _fit_summary(reference)
    if joint:
        result = fit_joint(list(names), features, targets, split, config, weighting)
        heads = result.heads
        fits = dict.fromkeys(names, _fit_summary(result) | {"weighting": weighting})
    else:
        for name in names:
            if name not in heads:
                result = fit_head(name, features, targets, split, config)
                heads[name] = result.heads[name]
                fits[name] = _fit_summary(result)
    metrics, curves = {}, {}
    for name in names:
        metrics[name], curves[name] = evaluate_head(
            name, heads[name], features, targets, split.test, split.train
        )
    return TrainedHeads(heads, metrics, curves, fits, "joint" if joint else "separate")


def _fit_summary(result: FitResult) -> dict:
    return {
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "epochs_run": len(result.history),
        "stopped": result.stopped,
    }


def compare_joint_and_separate(
    features: torch.Tensor,
    targets: HeadTargets,
    split: SplitIndex,
    names: Sequence[str] = HEAD_NAMES,
    *,
    weighting: str = "uncertainty",
    config: FitConfig | None = None,
) -> dict[str, dict[str, dict]]:
    """``{"separate": {head: metrics}, "joint": {head: metrics}}`` on the same test split."""
    separate = train_heads(features, targets, split, names, joint=False, config=config)
    joint = train_heads(
        features, targets, split, names, joint=True, weighting=weighting, config=config
    )
    return {"separate": separate.metrics, "joint": joint.metrics}
