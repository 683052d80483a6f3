"""One call that evaluates a synthetic cohort on every metric family, with floors (lesson 09).

:func:`evaluate_cohorts` returns an :class:`Evaluation`: a read-only mapping of flat metric
names to floats (``evaluation["js_divergence"]``, ``dict(evaluation)``), with ``<key>_floor``
for every metric that has a floor, plus ``alarms`` (the mode-collapse alarms, a list of
strings) kept apart because they are not numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pandas as pd

from course_lib.cohort import Cohort
from course_lib.evaluation.coherence import CooccurrenceStats, coherence_metrics
from course_lib.evaluation.diversity import AlarmThresholds, diversity_metrics, mode_collapse_alarms
from course_lib.evaluation.floor import equal_size_samples, with_floor
from course_lib.evaluation.privacy import privacy_metrics
from course_lib.evaluation.utility import DEFAULT_OUTCOME, OutcomeLabeler, utility_metrics
from course_lib.evaluation.validity import validity_metrics

PRIVACY_KEYS = (
    "exact_copy_rate",
    "dcr_median",
    "dcr_median_holdout",
    "dcr_close_share",
    "mia_accuracy",
    "mia_best_accuracy",
    "sex_inference_accuracy",
    "sex_inference_baseline",
    "sex_inference_majority",
    "age_inference_accuracy",
    "age_inference_baseline",
    "age_inference_majority",
)
# Keys that do not depend on the candidate cohort: a floor would repeat them.
NO_FLOOR_KEYS = frozenset(
    {
        "trtr_auroc",
        "dcr_median_holdout",
        "sex_inference_baseline",
        "sex_inference_majority",
        "age_inference_baseline",
        "age_inference_majority",
        "unique_codes_real",
        "top_code_share_real",
        "chapters_per_patient_std_real",
    }
)


@dataclass(frozen=True)
class Evaluation(Mapping[str, float]):
    """Flat metrics (``<key>`` and ``<key>_floor``) and the mode-collapse alarms.

    ``n_patients`` is the size both synthetic and reference samples were cut to.
    """

    metrics: dict[str, float]
    alarms: list[str] = field(default_factory=list)
    n_patients: int = 0

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def table(self) -> pd.DataFrame:
        """One row per metric: ``metric``, ``synthetic``, ``floor`` (NaN where none)."""
        rows = [
            (key, value, self.metrics.get(f"{key}_floor", math.nan))
            for key, value in self.metrics.items()
            if not key.endswith("_floor")
        ]
        return pd.DataFrame(rows, columns=["metric", "synthetic", "floor"])


def _candidate_metrics(
    candidate: Cohort,
    real: Cohort,
    train: Cohort | None,
    stats: CooccurrenceStats,
    outcome: str,
    outcome_labeler: OutcomeLabeler | None,
    seed: int,
    is_reference: bool = False,
) -> dict[str, float]:
    metrics = {
        **coherence_metrics(candidate, real, stats=stats),
        **validity_metrics(candidate),
        **diversity_metrics(candidate, real),
    }
    if train is not None:
        metrics |= privacy_metrics(
            candidate, train, real, seed=seed, with_baseline=not is_reference
        )
    else:
        metrics |= dict.fromkeys(PRIVACY_KEYS, math.nan)
    metrics |= utility_metrics(
        candidate,
        real,
        train,
        outcome=outcome,
        outcome_labeler=outcome_labeler,
        seed=seed,
        with_trtr=not is_reference,
    )
    return metrics


def evaluate_cohorts(
    synthetic: Cohort,
    real: Cohort,
    *,
    train: Cohort | None = None,
    reference: Cohort | None = None,
    outcome_labeler: OutcomeLabeler | None = None,
    seed: int = 0,
    outcome: str = DEFAULT_OUTCOME,
    thresholds: AlarmThresholds | None = None,
) -> Evaluation:
    """Every metric of ``synthetic`` against ``real``, and its floor.

    ``real``: the real test cohort (also the privacy holdout: patients the generator never
    saw). ``train``: the real training split (pair statistics, privacy, TRTR; without it the
    privacy and TRTR keys are NaN and pair statistics come from ``real``). ``reference``: a
    second real sample, disjoint from ``real`` and ``train``; ``synthetic`` and ``reference``
    are subsampled with ``seed`` to the same size, and ``<key>_floor`` is ``reference``'s score
    against ``real`` (NaN without a reference). ``outcome_labeler`` labels cohorts whose
    ``outcomes`` lack the ``outcome`` column (see :mod:`course_lib.evaluation.utility`).
    """
    for name, cohort in (("synthetic", synthetic), ("real", real), ("reference", reference)):
        if cohort is not None and len(cohort) == 0:
            raise ValueError(f"evaluate_cohorts: the {name} cohort is empty")
    if train is not None and len(train) == 0:
        raise ValueError("evaluate_cohorts: the train cohort is empty")
    if reference is not None:
        synthetic, reference = equal_size_samples(synthetic, reference, seed)
    stats = CooccurrenceStats.from_cohort(train if train is not None else real)
    arguments = (real, train, stats, outcome, outcome_labeler, seed)
    metrics = _candidate_metrics(synthetic, *arguments)
    floor = {}
    if reference is not None:
        floor = _candidate_metrics(reference, *arguments, is_reference=True)
    floor_keys = [key for key in metrics if key not in NO_FLOOR_KEYS]
    metrics = with_floor(metrics, floor, floor_keys)
    alarms = mode_collapse_alarms(metrics, thresholds)
    return Evaluation(metrics, alarms, n_patients=len(synthetic))
