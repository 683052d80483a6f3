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
* ``dcr_holdout_share`` (SDMetrics' DCR against a holdout): training and holdout patients are
  cut to the same size ``n``; the share of *all* synthetic patients whose nearest record (Jaccard
  distance on code sets) is a training record rather than a holdout record (ties count one
  half). 0.5 = the generator is as close to unseen patients as to the ones it saw.
* ``attribute_inference_f1`` (HALO): the attacker knows a training patient's sex, 10-year age
  band and which of the real data's 100 most common codes they have; they look up the nearest
  synthetic patient on those features (Hamming distance) and guess that the patient has that
  neighbour's other codes. Micro-F1 of the guessed other codes over up to 2,000 training
  patients; ``attribute_inference_f1_baseline`` is the same attack with the holdout patients
  in place of the synthetic ones (what public real data already gives away).
* ``mia_likelihood_auc`` (HALO's likelihood attack): AUROC of "member" scored by the model's own
  per-patient log-likelihood, training against held-out patients (0.5 = no leak);
  :func:`mia_likelihood_auc` takes the two arrays (:mod:`course_lib.evaluation.likelihood`
  computes them for a PromptBart model).

All synthetic patients are compared (no cut to the reference size): the shares are
size-independent, and a copy hidden among the patients a cut drops would go unseen.
:func:`privacy_alarms` fires when exact copies or ``dcr_holdout_share`` clearly exceed their
floors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from course_lib.cohort import SEXES, Cohort, Patient
from course_lib.evaluation.coherence import code_frequencies, top_codes
from course_lib.evaluation.encoding import CodeIndex, age_band, patient_code_matrix
from course_lib.evaluation.uncertainty import (
    Interval,
    auroc_with_interval,
    bootstrap_mean,
    bootstrap_records,
)

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
    return nearest_records(queries, targets, metric)[0]


def nearest_records(
    queries: sparse.csr_matrix, targets: sparse.csr_matrix, metric: str = "jaccard"
) -> tuple[np.ndarray, np.ndarray]:
    """``(distance, row)`` of each query row's nearest target row (see :func:`min_distances`;
    ties go to the first target row)."""
    if metric not in ("jaccard", "hamming"):
        raise ValueError(f"metric must be 'jaccard' or 'hamming', got {metric!r}")
    if targets.shape[0] == 0:
        raise ValueError("min_distances needs at least one target record")
    query_sizes = np.asarray(queries.sum(axis=1)).ravel()
    target_sizes = np.asarray(targets.sum(axis=1)).ravel()
    targets_t = targets.T.tocsc()
    nearest = np.empty(queries.shape[0], dtype=np.float64)
    rows = np.empty(queries.shape[0], dtype=np.int64)
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
        rows[start:stop] = distance.argmin(axis=1)
        nearest[start:stop] = distance[np.arange(stop - start), rows[start:stop]]
    return nearest, rows


def closest_record_distances(query: Cohort, target: Cohort, metric: str = "jaccard") -> np.ndarray:
    """DCR of every ``query`` patient against ``target`` (code sets over all visits)."""
    index = CodeIndex.from_cohorts(query, target)
    return min_distances(
        patient_code_matrix(query, index), patient_code_matrix(target, index), metric
    )


def dcr_metrics(synthetic: Cohort, train: Cohort, holdout: Cohort) -> dict[str, float]:
    """``dcr_median``, ``dcr_median_holdout`` and ``dcr_close_share`` (module docstring)."""
    return _dcr_summary(*_dcr_records(synthetic, train, holdout))


def _dcr_records(synthetic: Cohort, train: Cohort, holdout: Cohort) -> tuple[np.ndarray, ...]:
    return closest_record_distances(synthetic, train), closest_record_distances(holdout, train)


def _dcr_summary(synthetic_dcr: np.ndarray, holdout_dcr: np.ndarray) -> dict[str, float]:
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
    at_median, best = attack_accuracies(
        *_membership_records(synthetic, train, holdout, seed, max_records)
    )
    return {"mia_accuracy": at_median, "mia_best_accuracy": best}


def _membership_records(
    synthetic: Cohort, train: Cohort, holdout: Cohort, seed: int, max_records: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """Each attack record's Hamming distance to the synthetic set, and whether it is a member."""
    n_each = min(len(train), len(holdout), max_records)
    if n_each == 0 or len(synthetic) == 0:
        raise ValueError("membership_inference needs non-empty synthetic, train and holdout")
    rng = np.random.default_rng(seed)
    attack_set = _sample(train, n_each, rng) + _sample(holdout, n_each, rng)
    index = CodeIndex.from_cohorts(synthetic, attack_set)
    distances = min_distances(
        patient_code_matrix(attack_set, index),
        patient_code_matrix(synthetic, index),
        metric="hamming",
    )
    return distances, np.r_[np.ones(n_each, dtype=bool), np.zeros(n_each, dtype=bool)]


def _fit_and_check(
    features: sparse.csr_matrix,
    labels: np.ndarray,
    test_features: sparse.csr_matrix,
    test_labels: np.ndarray,
    seed: int,
) -> np.ndarray:
    """1.0 for each test record the fitted model labels right."""
    classes = np.unique(labels)
    if len(classes) == 1:
        return (test_labels == classes[0]).astype(float)
    model = LogisticRegression(max_iter=300, random_state=seed)
    with threadpool_limits(1):  # small fits: BLAS threads only add contention
        model.fit(features, labels)
    return (model.predict(test_features) == test_labels).astype(float)


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
    records = _attribute_records(
        synthetic, train, holdout, seed, max_records, band_years, with_baseline
    )
    return {key: float(flags.mean()) for key, flags in records.items()}


def _attribute_records(
    synthetic: Cohort,
    train: Cohort,
    holdout: Cohort,
    seed: int,
    max_records: int = 2000,
    band_years: int = 10,
    with_baseline: bool = True,
) -> dict[str, np.ndarray]:
    """``key -> 1.0 per training target guessed right`` for :func:`attribute_inference`."""
    if len(synthetic) == 0 or len(train) == 0 or len(holdout) == 0:
        raise ValueError("attribute_inference needs non-empty synthetic, train and holdout")
    targets = _sample(train, min(len(train), max_records), np.random.default_rng(seed))
    index = CodeIndex.categories_of(synthetic, holdout, targets)
    syn_features = patient_code_matrix(synthetic, index)
    holdout_features = patient_code_matrix(holdout, index)
    target_features = patient_code_matrix(targets, index)
    attributes = {
        "sex": lambda patient: patient.sex,
        "age": lambda patient: age_band(patient.age, band_years),
    }
    records = {}
    for name, attribute in attributes.items():
        syn_labels = np.array([attribute(p) for p in synthetic])
        holdout_labels = np.array([attribute(p) for p in holdout])
        target_labels = np.array([attribute(p) for p in targets])
        records[f"{name}_inference_accuracy"] = _fit_and_check(
            syn_features, syn_labels, target_features, target_labels, seed
        )
        if not with_baseline:
            continue
        records[f"{name}_inference_baseline"] = _fit_and_check(
            holdout_features, holdout_labels, target_features, target_labels, seed
        )
        values, counts = np.unique(target_labels, return_counts=True)
        records[f"{name}_inference_majority"] = (target_labels == values[counts.argmax()]) * 1.0
    return records


def copy_flags(synthetic: Cohort, train: Cohort) -> np.ndarray:
    """1.0 for each synthetic patient that copies a training patient's visit sequence."""
    training_records = {visit_signature(patient) for patient in train}
    return np.array([visit_signature(p) in training_records for p in synthetic], dtype=float)


def _sample(cohort: Cohort, n_records: int, rng: np.random.Generator) -> list[Patient]:
    rows = np.sort(rng.choice(len(cohort), n_records, replace=False))
    return [cohort.patients[row] for row in rows]


def closer_to_train_flags(
    synthetic: Cohort, train: Cohort, holdout: Cohort, *, seed: int = 0
) -> np.ndarray:
    """Per synthetic patient: 1 if its nearest record is a training record, 0 if a holdout
    record, 0.5 on a tie (train and holdout cut to the same size with ``seed``)."""
    if len(synthetic) == 0 or len(train) == 0 or len(holdout) == 0:
        raise ValueError("dcr_holdout_share needs non-empty synthetic, train and holdout")
    rng = np.random.default_rng(seed)
    n_each = min(len(train), len(holdout))
    members, others = _sample(train, n_each, rng), _sample(holdout, n_each, rng)
    index = CodeIndex.from_cohorts(synthetic, members, others)
    queries = patient_code_matrix(synthetic, index)
    to_train = min_distances(queries, patient_code_matrix(members, index))
    to_holdout = min_distances(queries, patient_code_matrix(others, index))
    return np.where(to_train < to_holdout, 1.0, np.where(to_train > to_holdout, 0.0, 0.5))


def _known_features(patients: Sequence[Patient], known: CodeIndex) -> sparse.csr_matrix:
    """Binary [sex one-hot | 10-year age band one-hot | known code presence]."""
    bands = np.array([min(age_band(p.age), 100) // 10 for p in patients], dtype=np.int64)
    sexes = np.array([SEXES.index(p.sex) for p in patients], dtype=np.int64)
    rows = np.arange(len(patients))
    demographics = sparse.csr_matrix(
        (np.ones(2 * len(patients)), (np.r_[rows, rows], np.r_[sexes, len(SEXES) + bands])),
        shape=(len(patients), len(SEXES) + 11),
    )
    return sparse.hstack([demographics, patient_code_matrix(patients, known)]).tocsr()


def attribute_inference_f1(
    knowledge: Cohort, train: Cohort, real: Cohort, *, seed: int = 0, max_records: int = 2000
) -> float:
    """HALO's attribute inference F1 with ``knowledge`` as the attacker's data (docstring);
    the 100 known codes are the most common codes of ``real``."""
    return _f1(_f1_records(knowledge, train, real, seed, max_records))


def _f1(records: np.ndarray) -> float:
    hits, guessed, actual = records.sum(axis=0)
    return float(2 * hits / (guessed + actual)) if guessed + actual else math.nan


def _f1_records(
    knowledge: Cohort, train: Cohort, real: Cohort, seed: int, max_records: int = 2000
) -> np.ndarray:
    """``[n_targets, 3]``: correctly guessed, guessed and actual other codes per target."""
    if len(knowledge) == 0 or len(train) == 0:
        raise ValueError("attribute_inference_f1 needs non-empty knowledge and train cohorts")
    targets = _sample(train, min(len(train), max_records), np.random.default_rng(seed))
    known = CodeIndex(tuple(sorted(top_codes(code_frequencies(real), 100))))
    _, nearest = nearest_records(
        _known_features(targets, known), _known_features(knowledge.patients, known), "hamming"
    )
    records = np.zeros((len(targets), 3))
    for row, (target, neighbour) in enumerate(zip(targets, nearest, strict=True)):
        truth = {code for code in target.code_set if code not in known.column}
        guess = {
            code for code in knowledge.patients[neighbour].code_set if code not in known.column
        }
        records[row] = (len(truth & guess), len(guess), len(truth))
    return records


def mia_likelihood_auc(
    member_log_likelihoods: Sequence[float],
    nonmember_log_likelihoods: Sequence[float],
    *,
    seed: int = 0,
) -> tuple[float, Interval]:
    """AUROC of "higher log-likelihood = training member" and its bootstrap interval.

    Pass per-patient log-likelihoods per token (longer records have lower totals) of training
    patients and of held-out patients; 0.5 = the model treats both alike (no leak).
    """
    members = np.asarray(member_log_likelihoods, dtype=np.float64)
    others = np.asarray(nonmember_log_likelihoods, dtype=np.float64)
    if members.size == 0 or others.size == 0:
        raise ValueError("mia_likelihood_auc needs log-likelihoods of members and non-members")
    labels = np.r_[np.ones(members.size), np.zeros(others.size)]
    return auroc_with_interval(labels, np.r_[members, others], seed=seed)


def privacy_evaluation(
    synthetic: Cohort, train: Cohort, holdout: Cohort, *, seed: int = 0, with_baseline: bool = True
) -> tuple[dict[str, float], dict[str, Interval]]:
    """Every privacy metric for all of ``synthetic`` against ``train``, each with a bootstrap
    interval over its records (synthetic patients, attack records or training targets)."""
    flags = {
        "exact_copy_rate": copy_flags(synthetic, train),
        "dcr_holdout_share": closer_to_train_flags(synthetic, train, holdout, seed=seed),
        **_attribute_records(synthetic, train, holdout, seed, with_baseline=with_baseline),
    }
    metrics = {key: float(values.mean()) for key, values in flags.items()}
    intervals = {key: bootstrap_mean(values, seed=seed) for key, values in flags.items()}
    synthetic_dcr, holdout_dcr = _dcr_records(synthetic, train, holdout)
    metrics |= _dcr_summary(synthetic_dcr, holdout_dcr)
    fifth = float(np.percentile(holdout_dcr, 5))
    intervals["dcr_median"] = bootstrap_records(
        lambda rows: float(np.median(synthetic_dcr[rows])), len(synthetic_dcr), seed=seed
    )
    intervals["dcr_median_holdout"] = bootstrap_records(
        lambda rows: float(np.median(holdout_dcr[rows])), len(holdout_dcr), seed=seed
    )
    intervals["dcr_close_share"] = bootstrap_mean(synthetic_dcr < fifth, seed=seed)
    distances, is_member = _membership_records(synthetic, train, holdout, seed)
    metrics["mia_accuracy"], metrics["mia_best_accuracy"] = attack_accuracies(distances, is_member)
    for position, key in enumerate(("mia_accuracy", "mia_best_accuracy")):
        intervals[key] = bootstrap_records(
            lambda rows, i=position: attack_accuracies(distances[rows], is_member[rows])[i],
            len(distances),
            seed=seed,
        )
    knowledge = {"attribute_inference_f1": synthetic}
    if with_baseline:
        knowledge["attribute_inference_f1_baseline"] = holdout
    for key, cohort in knowledge.items():
        records = _f1_records(cohort, train, holdout, seed)
        metrics[key] = _f1(records)
        intervals[key] = bootstrap_records(lambda rows, r=records: _f1(r[rows]), len(records))
    return metrics, intervals


def privacy_metrics(
    synthetic: Cohort, train: Cohort, holdout: Cohort, *, seed: int = 0, with_baseline: bool = True
) -> dict[str, float]:
    """Every privacy metric of this module for ``synthetic`` against ``train``."""
    return privacy_evaluation(synthetic, train, holdout, seed=seed, with_baseline=with_baseline)[0]


# Margins above the floor that count as "clearly above" (module docstring).
COPY_MARGIN = 0.02
DCR_SHARE_MARGIN = 0.10


MIA_AUC_MARGIN = 0.1  # AUROC points above the floor: a clear likelihood membership signal


def privacy_alarms(metrics: Mapping[str, float]) -> list[str]:
    """Alarms when ``exact_copy_rate``, ``dcr_holdout_share`` or ``mia_likelihood_auc`` clearly
    exceed their floors (by ``COPY_MARGIN``, ``DCR_SHARE_MARGIN`` and ``MIA_AUC_MARGIN``;
    floors 0, 0.5 and 0.5 when absent)."""
    alarms = []
    checks = (
        ("exact_copy_rate", 0.0, COPY_MARGIN, "synthetic patients copy training records"),
        ("dcr_holdout_share", 0.5, DCR_SHARE_MARGIN, "closer to training than to unseen patients"),
        (
            "mia_likelihood_auc",
            0.5,
            MIA_AUC_MARGIN,
            "the model's likelihood tells its training patients from unseen ones",
        ),
    )
    for key, default_floor, margin, meaning in checks:
        value = metrics.get(key, math.nan)
        floor = metrics.get(f"{key}_floor", math.nan)
        floor = default_floor if not math.isfinite(floor) else floor
        if math.isfinite(value) and value > floor + margin:
            alarms.append(
                f"privacy: {key} {value:.1%} > floor {floor:.1%} + {margin:.0%} ({meaning})"
            )
    return alarms
