"""Lesson 01's exercises: the codes of a chapter, and who may have a code (lesson 01)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from course_lib import icd9
from course_lib.cohort import Cohort, Patient, Visit
from course_lib.exercises import exercise_check, not_attempted, passed, require
from course_lib.exercises.expected import EXPECTED

# --- Exercise 1: codes of one chapter, counted once per patient ------------------------------


def _edge_case_cohort() -> Cohort:
    """Codes that trip naive chapter tests: a leading zero, V and E codes, a code recurring in
    several visits of one patient, and categories at chapter boundaries (139/140, 459/460)."""
    return Cohort(
        [
            Patient(1, "F", 70.0, [Visit(["4019", "25000"], 70.0), Visit(["4019", "V5867"], 71.0)]),
            Patient(2, "M", 30.0, [Visit(["E8889", "8500", "0389"], 30.0), Visit(["1398"], 31.0)]),
            Patient(3, "F", 0.0, [Visit(["V3000", "7746", "4590"], 0.0)]),
            Patient(4, "M", 55.0, [Visit(["1400", "4610", "E8120", "4019"], 55.0)]),
        ]
    )


@lru_cache(maxsize=1)
def _simulated_cohort() -> Cohort:
    from course_lib.simulate import simulate_cohort

    return simulate_cohort(300, seed=11)


@exercise_check
def check_codes_in_chapter(codes_in_chapter: Callable[[Cohort, str], dict] | None) -> bool:
    """Compare the learner's counts with the true per-patient counts, for every chapter."""
    name = "codes_in_chapter"
    if codes_in_chapter is None:
        return not_attempted(name, "write codes_in_chapter(cohort, chapter) -> dict[str, int]")
    for label, cohort in (("edge-case", _edge_case_cohort()), ("simulated", _simulated_cohort())):
        for chapter in icd9.CHAPTER_TITLES:
            expected = EXPECTED["codes_in_chapter"][label][chapter]
            got = codes_in_chapter(cohort, chapter)
            require(
                isinstance(got, dict),
                name,
                f"expected a dict {{code: patients}}, got {type(got).__name__}",
            )
            got = {str(code): count for code, count in got.items() if count}
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            require(
                not missing,
                name,
                f"{label} cohort, chapter {chapter}: missing codes {missing[:5]} "
                "(dotless codes, as in the cohort)",
            )
            require(
                not extra,
                name,
                f"{label} cohort, chapter {chapter}: codes {extra[:5]} are not in this chapter "
                "(or not in the cohort)",
            )
            for code, count in expected.items():
                require(
                    got[code] == count,
                    name,
                    f"{label} cohort, chapter {chapter}: code {code} counted {got[code]}, "
                    f"expected {count} patients (count each patient once per code)",
                )
    return passed(name, f"all {len(icd9.CHAPTER_TITLES)} chapters of two cohorts")


# --- Exercise 2: the ages and sexes for which a code is valid -------------------------------

ALL_AGES = range(0, 125)


def _codes_to_check() -> list[str]:
    """Every code with two or more rules, a few of each single rule, and unrestricted codes."""
    by_rules: dict[tuple[str, ...], list[str]] = {}
    for code in sorted(icd9.code_table()):
        by_rules.setdefault(icd9.rules_for(code), []).append(code)
    codes: list[str] = []
    for rules, members in by_rules.items():
        codes += members if len(rules) > 1 else members[:: max(1, len(members) // 5)][:5]
    return codes


@exercise_check
def check_valid_demographics(
    valid_demographics: Callable[[str], tuple[int, int, frozenset[str]]] | None,
) -> bool:
    """Compare the learner's answer with ``icd9.check_code`` at every age and both sexes."""
    name = "valid_demographics"
    if valid_demographics is None:
        return not_attempted(name, "write valid_demographics(code) -> (youngest, oldest, sexes)")
    codes = _codes_to_check()
    for code in codes:
        answer = valid_demographics(code)
        require(
            isinstance(answer, tuple) and len(answer) == 3,
            name,
            f"{code}: expected a tuple (youngest, oldest, sexes), got {answer!r}",
        )
        youngest, oldest, sexes = answer
        valid = [
            (age, sex)
            for age in ALL_AGES
            for sex in ("F", "M")
            if icd9.is_valid_for(code, age, sex)
        ]
        expected_ages = sorted({age for age, _ in valid})
        expected_sexes = {sex for _, sex in valid}
        require(
            (youngest, oldest) == (expected_ages[0], expected_ages[-1]),
            name,
            f"{icd9.to_dotted(code)} (rules {list(icd9.rules_for(code))}): ages "
            f"{youngest}-{oldest}, but check_code accepts ages "
            f"{expected_ages[0]}-{expected_ages[-1]}",
        )
        require(
            set(sexes) == expected_sexes,
            name,
            f"{icd9.to_dotted(code)} (rules {list(icd9.rules_for(code))}): sexes "
            f"{sorted(sexes)}, but check_code accepts {sorted(expected_sexes)}",
        )
    return passed(name, f"agrees with check_code on {len(codes)} codes")
