"""Tests of detection, precision/recall, sequence statistics, bootstrap intervals and the new
privacy attacks (course_lib.evaluation.fidelity, .sequence, .uncertainty, .privacy)."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation.fidelity import (
    detection_auc,
    precision_recall_indicators,
    precision_recall_metrics,
)
from course_lib.evaluation.privacy import (
    attribute_inference_f1,
    closer_to_train_flags,
    mia_likelihood_auc,
    privacy_alarms,
    privacy_evaluation,
)
from course_lib.evaluation.sequence import sequence_distributions, sequence_metrics
from course_lib.evaluation.uncertainty import (
    auroc_with_interval,
    bootstrap_cohort,
    bootstrap_mean,
    intervals_overlap,
    percentile_interval,
)
from course_lib.simulate import simulate_cohort


def patient(subject_id: int, visits: list[list[str]], sex: str = "F", age: float = 50.0):
    return Patient(subject_id, sex, age, [Visit(codes, age + i) for i, codes in enumerate(visits)])


# ---------------------------------------------------------------------------- uncertainty


def test_auroc_with_interval_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.4 * labels, 1)  # many ties
    value, (low, high) = auroc_with_interval(labels, scores, seed=1)
    assert value == pytest.approx(roc_auc_score(labels, scores))
    assert low < value < high and high - low < 0.2
    assert math.isnan(auroc_with_interval(np.ones(5), np.arange(5.0))[0])  # one class only


def test_bootstrap_mean_and_percentile_interval():
    flags = np.r_[np.ones(30), np.zeros(70)]
    low, high = bootstrap_mean(flags, seed=0)
    assert low < 0.3 < high and 0.15 < low and high < 0.45
    assert bootstrap_mean(np.ones(10)) == (1.0, 1.0)
    assert percentile_interval([1.0, math.nan, 3.0], level=1.0) == (1.0, 3.0)
    assert all(math.isnan(bound) for bound in percentile_interval([math.nan]))
    assert intervals_overlap((0, 1), (1, 2)) and not intervals_overlap((0, 1), (1.5, 2))
    assert not intervals_overlap((0, 1), (math.nan, 2))


def test_bootstrap_cohort_is_centred_on_the_observed_value():
    cohort = simulate_cohort(200, 3)

    def unique(c: Cohort) -> dict[str, float]:
        return {"unique_codes": float(len({code for p in c for code in p.code_set}))}

    observed = unique(cohort)
    low, high = bootstrap_cohort(unique, cohort, observed, seed=0)["unique_codes"]
    # resamples hold ~63% distinct patients, so fewer codes; the interval is re-centred
    assert low <= observed["unique_codes"] <= high


# ---------------------------------------------------------------------------- fidelity


def test_detection_tells_a_collapsed_cohort_from_real_and_not_a_second_draw():
    real, draw = simulate_cohort(300, 1), simulate_cohort(300, 2)
    collapsed = Cohort([patient(9000 + i, [["5361", "99859"]]) for i in range(300)])
    same, (low, high) = detection_auc(draw, real, seed=0)
    assert same < 0.6 and low < 0.5 < high + 0.05
    assert detection_auc(collapsed, real, seed=0)[0] > 0.95
    with pytest.raises(ValueError, match="at least 3 patients"):
        detection_auc(Cohort(collapsed.patients[:2]), real)


def test_precision_recall_indicators_by_hand():
    real = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    # a copy of every real point: authentic nowhere, full recall and precision
    _, precision, recall, authentic = precision_recall_indicators(real, real.copy())
    assert not authentic.any()
    assert recall[:, -1].all()
    # one synthetic point far away: outside every real ball, authentic
    _, precision, recall, authentic = precision_recall_indicators(real, np.array([[50.0]]))
    assert not precision.any() and authentic.all()
    assert recall.sum() == 0  # no real point has the far point as a close neighbour


def test_a_collapsed_cohort_keeps_precision_but_loses_recall():
    real, draw = simulate_cohort(400, 1), simulate_cohort(400, 2)
    collapsed = Cohort([patient(9000 + i, [[["4019", "25000"][i % 2]]]) for i in range(400)])
    healthy, intervals = precision_recall_metrics(draw, real)
    bad, _ = precision_recall_metrics(collapsed, real)
    assert bad["beta_recall"] < healthy["beta_recall"] - 0.3
    for key, (low, high) in intervals.items():
        assert low <= healthy[key] <= high, key


# ---------------------------------------------------------------------------- sequence


def test_sequence_distributions_use_admission_times_then_ages():
    timed = Patient(
        1,
        "F",
        50.0,
        [
            Visit(["4019"], 50.0, datetime(2100, 1, 1)),
            Visit(["4019", "25000"], 50.1, datetime(2100, 1, 31)),
        ],
    )
    aged = patient(2, [["4019"], ["5849"], ["5849"]])  # one year apart
    values = sequence_distributions(Cohort([timed, aged]))
    assert list(values["visits_per_patient"]) == [2, 3]
    assert list(values["codes_per_visit"]) == [1, 2, 1, 1, 1]
    assert values["days_between_visits"] == pytest.approx([30.0, 365.25, 365.25])


def test_sequence_metrics_zero_against_itself_and_patient_level_r2():
    cohort = simulate_cohort(150, 4)
    metrics = sequence_metrics(cohort, cohort)
    for key in ("visits_per_patient", "codes_per_visit", "days_between_visits"):
        assert metrics[f"{key}_wasserstein"] == 0.0
    for key in ("unigram", "pair", "sequential"):
        assert metrics[f"{key}_patient_r2"] == pytest.approx(1.0)
    single = Cohort([patient(1, [["4019"]])])
    assert math.isnan(sequence_metrics(single, single)["days_between_visits_wasserstein"])


# ---------------------------------------------------------------------------- privacy


def test_dcr_holdout_share_counts_ties_as_half():
    train = Cohort([patient(1, [["4019", "25000"]]), patient(2, [["5849"]])])
    holdout = Cohort([patient(3, [["4019", "25000"]]), patient(4, [["2724"]])])
    synthetic = Cohort(
        [patient(10, [["4019", "25000"]]), patient(11, [["5849"]]), patient(12, [["2724"]])]
    )
    flags = closer_to_train_flags(synthetic, train, holdout)
    assert list(flags) == [0.5, 1.0, 0.0]


def test_attribute_inference_f1_copies_the_neighbours_other_codes():
    # Known: sex, age band, and the real data's 100 most common codes (all of them here).
    train = Cohort([patient(1, [["4019", "V3000"]], sex="M")])
    real = Cohort([patient(5, [["4019"]])])
    leaky = Cohort([patient(7, [["4019", "V3000"]], sex="M"), patient(8, [["4019"]])])
    assert attribute_inference_f1(leaky, train, real) == 1.0
    wrong = Cohort([patient(7, [["4019", "E8889"]], sex="M")])
    assert attribute_inference_f1(wrong, train, real) == 0.0


def test_mia_likelihood_auc_and_privacy_alarms():
    value, (low, high) = mia_likelihood_auc([-1.0, -1.1, -0.9], [-3.0, -2.5, -2.8])
    assert value == 1.0 and high == 1.0
    with pytest.raises(ValueError, match="members and non-members"):
        mia_likelihood_auc([], [-1.0])
    quiet = {"exact_copy_rate": 0.01, "exact_copy_rate_floor": 0.0, "dcr_holdout_share": 0.55}
    assert privacy_alarms(quiet) == []
    loud = dict(quiet, exact_copy_rate=0.5, dcr_holdout_share=0.8, dcr_holdout_share_floor=0.5)
    assert [alarm.split()[1] for alarm in privacy_alarms(loud)] == [
        "exact_copy_rate",
        "dcr_holdout_share",
    ]


def test_privacy_evaluation_compares_every_synthetic_patient_with_intervals():
    train, holdout = simulate_cohort(120, 1), simulate_cohort(80, 2)
    synthetic = Cohort(train.patients[:30] + simulate_cohort(90, 3).patients)  # 30 of 120
    metrics, intervals = privacy_evaluation(synthetic, train, holdout)
    assert metrics["exact_copy_rate"] == pytest.approx(30 / 120, abs=0.02)
    assert metrics["dcr_holdout_share"] > 0.55
    for key, (low, high) in intervals.items():
        assert low <= metrics[key] <= high, key
    assert {"mia_accuracy", "attribute_inference_f1", "dcr_median"} <= set(intervals)
