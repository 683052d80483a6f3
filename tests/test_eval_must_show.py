"""Issue 14's must-show checks on the course's simulator (1,000 real patients per sample).

* A second simulator draw as the synthetic cohort: every new metric's interval overlaps the
  floor's interval, detection AUC <= 0.6, no alarm.
* The notes' collapsed generator (31 codes, two chapters per patient): detection AUC >= 0.9,
  beta recall far below its floor, the mode-collapse alarms fire.
* A copy of the training split: the privacy alarm fires.
"""

from __future__ import annotations

import numpy as np
import pytest

from course_lib import icd9
from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation import evaluate_cohorts
from course_lib.evaluation.uncertainty import intervals_overlap
from course_lib.simulate import simulate_cohort, simulate_outcomes

N_PATIENTS = 1000
NEW_METRICS = (
    "detection_auc",
    "alpha_precision",
    "beta_recall",
    "authenticity",
    "dcr_holdout_share",
    "attribute_inference_f1",
    "visits_per_patient_wasserstein",
    "codes_per_visit_wasserstein",
    "days_between_visits_wasserstein",
    "unigram_patient_r2",
    "pair_patient_r2",
    "sequential_patient_r2",
    "tstr_oracle_auroc",
    "augmentation_auroc",
)


def _labeler(patients):
    return simulate_outcomes(patients, 7)


@pytest.fixture(scope="module")
def world():
    real, reference = simulate_cohort(N_PATIENTS, 1), simulate_cohort(N_PATIENTS, 2)
    return real, reference, simulate_cohort(2 * N_PATIENTS, 3)


def _evaluate(synthetic: Cohort, world) -> object:
    real, reference, train = world
    return evaluate_cohorts(
        synthetic, real, train=train, reference=reference, outcome_labeler=_labeler
    )


def collapsed_cohort(template: Cohort) -> Cohort:
    """31 codes: one gastric 536.x and one complication 999.x code per patient."""
    gastric = ["5360", "5361", "5362", "5363", "53640", "53641", "5368", "5369"]
    complications = [code for code in sorted(icd9.code_table()) if code.startswith("999")][:23]
    rng = np.random.default_rng(5)
    patients = [
        Patient(
            900_000 + row,
            p.sex,
            p.age,
            [Visit([str(rng.choice(gastric)), str(rng.choice(complications))], p.age)],
        )
        for row, p in enumerate(template)
    ]
    return Cohort(patients)


def test_a_second_simulator_draw_is_within_the_floor(world):
    evaluation = _evaluate(Cohort(simulate_cohort(N_PATIENTS, 4).patients), world)
    assert evaluation["detection_auc"] <= 0.6
    assert evaluation.alarms == []
    off = [
        f"{key}: {evaluation.intervals[key]} vs floor {evaluation.intervals[f'{key}_floor']}"
        for key in NEW_METRICS
        if not intervals_overlap(evaluation.intervals[key], evaluation.intervals[f"{key}_floor"])
    ]
    assert not off, "\n".join(off)


def test_the_collapsed_generator_is_detected(world):
    collapsed = collapsed_cohort(simulate_cohort(N_PATIENTS, 4))
    evaluation = _evaluate(collapsed, world)
    assert evaluation["unique_codes"] == 31
    assert evaluation["detection_auc"] >= 0.9
    assert evaluation["beta_recall"] < evaluation["beta_recall_floor"] / 4
    assert evaluation.intervals["beta_recall"][1] < evaluation.intervals["beta_recall_floor"][0]
    alarms = [alarm.split(":")[0] for alarm in evaluation.alarms]
    assert {"unique_codes", "chapters_per_patient_mode_share"} <= set(alarms)


def test_a_copy_of_the_training_split_fires_the_privacy_alarm(world):
    _, _, train = world
    evaluation = _evaluate(Cohort(train.patients), world)
    assert evaluation["exact_copy_rate"] == 1.0
    assert evaluation["authenticity"] == 0.0  # every point sits on a training patient
    # train is cut to the holdout's size, so only half the copies have their original among
    # the compared training records: about 0.5 * 1 + 0.5 * 0.5 (ties count one half)
    assert evaluation["dcr_holdout_share"] > evaluation["dcr_holdout_share_floor"] + 0.2
    privacy = [alarm for alarm in evaluation.alarms if alarm.startswith("privacy:")]
    assert [alarm.split()[1] for alarm in privacy] == ["exact_copy_rate", "dcr_holdout_share"]
