"""Lesson 03's exercises: a bigram baseline and the violations of a patient-blind generator (lesson 03).

Both extend the lesson's yardsticks for the unconditional baseline: how much a model that sees
only the previous token already explains (the bigram cross-entropy, between the unigram line and
the trained BART), and how many age/sex violations a generator that ignores the patient must
make (the rate the baseline's measured violations are read against).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.exercises import exercise_check, not_attempted, passed, require
from course_lib.exercises.expected import EXPECTED

# --- Exercise 1: a bigram baseline ---------------------------------------------------------


def _random_sequences(rng: np.random.Generator, n: int, vocab_size: int) -> list[list[int]]:
    """Sequences with structure a bigram can exploit: each token is often the previous + 1."""
    sequences = []
    for _ in range(n):
        ids = [1]
        for _ in range(int(rng.integers(3, 12))):
            step = 1 if rng.random() < 0.6 else int(rng.integers(0, vocab_size))
            ids.append((ids[-1] + step) % vocab_size)
        sequences.append(ids)
    return sequences


def bigram_inputs() -> tuple[list[list[int]], list[list[int]]]:
    """The check's random train and eval sequences (vocabulary 30)."""
    rng = np.random.default_rng(3)
    return _random_sequences(rng, 200, 30), _random_sequences(rng, 50, 30)


@exercise_check
def check_bigram_cross_entropy(
    bigram_cross_entropy: Callable[..., float] | None,
) -> bool:
    """A hand-computed case, then random sequences against the reference, for two alphas."""
    name = "bigram_cross_entropy"
    if bigram_cross_entropy is None:
        return not_attempted(
            name, "write bigram_cross_entropy(train_sequences, eval_sequences, vocab_size, alpha)"
        )
    # by hand: pairs (1,2) x2, (2,3) x1; vocab 4, alpha 1 -> p(2|1) = 3/6, p(3|2) = 2/5
    train_case = [[1, 2, 3], [1, 2]]
    eval_case = [[1, 2, 3]]
    expected = -(math.log(3 / 6) + math.log(2 / 5)) / 2
    got = float(bigram_cross_entropy(train_case, eval_case, 4, 1.0))
    require(
        math.isclose(got, expected, rel_tol=1e-9),
        name,
        f"train {train_case}, eval {eval_case}, vocab_size 4, alpha 1: expected {expected:.6f} "
        f"(= -(ln 3/6 + ln 2/5) / 2), got {got:.6f}",
    )
    train_sequences, eval_sequences = bigram_inputs()
    for alpha in (1.0, 0.1):
        expected = EXPECTED["bigram_cross_entropy"][str(alpha)]
        got = float(bigram_cross_entropy(train_sequences, eval_sequences, 30, alpha))
        require(
            math.isclose(got, expected, rel_tol=1e-6),
            name,
            f"random sequences, vocab_size 30, alpha {alpha}: expected {expected:.6f}, "
            f"got {got:.6f}",
        )
    return passed(name, f"{expected:.4f} nats on the random sequences (alpha 0.1)")


# --- Exercise 2: the violation rates of a generator that ignores the patient ----------------


def _patient(subject_id: int, sex: str, age: float, codes: list[str]) -> Patient:
    return Patient(subject_id, sex, age, [Visit(codes=codes, age=age)])


@exercise_check
def check_expected_violation_rates(
    expected_violation_rates: Callable[[Cohort], dict[str, float]] | None,
) -> bool:
    """A four-patient cohort computed by hand, then a simulated cohort against the reference."""
    name = "expected_violation_rates"
    if expected_violation_rates is None:
        return not_attempted(name, "write expected_violation_rates(cohort) -> {'age', 'sex'}")
    # codes: 650 (normal delivery: maternity 12-55, female), 4019 (hypertension: no rule),
    # 185 (prostate cancer: male), V3000 (single liveborn: newborn)
    small = Cohort(
        [
            _patient(1, "F", 30.0, ["650", "4019"]),
            _patient(2, "M", 70.0, ["185", "4019"]),
            _patient(3, "M", 0.0, ["V3000"]),
            _patient(4, "F", 0.2, ["4019"]),
        ]
    )
    # 6 occurrences x 4 patients = 24 pairs. 650 breaks "female" for patients 2 and 3 (sex),
    # "maternity" for patient 4 (age). 185 breaks "male" for 1 and 4 (sex). V3000 breaks
    # "newborn" for 1 and 2 (age). Age: 3 pairs; sex: 4 pairs.
    by_hand = {"age": 3 / 24, "sex": 4 / 24}
    got = expected_violation_rates(small)
    require(isinstance(got, dict), name, f"expected a dict, got {type(got).__name__}")
    require(set(got) >= {"age", "sex"}, name, f"expected keys 'age' and 'sex', got {sorted(got)}")
    for family, value in by_hand.items():
        require(
            math.isclose(float(got[family]), value, rel_tol=1e-9),
            name,
            f"four-patient cohort (see the check's comment): {family} rate should be "
            f"{value:.4f}, got {float(got[family]):.4f}",
        )
    from course_lib.simulate import simulate_cohort

    cohort = simulate_cohort(300, seed=11)
    expected = EXPECTED["expected_violation_rates"]
    got = expected_violation_rates(cohort)
    for family, value in expected.items():
        require(
            math.isclose(float(got[family]), value, rel_tol=1e-6),
            name,
            f"simulate_cohort(300, seed=11): {family} rate should be {value:.5f}, "
            f"got {float(got[family]):.5f}",
        )
    return passed(
        name,
        f"simulated cohort: age {expected['age']:.2%}, sex {expected['sex']:.2%} expected",
    )
