"""Fidelity as a whole: can a classifier tell synthetic from real, and does the synthetic
cohort cover the real one without copying it? (lesson 09)

**Detection** (synthcity's detection metric): ``detection_auc`` is the 3-fold cross-validated
AUROC of a gradient-boosting classifier (scikit-learn's ``HistGradientBoostingClassifier``,
40 trees of 15 leaves) telling real test patients (label 0) from synthetic patients (label 1), both cut to
the same size. Features per patient (:func:`patient_features`): presence of each of the
``N_DETECTION_CODES`` (256) codes most frequent in the two cohorts together, the number of
distinct ICD-9 chapters, the number of visits, and the mean, maximum and total number of codes
per visit. 0.5 = indistinguishable; the floor is the same for the reference sample against the
real one. The interval resamples the out-of-fold scores (no refit).

**Alpha-precision, beta-recall, authenticity** (Alaa et al., ICML 2022, "How faithful is
your synthetic data?"), as synthcity computes them. The patient embedding
(:func:`patient_embedding`) is the first ``EMBEDDING_DIM`` (16) components of a
``TruncatedSVD`` of the real patients' binary bag of codes (fitted on the real test sample
only; synthetic patients are projected with it), Euclidean distances. With ``c`` the mean of
the real embeddings and ``alpha`` on a grid of 30 levels in (0, 1)::

    precision(alpha) = share of synthetic points within the alpha-quantile of the real
                       distances to c                (a typical real patient's neighbourhood)
    recall(beta)     = share of real points r whose nearest synthetic point s is within r's
                       own nearest-real-neighbour distance, with s inside the beta-quantile
                       of the synthetic distances to the synthetic mean
    alpha_precision  = 1 - 2 * mean |precision(alpha) - alpha|   (1 = ideal; synthcity's delta)
    beta_recall      = 1 - 2 * mean |recall(beta) - beta|
    authenticity     = share of synthetic points s whose nearest training point r is nearer
                       to another training point than to s  (0 = every point a copy; the
                       training split when given, since copying is about the patients the
                       generator saw; else the real test sample)

A collapsed generator keeps precision (its few records are typical) but loses recall (most
real patients have no synthetic neighbour).
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from course_lib.cohort import Cohort
from course_lib.evaluation.coherence import code_frequencies, top_codes
from course_lib.evaluation.diversity import patient_chapters
from course_lib.evaluation.encoding import CodeIndex, patient_code_matrix
from course_lib.evaluation.uncertainty import (
    Interval,
    auroc_with_interval,
    bootstrap_mean,
    bootstrap_records,
)

N_DETECTION_CODES = 256
DETECTION_FOLDS = 3
EMBEDDING_DIM = 16
N_LEVELS = 30
FIDELITY_KEYS = ("detection_auc", "alpha_precision", "beta_recall", "authenticity")


def patient_features(cohort: Cohort, index: CodeIndex) -> np.ndarray:
    """``[n_patients, len(index) + 5]``: code presence, then chapters, visits, and the mean,
    maximum and total codes per visit."""
    presence = patient_code_matrix(cohort, index).toarray()
    shape = np.array(
        [
            [
                len(patient_chapters(p)),
                len(p.visits),
                np.mean([len(v.codes) for v in p.visits]) if p.visits else 0.0,
                max((len(v.codes) for v in p.visits), default=0),
                len(p.codes),
            ]
            for p in cohort
        ],
        dtype=np.float64,
    ).reshape(len(cohort), 5)
    return np.hstack([presence, shape])


def detection_scores(
    synthetic: Cohort, real: Cohort, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold P(synthetic) of every patient and the labels (1 = synthetic), real first."""
    counts = code_frequencies(real) + code_frequencies(synthetic)
    index = CodeIndex(tuple(sorted(top_codes(counts, N_DETECTION_CODES))))
    features = np.vstack([patient_features(real, index), patient_features(synthetic, index)])
    labels = np.r_[np.zeros(len(real), dtype=int), np.ones(len(synthetic), dtype=int)]
    scores = np.full(len(labels), 0.5)
    folds = StratifiedKFold(DETECTION_FOLDS, shuffle=True, random_state=seed)
    with threadpool_limits(1):
        for train_rows, test_rows in folds.split(features, labels):
            model = HistGradientBoostingClassifier(
                max_iter=40, max_leaf_nodes=15, early_stopping=False, random_state=seed
            )
            model.fit(features[train_rows], labels[train_rows])
            scores[test_rows] = model.predict_proba(features[test_rows])[:, 1]
    return scores, labels


def detection_auc(synthetic: Cohort, real: Cohort, *, seed: int = 0) -> tuple[float, Interval]:
    """``detection_auc`` and its bootstrap interval (module docstring)."""
    if len(synthetic) < DETECTION_FOLDS or len(real) < DETECTION_FOLDS:
        raise ValueError(f"detection needs at least {DETECTION_FOLDS} patients per cohort")
    scores, labels = detection_scores(synthetic, real, seed=seed)
    return auroc_with_interval(labels, scores, seed=seed)


def patient_embedding(real: Cohort, *others: Cohort, seed: int = 0) -> list[np.ndarray]:
    """Embeddings of ``real`` and of each of ``others`` (module docstring)."""
    index = CodeIndex.from_cohorts(real)
    real_matrix = patient_code_matrix(real, index)
    n_components = max(1, min(EMBEDDING_DIM, real_matrix.shape[1] - 1, len(real) - 1))
    svd = TruncatedSVD(n_components=n_components, random_state=seed)
    with threadpool_limits(1):
        embedded = [svd.fit_transform(real_matrix)]
        embedded += [svd.transform(patient_code_matrix(cohort, index)) for cohort in others]
    return embedded


def _curve_score(hits: np.ndarray, levels: np.ndarray) -> float:
    """``1 - 2 mean |mean(hits[:, k]) - levels[k]|`` (synthcity's delta)."""
    return float(1 - 2 * np.mean(np.abs(hits.mean(axis=0) - levels)))


def precision_recall_indicators(
    real: np.ndarray, synthetic: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(levels, precision hits [n_syn, L], recall hits [n_real, L], authentic [n_syn])``
    (authenticity here against ``real``; see :func:`authentic_flags`)."""
    levels = np.linspace(0, 1, N_LEVELS + 2)[1:-1]
    real_center, syn_center = real.mean(axis=0), synthetic.mean(axis=0)
    real_radii = np.quantile(np.linalg.norm(real - real_center, axis=1), levels)
    syn_to_center = np.linalg.norm(synthetic - syn_center, axis=1)
    precision = np.linalg.norm(synthetic - real_center, axis=1)[:, None] <= real_radii[None, :]
    real_to_real = NearestNeighbors(n_neighbors=2).fit(real).kneighbors(real)[0][:, 1]
    real_to_syn, nearest_syn = NearestNeighbors(n_neighbors=1).fit(synthetic).kneighbors(real)
    real_to_syn, nearest_syn = real_to_syn[:, 0], nearest_syn[:, 0]
    syn_radii = np.quantile(syn_to_center, levels)
    recall = (real_to_syn <= real_to_real)[:, None] & (
        syn_to_center[nearest_syn][:, None] <= syn_radii[None, :]
    )
    return levels, precision, recall, authentic_flags(real, synthetic)


def authentic_flags(reference: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Per synthetic point: is its nearest ``reference`` point nearer to another reference
    point than to it? (Needs at least two reference points.)"""
    neighbours = NearestNeighbors(n_neighbors=2).fit(reference)
    reference_to_reference = neighbours.kneighbors(reference)[0][:, 1]
    syn_to_reference, nearest = neighbours.kneighbors(synthetic, n_neighbors=1)
    return reference_to_reference[nearest[:, 0]] < syn_to_reference[:, 0]


def precision_recall_metrics(
    synthetic: Cohort, real: Cohort, *, train: Cohort | None = None, seed: int = 0
) -> tuple[dict[str, float], dict[str, Interval]]:
    """``alpha_precision``, ``beta_recall``, ``authenticity`` and their intervals."""
    if len(real) < 3 or len(synthetic) < 1:
        raise ValueError("precision/recall needs at least 3 real and 1 synthetic patient")
    others = [synthetic] + ([train] if train is not None and len(train) >= 2 else [])
    real_points, syn_points, *train_points = patient_embedding(real, *others, seed=seed)
    levels, precision, recall, authentic = precision_recall_indicators(real_points, syn_points)
    if train_points:
        authentic = authentic_flags(train_points[0], syn_points)
    metrics = {
        "alpha_precision": _curve_score(precision, levels),
        "beta_recall": _curve_score(recall, levels),
        "authenticity": float(authentic.mean()),
    }
    intervals = {
        "alpha_precision": bootstrap_records(
            lambda rows: _curve_score(precision[rows], levels), len(precision), seed=seed
        ),
        "beta_recall": bootstrap_records(
            lambda rows: _curve_score(recall[rows], levels), len(recall), seed=seed
        ),
        "authenticity": bootstrap_mean(authentic.astype(float), seed=seed),
    }
    return metrics, intervals


def fidelity_metrics(
    synthetic: Cohort, real: Cohort, *, train: Cohort | None = None, seed: int = 0
) -> tuple[dict[str, float], dict[str, Interval]]:
    """Every metric of this module and its interval (``train``: for authenticity)."""
    auc, auc_interval = detection_auc(synthetic, real, seed=seed)
    metrics, intervals = precision_recall_metrics(synthetic, real, train=train, seed=seed)
    return {"detection_auc": auc, **metrics}, {"detection_auc": auc_interval, **intervals}
