"""Tests of the diversity metrics and mode-collapse alarms (course_lib.evaluation.diversity)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation.diversity import (
    AlarmThresholds,
    distributions_for_plots,
    diversity_metrics,
    mode_collapse_alarms,
    patient_chapters,
    top_code_share,
)


def make_patient(subject_id: int, visits: list[list[str]]) -> Patient:
    return Patient(
        subject_id, "F", 50.0, [Visit(codes, 50.0 + i) for i, codes in enumerate(visits)]
    )


# Chapters: 4019, 4280 -> 390-459; 25000 -> 240-279; 5361 -> 520-579; 99859 -> 800-999;
# 5849 -> 580-629; V3000 -> V.
SYNTHETIC = Cohort(
    [
        make_patient(1, [["4019"], ["25000"]]),  # 2 codes, 2 chapters
        make_patient(2, [["4019", "4019"]]),  # 1 code, 1 chapter
        make_patient(3, [["4019", "5361"], ["99859"]]),  # 3 codes, 3 chapters
    ]
)
REAL = Cohort(
    [
        make_patient(4, [["4019", "4280"]]),  # 2 codes, 1 chapter
        make_patient(5, [["25000"], ["5849"]]),  # 2 codes, 2 chapters
        make_patient(6, [["V3000"]]),  # 1 code, 1 chapter
    ]
)


def test_diversity_metrics_by_hand():
    metrics = diversity_metrics(SYNTHETIC, REAL)
    assert metrics["unique_codes"] == 4
    assert metrics["coverage"] == pytest.approx(2 / 5)  # 4019 and 25000 of the 5 real codes
    assert metrics["top_code_share"] == pytest.approx(1.0)  # every synthetic patient has 4019
    assert metrics["codes_per_patient_mean"] == pytest.approx(2.0)
    assert metrics["codes_per_patient_std"] == pytest.approx(math.sqrt(2 / 3))  # [2, 1, 3]
    assert metrics["chapters_per_patient_mean"] == pytest.approx(2.0)  # [2, 1, 3]
    # W1 of equal-size samples = mean |sorted differences|: [1,2,3] vs [1,2,2] and [1,1,2]
    assert metrics["codes_per_patient_wasserstein"] == pytest.approx(1 / 3)
    assert metrics["chapters_per_patient_wasserstein"] == pytest.approx(2 / 3)
    assert metrics["unique_codes_real"] == 5
    assert metrics["top_code_share_real"] == pytest.approx(1 / 3)
    assert metrics["chapters_per_patient_std_real"] == pytest.approx(np.std([1, 2, 1]))


def test_top_code_share_names_the_code_and_ties_break_by_code():
    assert top_code_share(SYNTHETIC) == ("4019", 1.0)
    assert top_code_share(REAL) == ("25000", pytest.approx(1 / 3))
    with pytest.raises(ValueError, match="non-empty"):
        top_code_share(Cohort([]))


def test_tokens_that_are_not_codes_have_no_chapter():
    assert patient_chapters(make_patient(1, [["4019", "<v>", "CAT_390-459"]])) == {"390-459"}


def test_distributions_for_plots_are_long_and_complete():
    table = distributions_for_plots(SYNTHETIC, REAL)
    assert set(table.columns) == {"cohort", "measure", "value"}
    assert len(table) == 2 * 3 * 3  # cohorts x patients x (visits, codes, chapters)
    codes = table[(table["cohort"] == "synthetic") & (table["measure"] == "codes")]
    assert codes["value"].tolist() == [2, 1, 3]


# The notes' collapse: 31 unique codes, top code in 12.5% of patients, every patient exactly 2
# chapters; floor values of the order a healthy real sample of the same size shows.
BRIEF_CASE = {
    "unique_codes": 31.0,
    "top_code_share": 0.125,
    "chapters_per_patient_std": 0.0,
    "unique_codes_floor": 2746.0,
    "top_code_share_floor": 0.119,
    "chapters_per_patient_std_floor": 2.18,
}


def test_the_briefs_collapse_trips_the_alarms():
    alarms = mode_collapse_alarms(BRIEF_CASE)
    assert len(alarms) == 2
    assert alarms[0].startswith(f"unique_codes: 31 codes < {0.4 * 2746:.1f}")
    assert alarms[1].startswith("chapters_per_patient_std: 0.000 < 0.545")


def test_a_healthy_sample_trips_no_alarm():
    healthy = {
        "unique_codes": 2824.0,
        "top_code_share": 0.1175,
        "chapters_per_patient_std": 2.35,
        "unique_codes_floor": 2746.0,
        "top_code_share_floor": 0.119,
        "chapters_per_patient_std_floor": 2.18,
    }
    assert mode_collapse_alarms(healthy) == []


def test_one_dominant_code_trips_the_top_code_alarm():
    metrics = dict(BRIEF_CASE, unique_codes=2000.0, chapters_per_patient_std=2.0)
    metrics["top_code_share"] = 0.25  # > 2 x 0.119
    assert mode_collapse_alarms(metrics) == [
        "top_code_share: 25.0% of patients > 23.8% (one dominant code)"
    ]


def test_reference_values_fall_back_to_real_then_to_absolute_limits():
    no_floor = {"unique_codes": 31.0, "top_code_share": 0.125, "chapters_per_patient_std": 1.0}
    with_real = dict(no_floor, unique_codes_real=70.0, chapters_per_patient_std_real=1.0)
    assert mode_collapse_alarms(with_real) == []  # 31 >= 40% of 70
    assert len(mode_collapse_alarms(no_floor)) == 1  # 31 < the absolute 100
    strict = AlarmThresholds(unique_codes_ratio=0.5)
    assert len(mode_collapse_alarms(with_real, strict)) == 1
    nan_floor = dict(with_real, unique_codes_floor=float("nan"))
    assert mode_collapse_alarms(nan_floor) == []  # NaN floor -> the real value
    with pytest.raises(ValueError, match="top_code_share"):
        mode_collapse_alarms({"unique_codes": 1.0, "chapters_per_patient_std": 1.0})


def test_lesson_10s_collapse_trips_the_alarms():
    """281 codes where a real sample of that size has about 1,000, and every patient about
    two chapters: a spread that is not 0 but one chapter count for most patients."""
    lesson_10 = {
        "unique_codes": 281.0,
        "top_code_share": 0.15,
        "chapters_per_patient_std": 0.7,
        "chapters_per_patient_mode_share": 0.72,
        "unique_codes_real": 1010.0,
        "top_code_share_real": 0.11,
        "chapters_per_patient_std_real": 2.6,
        "chapters_per_patient_mode_share_real": 0.21,
    }
    alarms = mode_collapse_alarms(lesson_10)
    assert [alarm.split(":")[0] for alarm in alarms] == [
        "unique_codes",
        "chapters_per_patient_mode_share",
    ]
    assert "72.0% of patients have the same number of chapters > 42.0%" in alarms[1]
    healthy = dict(lesson_10, unique_codes=900.0, chapters_per_patient_mode_share=0.25)
    assert mode_collapse_alarms(healthy) == []


def test_mode_share_of_chapter_counts():
    metrics = diversity_metrics(SYNTHETIC, SYNTHETIC)
    counts = [len(patient_chapters(p)) for p in SYNTHETIC]
    expected = max(counts.count(c) for c in set(counts)) / len(counts)
    assert metrics["chapters_per_patient_mode_share"] == pytest.approx(expected)
    assert metrics["chapters_per_patient_mode_share_real"] == pytest.approx(expected)
