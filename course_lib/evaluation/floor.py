"""The real-vs-real floor: what each metric scores for a perfect generator (lesson 09).

A perfect generator writes patients indistinguishable from real ones, so its score on any
metric is the score of a second real sample: a reference cohort disjoint from the real one
(and from the training split), of the synthetic sample's size because unique codes,
best-match Jaccard and attack accuracies all move with the sample size. A number is only
"good" or "bad" relative to that floor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from course_lib.cohort import Cohort


def subsample(cohort: Cohort, n_patients: int, seed: int = 0) -> Cohort:
    """``n_patients`` patients drawn without replacement (cohort order kept; the same cohort
    object back when nothing is dropped)."""
    if not 0 <= n_patients <= len(cohort):
        raise ValueError(f"cannot draw {n_patients} patients from a cohort of {len(cohort)}")
    if n_patients == len(cohort):
        return cohort
    rows = np.sort(np.random.default_rng(seed).choice(len(cohort), n_patients, replace=False))
    patients = [cohort.patients[row] for row in rows]
    outcomes = None
    if cohort.outcomes is not None:
        wanted = {patient.subject_id for patient in patients}
        outcomes = cohort.outcomes[cohort.outcomes["SUBJECT_ID"].isin(wanted)]
        outcomes = outcomes.reset_index(drop=True)
    return Cohort(patients, outcomes, list(cohort.notes))


def equal_size_samples(
    synthetic: Cohort, reference: Cohort, seed: int = 0
) -> tuple[Cohort, Cohort]:
    """Both cohorts cut to the smaller one's size (different seeds for the two draws)."""
    n_patients = min(len(synthetic), len(reference))
    return subsample(synthetic, n_patients, seed), subsample(reference, n_patients, seed + 1)


def disjoint_splits(cohort: Cohort, sizes: Sequence[int], seed: int = 0) -> list[Cohort]:
    """Disjoint random samples of the given sizes (e.g. train, real test, reference)."""
    if any(size < 0 for size in sizes) or sum(sizes) > len(cohort):
        raise ValueError(f"sizes {list(sizes)} do not fit a cohort of {len(cohort)} patients")
    order = np.random.default_rng(seed).permutation(len(cohort))
    splits, start = [], 0
    for size in sizes:
        rows = order[start : start + size]
        start += size
        ids = [cohort.patients[row].subject_id for row in rows]
        if len(set(ids)) != len(ids):
            raise ValueError("disjoint_splits needs unique SUBJECT_IDs")
        splits.append(cohort.subset(ids))
    return splits


def with_floor(
    metrics: Mapping[str, float], floor: Mapping[str, float], keys: Sequence[str] | None = None
) -> dict[str, float]:
    """``metrics`` plus ``<key>_floor`` for every key of ``keys`` (default: all of
    ``metrics``), NaN where the floor lacks the key."""
    merged = dict(metrics)
    for key in keys if keys is not None else list(metrics):
        merged[f"{key}_floor"] = float(floor.get(key, math.nan))
    return merged
