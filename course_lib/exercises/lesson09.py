"""Lesson 09's exercises: a chapter-level coherence metric and a k-anonymity privacy metric
(lesson 09).

Both checks use tiny hand-made cohorts whose answers can be worked out on paper (they are
spelled out next to each case), so a learner's error message says which property failed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

from course_lib import icd9
from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation.coherence import js_divergence
from course_lib.exercises import Exercise, not_attempted, passed, require


def _cohort(*patients: tuple[str, float, Sequence[Sequence[str]]], first_id: int = 1) -> Cohort:
    """Patients as ``(sex, age, visits)``; visits as lists of dotless codes."""
    return Cohort(
        [
            Patient(first_id + i, sex, age, [Visit(list(codes), age) for codes in visits])
            for i, (sex, age, visits) in enumerate(patients)
        ]
    )


# --- Exercise 1: JS divergence of ICD-9 chapter distributions ---------------------------------


def _chapter_counts(cohort: Cohort) -> Counter[str]:
    counts: Counter[str] = Counter()
    for code in (code for patient in cohort for code in patient.codes):
        try:
            counts[icd9.chapter_of(code)] += 1
        except ValueError:  # "<unk>" or another non-ICD-9 token
            continue
    return counts


def solution_chapter_js_divergence(synthetic: Cohort, real: Cohort) -> float:
    """Base-2 JS divergence between the chapters of all code occurrences of two cohorts."""
    return js_divergence(_chapter_counts(real), _chapter_counts(synthetic))


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


def _scipy_distance(synthetic: Cohort, real: Cohort) -> float:
    return math.sqrt(solution_chapter_js_divergence(synthetic, real))


def _natural_log(synthetic: Cohort, real: Cohort) -> float:
    return solution_chapter_js_divergence(synthetic, real) * math.log(2)


def _distinct_per_patient(synthetic: Cohort, real: Cohort) -> float:
    def chapters(cohort: Cohort) -> Counter[str]:
        return Counter(icd9.chapter_of(code) for patient in cohort for code in patient.code_set)

    return js_divergence(chapters(real), chapters(synthetic))


def _code_level(synthetic: Cohort, real: Cohort) -> float:
    def codes(cohort: Cohort) -> Counter[str]:
        return Counter(code for patient in cohort for code in patient.codes)

    return js_divergence(codes(real), codes(synthetic))


# --- Exercise 2: share of synthetic records that match few real ones ---------------------------


def _category(code: str) -> str:
    return code[: 4 if code.startswith("E") else 3]


def _quasi_identifier(patient: Patient, band_years: int) -> tuple[str, int, frozenset[str]]:
    return (
        patient.sex,
        int(patient.age // band_years),
        frozenset(_category(code) for code in patient.code_set),
    )


def solution_rare_match_rate(
    synthetic: Cohort, train: Cohort, k: int = 5, band_years: int = 10
) -> float:
    """Share of synthetic patients whose (sex, age band, categories) 1 to k-1 training
    patients share: a record that points at a few real people."""
    if len(synthetic) == 0:
        raise ValueError("rare_match_rate needs a non-empty synthetic cohort")
    group_sizes = Counter(_quasi_identifier(patient, band_years) for patient in train)
    rare = sum(1 <= group_sizes[_quasi_identifier(p, band_years)] < k for p in synthetic)
    return rare / len(synthetic)


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


def _inclusive(synthetic: Cohort, train: Cohort, k: int = 5, band_years: int = 10) -> float:
    return solution_rare_match_rate(synthetic, train, k + 1, band_years)


def _counts_unmatched(synthetic: Cohort, train: Cohort, k: int = 5, band_years: int = 10) -> float:
    sizes = Counter(_quasi_identifier(patient, band_years) for patient in train)
    return sum(sizes[_quasi_identifier(p, band_years)] < k for p in synthetic) / len(synthetic)


def _full_codes(synthetic: Cohort, train: Cohort, k: int = 5, band_years: int = 10) -> float:
    def identifier(patient: Patient):
        return patient.sex, int(patient.age // band_years), frozenset(patient.code_set)

    sizes = Counter(identifier(patient) for patient in train)
    return sum(1 <= sizes[identifier(p)] < k for p in synthetic) / len(synthetic)


def _ignores_age(synthetic: Cohort, train: Cohort, k: int = 5, band_years: int = 10) -> float:
    return solution_rare_match_rate(synthetic, train, k, band_years=1000)


EXERCISES = [
    Exercise(
        "chapter_js_divergence",
        check_chapter_js_divergence,
        solution_chapter_js_divergence,
        wrong_answers=(_scipy_distance, _natural_log, _distinct_per_patient, _code_level),
    ),
    Exercise(
        "rare_match_rate",
        check_rare_match_rate,
        solution_rare_match_rate,
        wrong_answers=(_inclusive, _counts_unmatched, _full_codes, _ignores_age),
    ),
]
