"""Reference solutions and wrong answers for lesson01's exercises (tests only)."""

from __future__ import annotations

from collections import Counter

from course_lib import icd9
from course_lib.cohort import Cohort
from course_lib.exercises.lesson01 import (
    ALL_AGES,
    check_codes_in_chapter,
    check_valid_demographics,
)
from exercise_solutions import Exercise


def solution_codes_in_chapter(cohort: Cohort, chapter: str) -> dict[str, int]:
    """``{code: patients with the code}`` for the codes of ``chapter`` (e.g. ``"390-459"``)."""
    counts = Counter(code for patient in cohort for code in patient.code_set)
    return {code: n for code, n in counts.items() if icd9.chapter_of(code) == chapter}


def _counts_occurrences(cohort: Cohort, chapter: str) -> dict[str, int]:
    counts = Counter(code for patient in cohort for code in patient.codes)
    return {code: n for code, n in counts.items() if icd9.chapter_of(code) == chapter}


def _reads_v_codes_as_numbers(cohort: Cohort, chapter: str) -> dict[str, int]:
    """Strips the letter before comparing digits: V30.00 lands in 290-319 as well as in V."""
    counts = Counter(code for patient in cohort for code in patient.code_set)
    if chapter in ("V", "E"):
        return {code: n for code, n in counts.items() if code.startswith(chapter)}
    first, last = (int(bound) for bound in chapter.split("-"))
    return {c: n for c, n in counts.items() if first <= int(c.lstrip("VE")[:3]) <= last}


def _dotted_keys(cohort: Cohort, chapter: str) -> dict[str, int]:
    return {icd9.to_dotted(c): n for c, n in solution_codes_in_chapter(cohort, chapter).items()}


def solution_valid_demographics(code: str) -> tuple[int, int, frozenset[str]]:
    """``(youngest, oldest, sexes)`` for which ``code`` passes the MCE rules: the
    intersection of the age ranges of its age rules and the sexes of its sex rules."""
    youngest, oldest = ALL_AGES[0], ALL_AGES[-1]
    sexes = {"F", "M"}
    for rule in icd9.rules_for(code):
        if rule in icd9.AGE_RULES:
            low, high = icd9.AGE_RULES[rule]
            youngest, oldest = max(youngest, low), min(oldest, high)
        else:
            sexes &= {icd9.SEX_RULES[rule]}
    return youngest, oldest, frozenset(sexes)


def _first_age_rule_only(code: str) -> tuple[int, int, frozenset[str]]:
    """Uses the first age rule it finds instead of the intersection of all of them."""
    for rule in icd9.rules_for(code):
        if rule in icd9.AGE_RULES:
            low, high = icd9.AGE_RULES[rule]
            return low, high, solution_valid_demographics(code)[2]
    return solution_valid_demographics(code)


def _ignores_sex(code: str) -> tuple[int, int, frozenset[str]]:
    youngest, oldest, _ = solution_valid_demographics(code)
    return youngest, oldest, frozenset({"F", "M"})


EXERCISES = [
    Exercise(
        "codes_in_chapter",
        check_codes_in_chapter,
        solution_codes_in_chapter,
        wrong_answers=(_counts_occurrences, _reads_v_codes_as_numbers, _dotted_keys),
    ),
    Exercise(
        "valid_demographics",
        check_valid_demographics,
        solution_valid_demographics,
        wrong_answers=(_first_age_rule_only, _ignores_sex),
    ),
]
