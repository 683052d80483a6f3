"""Metrics of the prediction heads, each next to its trivial baseline (lesson 11).

Baselines use only the TRAINING labels: the majority class (accuracy, F1) and the training
prevalence as a constant probability (AUROC 0.5 by definition, Brier score, ECE).

Calibration: ``ECE = sum_b (n_b / N) |observed_b - predicted_b|`` over 10 equal-width bins of
the predicted probability on [0, 1] (the last bin includes 1.0). For the binary, horizon and
confidence heads the probability is P(y = 1) and the observation y; for the 3-class risk head
it is the top-label confidence and whether the top label is right.

Time-dependent AUROC at horizon h (cumulative cases / dynamic controls): cases had the event
by h, controls were event-free beyond h, patients censored before h are left out (no inverse
probability of censoring weighting: with censoring independent of the outcome, as in the
simulator, it estimates the same quantity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn import metrics as skm


def expected_calibration_error(
    probabilities: Sequence[float], outcomes: Sequence[float], n_bins: int = 10
) -> float:
    """ECE with ``n_bins`` equal-width bins (see the module docstring); NaN for no data."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    outcomes = np.asarray(outcomes, dtype=np.float64)
    if probabilities.size == 0:
        return math.nan
    bins = np.minimum((probabilities * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            gap = abs(outcomes[in_bin].mean() - probabilities[in_bin].mean())
            total += in_bin.sum() / probabilities.size * gap
    return float(total)


def reliability_curve(probabilities, outcomes, n_bins: int = 10):
    """Per non-empty bin: mean predicted probability, observed frequency, count."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    outcomes = np.asarray(outcomes, dtype=np.float64)
    bins = np.minimum((probabilities * n_bins).astype(int), n_bins - 1)
    rows = [
        (probabilities[bins == b].mean(), outcomes[bins == b].mean(), int((bins == b).sum()))
        for b in range(n_bins)
        if (bins == b).any()
    ]
    return [np.array(column) for column in zip(*rows, strict=True)] if rows else [np.array([])] * 3


def reliability_diagram(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, *, ax: Axes | None = None
) -> Figure:
    """A reliability diagram, one line per ``label -> (probabilities, outcomes)`` with its
    ECE, against the diagonal of perfect calibration. Draws into ``ax`` when given, else into a
    new pyplot-free figure; returns the figure and writes nothing (the caller saves it)."""
    if ax is None:
        figure = Figure(figsize=(4.5, 4.5), layout="constrained")
        ax = figure.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for label, (probabilities, outcomes) in curves.items():
        predicted, observed, _ = reliability_curve(probabilities, outcomes)
        ece = expected_calibration_error(probabilities, outcomes)
        ax.plot(predicted, observed, marker="o", label=f"{label} (ECE {ece:.3f})")
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title=title)
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")
    return ax.figure


def _auroc(outcomes: np.ndarray, scores: np.ndarray) -> float:
    return float(skm.roc_auc_score(outcomes, scores)) if len(np.unique(outcomes)) == 2 else math.nan


def _brier(outcomes: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.mean((probabilities - outcomes) ** 2)) if outcomes.size else math.nan


def binary_metrics(
    probabilities: np.ndarray, outcomes: np.ndarray, train_prevalence: float
) -> dict:
    """A probability of class 1 against 0/1 outcomes, with the two trivial baselines."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    outcomes = np.asarray(outcomes).astype(int)
    predicted = (probabilities >= 0.5).astype(int)
    majority = int(train_prevalence >= 0.5)
    constant = np.full_like(probabilities, train_prevalence)
    f1 = skm.f1_score(outcomes, predicted, labels=[0, 1], average=None, zero_division=0)
    base_f1 = skm.f1_score(
        outcomes, np.full_like(outcomes, majority), labels=[0, 1], average=None, zero_division=0
    )
    return {
        "n": int(outcomes.size),
        "prevalence": float(outcomes.mean()) if outcomes.size else math.nan,
        "accuracy": float(skm.accuracy_score(outcomes, predicted)),
        "f1_per_class": [float(v) for v in f1],
        "macro_f1": float(np.mean(f1)),
        "confusion_matrix": skm.confusion_matrix(outcomes, predicted, labels=[0, 1]).tolist(),
        "auroc": _auroc(outcomes, probabilities),
        "ece": expected_calibration_error(probabilities, outcomes),
        "brier": _brier(outcomes, probabilities),
        "baseline": {
            "rule": f"majority class {majority}; constant probability {train_prevalence:.4f}",
            "accuracy": float(np.mean(outcomes == majority)) if outcomes.size else math.nan,
            "macro_f1": float(np.mean(base_f1)),
            "auroc": 0.5,
            "ece": expected_calibration_error(constant, outcomes),
            "brier": _brier(outcomes, constant),
        },
    }


def multiclass_metrics(
    probabilities: np.ndarray, outcomes: np.ndarray, train_counts: Sequence[int]
) -> dict:
    """Class probabilities [N, K] against labels [N], with the majority-class baseline."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    outcomes = np.asarray(outcomes).astype(int)
    n_classes = probabilities.shape[1]
    classes = list(range(n_classes))
    predicted = probabilities.argmax(axis=1)
    majority = int(np.argmax(train_counts))
    prior = np.asarray(train_counts, dtype=np.float64) / max(sum(train_counts), 1)
    f1 = skm.f1_score(outcomes, predicted, labels=classes, average=None, zero_division=0)
    base_f1 = skm.f1_score(
        outcomes, np.full_like(outcomes, majority), labels=classes, average=None, zero_division=0
    )
    present = np.unique(outcomes)
    auroc = (
        float(
            skm.roc_auc_score(
                outcomes, probabilities, multi_class="ovr", average="macro", labels=classes
            )
        )
        if len(present) == n_classes
        else math.nan
    )
    confidence = probabilities.max(axis=1)
    return {
        "n": int(outcomes.size),
        "class_frequencies": [float(np.mean(outcomes == c)) for c in classes],
        "accuracy": float(skm.accuracy_score(outcomes, predicted)),
        "f1_per_class": [float(v) for v in f1],
        "macro_f1": float(np.mean(f1)),
        "confusion_matrix": skm.confusion_matrix(outcomes, predicted, labels=classes).tolist(),
        "auroc": auroc,
        "ece": expected_calibration_error(confidence, predicted == outcomes),
        "baseline": {
            "rule": f"majority class {majority}; constant class prior {np.round(prior, 4).tolist()}",
            "accuracy": float(np.mean(outcomes == majority)) if outcomes.size else math.nan,
            "macro_f1": float(np.mean(base_f1)),
            "auroc": 0.5,
            "ece": expected_calibration_error(
                np.full(outcomes.size, prior.max()), outcomes == majority
            ),
        },
    }


def horizon_metrics(
    probabilities: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray,
    horizons_days: Sequence[int],
    train_prevalence: Sequence[float],
) -> dict:
    """Per horizon: time-dependent AUROC, ECE, Brier, against the training prevalence."""
    per_horizon = {}
    for h, days in enumerate(horizons_days):
        keep = mask[:, h].astype(bool)
        p, y = probabilities[keep, h], targets[keep, h].astype(int)
        constant = np.full_like(p, train_prevalence[h])
        per_horizon[f"{days}d"] = {
            "n": int(keep.sum()),
            "censored_before_horizon": int((~keep).sum()),
            "prevalence": float(y.mean()) if y.size else math.nan,
            "auroc": _auroc(y, p),
            "ece": expected_calibration_error(p, y),
            "brier": _brier(y, p),
            "baseline": {
                "rule": f"constant training prevalence {train_prevalence[h]:.4f}",
                "auroc": 0.5,
                "ece": expected_calibration_error(constant, y),
                "brier": _brier(y, constant),
            },
        }

    def mean(values) -> float:
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    horizons = per_horizon.values()
    return {
        "per_horizon": per_horizon,
        "auroc": mean(m["auroc"] for m in horizons),
        "ece": mean(m["ece"] for m in horizons),
        "brier": mean(m["brier"] for m in horizons),
        "baseline": {
            "rule": "constant training prevalence per horizon; summaries are means over horizons",
            "auroc": 0.5,
            "ece": mean(m["baseline"]["ece"] for m in horizons),
            "brier": mean(m["baseline"]["brier"] for m in horizons),
        },
    }


def margins(metrics: dict) -> dict[str, float]:
    """Head minus baseline for AUROC and macro-F1, baseline minus head for Brier/ECE
    (positive = the head is better), for the metrics both sides have."""
    baseline = metrics.get("baseline", {})
    out = {}
    for key in ("auroc", "macro_f1", "accuracy"):
        if key in metrics and key in baseline:
            out[key] = float(metrics[key] - baseline[key])
    for key in ("brier", "ece"):
        if key in metrics and key in baseline:
            out[key] = float(baseline[key] - metrics[key])
    return out
