"""Tests of the model's per-patient log-likelihood (course_lib.evaluation.likelihood)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset
from course_lib.evaluation.likelihood import (
    end_of_record_by_visit,
    end_of_record_probabilities,
    patient_log_likelihoods,
    perplexity,
    unigram_perplexity,
)
from course_lib.model import build_model
from course_lib.presets import get_preset
from course_lib.tokens import EOS_ID, VISIT_END_ID, VISIT_START_ID, Vocabulary

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


def test_end_of_record_rows_follow_the_real_visits(tiny):
    model, vocab, normalizer, _ = tiny
    visits = {7: 3, 8: 1, 9: 2}  # subject -> number of visits
    cohort = Cohort(
        [
            Patient(sid, "F", 50.0, [Visit(CODES[k : k + 2], 50.0 + k) for k in range(n)])
            for sid, n in visits.items()
        ]
    )
    table = end_of_record_probabilities(
        model, vocab, normalizer, cohort, max_length=32, batch_size=2
    )
    assert list(table.columns) == ["SUBJECT_ID", "visit", "p_end", "p_visit", "ended"]
    assert table["SUBJECT_ID"].tolist() == [7, 7, 7, 8, 9, 9]
    assert table["visit"].tolist() == [1, 2, 3, 1, 1, 2]
    assert table["ended"].tolist() == [0, 0, 1, 1, 0, 1]
    assert table["p_end"].between(0.0, 1.0).all()
    assert (table["p_end"] + table["p_visit"]).le(1.0 + 1e-6).all()
    # the same probability as a softmax over the logits at the position after each </visit>
    dataset = PatientDataset(Cohort([cohort.patients[0]]), vocab, normalizer, 32)
    batch = PatientCollator(objective="generate")([dataset[0]])
    with torch.no_grad():
        logits = model(
            **{
                k: batch[k]
                for k in ("input_ids", "attention_mask", "decoder_input_ids", "x_num", "x_cat")
            }
        ).logits[0]
    positions = batch["decoder_input_ids"][0].eq(VISIT_END_ID).nonzero().flatten()
    direct = torch.softmax(logits[positions], dim=-1)
    assert table["p_end"].iloc[:3].to_numpy() == pytest.approx(direct[:, EOS_ID].numpy(), abs=1e-5)
    assert table["p_visit"].iloc[:3].to_numpy() == pytest.approx(
        direct[:, VISIT_START_ID].numpy(), abs=1e-5
    )


def test_end_of_record_ended_is_0_for_a_record_cut_by_max_length(tiny):
    model, vocab, normalizer, _ = tiny
    long = Patient(1, "M", 60.0, [Visit(CODES, 60.0 + k) for k in range(4)])
    table = end_of_record_probabilities(model, vocab, normalizer, Cohort([long]), max_length=24)
    assert 1 <= len(table) < 4  # the cut keeps fewer visits than the record has
    assert table["ended"].eq(0).all()  # the real record goes on after the last kept visit


def test_end_of_record_probabilities_need_patients(tiny):
    model, vocab, normalizer, _ = tiny
    with pytest.raises(ValueError, match="end-of-record probabilities need a non-empty cohort"):
        end_of_record_probabilities(model, vocab, normalizer, Cohort([]))


def test_end_of_record_by_visit_pools_late_visits_and_gives_standard_errors():
    table = pd.DataFrame(
        {
            "SUBJECT_ID": [1, 2, 2, 3, 3, 3],
            "visit": [1, 1, 2, 1, 2, 3],
            "p_end": [0.6, 0.2, 0.4, 0.2, 0.3, 0.5],
            "p_visit": [0.2, 0.6, 0.4, 0.2, 0.3, 0.5],
            "ended": [1, 0, 1, 0, 0, 1],
        }
    )
    summary = end_of_record_by_visit(table, last=2)
    assert list(summary.index) == ["1", "2+"]
    assert summary["n"].tolist() == [3, 3]
    assert summary["real"].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert summary["real_se"].tolist() == pytest.approx([math.sqrt(2 / 27)] * 2)
    assert summary["p_end"].tolist() == pytest.approx([1 / 3, 0.4])
    assert summary["p_visit"].tolist() == pytest.approx([1 / 3, 0.4])
    assert summary["p_sampler"].tolist() == pytest.approx([(0.75 + 0.25 + 0.5) / 3, 0.5])
    assert summary.loc["2+", "p_sampler_se"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="empty table"):
        end_of_record_by_visit(table.iloc[:0])
