"""Privacy: does the synthetic cohort give away the training patients? (lesson 09)

Three cohorts take part: ``synthetic``, ``train`` (the patients the generator was fitted on)
and ``holdout`` (real patients it never saw, e.g. the test split). Records are multi-hot code
sets over all visits (``scipy.sparse``); intersections come from one sparse product per chunk
of rows, so 5,000 x 5,000 patients take a fraction of a second.

* ``exact_copy_rate`` = share of synthetic patients whose visit sequence of code sets
  (``(set(visit_1), set(visit_2), ...)``, order kept, demographics ignored) equals some
  training patient's.
* Distance to closest record (DCR): ``1 - |A & B| / |A | B|`` (Jaccard distance) from each
  record to its nearest training record. ``dcr_median`` for synthetic -> train,
  ``dcr_median_holdout`` for holdout -> train (what an independent real patient looks like),
  and ``dcr_close_share`` = share of synthetic records *strictly* closer to a training record
  than the 5th percentile of the holdout DCRs (about 0.05 or less for a generator that
  does not copy; much more for one that memorises).
* Membership inference (HALO, Theodorou et al. 2023): ``n`` training members and ``n``
  holdout non-members (``n = min(len(train), len(holdout), max_records)``, drawn with the
  seed); each gets its minimum Hamming distance ``|A| + |B| - 2 |A & B|`` to the synthetic set;
  the attack says "member" when that distance is ``<=`` a threshold. ``mia_accuracy`` uses
  the median distance of the attack set (chosen without labels, so 0.5 = no leak);
  ``mia_best_accuracy`` takes the best threshold with the labels (an upper bound, slightly
  above 0.5 by chance even without a leak; read it against the floor).
* Attribute inference: a logistic regression on multi-hot ICD-9 categories (3-character
  codes: the clinical signal without thousands of rare columns, which keeps the fit fast), trained on the synthetic
  patients, predicts the sex and the 10-year age band of the training patients
  (``*_inference_accuracy``). ``*_inference_baseline`` is the same model trained on the holdout
  patients: what an attacker learns from public real data alone; the leak is the difference.
  ``*_inference_majority`` is the majority-class rate (what knowing nothing gives). Sex is
  nearly always inferable from sex-specific codes, which is also why the notes' sex loss
  fell to zero.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from course_lib.cohort import Cohort, Patient
from course_lib.evaluation.encoding import CodeIndex, age_band, patient_code_matrix

_CHUNK_ROWS = 1024


def visit_signature(patient: Patient) -> tuple[frozenset[str], ...]:
    """The visit sequence of code sets that ``exact_copy_rate`` compares."""
    return tuple(frozenset(visit.codes) for visit in patient.visits)


def exact_copy_rate(synthetic: Cohort, train: Cohort) -> float:
    """Share of synthetic patients that copy a training patient's visit sequence."""
    if len(synthetic) == 0:
        raise ValueError("exact_copy_rate needs a non-empty synthetic cohort")
    training_records = {visit_signature(patient) for patient in train}
    copies = sum(visit_signature(patient) in training_records for patient in synthetic)
    return copies / len(synthetic)


def min_distances(
    queries: sparse.csr_matrix, targets: sparse.csr_matrix, metric: str = "jaccard"
) -> np.ndarray:
    """Distance from each binary query row to its nearest target row: ``"jaccard"`` (two empty
    sets are at distance 0) or ``"hamming"`` (number of codes in one set only)."""
    if metric not in ("jaccard", "hamming"):
        raise ValueError(f"metric must be 'jaccard' or 'hamming', got {metric!r}")
    if targets.shape[0] == 0:
        raise ValueError("min_distances needs at least one target record")
    query_sizes = np.asarray(queries.sum(axis=1)).ravel()
    target_sizes = np.asarray(targets.sum(axis=1)).ravel()
    targets_t = targets.T.tocsc()
    nearest = np.empty(queries.shape[0], dtype=np.float64)
    for start in range(0, queries.shape[0], _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, queries.shape[0])
        shared = (queries[start:stop] @ targets_t).toarray()  # [chunk, n_targets]
        sizes = query_sizes[start:stop, None] + target_sizes[None, :]
        if metric == "hamming":
            distance = sizes - 2 * shared
        else:
            union = sizes - shared
            with np.errstate(divide="ignore", invalid="ignore"):
                distance = np.where(union > 0, 1.0 - shared / np.maximum(union, 1), 0.0)
        nearest[start:stop] = distance.min(axis=1)
    return nearest


def closest_record_distances(query: Cohort, target: Cohort, metric: str = "jaccard") -> np.ndarray:
    """DCR of every ``query`` patient against ``target`` (code sets over all visits)."""
    index = CodeIndex.from_cohorts(query, target)
    return min_distances(
        patient_code_matrix(query, index), patient_code_matrix(target, index), metric
    )


def dcr_metrics(synthetic: Cohort, train: Cohort, holdout: Cohort) -> dict[str, float]:
    """``dcr_median``, ``dcr_median_holdout`` and ``dcr_close_share`` (module docstring)."""
    synthetic_dcr = closest_record_distances(synthetic, train)
    holdout_dcr = closest_record_distances(holdout, train)
    fifth_percentile = float(np.percentile(holdout_dcr, 5))
    return {
        "dcr_median": float(np.median(synthetic_dcr)),
        "dcr_median_holdout": float(np.median(holdout_dcr)),
        "dcr_close_share": float(np.mean(synthetic_dcr < fifth_percentile)),
    }


def attack_accuracies(distances: np.ndarray, is_member: np.ndarray) -> tuple[float, float]:
    """(accuracy at the median threshold, best accuracy over thresholds) of "member if
    distance <= threshold"."""
    is_member = is_member.astype(bool)
    median_guess = distances <= np.median(distances)
    at_median = float(np.mean(median_guess == is_member))
    order = np.argsort(distances, kind="stable")
    sorted_distances, sorted_members = distances[order], is_member[order]
    # Predicting "member" for the first i records (by distance): true positives among them
    # plus true negatives after them; only cut where the distance changes.
    true_positives = np.concatenate([[0], np.cumsum(sorted_members)])
    negatives_after = np.concatenate([[0], np.cumsum(~sorted_members)])
    negatives_after = negatives_after[-1] - negatives_after
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_distances)) + 1, [len(distances)]])
    correct = true_positives[cuts] + negatives_after[cuts]
    return at_median, float(correct.max() / len(distances))


def membership_inference(
    synthetic: Cohort,
    train: Cohort,
    holdout: Cohort,
    *,
    seed: int = 0,
    max_records: int = 2000,
) -> dict[str, float]:
    """HALO's distance attack: ``mia_accuracy`` and ``mia_best_accuracy`` (module docstring)."""
    n_each = min(len(train), len(holdout), max_records)
    if n_each == 0 or len(synthetic) == 0:
        raise ValueError("membership_inference needs non-empty synthetic, train and holdout")
    rng = np.random.default_rng(seed)
    members = [train.patients[i] for i in np.sort(rng.choice(len(train), n_each, replace=False))]
    others = [holdout.patients[i] for i in np.sort(rng.choice(len(holdout), n_each, replace=False))]
    attack_set = members + others
    index = CodeIndex.from_cohorts(synthetic, attack_set)
    distances = min_distances(
        patient_code_matrix(attack_set, index),
        patient_code_matrix(synthetic, index),
        metric="hamming",
    )
    is_member = np.r_[np.ones(n_each, dtype=bool), np.zeros(n_each, dtype=bool)]
    at_median, best = attack_accuracies(distances, is_member)
    return {"mia_accuracy": at_median, "mia_best_accuracy": best}


def _fit_and_score(
    features: sparse.csr_matrix,
    labels: np.ndarray,
    test_features: sparse.csr_matrix,
    test_labels: np.ndarray,
    seed: int,
) -> float:
    classes = np.unique(labels)
    if len(classes) == 1:
        return float(np.mean(test_labels == classes[0]))
    model = LogisticRegression(max_iter=300, random_state=seed)
    with threadpool_limits(1):  # small fits: BLAS threads only add contention
        model.fit(features, labels)
    return float(np.mean(model.predict(test_features) == test_labels))


def attribute_inference(
    synthetic: Cohort,
    train: Cohort,
    holdout: Cohort,
    *,
    seed: int = 0,
    max_records: int = 2000,
    band_years: int = 10,
    with_baseline: bool = True,
) -> dict[str, float]:
    """Sex and age-band inference of training patients from their codes (module docstring);
    ``with_baseline=False`` skips the ``*_baseline`` and ``*_majority`` keys, which do not
    depend on ``synthetic``."""
    if len(synthetic) == 0 or len(train) == 0 or len(holdout) == 0:
        raise ValueError("attribute_inference needs non-empty synthetic, train and holdout")
    rng = np.random.default_rng(seed)
    n_targets = min(len(train), max_records)
    targets = [train.patients[i] for i in np.sort(rng.choice(len(train), n_targets, replace=False))]
    index = CodeIndex.categories_of(synthetic, holdout, targets)
    syn_features = patient_code_matrix(synthetic, index)
    holdout_features = patient_code_matrix(holdout, index)
    target_features = patient_code_matrix(targets, index)
    attributes = {
        "sex": lambda patient: patient.sex,
        "age": lambda patient: age_band(patient.age, band_years),
    }
    metrics = {}
    for name, attribute in attributes.items():
        syn_labels = np.array([attribute(p) for p in synthetic])
        holdout_labels = np.array([attribute(p) for p in holdout])
        target_labels = np.array([attribute(p) for p in targets])
        metrics[f"{name}_inference_accuracy"] = _fit_and_score(
            syn_features, syn_labels, target_features, target_labels, seed
        )
        if not with_baseline:
            continue
        metrics[f"{name}_inference_baseline"] = _fit_and_score(
            holdout_features, holdout_labels, target_features, target_labels, seed
        )
        _, counts = np.unique(target_labels, return_counts=True)
        metrics[f"{name}_inference_majority"] = float(counts.max() / counts.sum())
    return metrics


def privacy_metrics(
    synthetic: Cohort, train: Cohort, holdout: Cohort, *, seed: int = 0, with_baseline: bool = True
) -> dict[str, float]:
    """Every privacy metric of this module for ``synthetic`` against ``train``."""
    return {
        "exact_copy_rate": exact_copy_rate(synthetic, train),
        **dcr_metrics(synthetic, train, holdout),
        **membership_inference(synthetic, train, holdout, seed=seed),
        **attribute_inference(synthetic, train, holdout, seed=seed, with_baseline=with_baseline),
    }
