"""Medical validity of a cohort: MCE age/sex rule violations and repeated codes (lesson 09).

Every code occurrence is checked with :func:`course_lib.icd9.check_code` at the age of *its
visit* (``Visit.age``) and the patient's sex. ``check_code`` names the first rule a code
breaks; the rule name decides the family:

* ``newborn``, ``pediatric``, ``maternity``, ``adult`` -> an **age** violation
  (a maternity code outside ages 12-55 counts here);
* ``female``, ``male`` -> a **sex** violation (a maternity code in a man counts here,
  because ``check_code`` reports ``female`` for it first).

Formulas (``N`` = number of code occurrences, repeats included; ``P`` = number of patients)::

    age_violation_rate         = #occurrences breaking an age rule / N
    sex_violation_rate         = #occurrences breaking a sex rule / N
    age_violation_patient_rate = #patients with >= 1 age violation / P   (same for sex)
    unknown_code_rate          = #occurrences not in the ICD-9-CM v32 table / N
    duplicate_rate             = sum_visits (len(codes) - len(set(codes))) / N
    cross_visit_repeat_rate    = sum_patients sum_{t>0} |set(visit_t) & union(visit_<t)|
                                 / sum_visits len(set(codes))

``duplicate_rate`` counts a code written twice in one visit (MIMIC-III's DIAGNOSES_ICD has
almost none); ``cross_visit_repeat_rate`` counts a code carried over from an earlier visit,
which real patients with chronic diseases do all the time, so it must be read against the
real floor, never driven to zero (what ``no_repeat_ngram_size=1`` would do).
"""

from __future__ import annotations

import pandas as pd

from course_lib import icd9
from course_lib.cohort import SEXES, Cohort

AGE_RULE_NAMES = frozenset(icd9.AGE_RULES)
SEX_RULE_NAMES = frozenset(icd9.SEX_RULES)


def rule_violations(cohort: Cohort) -> pd.DataFrame:
    """One row per code occurrence that breaks an MCE rule.

    Columns: ``patient`` (row in the cohort: synthetic ids may repeat), ``SUBJECT_ID``, ``visit`` (0-based position), ``code``, ``age`` (of the visit),
    ``sex``, ``rule`` (as ``check_code`` names it) and ``family`` (``"age"`` or ``"sex"``).
    """
    records = []
    for row, patient in enumerate(cohort):
        if patient.sex not in SEXES:
            raise ValueError(
                f"patient {patient.subject_id}: sex must be one of {SEXES}, got {patient.sex!r}"
            )
        for position, visit in enumerate(patient.visits):
            for code in visit.codes:
                if not icd9.rules_for(code):
                    continue
                rule = icd9.check_code(code, visit.age, patient.sex)
                if rule is not None:
                    family = "age" if rule in AGE_RULE_NAMES else "sex"
                    records.append(
                        (
                            row,
                            patient.subject_id,
                            position,
                            code,
                            visit.age,
                            patient.sex,
                            rule,
                            family,
                        )
                    )
    columns = ["patient", "SUBJECT_ID", "visit", "code", "age", "sex", "rule", "family"]
    return pd.DataFrame.from_records(records, columns=columns)


def repeat_counts(cohort: Cohort) -> tuple[int, int, int, int]:
    """``(occurrences, within-visit duplicates, distinct visit codes, cross-visit repeats)``."""
    occurrences = duplicates = distinct = repeats = 0
    for patient in cohort:
        seen: set[str] = set()
        for visit in patient.visits:
            visit_codes = set(visit.codes)
            occurrences += len(visit.codes)
            duplicates += len(visit.codes) - len(visit_codes)
            distinct += len(visit_codes)
            repeats += len(visit_codes & seen)
            seen |= visit_codes
    return occurrences, duplicates, distinct, repeats


def _rate(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def validity_metrics(cohort: Cohort) -> dict[str, float]:
    """The module docstring's rates for one cohort (NaN where there is nothing to count)."""
    violations = rule_violations(cohort)
    occurrences, duplicates, distinct, repeats = repeat_counts(cohort)
    known = icd9.code_table()
    unknown = sum(1 for patient in cohort for code in patient.codes if code not in known)
    metrics = {}
    for family in ("age", "sex"):
        rows = violations[violations["family"] == family]
        metrics[f"{family}_violation_rate"] = _rate(len(rows), occurrences)
        metrics[f"{family}_violation_patient_rate"] = _rate(rows["patient"].nunique(), len(cohort))
    metrics["unknown_code_rate"] = _rate(unknown, occurrences)
    metrics["duplicate_rate"] = _rate(duplicates, occurrences)
    metrics["cross_visit_repeat_rate"] = _rate(repeats, distinct)
    return metrics
