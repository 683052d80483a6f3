"""Reference solutions and wrong answers for lesson03's exercises (tests only)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from course_lib import icd9
from course_lib.cohort import Cohort
from course_lib.exercises.lesson03 import (
    check_bigram_cross_entropy,
    check_expected_violation_rates,
)
from exercise_solutions import Exercise


def solution_expected_violation_rates(cohort: Cohort) -> dict[str, float]:
    """Expected ``{"age": rate, "sex": rate}`` of a generator blind to who the patient is.

    Each generated code is drawn from the cohort's code occurrences, independently of the
    patient, who is drawn from the cohort's patients (every visit at ``patient.age``, as the
    generator writes them). The rate of a family is the share of (occurrence, patient) pairs
    whose code breaks one of the family's MCE rules for that patient.
    """
    occurrences = Counter(code for patient in cohort for code in patient.codes)
    demographics = Counter((int(patient.age), patient.sex) for patient in cohort)
    n_occurrences, n_patients = sum(occurrences.values()), len(cohort)
    broken = {"age": 0, "sex": 0}
    for code, count in occurrences.items():
        if not icd9.rules_for(code):
            continue
        for (age, sex), patients in demographics.items():
            rule = icd9.check_code(code, age, sex)
            if rule is not None:
                family = "age" if rule in icd9.AGE_RULES else "sex"
                broken[family] += count * patients
    return {family: n / (n_occurrences * n_patients) for family, n in broken.items()}


def solution_bigram_cross_entropy(
    train_sequences: Sequence[Sequence[int]],
    eval_sequences: Sequence[Sequence[int]],
    vocab_size: int,
    alpha: float = 1.0,
) -> float:
    """Mean ``-ln p(next | previous)`` over every label of ``eval_sequences``.

    ``p(b | a) = (count(a, b) + alpha) / (count(a) + alpha * vocab_size)`` with pairs counted
    over ``train_sequences``; the labels of a sequence ``ids`` are ``ids[1:]`` (what the decoder
    is scored on), each predicted from the token before it.
    """
    pairs: Counter[tuple[int, int]] = Counter()
    previous: Counter[int] = Counter()
    for ids in train_sequences:
        for a, b in zip(ids[:-1], ids[1:], strict=True):
            pairs[(a, b)] += 1
            previous[a] += 1
    nll, n = 0.0, 0
    for ids in eval_sequences:
        for a, b in zip(ids[:-1], ids[1:], strict=True):
            nll -= math.log((pairs[(a, b)] + alpha) / (previous[a] + alpha * vocab_size))
            n += 1
    return nll / n


def _unigram_cross_entropy(train_sequences, eval_sequences, vocab_size, alpha=1.0) -> float:
    counts = Counter(token for ids in train_sequences for token in ids[1:])
    total = sum(counts.values())
    labels = [token for ids in eval_sequences for token in ids[1:]]
    return -sum(
        math.log((counts[token] + alpha) / (total + alpha * vocab_size)) for token in labels
    ) / len(labels)


def _bigram_without_smoothing_mass(train_sequences, eval_sequences, vocab_size, alpha=1.0):
    """Adds alpha to the numerator only: probabilities that do not sum to one."""
    pairs = Counter(p for ids in train_sequences for p in zip(ids[:-1], ids[1:], strict=True))
    previous = Counter(a for ids in train_sequences for a in ids[:-1])
    labels = [p for ids in eval_sequences for p in zip(ids[:-1], ids[1:], strict=True)]
    return -sum(math.log((pairs[p] + alpha) / (previous[p[0]] + 1)) for p in labels) / len(labels)


def _bigram_scoring_the_start_token(train_sequences, eval_sequences, vocab_size, alpha=1.0):
    """Prepends a padding id 0 so that <patient> itself is scored too."""
    return solution_bigram_cross_entropy(
        [[0, *ids] for ids in train_sequences],
        [[0, *ids] for ids in eval_sequences],
        vocab_size,
        alpha,
    )


def _per_patient_average(cohort: Cohort) -> dict[str, float]:
    """Averages each patient's own rate (weights short patients up): not the pair share."""
    per_patient = [solution_expected_violation_rates(Cohort([p])) for p in cohort if p.codes]
    return {f: float(np.mean([r[f] for r in per_patient])) for f in ("age", "sex")}


def _ignores_sex(cohort: Cohort) -> dict[str, float]:
    rates = solution_expected_violation_rates(cohort)
    return {"age": rates["age"], "sex": 0.0}


def _swapped_families(cohort: Cohort) -> dict[str, float]:
    rates = solution_expected_violation_rates(cohort)
    return {"age": rates["sex"], "sex": rates["age"]}


EXERCISES = [
    Exercise(
        "bigram_cross_entropy",
        check_bigram_cross_entropy,
        solution_bigram_cross_entropy,
        wrong_answers=(
            _unigram_cross_entropy,
            _bigram_without_smoothing_mass,
            _bigram_scoring_the_start_token,
        ),
    ),
    Exercise(
        "expected_violation_rates",
        check_expected_violation_rates,
        solution_expected_violation_rates,
        wrong_answers=(_per_patient_average, _ignores_sex, _swapped_families),
    ),
]
