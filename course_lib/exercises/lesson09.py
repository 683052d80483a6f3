"""Lesson 09's exercises: a chapter-level coherence metric and a k-anonymity privacy metric
(lesson 09).

Both checks use tiny hand-made cohorts whose answers can be worked out on paper (they are
spelled out next to each case), so a learner's error message says which property failed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.exercises import exercise_check, not_attempted, passed, require


def _cohort(*patients: tuple[str, float, Sequence[Sequence[str]]], first_id: int = 1) -> Cohort:
    """Patients as ``(sex, age, visits)``; visits as lists of dotless codes."""
    return Cohort(
        [
            Patient(first_id + i, sex, age, [Visit(list(codes), age) for codes in visits])
            for i, (sex, age, visits) in enumerate(patients)
        ]
    )


@exercise_check
def check_chapter_js_divergence(chapter_js_divergence: Callable[[Cohort, Cohort], float] | None):
    """Compare with values worked out by hand on five pairs of small cohorts."""
    name = "chapter_js_divergence"
    if chapter_js_divergence is None:
        return not_attempted(name, "write chapter_js_divergence(synthetic, real) -> float")
    circulatory = _cohort(("M", 60.0, [["4019"]]), ("F", 70.0, [["4280", "41401"]]))
    half_half = _cohort(("M", 60.0, [["4019"]]), ("F", 50.0, [["25000"]]))
    repeated = _cohort(("M", 60.0, [["4019"], ["4019"]]), ("F", 50.0, [["25000"]]))
    endocrine = _cohort(("F", 50.0, [["25000", "2724"]]))
    hypertension = _cohort(("M", 60.0, [["4019"]]))
    heart_failure = _cohort(("M", 60.0, [["4280"]]))
    # P = (1, 0), Q = (1/2, 1/2), M = (3/4, 1/4):
    # 1/2 log2(4/3) + 1/2 (1/2 log2(2/3) + 1/2 log2 2) = 0.311278 bits
    one_vs_half = 0.5 * math.log2(4 / 3) + 0.25 * math.log2(2 / 3) + 0.25
    # P = (2/3, 1/3), Q = (1/2, 1/2), M = (7/12, 5/12): 0.020721 bits
    repeated_vs_half = 0.5 * (2 / 3 * math.log2(8 / 7) + 1 / 3 * math.log2(4 / 5)) + 0.5 * (
        0.5 * math.log2(6 / 7) + 0.5 * math.log2(6 / 5)
    )
    cases = [
        ("a cohort against itself", circulatory, circulatory, 0.0),
        ("circulatory only vs endocrine only (no shared chapter)", endocrine, circulatory, 1.0),
        (
            "circulatory only vs half circulatory, half endocrine",
            half_half,
            hypertension,
            one_vs_half,
        ),
        (
            "401.9 twice in one patient (every occurrence counts) vs once",
            repeated,
            half_half,
            repeated_vs_half,
        ),
        ("401.9 vs 428.0: different codes, one chapter", heart_failure, hypertension, 0.0),
    ]
    for description, synthetic, real, expected in cases:
        got = chapter_js_divergence(synthetic, real)
        require(
            isinstance(got, int | float) and math.isfinite(got),
            name,
            f"{description}: expected a finite number, got {got!r}",
        )
        require(
            abs(got - expected) < 1e-6,
            name,
            f"{description}: got {got:.6f}, expected {expected:.6f} "
            "(base-2 divergence, not the distance; chapters of every code occurrence)",
        )
    swapped = chapter_js_divergence(circulatory, half_half)
    require(
        abs(swapped - chapter_js_divergence(half_half, circulatory)) < 1e-9,
        name,
        "the divergence must be symmetric in its two cohorts",
    )
    return passed(name, f"{len(cases)} hand-computed cases")


@exercise_check
def check_rare_match_rate(rare_match_rate: Callable[..., float] | None) -> bool:
    """Training groups of 1, 3 and 5 look-alikes; synthetic patients matching each or none."""
    name = "rare_match_rate"
    if rare_match_rate is None:
        return not_attempted(name, "write rare_match_rate(synthetic, train, k=5, band_years=10)")
    train = _cohort(
        ("F", 34.0, [["25000", "4019"]]),  # group A: 1 patient (F, 30s, {250, 401})
        *[("M", 72.0, [["4280"], ["42731"]])] * 3,  # group B: 3 patients (M, 70s, {428, 427})
        *[("M", 55.0, [["E8889", "8208"]])] * 5,  # group C: 5 patients (M, 50s, {E888, 820})
        ("M", 15.0, [["V3000"]]),
    )
    synthetic = _cohort(
        ("F", 38.5, [["4011"], ["25002"]]),  # A: other codes, same categories, same band
        ("M", 79.0, [["4280", "42731"]]),  # B: visits merged, same code set
        ("M", 51.0, [["E8889"], ["8208"]]),  # C: a group of exactly 5
        ("F", 72.0, [["4280", "42731"]]),  # B's codes, other sex: no match
        ("M", 85.0, [["4280", "42731"]]),  # B's codes, other age band: no match
        first_id=100,
    )
    cases = [
        ({}, 2 / 5, "k=5: groups A (1 look-alike) and B (3) are rare, C (5) is not"),
        ({"k": 3}, 1 / 5, "k=3: only group A (1 look-alike) is rare"),
        ({"k": 6}, 3 / 5, "k=6: groups A, B and C"),
        ({"band_years": 50}, 3 / 5, "band_years=50: the 85-year-old joins B's band (50-99)"),
    ]
    for options, expected, description in cases:
        got = rare_match_rate(synthetic, train, **options)
        require(
            isinstance(got, int | float) and abs(got - expected) < 1e-9,
            name,
            f"{description}: got {got!r}, expected {expected:.3f}",
        )
    return passed(name, f"{len(cases)} cases on hand-made cohorts")
