"""Utility: train on synthetic, test on real (TSTR) against train on real (TRTR) (lesson 09).

Features are code counts per patient over all visits, on a vocabulary fixed by the real
training split (codes outside it are dropped, as a deployed model would drop them), scaled
as ``log(1 + count)`` so that the logistic regression converges quickly. The outcome is a
binary column of ``Cohort.outcomes`` (``LVEF_REDUCED`` by default)::

    tstr_auroc         = AUROC on the real test cohort of LogisticRegression fitted on the
                         synthetic patients with their *requested* labels (synthetic.outcomes)
    tstr_oracle_auroc  = the same with synthetic patients labelled by an outcome model (oracle)
    trtr_auroc         = AUROC on the real test cohort of LogisticRegression fitted on real train
    augmentation_auroc = the same fitted on real train + synthetic together (does adding
                         synthetic patients help a model that already has the real ones?); the
                         synthetic patients carry their requested labels when they have them,
                         else the oracle's

Each comes with a bootstrap interval over the real test patients (the fitted model fixed).

Requested labels: a model trained with outcome prompts (:mod:`course_lib.outcome_prompts`)
writes each patient *for* a label the caller asks for, and the synthetic cohort's ``outcomes``
hold those labels. ``tstr_auroc`` is the figure a real user can compute: it measures whether
the generator put into the codes what distinguishes the classes. Its floor is the same fit on
a second real sample with its true labels.

Without requested labels, synthetic patients can be labelled by an ``outcome_labeler``
(hence *oracle*: ``tstr_oracle_auroc`` is an upper bound, not a figure a user can obtain),
``list[Patient] -> DataFrame`` with ``SUBJECT_ID`` and the outcome column, e.g. the
simulator's ground-truth outcome model: that is possible only because the course's simulator
*knows* the causal model from codes to outcomes. With real MIMIC-III nobody knows it. When a
labeler is given, the oracle figure is computed as well (the labeler ignores requested labels).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from course_lib.cohort import Cohort, Patient
from course_lib.evaluation.encoding import CodeIndex, patient_code_matrix
from course_lib.evaluation.uncertainty import NAN_INTERVAL, Interval, auroc_with_interval

OutcomeLabeler = Callable[[list[Patient]], pd.DataFrame]
DEFAULT_OUTCOME = "LVEF_REDUCED"


def outcome_labels(
    cohort: Cohort, outcome: str = DEFAULT_OUTCOME, labeler: OutcomeLabeler | None = None
) -> np.ndarray | None:
    """0/1 labels in patient order: from ``cohort.outcomes`` when it has the column, else from
    ``labeler(cohort.patients)``, else ``None``."""
    table = cohort.outcomes
    source = "cohort.outcomes"
    if table is None or outcome not in table.columns:
        if labeler is None:
            return None
        table = labeler(list(cohort.patients))
        source = "outcome_labeler"
    if "SUBJECT_ID" not in table.columns or outcome not in table.columns:
        raise ValueError(f"{source} must have columns SUBJECT_ID and {outcome!r}")
    by_subject = table.drop_duplicates("SUBJECT_ID").set_index("SUBJECT_ID")[outcome]
    subject_ids = [patient.subject_id for patient in cohort]
    if len(set(subject_ids)) != len(subject_ids):
        raise ValueError(
            f"labels are matched by SUBJECT_ID, which repeats in the cohort ({source})"
        )
    missing = [sid for sid in subject_ids if sid not in by_subject.index]
    if missing:
        raise ValueError(f"{source} has no {outcome!r} for SUBJECT_ID {missing[:5]}")
    labels = by_subject.loc[subject_ids].to_numpy()
    if not np.isin(labels, (0, 1, True, False)).all():
        raise ValueError(f"{source} column {outcome!r} must be binary (0/1)")
    return labels.astype(np.int64)


def code_count_features(cohort: Cohort, index: CodeIndex) -> sparse.csr_matrix:
    """``[n_patients, n_codes]`` ``log(1 + count)`` of each code over all visits."""
    counts = patient_code_matrix(cohort, index, counts=True)
    counts.data = np.log1p(counts.data)
    return counts


UTILITY_KEYS = ("tstr_auroc", "tstr_oracle_auroc", "trtr_auroc", "augmentation_auroc")


def fit_scores(
    train_features: sparse.csr_matrix,
    train_labels: np.ndarray,
    test_features: sparse.csr_matrix,
    *,
    seed: int = 0,
) -> np.ndarray | None:
    """P(outcome) on the test set from a logistic regression fitted on the training set;
    None when the training set has a single class."""
    if len(np.unique(train_labels)) < 2:
        return None
    model = LogisticRegression(max_iter=1000, random_state=seed)
    with threadpool_limits(1):  # small fits: BLAS threads only add contention
        model.fit(train_features, train_labels)
    return model.predict_proba(test_features)[:, 1]


def fit_auroc(
    train_features: sparse.csr_matrix,
    train_labels: np.ndarray,
    test_features: sparse.csr_matrix,
    test_labels: np.ndarray,
    *,
    seed: int = 0,
) -> float:
    """AUROC on the test set of a logistic regression fitted on the training set; NaN when
    either set has a single class (AUROC is undefined)."""
    scores = fit_scores(train_features, train_labels, test_features, seed=seed)
    if scores is None or len(np.unique(test_labels)) < 2:
        return math.nan
    return float(roc_auc_score(test_labels, scores))


def _scored(
    features: sparse.csr_matrix, labels: np.ndarray, test: tuple, seed: int
) -> tuple[float, Interval]:
    test_features, test_labels = test
    scores = fit_scores(features, labels, test_features, seed=seed)
    if scores is None or len(np.unique(test_labels)) < 2:
        return math.nan, NAN_INTERVAL
    return auroc_with_interval(test_labels, scores, seed=seed)


def utility_evaluation(
    synthetic: Cohort,
    real: Cohort,
    train: Cohort | None = None,
    *,
    outcome: str = DEFAULT_OUTCOME,
    outcome_labeler: OutcomeLabeler | None = None,
    seed: int = 0,
    with_trtr: bool = True,
) -> tuple[dict[str, float], dict[str, Interval]]:
    """:data:`UTILITY_KEYS` and their intervals (NaN where labels or a training split are
    missing; ``with_trtr=False`` skips ``trtr_auroc``, which does not depend on
    ``synthetic``). ``tstr_auroc`` needs ``synthetic.outcomes`` (requested labels),
    ``tstr_oracle_auroc`` an ``outcome_labeler``; ``real``/``train`` take their labels from
    their ``outcomes``, else from the labeler.

    ``real`` is the test cohort. The vocabulary comes from ``train``, or from ``real`` when
    there is no training split (codes only, no labels: nothing about the outcome leaks).
    """
    metrics = dict.fromkeys(UTILITY_KEYS, math.nan)
    intervals: dict[str, Interval] = {}
    real_labels = outcome_labels(real, outcome, outcome_labeler)
    if real_labels is None:
        return metrics, intervals
    index = CodeIndex.from_cohorts(train if train is not None else real)
    test = (code_count_features(real, index), real_labels)
    requested = outcome_labels(synthetic, outcome)
    oracle = None
    if outcome_labeler is not None:  # the labeler's labels, never the requested ones
        oracle = outcome_labels(Cohort(list(synthetic.patients)), outcome, outcome_labeler)
    syn_features = code_count_features(synthetic, index)
    for key, labels in (("tstr_auroc", requested), ("tstr_oracle_auroc", oracle)):
        if labels is not None:
            metrics[key], intervals[key] = _scored(syn_features, labels, test, seed)
    syn_labels = requested if requested is not None else oracle
    train_labels = outcome_labels(train, outcome, outcome_labeler) if train is not None else None
    if train_labels is None:
        return metrics, intervals
    train_features = code_count_features(train, index)
    if with_trtr:
        fitted = _scored(train_features, train_labels, test, seed)
        metrics["trtr_auroc"], intervals["trtr_auroc"] = fitted
    if syn_labels is not None:
        both = sparse.vstack([train_features, syn_features]).tocsr()
        fitted = _scored(both, np.r_[train_labels, syn_labels], test, seed)
        metrics["augmentation_auroc"], intervals["augmentation_auroc"] = fitted
    return metrics, intervals


def utility_metrics(
    synthetic: Cohort,
    real: Cohort,
    train: Cohort | None = None,
    *,
    outcome: str = DEFAULT_OUTCOME,
    outcome_labeler: OutcomeLabeler | None = None,
    seed: int = 0,
    with_trtr: bool = True,
) -> dict[str, float]:
    """:func:`utility_evaluation` without the intervals."""
    return utility_evaluation(
        synthetic,
        real,
        train,
        outcome=outcome,
        outcome_labeler=outcome_labeler,
        seed=seed,
        with_trtr=with_trtr,
    )[0]
