"""Utility: train on synthetic, test on real (TSTR) against train on real (TRTR) (lesson 09).

Features are code counts per patient over all visits, on a vocabulary fixed by the real
training split (codes outside it are dropped, as a deployed model would drop them), scaled
as ``log(1 + count)`` so that the logistic regression converges quickly. The outcome is a
binary column of ``Cohort.outcomes`` (``LVEF_REDUCED`` by default)::

    tstr_auroc = AUROC on the real test cohort of LogisticRegression fitted on synthetic
    trtr_auroc = AUROC on the real test cohort of LogisticRegression fitted on real train

Synthetic patients carry no outcomes. Here they can be labelled by an ``outcome_labeler``
(``list[Patient] -> DataFrame`` with ``SUBJECT_ID`` and the outcome column), e.g. the
simulator's ground-truth outcome model: that is possible only because the course's simulator
*knows* the causal model from codes to outcomes. With real MIMIC-III nobody knows it; there one
makes the label part of the record (an outcome token the generator writes with the visits, or
a conditioning value in the prompt) and reads it back from the generated sequence.
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
    if len(np.unique(train_labels)) < 2 or len(np.unique(test_labels)) < 2:
        return math.nan
    model = LogisticRegression(max_iter=1000, random_state=seed)
    with threadpool_limits(1):  # small fits: BLAS threads only add contention
        model.fit(train_features, train_labels)
    return float(roc_auc_score(test_labels, model.predict_proba(test_features)[:, 1]))


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
    """``tstr_auroc`` and ``trtr_auroc`` (NaN where labels or a training split are missing,
    or with ``with_trtr=False``, which skips the fit that does not depend on ``synthetic``).

    ``real`` is the test cohort. The vocabulary comes from ``train``, or from ``real`` when
    there is no training split (codes only, no labels: nothing about the outcome leaks).
    """
    nan = {"tstr_auroc": math.nan, "trtr_auroc": math.nan}
    real_labels = outcome_labels(real, outcome, outcome_labeler)
    if real_labels is None:
        return nan
    index = CodeIndex.from_cohorts(train if train is not None else real)
    real_features = code_count_features(real, index)
    metrics = dict(nan)
    syn_labels = outcome_labels(synthetic, outcome, outcome_labeler)
    if syn_labels is not None:
        metrics["tstr_auroc"] = fit_auroc(
            code_count_features(synthetic, index), syn_labels, real_features, real_labels, seed=seed
        )
    if train is not None and with_trtr:
        train_labels = outcome_labels(train, outcome, outcome_labeler)
        if train_labels is not None:
            metrics["trtr_auroc"] = fit_auroc(
                code_count_features(train, index),
                train_labels,
                real_features,
                real_labels,
                seed=seed,
            )
    return metrics
