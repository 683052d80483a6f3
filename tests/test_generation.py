"""Logits processors and generate_patients (issue: model, generation)."""

from __future__ import annotations

import torch
from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

from course_lib import icd9
from course_lib.cohort import Cohort, Patient, Visit
from course_lib.dataset import AgeNormalizer
from course_lib.generation import (
    NoRepeatCodeProcessor,
    PatientGrammarProcessor,
    ValidityProcessor,
    generate_patients,
    naive_generate,
)
from course_lib.model import build_model
from course_lib.presets import get_preset
from course_lib.tokens import BOS_ID, EOS_ID, PAD_ID, VISIT_END_ID, VISIT_START_ID, Vocabulary

CODES = ["4019", "25000", "41401", "64891", "V3000", "60000", "486", "5849"]


def make_vocabulary() -> Vocabulary:
    patients = [Patient(i, "F", 30.0, [Visit(CODES[i % 8 : i % 8 + 2], 30.0)]) for i in range(8)]
    return Vocabulary.build(Cohort(patients))


def allowed(processor, sequence: list[int], vocabulary: Vocabulary) -> set[int]:
    scores = processor(torch.tensor([sequence]), torch.zeros(1, len(vocabulary)))
    return set(torch.nonzero(torch.isfinite(scores[0])).flatten().tolist())


def test_grammar_keeps_patients_well_formed():
    vocabulary = make_vocabulary()
    grammar = PatientGrammarProcessor(vocabulary)
    code_ids = set(vocabulary.code_ids)
    a, b = vocabulary.code_to_id("4019"), vocabulary.code_to_id("486")
    assert allowed(grammar, [BOS_ID], vocabulary) == {VISIT_START_ID}
    assert allowed(grammar, [BOS_ID, VISIT_START_ID], vocabulary) == code_ids
    assert allowed(grammar, [BOS_ID, VISIT_START_ID, a], vocabulary) == code_ids | {VISIT_END_ID}
    assert allowed(grammar, [BOS_ID, VISIT_START_ID, a, b, VISIT_END_ID], vocabulary) == {
        VISIT_START_ID,
        EOS_ID,
    }
    assert allowed(grammar, [BOS_ID, VISIT_START_ID, a, VISIT_END_ID, EOS_ID], vocabulary) == {
        PAD_ID
    }


def test_visit_duplicate_processor_bans_only_the_current_visit():
    vocabulary = make_vocabulary()
    a, b = vocabulary.code_to_id("4019"), vocabulary.code_to_id("486")
    sequence = [BOS_ID, VISIT_START_ID, a, VISIT_END_ID, VISIT_START_ID, b]
    visit_scope = allowed(NoRepeatCodeProcessor(vocabulary, "visit"), sequence, vocabulary)
    patient_scope = allowed(NoRepeatCodeProcessor(vocabulary, "patient"), sequence, vocabulary)
    assert b not in visit_scope and a in visit_scope and VISIT_END_ID in visit_scope
    assert a not in patient_scope and b not in patient_scope


def test_no_repeat_ngram_size_1_also_bans_visit_markers_and_later_visits():
    """What the lessons show: the plain transformers option is too blunt for visits."""
    vocabulary = make_vocabulary()
    a = vocabulary.code_to_id("4019")
    sequence = [BOS_ID, VISIT_START_ID, a, VISIT_END_ID]
    banned = set(range(len(vocabulary))) - allowed(
        NoRepeatNGramLogitsProcessor(1), sequence, vocabulary
    )
    assert VISIT_START_ID in banned  # a second visit can never start
    assert a in banned  # nor can an old code come back in a later visit


def test_validity_processor_masks_mce_conflicts():
    vocabulary = make_vocabulary()
    processor = ValidityProcessor(vocabulary, ages=[30.0, 0.0], sexes=["M", "F"])
    scores = processor(torch.tensor([[BOS_ID], [BOS_ID]]), torch.zeros(2, len(vocabulary)))
    for row, (age, sex) in enumerate([(30.0, "M"), (0.0, "F")]):
        for token_id in vocabulary.code_ids:
            code = vocabulary.id_to_code(token_id)
            assert torch.isfinite(scores[row, token_id]).item() == icd9.is_valid_for(code, age, sex)
    assert not torch.isfinite(scores[0, vocabulary.code_to_id("64891")])  # maternity code, male


def test_generate_patients_respects_duplicates_and_validity():
    vocabulary = make_vocabulary()
    torch.manual_seed(0)
    model = build_model(vocabulary, get_preset("tiny"), d_model=32, attention_heads=2, ffn_dim=64)
    normalizer = AgeNormalizer(mean=50.0, std=20.0)
    ages, sexes = [0.0, 30.0, 70.0, 45.0] * 4, ["F", "M", "M", "F"] * 4
    cohort = generate_patients(
        model,
        vocabulary,
        normalizer,
        ages,
        sexes,
        batch_size=8,
        max_new_tokens=40,
        validity=True,
        seed=1,
    )
    assert len(cohort) == 16 and [p.sex for p in cohort] == sexes
    for patient in cohort:
        for visit in patient.visits:
            assert len(visit.codes) == len(set(visit.codes))
            assert all(
                icd9.check_code(code, visit.age, patient.sex) is None for code in visit.codes
            )
    again = generate_patients(
        model,
        vocabulary,
        normalizer,
        ages,
        sexes,
        batch_size=8,
        max_new_tokens=40,
        validity=True,
        seed=1,
    )
    assert [p.codes for p in again] == [p.codes for p in cohort]


def small_model(vocabulary):
    """A seeded random-init model small enough for token-by-token comparisons."""
    torch.manual_seed(0)
    shape = dict(d_model=32, attention_heads=2, ffn_dim=64)
    return build_model(vocabulary, get_preset("tiny"), **shape).eval()


def test_naive_loop_gives_the_same_greedy_tokens_as_generate():
    vocabulary = make_vocabulary()
    model = small_model(vocabulary)
    x_num, x_cat = torch.tensor([[0.3], [-1.0]]), torch.tensor([[0], [1]])
    torch.manual_seed(3)
    naive = naive_generate(model, x_num, x_cat, max_new_tokens=12)
    torch.manual_seed(3)
    cached = model.generate(
        x_num=x_num,
        x_cat=x_cat,
        do_sample=True,
        top_k=0,
        max_new_tokens=12,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
    )
    length = min(naive.shape[1], cached.shape[1])
    assert torch.equal(naive[:, :length], cached[:, :length])


def test_grammar_lets_a_finished_patient_pad_whatever_came_before():
    """no_repeat_ngram_size=1 bans a second <pad>; a fully masked row would break sampling."""
    vocabulary = make_vocabulary()
    a = vocabulary.code_to_id("4019")
    finished = torch.tensor([[BOS_ID, VISIT_START_ID, a, VISIT_END_ID, EOS_ID, PAD_ID]])
    banned = torch.zeros(1, len(vocabulary))
    banned[0, PAD_ID] = -float("inf")
    scores = PatientGrammarProcessor(vocabulary)(finished, banned)
    assert torch.isfinite(scores[0, PAD_ID]) and torch.isinf(scores[0, :PAD_ID]).all()
    assert torch.isinf(scores[0, PAD_ID + 1 :]).all()
