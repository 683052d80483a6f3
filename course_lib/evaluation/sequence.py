"""Sequence statistics: the shape of records over time, and HALO's R² per patient (lesson 09).

**Distribution distances** (``scipy.stats.wasserstein_distance``, synthetic against real, in
the unit of the quantity; 0 = same distribution)::

    visits_per_patient_wasserstein     visits of each patient
    codes_per_visit_wasserstein        codes (with repeats) of each visit
    days_between_visits_wasserstein    days between consecutive visits of a patient, from the
                                       admission times when both visits have one, else from the
                                       ages at admission (x 365.25)

A cohort without any second visit has no gaps: that distance is NaN.

**Patient-level R²** (HALO reports its R² both per visit and per patient): as
:func:`course_lib.evaluation.coherence.fidelity_r2`, but the probability of an item is the
share of *patients* having it at least once: a code (``unigram_patient_r2``), two codes in one
visit (``pair_patient_r2``), code ``a`` in a visit and ``b`` in the patient's next visit
(``sequential_patient_r2``). Items are those present in the real cohort.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations, pairwise

import numpy as np
from scipy.stats import wasserstein_distance
from sklearn.metrics import r2_score

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation.uncertainty import remembered

DAYS_PER_YEAR = 365.25
SEQUENCE_KEYS = (
    "visits_per_patient_wasserstein",
    "codes_per_visit_wasserstein",
    "days_between_visits_wasserstein",
    "unigram_patient_r2",
    "pair_patient_r2",
    "sequential_patient_r2",
)


def _gap_days(first: Visit, second: Visit) -> float:
    if first.admit_time is not None and second.admit_time is not None:
        return (second.admit_time - first.admit_time).total_seconds() / 86400
    return (second.age - first.age) * DAYS_PER_YEAR


def sequence_distributions(cohort: Cohort) -> dict[str, np.ndarray]:
    """``visits_per_patient``, ``codes_per_visit`` and ``days_between_visits`` values."""
    return {
        "visits_per_patient": np.array([len(p.visits) for p in cohort], dtype=np.float64),
        "codes_per_visit": np.array(
            [len(v.codes) for p in cohort for v in p.visits], dtype=np.float64
        ),
        "days_between_visits": np.array(
            [_gap_days(a, b) for p in cohort for a, b in pairwise(p.visits)],
            dtype=np.float64,
        ),
    }


def _distance(synthetic: np.ndarray, real: np.ndarray) -> float:
    if synthetic.size == 0 or real.size == 0:
        return math.nan
    return float(wasserstein_distance(synthetic, real))


def _patient_items(patient: Patient) -> tuple[set, set, set]:
    codes = patient.code_set
    pairs = {pair for v in patient.visits for pair in combinations(sorted(set(v.codes)), 2)}
    sequential = {(a, b) for v, w in pairwise(patient.visits) for a in v.codes for b in w.codes}
    return codes, pairs, sequential


def _patient_shares(cohort: Cohort) -> list[Counter]:
    counters: list[Counter] = [Counter(), Counter(), Counter()]
    for patient in cohort:
        for counter, items in zip(counters, _patient_items(patient), strict=True):
            counter.update(items)
    return counters


def _r2(real: Counter, synthetic: Counter, n_real: int, n_synthetic: int) -> float:
    if len(real) < 2 or n_real == 0 or n_synthetic == 0:
        return math.nan
    items = list(real)
    real_shares = np.array([real[item] for item in items], dtype=np.float64) / n_real
    syn_shares = np.array([synthetic.get(item, 0) for item in items], dtype=np.float64)
    return float(r2_score(real_shares, syn_shares / n_synthetic))


def sequence_metrics(synthetic: Cohort, real: Cohort) -> dict[str, float]:
    """The module docstring's metrics of ``synthetic`` against ``real``."""
    if len(synthetic) == 0 or len(real) == 0:
        raise ValueError("sequence_metrics needs two non-empty cohorts")
    syn_values = sequence_distributions(synthetic)
    real_values = remembered(real, "sequence_distributions", sequence_distributions)
    metrics = {
        f"{name}_wasserstein": _distance(syn_values[name], real_values[name]) for name in syn_values
    }
    real_items = remembered(real, "patient_shares", _patient_shares)
    syn_items = _patient_shares(synthetic)
    for name, real_counter, syn_counter in zip(
        ("unigram", "pair", "sequential"), real_items, syn_items, strict=True
    ):
        metrics[f"{name}_patient_r2"] = _r2(real_counter, syn_counter, len(real), len(synthetic))
    return metrics
