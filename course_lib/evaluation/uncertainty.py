"""Bootstrap intervals: how much of a metric is the sample, not the generator? (lesson 09)

Every metric of the evaluation gets ``<key>_ci = [low, high]``, a percentile bootstrap
interval (``LEVEL`` = 90%) over the patients it was computed from. Two kinds, both cheap on 2
cores:

* **Per-record scores** (a detection classifier's out-of-fold scores, a synthetic patient's
  "is a copy" or "closer to train" flag, alpha/beta/authenticity indicators): the scores are
  resampled with replacement ``RECORD_RESAMPLES`` (200) times and the summary recomputed; no
  model is refitted, so the interval holds the sampling noise of the evaluation set, not of
  the fit.
* **Cohort statistics** (JS divergence, R², unique codes, validity rates, distribution
  distances...): the synthetic patients are resampled ``COHORT_RESAMPLES`` (10) times and the
  cheap metric families recomputed (about 0.5 s per resample at 2,000 patients); the spread
  is centred on the observed value (:func:`bootstrap_cohort` says why). Ten resamples give a
  rough interval, the price of keeping the evaluation within seconds; pass more
  (``evaluate_cohorts(..., n_resamples=...)``) for a publication figure.

A value is as good as real data when its interval overlaps the floor's interval (the same
bootstrap applied to the reference sample). Two known limits: counts of distinct codes
(``unique_codes``, ``coverage``) vary more between two samples than between resamples of one,
so their intervals are too narrow (read them against the floor only); and a re-centred
interval of a distance near 0 may dip below 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from course_lib.cohort import Cohort

LEVEL = 0.90
RECORD_RESAMPLES = 200
COHORT_RESAMPLES = 10

Interval = tuple[float, float]
NAN_INTERVAL: Interval = (math.nan, math.nan)


def percentile_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The central ``level`` percentile interval of bootstrap values (NaNs ignored)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return NAN_INTERVAL
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_records(
    statistic: Callable[[np.ndarray], float],
    n_records: int,
    *,
    seed: int = 0,
    n_resamples: int = RECORD_RESAMPLES,
    level: float = LEVEL,
) -> Interval:
    """Interval of ``statistic(rows)`` over resampled row indices ``rows`` of ``n_records``."""
    if n_records == 0:
        return NAN_INTERVAL
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n_records, n_records)) for _ in range(max(n_resamples, 1))]
    return percentile_interval(values, level)


def bootstrap_mean(values: Sequence[float], *, seed: int = 0, level: float = LEVEL) -> Interval:
    """Interval of the mean of per-record values (e.g. 0/1 flags)."""
    values = np.asarray(values, dtype=np.float64)
    return bootstrap_records(
        lambda rows: float(values[rows].mean()), len(values), seed=seed, level=level
    )


# While a bootstrap runs, the real cohort's side of every comparison is the same each time:
# ``remembered`` keeps it per cohort object (and only then, so a cohort edited between two
# evaluations is never read from a stale memo).
_MEMO: ContextVar[dict | None] = ContextVar("evaluation_memo", default=None)


@contextmanager
def remembering() -> Iterator[None]:
    """Let :func:`remembered` reuse results inside this block."""
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def remembered(cohort: Cohort, name: str, compute: Callable[[Cohort], object]) -> object:
    """``compute(cohort)``, computed once per cohort object inside :func:`remembering`."""
    memo = _MEMO.get()
    if memo is None:
        return compute(cohort)
    key = (id(cohort), name)
    if key in memo and memo[key][0] is cohort:
        return memo[key][1]
    value = compute(cohort)
    memo[key] = (cohort, value)  # holding the cohort keeps its id from being reused
    return value


def resample_cohort(cohort: Cohort, rng: np.random.Generator) -> Cohort:
    """The cohort's patients drawn with replacement (same size; outcomes dropped)."""
    rows = rng.integers(0, len(cohort), len(cohort))
    return Cohort([cohort.patients[row] for row in rows])


def bootstrap_cohort(
    metrics: Callable[[Cohort], Mapping[str, float]],
    cohort: Cohort,
    observed: Mapping[str, float],
    *,
    seed: int = 0,
    n_resamples: int = COHORT_RESAMPLES,
    level: float = LEVEL,
) -> dict[str, Interval]:
    """``key -> interval`` of every key of ``observed`` (``metrics(cohort)``).

    A resample with replacement holds about 63% distinct patients, which shifts statistics
    that count distinct things (unique codes, coverage, JS divergence); so the interval is the
    spread of the resampled values around their median, centred on the observed value.
    """
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {key: [] for key in observed}
    with remembering():
        for _ in range(max(n_resamples, 1)):
            resampled = metrics(resample_cohort(cohort, rng))
            for key in draws:
                draws[key].append(float(resampled.get(key, math.nan)))
    intervals = {}
    for key, values in draws.items():
        low, high = percentile_interval(values, level)
        finite = np.asarray(values)[np.isfinite(values)]
        centre = float(np.median(finite)) if finite.size else math.nan
        value = float(observed[key])
        low, high = value + low - centre, value + high - centre
        if value >= 0 and finite.size and finite.min() >= 0:
            low = max(low, 0.0)  # re-centring must not push a rate or a distance below 0
        intervals[key] = (low, high)
    return intervals


def intervals_overlap(first: Interval, second: Interval) -> bool:
    """True when two intervals share a point (False when either is undefined)."""
    if any(math.isnan(bound) for bound in (*first, *second)):
        return False
    return first[0] <= second[1] and second[0] <= first[1]


def auroc_with_interval(
    labels: Sequence[int], scores: Sequence[float], *, seed: int = 0, level: float = LEVEL
) -> tuple[float, Interval]:
    """AUROC of ``scores`` for 0/1 ``labels`` and its bootstrap interval over the records.

    The scores are ranked once; a resample only reweights the records (multiplicities), so
    each AUROC is O(n) (ties count one half, as in ``sklearn.metrics.roc_auc_score``).
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    _, group = np.unique(scores, return_inverse=True)  # groups in increasing score order
    n_groups = int(group.max()) + 1 if group.size else 0

    def auc(weights: np.ndarray) -> float:
        positives = np.bincount(group, weights * labels, n_groups)
        negatives = np.bincount(group, weights * (1 - labels), n_groups)
        total = positives.sum() * negatives.sum()
        if total == 0:
            return math.nan
        below = np.cumsum(negatives) - negatives
        return float(np.sum(positives * (below + 0.5 * negatives)) / total)

    value = auc(np.ones(len(labels)))
    interval = bootstrap_records(
        lambda rows: auc(np.bincount(rows, minlength=len(labels)).astype(np.float64)),
        len(labels),
        seed=seed,
        level=level,
    )
    return value, interval
