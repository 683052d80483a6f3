"""Tests of the validity metrics (course_lib.evaluation.validity) on hand-counted cohorts."""

from __future__ import annotations

import pytest

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation.validity import repeat_counts, rule_violations, validity_metrics


def make_patient(subject_id: int, sex: str, visits: list[tuple[float, list[str]]]) -> Patient:
    return Patient(subject_id, sex, visits[0][0], [Visit(codes, age) for age, codes in visits])


# Code rules (MCE v32): 185 male; 6390 female + maternity (12-55); 7700 newborn; 41401 adult (15+).
# check_code returns the first rule broken in sorted order, so 6390 in a man reads "female".
COHORT = Cohort(
    [
        # man, 70-71: a duplicate 4019 in visit 1, 185 repeated in visit 2, 6390 -> "female" (sex)
        make_patient(1, "M", [(70, ["4019", "185", "4019"]), (71, ["6390", "4280", "185"])]),
        # woman, 30-31: 7700 -> "newborn" (age); 41401 and 6390 are fine at 31
        make_patient(2, "F", [(30, ["7700"]), (31, ["41401", "6390"])]),
        # girl, 10: 41401 -> "adult" (age); 185 -> "male" (sex)
        make_patient(3, "F", [(10, ["41401", "185"])]),
        # woman, 60: 6390 -> "maternity" (age, outside 12-55); BOGUS is no ICD-9 code
        make_patient(4, "F", [(60, ["6390", "BOGUS"])]),
    ]
)
# 13 code occurrences: 6 + 3 + 2 + 2.


def test_rule_violations_name_each_broken_rule_and_its_family():
    violations = rule_violations(COHORT)
    found = set(zip(violations["SUBJECT_ID"], violations["code"], violations["rule"], strict=True))
    assert found == {
        (1, "6390", "female"),
        (2, "7700", "newborn"),
        (3, "41401", "adult"),
        (3, "185", "male"),
        (4, "6390", "maternity"),
    }
    families = dict(zip(violations["rule"], violations["family"], strict=True))
    assert families == {
        "female": "sex",
        "male": "sex",
        "newborn": "age",
        "adult": "age",
        "maternity": "age",
    }


def test_validity_rates_match_the_hand_count():
    metrics = validity_metrics(COHORT)
    assert metrics["age_violation_rate"] == pytest.approx(3 / 13)  # 7700, 41401, 6390 at 60
    assert metrics["sex_violation_rate"] == pytest.approx(2 / 13)  # 6390 in a man, 185 in a girl
    assert metrics["age_violation_patient_rate"] == pytest.approx(3 / 4)  # patients 2, 3, 4
    assert metrics["sex_violation_patient_rate"] == pytest.approx(2 / 4)  # patients 1, 3
    assert metrics["unknown_code_rate"] == pytest.approx(1 / 13)  # BOGUS
    assert metrics["duplicate_rate"] == pytest.approx(1 / 13)  # the second 4019
    # distinct codes per visit: 2 + 3 + 1 + 2 + 2 + 2 = 12; one carried over (185)
    assert metrics["cross_visit_repeat_rate"] == pytest.approx(1 / 12)
    assert repeat_counts(COHORT) == (13, 1, 12, 1)


def test_the_age_of_the_visit_counts_not_the_age_at_the_first_visit():
    # 41401 is adult-only (15+): invalid at 14, valid three visits later at 16.
    patient = make_patient(7, "M", [(14, ["4019"]), (16, ["41401"])])
    assert validity_metrics(Cohort([patient]))["age_violation_rate"] == 0.0
    patient = make_patient(8, "M", [(14, ["41401"]), (16, ["4019"])])
    assert validity_metrics(Cohort([patient]))["age_violation_rate"] == pytest.approx(1 / 2)


def test_empty_patients_give_nan_rates_and_bad_sex_is_named():
    metrics = validity_metrics(Cohort([Patient(1, "F", 40.0, [])]))
    assert metrics["age_violation_rate"] != metrics["age_violation_rate"]  # NaN
    with pytest.raises(ValueError, match="patient 9: sex must be"):
        validity_metrics(Cohort([make_patient(9, "X", [(40, ["185"])])]))
