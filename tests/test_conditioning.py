"""Conditioning: guidance processor, conditioning metrics on hand-made cases (issue 11)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import ground_truth, simulate
from course_lib.cohort import Cohort, Patient, Visit
from course_lib.dataset import AgeNormalizer
from course_lib.evaluation import conditioning
from course_lib.generation import GuidanceLogitsProcessor, generate_patients
from course_lib.model import build_model
from course_lib.presets import get_preset
from course_lib.tokens import Vocabulary


def test_guidance_processor_matches_a_hand_computation():
    conditional = torch.tensor([[2.0, 0.0, 0.0]])
    unconditional = torch.tensor([[0.0, 0.0, 1.0]])
    scores = torch.cat([conditional, unconditional])
    out = GuidanceLogitsProcessor(3.0)(torch.zeros(1, 4, dtype=torch.long), scores)
    log_c = [2 - math.log(math.exp(2) + 2), -math.log(math.exp(2) + 2), -math.log(math.exp(2) + 2)]
    log_u = [-math.log(2 + math.e), -math.log(2 + math.e), 1 - math.log(2 + math.e)]
    by_hand = [u + 3.0 * (c - u) for c, u in zip(log_c, log_u, strict=True)]  # log-probabilities
    assert torch.allclose(out.softmax(-1), torch.tensor([by_hand]).softmax(-1), atol=1e-6)
    assert torch.allclose(out, unconditional + 3.0 * (conditional - unconditional))  # logits
    one = GuidanceLogitsProcessor(1.0)(torch.zeros(1, 4, dtype=torch.long), scores)
    assert torch.allclose(one.softmax(-1), conditional.softmax(-1))
    with pytest.raises(ValueError, match="2 x 2 rows"):
        GuidanceLogitsProcessor(2.0)(torch.zeros(2, 1, dtype=torch.long), scores)


@pytest.fixture(scope="module")
def small_setup():
    cohort = simulate.simulate_cohort(300, seed=4)
    vocabulary = Vocabulary.build(cohort)
    normalizer = AgeNormalizer.fit(cohort)
    return cohort, vocabulary, normalizer


def tiny_model(vocabulary, normalizer, **options):
    torch.manual_seed(0)
    shape = dict(d_model=32, attention_heads=2, ffn_dim=64, encoder_layers=1, decoder_layers=1)
    return build_model(
        vocabulary, get_preset("tiny"), normalizer=normalizer, **(shape | options)
    ).eval()


def test_guided_generation_runs_in_one_batch_and_scale_one_is_plain(small_setup):
    cohort, vocabulary, normalizer = small_setup
    model = tiny_model(vocabulary, normalizer, condition_dropout=0.2)
    ages, sexes = [0.0, 30.0, 70.0, 45.0], ["F", "F", "M", "M"]
    plain = generate_patients(model, vocabulary, normalizer, ages, sexes, seed=3)
    scale_one = generate_patients(model, vocabulary, normalizer, ages, sexes, guidance=1.0, seed=3)
    assert [p.visits for p in plain] == [p.visits for p in scale_one]
    guided = generate_patients(model, vocabulary, normalizer, ages, sexes, guidance=3.0, seed=3)
    assert len(guided) == 4 and all(p.visits for p in guided)


def test_a_model_that_ignores_demographics_has_no_prompt_information(small_setup):
    cohort, vocabulary, normalizer = small_setup
    blind = tiny_model(vocabulary, normalizer, prompt_location="none")
    metrics = conditioning.prompt_information(blind, vocabulary, normalizer, cohort, simulated=True)
    for key in (
        "prompt_information_nats",
        "prompt_information_sex_nats",
        "prompt_discrimination_nats",
    ):
        assert abs(metrics[key]) < 1e-5
    assert metrics["prompt_information_true_nats"] > 0.5  # the simulator's codes do depend
    assert metrics["prompt_information_sex_true_nats"] > 0.05
    assert abs(metrics["prompt_information_ratio"]) < 1e-4


def test_true_prompt_information_is_reproduced_by_sampling():
    """The observed-code average (what the report uses) against the exact expectation."""
    draw = simulate.simulate_cohort(4000, seed=8)
    ages, sexes = [p.age for p in draw], [p.sex for p in draw]
    firsts = [p.visits[0].codes[0] for p in draw]
    n_codes = 2000
    other_ages, other_sexes = conditioning.swapped_demographics(ages, sexes, "sex")
    own = ground_truth.first_code_probabilities(ages, sexes, firsts)
    swapped = ground_truth.first_code_probabilities(other_ages, other_sexes, firsts)
    sampled = np.log(conditioning.smooth(own, n_codes) / conditioning.smooth(swapped, n_codes))
    exact = []
    for own_dist, other_dist in zip(
        ground_truth.first_code_distributions(ages, sexes),
        ground_truth.first_code_distributions(other_ages, other_sexes),
        strict=True,
    ):
        codes = list(own_dist)
        p = np.array([own_dist[c] for c in codes])
        q = np.array([other_dist.get(c, 0.0) for c in codes])
        exact.append(
            float(
                np.sum(
                    p * np.log(conditioning.smooth(p, n_codes) / conditioning.smooth(q, n_codes))
                )
            )
        )
    error = sampled.std() / math.sqrt(len(sampled))
    assert abs(sampled.mean() - np.mean(exact)) < 4 * error
    assert np.mean(exact) > 0.1


def test_group_fidelity_and_demographic_mass_on_hand_made_cohorts():
    female = [Patient(i, "F", 30.0, [Visit(["650", "4019"], 30.0)]) for i in range(12)]
    male = [Patient(100 + i, "M", 70.0, [Visit(["60000", "4019"], 70.0)]) for i in range(12)]
    newborns = [Patient(200 + i, "M", 0.0, [Visit(["V3000", "7742"], 0.0)]) for i in range(12)]
    real = Cohort(female + male + newborns)
    metrics = conditioning.group_fidelity(real, real, real)
    assert metrics["group_r2_F_adult"] == pytest.approx(1.0)
    assert metrics["group_r2_mean"] == pytest.approx(1.0)
    assert metrics["group_r2_mean_floor"] == pytest.approx(1.0)
    all_female = Cohort([Patient(p.subject_id, "F", p.age, p.visits) for p in real])
    mass = conditioning.demographic_mass(real, all_female, real, real)
    assert mass["female_code_share_female_prompt"] == pytest.approx(12 / 72)
    assert mass["female_code_share_real_male"] == 0.0
    assert mass["newborn_code_share_newborns"] == pytest.approx(1.0)  # V3000 and 7742
    assert mass["newborn_code_share_adults"] == 0.0
    assert mass["sex_violation_rate_all_female"] == pytest.approx(12 / 72)  # 60000 in women


def test_the_speed_benchmark_times_both_loops_over_the_same_steps(small_setup):
    """benchmarks/conditioning.py's like-for-like timing: the naive loops run exactly as many
    steps as the library's guided batch took, so the ratios compare equal work."""
    from benchmarks.conditioning import generation_speed

    cohort, vocabulary, normalizer = small_setup
    model = tiny_model(vocabulary, normalizer, condition_dropout=0.2, max_sequence_length=24)
    ages, sexes = [0.0, 30.0, 70.0], ["F", "M", "M"]
    speed = generation_speed(model, vocabulary, normalizer, ages, sexes, guidance=1.5, seed=0)
    assert set(speed) == {"speed_steps", "naive_p/s", "speedup", "speedup_same_draw"}
    assert 1 <= speed["speed_steps"] <= 23
    assert all(speed[key] > 0 and math.isfinite(speed[key]) for key in speed)
