"""Tests of the model's per-patient log-likelihood (course_lib.evaluation.likelihood)."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset
from course_lib.evaluation.likelihood import (
    patient_log_likelihoods,
    perplexity,
    unigram_perplexity,
)
from course_lib.model import build_model
from course_lib.presets import get_preset
from course_lib.tokens import Vocabulary

CODES = ["4019", "4280", "25000", "5849", "2724", "41401"]


@pytest.fixture(scope="module")
def tiny():
    patients = [
        Patient(i, "FM"[i % 2], 40.0 + i, [Visit(CODES[: 1 + i % 5], 40.0 + i)])
        for i in range(1, 11)
    ]
    cohort = Cohort(patients)
    vocab = Vocabulary.build(cohort)
    torch.manual_seed(0)
    model = build_model(
        vocab,
        get_preset("tiny"),
        d_model=32,
        attention_heads=2,
        ffn_dim=64,
        encoder_layers=1,
        decoder_layers=1,
        max_sequence_length=32,
    )
    return model.eval(), vocab, AgeNormalizer.fit(cohort), cohort


def test_log_likelihoods_match_the_lm_loss_and_do_not_depend_on_batching(tiny):
    model, vocab, normalizer, cohort = tiny
    table = patient_log_likelihoods(model, vocab, normalizer, cohort, max_length=32, batch_size=3)
    assert list(table["SUBJECT_ID"]) == [p.subject_id for p in cohort]
    assert (table["log_likelihood"] < 0).all()
    one_batch = patient_log_likelihoods(model, vocab, normalizer, cohort, max_length=32)
    assert one_batch["log_likelihood"].to_numpy() == pytest.approx(
        table["log_likelihood"].to_numpy(), abs=1e-4
    )
    # the model's own LM loss is the token-weighted mean negative log-likelihood
    dataset = PatientDataset(cohort, vocab, normalizer, 32)
    batch = PatientCollator(objective="generate")([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        loss = model(
            **{
                k: batch[k]
                for k in (
                    "input_ids",
                    "attention_mask",
                    "decoder_input_ids",
                    "labels",
                    "x_num",
                    "x_cat",
                )
            }
        ).loss_terms["lm"]
    assert math.log(perplexity(table)) == pytest.approx(float(loss), rel=1e-4)
    assert table["per_token"].to_numpy() == pytest.approx(
        (table["log_likelihood"] / table["n_tokens"]).to_numpy()
    )


def test_unigram_perplexity_is_a_fair_yardstick(tiny):
    _, vocab, normalizer, cohort = tiny
    value = unigram_perplexity(cohort, cohort, vocab, normalizer, max_length=32)
    assert 1.0 < value < len(vocab)
    with pytest.raises(ValueError, match="non-empty cohort"):
        unigram_perplexity(Cohort([]), cohort, vocab, normalizer)
