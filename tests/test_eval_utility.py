"""Tests of TSTR/TRTR utility (course_lib.evaluation.utility)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation.encoding import CodeIndex
from course_lib.evaluation.utility import (
    UTILITY_KEYS,
    code_count_features,
    fit_auroc,
    outcome_labels,
    utility_evaluation,
    utility_metrics,
)

CHF, HYPERTENSION = "4280", "4019"


def make_patient(subject_id: int, codes: list[str]) -> Patient:
    return Patient(subject_id, "F", 60.0, [Visit(codes, 60.0)])


def labelled(first_id: int, n_each: int, flip: bool = False) -> Cohort:
    """``n_each`` patients with CHF (LVEF_REDUCED 1) and ``n_each`` with hypertension only (0);
    ``flip`` swaps the labels."""
    patients = [make_patient(first_id + i, [CHF, HYPERTENSION]) for i in range(n_each)]
    patients += [make_patient(first_id + n_each + i, [HYPERTENSION]) for i in range(n_each)]
    labels = [1] * n_each + [0] * n_each
    if flip:
        labels = [1 - label for label in labels]
    outcomes = pd.DataFrame(
        {"SUBJECT_ID": [p.subject_id for p in patients], "LVEF_REDUCED": labels}
    )
    return Cohort(patients, outcomes)


def chf_labeler(patients: list[Patient]) -> pd.DataFrame:
    """The toy ground truth: reduced LVEF exactly when the patient has CHF."""
    return pd.DataFrame(
        {
            "SUBJECT_ID": [p.subject_id for p in patients],
            "LVEF_REDUCED": [int(CHF in p.code_set) for p in patients],
        }
    )


def test_outcome_labels_come_from_outcomes_then_labeler_in_patient_order():
    cohort = labelled(1, 2)
    cohort.outcomes = cohort.outcomes.iloc[::-1]  # row order must not matter
    assert outcome_labels(cohort).tolist() == [1, 1, 0, 0]
    unlabelled = Cohort(cohort.patients)
    assert outcome_labels(unlabelled) is None
    assert outcome_labels(unlabelled, labeler=chf_labeler).tolist() == [1, 1, 0, 0]


def test_outcome_labels_reject_missing_subjects_and_non_binary_values():
    cohort = labelled(1, 2)
    cohort.outcomes = cohort.outcomes.iloc[1:]
    with pytest.raises(ValueError, match="no 'LVEF_REDUCED' for SUBJECT_ID \\[1\\]"):
        outcome_labels(cohort)
    cohort = labelled(1, 2)
    cohort.outcomes["LVEF_REDUCED"] = [0, 1, 2, 0]
    with pytest.raises(ValueError, match="must be binary"):
        outcome_labels(cohort)
    with pytest.raises(ValueError, match="columns SUBJECT_ID and 'MISSING'"):
        outcome_labels(Cohort(cohort.patients), "MISSING", labeler=chf_labeler)


def test_code_count_features_are_log1p_counts_on_a_fixed_vocabulary():
    index = CodeIndex((CHF, HYPERTENSION))
    patient = Patient(1, "F", 60.0, [Visit([CHF, "9999"], 60.0), Visit([CHF], 61.0)])
    features = code_count_features(Cohort([patient]), index).toarray()
    assert features == pytest.approx(np.array([[math.log(3), 0.0]]))  # 9999 not in vocabulary


def test_tstr_and_trtr_auroc_by_hand():
    real, train = labelled(1, 10), labelled(100, 10)
    # synthetic patients whose requested labels follow the right label model: AUROC 1
    metrics = utility_metrics(labelled(200, 10), real, train)
    assert math.isnan(metrics.pop("tstr_oracle_auroc"))  # no labeler: no oracle figure
    assert metrics == {"tstr_auroc": 1.0, "trtr_auroc": 1.0, "augmentation_auroc": 1.0}
    # learned backwards: every real positive ranked below every negative: AUROC 0
    assert utility_metrics(labelled(300, 10, flip=True), real, train)["tstr_auroc"] == 0.0
    # unlabelled synthetic patients labelled by the ground-truth model: the oracle only
    unlabelled = Cohort(labelled(400, 10).patients)
    metrics = utility_metrics(unlabelled, real, train, outcome_labeler=chf_labeler)
    assert math.isnan(metrics.pop("tstr_auroc"))  # no requested labels
    assert metrics == {"tstr_oracle_auroc": 1.0, "trtr_auroc": 1.0, "augmentation_auroc": 1.0}


def test_utility_is_nan_without_labels_or_training_split():
    real = labelled(1, 10)
    unlabelled = Cohort(labelled(400, 10).patients)
    metrics = utility_metrics(unlabelled, real, None)
    assert all(math.isnan(value) for value in metrics.values())
    metrics = utility_metrics(labelled(200, 10), real, None)
    assert metrics["tstr_auroc"] == 1.0 and math.isnan(metrics["trtr_auroc"])
    # one class only in training: AUROC undefined
    one_class = Cohort(real.patients[:10], real.outcomes.iloc[:10])
    assert math.isnan(fit_auroc(*_features(one_class), *_features(real)))


def test_codes_outside_the_training_vocabulary_carry_no_signal():
    real, train = labelled(1, 10), labelled(100, 10)
    # the synthetic signal lives in a code the real training split never uses: the features
    # of every synthetic patient are then identical, every real patient gets the same score
    patients = [make_patient(200 + i, ["99999", HYPERTENSION]) for i in range(10)]
    patients += [make_patient(300 + i, [HYPERTENSION]) for i in range(10)]
    outcomes = pd.DataFrame(
        {"SUBJECT_ID": [p.subject_id for p in patients], "LVEF_REDUCED": [1] * 10 + [0] * 10}
    )
    metrics = utility_metrics(Cohort(patients, outcomes), real, train)
    assert metrics["tstr_auroc"] == pytest.approx(0.5)


def _features(cohort: Cohort):
    index = CodeIndex((CHF, HYPERTENSION))
    return code_count_features(cohort, index), outcome_labels(cohort)


def test_augmentation_and_intervals():
    real, train = labelled(1, 10), labelled(100, 10)
    backwards = labelled(300, 10, flip=True)
    metrics, intervals = utility_evaluation(backwards, real, train)
    assert metrics["tstr_auroc"] == 0.0 and metrics["trtr_auroc"] == 1.0
    # real and backwards synthetic patients cancel out: the augmented model is no better
    assert metrics["augmentation_auroc"] < metrics["trtr_auroc"]
    assert math.isnan(metrics["tstr_oracle_auroc"]) and "tstr_oracle_auroc" not in intervals
    for key in set(UTILITY_KEYS) - {"tstr_oracle_auroc"}:
        low, high = intervals[key]
        assert low <= metrics[key] <= high
