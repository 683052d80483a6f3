"""Tests of the coherence metrics (course_lib.evaluation.coherence) on hand-computed cohorts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation.coherence import (
    CooccurrenceStats,
    coherence_metrics,
    demographic_jaccard,
    fidelity_r2,
    js_distance,
    js_divergence,
    pair_scores,
    top_k_overlap,
)

A, B, C, D, E = "4019", "25000", "4280", "5849", "2724"


def make_patient(
    subject_id: int, visits: list[list[str]], sex: str = "F", age: float = 50.0
) -> Patient:
    return Patient(subject_id, sex, age, [Visit(codes, age + i) for i, codes in enumerate(visits)])


def test_js_divergence_of_half_shared_mass_is_half_a_bit():
    # M = {a: .5, b: .25, c: .25}; KL(P||M) = .5 log2(.5/.5) + .5 log2(.5/.25) = 0.5 = KL(Q||M)
    assert js_divergence({"a": 1, "b": 1}, {"a": 1, "c": 1}) == pytest.approx(0.5)
    assert js_distance({"a": 1, "b": 1}, {"a": 1, "c": 1}) == pytest.approx(math.sqrt(0.5))
    assert js_divergence({"a": 3, "b": 1}, {"a": 30, "b": 10}) == pytest.approx(0.0)
    assert js_divergence({"a": 1}, {"b": 1}) == pytest.approx(1.0)


def test_scipy_jensenshannon_is_the_distance_not_the_divergence():
    rng = np.random.default_rng(0)
    p, q = rng.random(20), rng.random(20)
    p_map = {str(i): v for i, v in enumerate(p)}
    q_map = {str(i): v for i, v in enumerate(q)}
    assert jensenshannon(p, q, base=2) == pytest.approx(js_distance(p_map, q_map))
    assert jensenshannon(p, q, base=2) ** 2 == pytest.approx(js_divergence(p_map, q_map))
    with pytest.raises(ValueError, match="non-empty"):
        js_divergence({}, {"a": 1})


def test_top_k_overlap_breaks_ties_by_code():
    real = {"a": 5, "b": 4, "c": 3, "d": 1}
    synthetic = {"a": 9, "e": 1, "d": 1, "c": 1}  # top-2: a, then c (tie c/d/e -> c)
    assert top_k_overlap(real, synthetic, k=2) == pytest.approx(1 / 2)  # {a, b} & {a, c}
    assert top_k_overlap(real, synthetic, k=3) == pytest.approx(2 / 3)  # {a, b, c} & {a, c, d}
    assert top_k_overlap(real, synthetic, k=100) == pytest.approx(3 / 100)  # k stays the divisor
    with pytest.raises(ValueError, match="k must be"):
        top_k_overlap(real, synthetic, k=0)


def test_cooccurrence_score_and_npmi_by_hand():
    # statistics: 4 visits {A,B} {A,B} {A,C} {D}: n_A=3 n_B=2 n_C=1 n_D=1, C(A,B)=2, C(A,C)=1
    stats = CooccurrenceStats.from_cohort(
        Cohort([make_patient(1, [[A, B], [A, B]]), make_patient(2, [[A, C], [D]])])
    )
    # generated pairs: {A,B,C} -> AB, AC, BC; {A,D,D} -> AD (no self-pair); {E} -> none
    synthetic = Cohort([make_patient(3, [[A, B, C], [A, D, D]]), make_patient(4, [[E]])])
    scores = pair_scores(synthetic, stats)
    assert scores["cooccurrence_score"] == pytest.approx((math.log(3) + math.log(2) + 0 + 0) / 4)
    # NPMI(A,B) = ln(.5 / (.75 * .5)) / -ln(.5); NPMI(A,C) = ln(.25 / (.75 * .25)) / -ln(.25);
    # B,C and A,D never co-occur: -1 each
    npmi_ab = math.log(4 / 3) / math.log(2)
    npmi_ac = math.log(4 / 3) / math.log(4)
    assert scores["npmi"] == pytest.approx((npmi_ab + npmi_ac - 1 - 1) / 4)


def test_pair_scores_are_nan_without_pairs_and_count_unseen_codes():
    stats = CooccurrenceStats.from_cohort(Cohort([make_patient(1, [[A, B]])]))
    assert math.isnan(pair_scores(Cohort([make_patient(2, [[A]])]), stats)["npmi"])
    # a pair with a code the statistics never saw: count 0, NPMI -1
    scores = pair_scores(Cohort([make_patient(2, [[A, "99999"]])]), stats)
    assert scores == {"cooccurrence_score": 0.0, "npmi": -1.0}
    # a pair present in every statistics visit has NPMI +1
    assert pair_scores(Cohort([make_patient(3, [[B, A]])]), stats)["npmi"] == pytest.approx(1.0)


def test_halo_fidelity_r2_by_hand():
    # real: p1 {A,B,C} -> {A,B}; p2 {A,C} -> {B}: 4 visits, 2 consecutive-visit pairs
    real = Cohort([make_patient(1, [[A, B, C], [A, B]]), make_patient(2, [[A, C], [B]])])
    # synthetic: p1 {A,B} -> {A,B}; p2 {A}: 3 visits, 1 consecutive-visit pair
    synthetic = Cohort([make_patient(3, [[A, B], [A, B]]), make_patient(4, [[A]])])
    r2 = fidelity_r2(synthetic, real)
    # unigrams (A, B, C): real (3/4, 3/4, 1/2), synthetic (1, 2/3, 0); mean real 2/3
    # SS_tot = 2 (1/12)^2 + (1/6)^2 = 6/144; SS_res = (1/4)^2 + (1/12)^2 + (1/2)^2 = 46/144
    assert r2["unigram_r2"] == pytest.approx(1 - 46 / 6)
    # pairs (AB, AC, BC): real (1/2, 1/2, 1/4), synthetic (2/3, 0, 0); mean real 5/12
    # SS_tot = 6/144; SS_res = (1/6)^2 + (1/2)^2 + (1/4)^2 = 49/144
    assert r2["pair_r2"] == pytest.approx(1 - 49 / 6)
    # sequential (AA, AB, BA, BB, CA, CB): real (1/2, 1, 1/2, 1/2, 1/2, 1), synthetic
    # (1, 1, 1, 1, 0, 0); mean real 2/3; SS_tot = 4 (1/6)^2 + 2 (1/3)^2 = 1/3; SS_res = 2
    assert r2["sequential_r2"] == pytest.approx(1 - 2 / (1 / 3))
    assert fidelity_r2(real, real) == {"unigram_r2": 1.0, "pair_r2": 1.0, "sequential_r2": 1.0}


def test_demographic_jaccard_best_match_within_sex_and_age_band():
    real = Cohort(
        [
            make_patient(1, [[A, B, C]], "F", 30),
            make_patient(2, [[A]], "F", 35),
            make_patient(3, [[D]], "M", 30),
            make_patient(4, [[E]], "F", 70),
        ]
    )
    synthetic = Cohort(
        [
            make_patient(5, [[A, B]], "F", 32),  # band (F, 30): best of 2/3 (p1) and 1/2 (p2)
            make_patient(6, [[D, E]], "M", 75),  # no (M, 70): any man -> p3, 1/2
            make_patient(7, [[A]], "F", 71),  # band (F, 70): p4 shares nothing -> 0
        ]
    )
    assert demographic_jaccard(synthetic, real) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert demographic_jaccard(real, real) == pytest.approx(1.0)


def test_coherence_metrics_of_a_cohort_against_itself():
    cohort = Cohort([make_patient(1, [[A, B], [C]]), make_patient(2, [[A, D]], "M", 40)])
    metrics = coherence_metrics(cohort, cohort, k=4)
    assert metrics["js_divergence"] == 0.0 and metrics["js_distance"] == 0.0
    assert metrics["top4_overlap"] == 1.0
    assert metrics["jaccard"] == 1.0
    assert metrics["unigram_r2"] == 1.0
    with pytest.raises(ValueError, match="real cohort with at least one code"):
        coherence_metrics(cohort, Cohort([make_patient(3, [[]])]))
    empty = coherence_metrics(Cohort([make_patient(3, [[]])]), cohort, k=4)
    assert math.isnan(empty["js_divergence"]) and math.isnan(empty["npmi"])
    assert empty["top4_overlap"] == 0.0 and empty["jaccard"] == 0.0
