"""Reference solutions and wrong answers for lesson09's exercises (tests only)."""

from __future__ import annotations

import math
from collections import Counter

from course_lib import icd9
from course_lib.cohort import Cohort, Patient
from course_lib.evaluation.coherence import js_divergence
from course_lib.exercises.lesson09 import check_chapter_js_divergence, check_rare_match_rate
from exercise_solutions import Exercise

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
