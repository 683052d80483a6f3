"""One call that evaluates a synthetic cohort on every metric family, with floors (lesson 09).

:func:`evaluate_cohorts` returns an :class:`Evaluation`: a read-only mapping of flat metric
names to floats (``evaluation["js_divergence"]``, ``dict(evaluation)``), with ``<key>_floor``
for every metric that has a floor, plus ``intervals`` (``key -> (low, high)``, bootstrap
intervals of values and floors, :mod:`course_lib.evaluation.uncertainty`), ``alarms``
(mode-collapse and privacy alarms, strings) and ``notes`` (how the samples were made), kept
apart because they are not numbers.

Size-dependent metrics compare the synthetic and the reference samples cut to the same size;
privacy metrics compare *all* synthetic patients (shares do not depend on the size, and a cut
could drop the copies).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from course_lib.cohort import Cohort
from course_lib.evaluation.coherence import CooccurrenceStats, coherence_metrics
from course_lib.evaluation.diversity import AlarmThresholds, diversity_metrics, mode_collapse_alarms
from course_lib.evaluation.fidelity import EMBEDDING_DIM, FIDELITY_KEYS, fidelity_metrics
from course_lib.evaluation.floor import equal_size_samples, with_floor
from course_lib.evaluation.privacy import mia_likelihood_auc, privacy_alarms, privacy_evaluation
from course_lib.evaluation.sequence import SEQUENCE_KEYS, sequence_metrics
from course_lib.evaluation.uncertainty import (
    COHORT_RESAMPLES,
    LEVEL,
    RECORD_RESAMPLES,
    Interval,
    bootstrap_cohort,
)
from course_lib.evaluation.utility import (
    DEFAULT_OUTCOME,
    UTILITY_KEYS,
    OutcomeLabeler,
    utility_evaluation,
)
from course_lib.evaluation.validity import validity_metrics

__all__ = [
    "FIDELITY_KEYS",
    "NO_FLOOR_KEYS",
    "PRIVACY_KEYS",
    "SEQUENCE_KEYS",
    "UTILITY_KEYS",
    "Evaluation",
    "evaluate_cohorts",
]

PRIVACY_KEYS = (
    "exact_copy_rate",
    "dcr_holdout_share",
    "mia_likelihood_auc",
    "attribute_inference_f1",
    "attribute_inference_f1_baseline",
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
        "attribute_inference_f1_baseline",
        "chapters_per_patient_mode_share_real",
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
    """Flat metrics (``<key>`` and ``<key>_floor``), their bootstrap ``intervals`` (also for
    ``<key>_floor``), the alarms and the notes.

    ``n_patients`` is the size both synthetic and reference samples were cut to for the
    size-dependent metrics.
    """

    metrics: dict[str, float]
    alarms: list[str] = field(default_factory=list)
    n_patients: int = 0
    intervals: dict[str, Interval] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def table(self) -> pd.DataFrame:
        """One row per metric: ``metric``, ``synthetic``, ``low``, ``high``, ``floor``."""
        nan = (math.nan, math.nan)
        rows = [
            (key, value, *self.intervals.get(key, nan), self.metrics.get(f"{key}_floor", math.nan))
            for key, value in self.metrics.items()
            if not key.endswith("_floor")
        ]
        return pd.DataFrame(rows, columns=["metric", "synthetic", "low", "high", "floor"])


def cohort_statistics(
    candidate: Cohort, real: Cohort, stats: CooccurrenceStats
) -> dict[str, float]:
    """The metric families cheap enough to recompute on bootstrap resamples (coherence,
    validity, diversity, sequence) of ``candidate`` against ``real``."""
    return {
        **coherence_metrics(candidate, real, stats=stats),
        **validity_metrics(candidate),
        **diversity_metrics(candidate, real),
        **sequence_metrics(candidate, real),
    }


@dataclass(frozen=True)
class _Setting:
    real: Cohort
    train: Cohort | None
    stats: CooccurrenceStats
    outcome: str
    outcome_labeler: OutcomeLabeler | None
    seed: int
    n_resamples: int


def _candidate_metrics(
    candidate: Cohort, whole: Cohort, setting: _Setting, is_reference: bool = False
) -> tuple[dict[str, float], dict[str, Interval]]:
    """Every metric of ``candidate`` (cut to the common size; ``whole`` uncut, for privacy)."""
    real, train, seed = setting.real, setting.train, setting.seed

    def cheap(cohort: Cohort) -> dict[str, float]:
        return cohort_statistics(cohort, real, setting.stats)

    metrics = cheap(candidate)
    intervals = {}
    if setting.n_resamples > 0:
        intervals = bootstrap_cohort(
            cheap, candidate, metrics, seed=seed, n_resamples=setting.n_resamples
        )
    fidelity, fidelity_intervals = fidelity_metrics(candidate, real, train=train, seed=seed)
    metrics |= fidelity
    intervals |= fidelity_intervals
    if train is not None:
        privacy, privacy_intervals = privacy_evaluation(
            whole, train, real, seed=seed, with_baseline=not is_reference
        )
        metrics |= privacy
        intervals |= privacy_intervals
    else:
        metrics |= {key: math.nan for key in PRIVACY_KEYS if not key.startswith("mia_like")}
    utility, utility_intervals = utility_evaluation(
        candidate,
        real,
        train,
        outcome=setting.outcome,
        outcome_labeler=setting.outcome_labeler,
        seed=seed,
        with_trtr=not is_reference,
    )
    return metrics | utility, intervals | utility_intervals


def _likelihood_attack(
    log_likelihoods: Mapping[str, Sequence[float]], seed: int
) -> tuple[dict[str, float], dict[str, Interval]]:
    """``mia_likelihood_auc`` (train vs real) and its floor (reference vs real)."""
    metrics, intervals = {}, {}
    if "train" in log_likelihoods and "real" in log_likelihoods:
        value, interval = mia_likelihood_auc(
            log_likelihoods["train"], log_likelihoods["real"], seed=seed
        )
        metrics["mia_likelihood_auc"], intervals["mia_likelihood_auc"] = value, interval
    if metrics and "reference" in log_likelihoods:
        value, interval = mia_likelihood_auc(
            log_likelihoods["reference"], log_likelihoods["real"], seed=seed
        )
        metrics["mia_likelihood_auc_floor"] = value
        intervals["mia_likelihood_auc_floor"] = interval
    return metrics, intervals


def _utility_note(metrics: Mapping[str, float], outcome: str) -> str:
    """Which labels the synthetic patients' utility figures were fitted with."""
    oracle = (
        "tstr_oracle_auroc labels the synthetic patients with an outcome model (an upper "
        "bound no real user can compute)"
    )
    if math.isnan(metrics.get("tstr_auroc", math.nan)):
        return (
            f"tstr_auroc is not computed: the synthetic patients carry no requested {outcome} "
            f"labels (generate with outcome prompts to get them); {oracle}."
        )
    return (
        f"tstr_auroc: fitted on the {outcome} labels the synthetic patients were generated "
        f"for (requested labels; floor: a real sample with its true labels); {oracle}; "
        "augmentation_auroc adds the synthetic patients with their requested labels."
    )


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
    log_likelihoods: Mapping[str, Sequence[float]] | None = None,
    n_resamples: int = COHORT_RESAMPLES,
) -> Evaluation:
    """Every metric of ``synthetic`` against ``real``, its floor and bootstrap intervals.

    ``real``: the real test cohort (also the privacy holdout: patients the generator never
    saw). ``train``: the real training split (pair statistics, privacy, TRTR; without it the
    privacy and TRTR keys are NaN and pair statistics come from ``real``). ``reference``: a
    second real sample, disjoint from ``real`` and ``train``; ``synthetic`` and ``reference``
    are subsampled with ``seed`` to the same size for the size-dependent metrics, and
    ``<key>_floor`` is ``reference``'s score against ``real`` (NaN without a reference).
    ``outcome_labeler`` labels cohorts whose ``outcomes`` lack the ``outcome`` column (see
    :mod:`course_lib.evaluation.utility`). ``log_likelihoods``: the model's per-token
    log-likelihood of each patient of ``"train"``, ``"real"`` and optionally ``"reference"``
    (:mod:`course_lib.evaluation.likelihood`), for ``mia_likelihood_auc``. ``n_resamples``:
    bootstrap resamples of the cohort statistics (:mod:`course_lib.evaluation.uncertainty`;
    0 skips their intervals, for quick loops).
    """
    for name, cohort in (("synthetic", synthetic), ("real", real), ("reference", reference)):
        if cohort is not None and len(cohort) == 0:
            raise ValueError(f"evaluate_cohorts: the {name} cohort is empty")
    if train is not None and len(train) == 0:
        raise ValueError("evaluate_cohorts: the train cohort is empty")
    whole_synthetic, whole_reference = synthetic, reference
    if reference is not None:
        synthetic, reference = equal_size_samples(synthetic, reference, seed)
    stats = CooccurrenceStats.from_cohort(train if train is not None else real)
    setting = _Setting(real, train, stats, outcome, outcome_labeler, seed, n_resamples)
    metrics, intervals = _candidate_metrics(synthetic, whole_synthetic, setting)
    floor: dict[str, float] = {}
    if reference is not None:
        floor, floor_intervals = _candidate_metrics(
            reference, whole_reference, setting, is_reference=True
        )
        intervals |= {f"{key}_floor": value for key, value in floor_intervals.items()}
    floor_keys = [key for key in metrics if key not in NO_FLOOR_KEYS]
    metrics = with_floor(metrics, floor, floor_keys)
    attack, attack_intervals = _likelihood_attack(log_likelihoods or {}, seed)
    metrics |= attack
    intervals |= attack_intervals
    alarms = mode_collapse_alarms(metrics, thresholds) + privacy_alarms(metrics)
    notes = [
        f"Size-dependent metrics: synthetic and reference samples cut to {len(synthetic)} "
        f"patients each (seed {seed}); privacy metrics compare all {len(whole_synthetic)} "
        "synthetic patients.",
        f"Intervals: {LEVEL:.0%} bootstrap; cohort statistics from {n_resamples} "
        "resamples of the patients (rough, to keep the evaluation within seconds), "
        "per-record scores (detection, precision/recall, privacy shares, AUROCs) from "
        f"{RECORD_RESAMPLES} resamples of the scores without refitting.",
        f"alpha_precision, beta_recall, authenticity: on a {EMBEDDING_DIM}-dimensional "
        "TruncatedSVD of the real test patients' binary bag of codes (Euclidean distances); "
        "authenticity against the training split when there is one.",
        _utility_note(metrics, outcome),
    ]
    return Evaluation(metrics, alarms, len(synthetic), intervals, notes)
