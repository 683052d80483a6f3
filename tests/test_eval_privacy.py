"""Tests of the privacy metrics (course_lib.evaluation.privacy) on hand-computed cohorts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation.privacy import (
    attack_accuracies,
    attribute_inference,
    dcr_metrics,
    exact_copy_rate,
    membership_inference,
    min_distances,
    privacy_metrics,
)


def make_patient(
    subject_id: int, visits: list[list[str]], sex: str = "F", age: float = 50.0
) -> Patient:
    return Patient(subject_id, sex, age, [Visit(codes, age + i) for i, codes in enumerate(visits)])


def cohort_of(*code_sets: list[str], first_id: int = 1) -> Cohort:
    """One single-visit patient per code set."""
    return Cohort([make_patient(first_id + i, [codes]) for i, codes in enumerate(code_sets)])


def test_exact_copies_compare_visit_sequences_of_code_sets():
    train = Cohort([make_patient(1, [["a", "b"], ["c"]]), make_patient(2, [["d"]])])
    synthetic = Cohort(
        [
            make_patient(3, [["b", "a"], ["c"]]),  # same sets, code order inside a visit ignored
            make_patient(4, [["c"], ["a", "b"]]),  # visit order differs: not a copy
            make_patient(5, [["d"]], sex="M", age=80),  # demographics ignored: a copy
            make_patient(6, [["d", "d"]]),  # a repeated code is still the set {d}: a copy
        ]
    )
    assert exact_copy_rate(synthetic, train) == pytest.approx(3 / 4)


def test_min_distances_jaccard_and_hamming_by_hand():
    # columns a, b, c; queries {a,b}, {c}, {}; targets {a}, {a,b,c}, {}
    queries = sparse.csr_matrix(np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=float))
    targets = sparse.csr_matrix(np.array([[1, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=float))
    # {a,b}: 1-1/2, 1-2/3, 1 -> 1/3; {c}: 1, 1-1/3, 1 -> 2/3; {}: the empty target -> 0
    assert min_distances(queries, targets, "jaccard") == pytest.approx([1 / 3, 2 / 3, 0.0])
    # {a,b}: 1, 1, 2 -> 1; {c}: 2, 2, 1 -> 1; {}: 1, 3, 0 -> 0
    assert min_distances(queries, targets, "hamming") == pytest.approx([1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="metric must be"):
        min_distances(queries, targets, "cosine")


def test_dcr_metrics_by_hand():
    train = cohort_of(["a"], ["b"], ["c", "d"])
    holdout = cohort_of(["a", "e"], ["b"], ["f"], first_id=10)  # DCR 1/2, 0, 1
    synthetic = cohort_of(["a"], ["c", "d"], ["g"], first_id=20)  # DCR 0, 0, 1
    metrics = dcr_metrics(synthetic, train, holdout)
    assert metrics["dcr_median"] == 0.0
    assert metrics["dcr_median_holdout"] == 0.5
    # 5th percentile of [0, 0.5, 1] (linear) = 0.05; two synthetic records are closer
    assert metrics["dcr_close_share"] == pytest.approx(2 / 3)


def test_attack_accuracies_median_and_best_threshold_by_hand():
    distances = np.array([0.0, 1, 2, 3, 4, 5])
    is_member = np.array([True, False, True, True, False, False])
    # median 2.5 -> "member" for 0, 1, 2: right on 0, 2, 4, 5 -> 4/6;
    # the best cut (<= 3) is wrong only on distance 1 -> 5/6
    assert attack_accuracies(distances, is_member) == pytest.approx((4 / 6, 5 / 6))
    ties = attack_accuracies(np.array([0.0, 0, 1, 1]), np.array([True, False, True, False]))
    assert ties == pytest.approx((0.5, 0.5))


def test_membership_inference_sees_copies_and_not_strangers():
    train = cohort_of(["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"])
    holdout = cohort_of(["a", "i"], ["c", "j"], ["e", "k"], ["g", "l"], first_id=10)
    copied = membership_inference(train, train, holdout, seed=0)
    # members at distance 0, non-members at 2: the median threshold (1) separates them
    assert copied == {"mia_accuracy": 1.0, "mia_best_accuracy": 1.0}
    strangers = cohort_of(["x", "y"], ["w", "z"], first_id=20)
    # every record is at Hamming distance 4 from every synthetic one: no information
    assert membership_inference(strangers, train, holdout, seed=0) == {
        "mia_accuracy": 0.5,
        "mia_best_accuracy": 0.5,
    }


def test_attribute_inference_learns_sex_from_sex_specific_codes():
    # 185 (prostate) only in men, 2189 (leiomyoma) only in women; age band 40 vs 70 by 4280
    def population(first_id: int) -> Cohort:
        patients = []
        for i, (sex, code) in enumerate([("M", "185")] * 4 + [("F", "2189")] * 2):
            age, marker = (70.0, "4280") if i % 2 else (40.0, "4019")
            patients.append(make_patient(first_id + i, [[code, marker]], sex, age))
        return Cohort(patients)

    train, holdout, synthetic = population(1), population(20), population(40)
    metrics = attribute_inference(synthetic, train, holdout, seed=0)
    assert metrics["sex_inference_accuracy"] == 1.0
    assert metrics["age_inference_accuracy"] == 1.0
    assert metrics["sex_inference_majority"] == pytest.approx(4 / 6)
    assert metrics["age_inference_majority"] == pytest.approx(3 / 6)
    assert metrics["sex_inference_baseline"] == 1.0
    # a synthetic cohort of one sex can only predict that sex: 4 of 6 training patients are men
    men_only = Cohort([p for p in synthetic if p.sex == "M"])
    lean = attribute_inference(men_only, train, holdout, seed=0, with_baseline=False)
    assert lean["sex_inference_accuracy"] == pytest.approx(4 / 6)
    assert "sex_inference_baseline" not in lean


def test_privacy_metrics_keys_and_empty_inputs():
    train = cohort_of(["a", "b"], ["c"])
    holdout = cohort_of(["a"], ["d"], first_id=10)
    metrics = privacy_metrics(cohort_of(["a", "b"], first_id=20), train, holdout)
    assert metrics["exact_copy_rate"] == 1.0
    assert metrics["dcr_median"] == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        exact_copy_rate(Cohort([]), train)
    with pytest.raises(ValueError, match="non-empty"):
        membership_inference(Cohort([]), train, holdout)
