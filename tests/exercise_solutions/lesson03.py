"""Reference solutions and wrong answers for lesson03's exercises (tests only)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from course_lib.cohort import Cohort
from course_lib.exercises.lesson03 import (
    _reference_bigram_cross_entropy,
    _reference_expected_violation_rates,
    check_bigram_cross_entropy,
    check_expected_violation_rates,
)
from exercise_solutions import Exercise


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
    return _reference_bigram_cross_entropy(
        [[0, *ids] for ids in train_sequences],
        [[0, *ids] for ids in eval_sequences],
        vocab_size,
        alpha,
    )


def _per_patient_average(cohort: Cohort) -> dict[str, float]:
    """Averages each patient's own rate (weights short patients up): not the pair share."""
    per_patient = [_reference_expected_violation_rates(Cohort([p])) for p in cohort if p.codes]
    return {f: float(np.mean([r[f] for r in per_patient])) for f in ("age", "sex")}


def _ignores_sex(cohort: Cohort) -> dict[str, float]:
    rates = _reference_expected_violation_rates(cohort)
    return {"age": rates["age"], "sex": 0.0}


def _swapped_families(cohort: Cohort) -> dict[str, float]:
    rates = _reference_expected_violation_rates(cohort)
    return {"age": rates["sex"], "sex": rates["age"]}


EXERCISES = [
    Exercise(
        "bigram_cross_entropy",
        check_bigram_cross_entropy,
        _reference_bigram_cross_entropy,
        wrong_answers=(
            _unigram_cross_entropy,
            _bigram_without_smoothing_mass,
            _bigram_scoring_the_start_token,
        ),
    ),
    Exercise(
        "expected_violation_rates",
        check_expected_violation_rates,
        _reference_expected_violation_rates,
        wrong_answers=(_per_patient_average, _ignores_sex, _swapped_families),
    ),
]
