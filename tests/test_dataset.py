"""Splits, age normalisation, truncation and the collator's batches."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.dataset import (
    IGNORE_INDEX,
    SEX_TO_INDEX,
    AgeNormalizer,
    PatientCollator,
    PatientDataset,
    make_dataloaders,
    split_cohort,
    truncate_visit_chunks,
)
from course_lib.tokens import (
    BOS_ID,
    EOS_ID,
    MASK_ID,
    PAD_ID,
    VISIT_END_ID,
    VISIT_START_ID,
    Vocabulary,
)

CODES = ["4019", "4280", "25000", "0389", "042", "5849", "V3000", "E8889", "00845", "V1582"]


def make_cohort(n_patients: int = 40, *, with_outcomes: bool = True, seed: int = 0) -> Cohort:
    """A hand-made cohort: 1-4 visits of 1-5 codes drawn from CODES."""
    rng = np.random.default_rng(seed)
    patients = []
    for index in range(n_patients):
        age = float(rng.integers(20, 90))
        visits = [
            Visit(list(rng.choice(CODES, size=rng.integers(1, 6), replace=False)), age + v)
            for v in range(rng.integers(1, 5))
        ]
        patients.append(Patient(1000 + index, "FM"[index % 2], age, visits))
    outcomes = None
    if with_outcomes:
        outcomes = pd.DataFrame(
            {
                "SUBJECT_ID": [p.subject_id for p in patients],
                "LVEF_REDUCED": [i % 2 for i in range(n_patients)],
                "EVENT_DAYS": [10.0 * i for i in range(n_patients)],
                "EVENT_OBSERVED": [1 - i % 2 for i in range(n_patients)],
                "RISK_CATEGORY": [i % 3 for i in range(n_patients)],
            }
        )
    return Cohort(patients, outcomes)


@pytest.fixture
def cohort() -> Cohort:
    return make_cohort()


@pytest.fixture
def vocab(cohort) -> Vocabulary:
    return Vocabulary.build(cohort)


@pytest.fixture
def normalizer(cohort) -> AgeNormalizer:
    return AgeNormalizer.fit(cohort)


# ---------------------------------------------------------------------------- splits
def subject_ids(cohort: Cohort) -> set[int]:
    return {p.subject_id for p in cohort}


def test_split_is_disjoint_covering_and_sized(cohort):
    train, val, test = split_cohort(cohort, seed=1)
    assert (len(train), len(val), len(test)) == (32, 4, 4)
    assert subject_ids(train) | subject_ids(val) | subject_ids(test) == subject_ids(cohort)
    assert not subject_ids(train) & subject_ids(val)
    assert not subject_ids(train) & subject_ids(test)
    assert not subject_ids(val) & subject_ids(test)
    for part in (train, val, test):
        assert set(part.outcomes["SUBJECT_ID"]) == subject_ids(part)


def test_split_is_reproducible_by_seed(cohort):
    first = [subject_ids(part) for part in split_cohort(cohort, seed=7)]
    again = [subject_ids(part) for part in split_cohort(cohort, seed=7)]
    other = [subject_ids(part) for part in split_cohort(cohort, seed=8)]
    assert first == again
    assert first != other
    # the split depends on the ids, not on the cohort's order
    reversed_cohort = Cohort(cohort.patients[::-1], cohort.outcomes)
    assert [subject_ids(part) for part in split_cohort(reversed_cohort, seed=7)] == first


def test_split_sizes_always_add_up():
    small = make_cohort(7, with_outcomes=False)
    sizes = [len(part) for part in split_cohort(small, seed=0, fractions=(0.5, 0.25, 0.25))]
    assert sum(sizes) == 7 and sizes[0] >= 3


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_split_rejects_bad_fractions(cohort, fractions):
    with pytest.raises(ValueError, match="fractions"):
        split_cohort(cohort, seed=0, fractions=fractions)


# ---------------------------------------------------------------------- normaliser
def test_age_normalizer_uses_training_statistics(cohort):
    normalizer = AgeNormalizer.fit(cohort)
    ages = np.array([p.age for p in cohort])
    assert normalizer.mean == pytest.approx(ages.mean())
    assert normalizer.std == pytest.approx(ages.std())
    z = normalizer.normalize(ages)
    assert z.mean() == pytest.approx(0, abs=1e-9) and z.std() == pytest.approx(1)
    assert normalizer.denormalize(normalizer.normalize(63.0)) == pytest.approx(63.0)
    tensor_z = normalizer.normalize(torch.tensor([63.0]))
    assert isinstance(tensor_z, torch.Tensor)
    assert AgeNormalizer.from_dict(normalizer.to_dict()) == normalizer


def test_age_normalizer_edge_cases():
    same_age = Cohort([Patient(1, "F", 40.0, []), Patient(2, "M", 40.0, [])])
    assert AgeNormalizer.fit(same_age).std == 1.0
    with pytest.raises(ValueError, match="empty cohort"):
        AgeNormalizer.fit(Cohort([]))
    with pytest.raises(ValueError, match="expected"):
        AgeNormalizer.from_dict({"mean": 1.0})
    with pytest.raises(ValueError, match="positive std"):
        AgeNormalizer(50.0, 0.0)


# --------------------------------------------------------------------------- dataset
def test_dataset_items(cohort, vocab, normalizer):
    dataset = PatientDataset(cohort, vocab, normalizer, max_length=64)
    assert len(dataset) == len(cohort)
    assert dataset.truncated_count == 0 and dataset.unknown_count == 0
    item = dataset[1]
    patient = cohort.patients[1]
    assert item["input_ids"].tolist() == vocab.encode_patient(patient)
    assert item["x_num"].dtype == torch.float32 and item["x_num"].shape == (1,)
    assert item["x_num"].item() == pytest.approx(normalizer.normalize(patient.age), rel=1e-6)
    assert item["x_cat"].tolist() == [SEX_TO_INDEX[patient.sex]] == [1]
    assert item["subject_id"] == patient.subject_id
    assert item["lvef_reduced"].item() == 1 and item["risk_category"].item() == 1
    assert item["event_days"].item() == 10.0 and item["event_observed"].item() == 0


def test_dataset_without_outcomes_and_with_missing_values(vocab, normalizer):
    bare = PatientDataset(make_cohort(5, with_outcomes=False), vocab, normalizer, 64)
    assert "lvef_reduced" not in bare[0]
    cohort = make_cohort(3)
    cohort.outcomes = cohort.outcomes[["SUBJECT_ID", "LVEF_REDUCED", "EVENT_DAYS"]].copy()
    cohort.outcomes["LVEF_REDUCED"] = [1, None, 0]
    cohort.outcomes["EVENT_DAYS"] = [5.0, None, 7.0]
    dataset = PatientDataset(cohort, vocab, normalizer, 64)
    assert dataset.outcomes["lvef_reduced"].tolist() == [1, IGNORE_INDEX, 0]
    assert math.isnan(dataset[1]["event_days"].item())
    assert "risk_category" not in dataset[0]


def test_dataset_rejects_bad_input(vocab, normalizer):
    cohort = make_cohort(3)
    cohort.outcomes = cohort.outcomes.iloc[:2]
    with pytest.raises(ValueError, match="no row for SUBJECT_ID \\[1002\\]"):
        PatientDataset(cohort, vocab, normalizer, 64)
    odd = Cohort([Patient(5, "U", 30.0, [Visit(["4019"], 30.0)])])
    with pytest.raises(ValueError, match="patient 5: sex"):
        PatientDataset(odd, vocab, normalizer, 64)
    with pytest.raises(ValueError, match="max_length"):
        PatientDataset(make_cohort(2), vocab, normalizer, 4)


def test_dataset_counts_unknown_codes(vocab, normalizer):
    cohort = Cohort([Patient(1, "F", 30.0, [Visit(["4019", "99591", "99591"], 30.0)])])
    dataset = PatientDataset(cohort, vocab, normalizer, 64)
    assert dataset.unknown_count == 2


# ------------------------------------------------------------------------- truncation
def test_truncation_keeps_whole_visits_and_ends_with_eos(vocab, normalizer):
    visits = [["4019", "4280"], ["25000", "0389", "042"], ["5849"]]
    cohort = Cohort([Patient(1, "M", 60.0, [Visit(codes, 60.0) for codes in visits])])
    # full length: 1 + 4 + 5 + 3 + 1 = 14
    full = PatientDataset(cohort, vocab, normalizer, max_length=14)
    assert full.truncated_count == 0 and len(full[0]["input_ids"]) == 14
    # two visits take 1 + 4 + 5 + 1 = 11 tokens, one visit 1 + 4 + 1 = 6
    for max_length, kept_visits, length in [(13, 2, 11), (11, 2, 11), (10, 1, 6), (6, 1, 6)]:
        dataset = PatientDataset(cohort, vocab, normalizer, max_length)
        ids = dataset[0]["input_ids"].tolist()
        assert dataset.truncated_count == 1 and dataset.truncated_subject_ids == [1]
        assert len(ids) == length <= max_length
        assert ids[-2:] == [VISIT_END_ID, EOS_ID]
        assert vocab.decode(ids) == visits[:kept_visits]


def test_truncation_cuts_first_visit_only_when_it_alone_is_too_long(vocab):
    chunks = [vocab.encode_visit(["4019", "4280", "25000", "0389"]), vocab.encode_visit(["042"])]
    ids, truncated = truncate_visit_chunks(chunks, 5)
    assert truncated
    assert ids == [BOS_ID, VISIT_START_ID, vocab.code_to_id("4019"), VISIT_END_ID, EOS_ID]
    ids, truncated = truncate_visit_chunks(chunks, 7)
    assert len(ids) == 7 and vocab.decode(ids) == [["4019", "4280", "25000"]]
    # the first visit fits exactly (6 tokens + 2): the second is dropped whole
    ids, truncated = truncate_visit_chunks(chunks, 9)
    assert truncated and vocab.decode(ids) == [["4019", "4280", "25000", "0389"]]
    assert truncate_visit_chunks([], 5) == ([BOS_ID, EOS_ID], False)


# -------------------------------------------------------------------------- collator
@pytest.fixture
def dataset(cohort, vocab, normalizer) -> PatientDataset:
    return PatientDataset(cohort, vocab, normalizer, max_length=64)


def test_generate_batch_shapes_dtypes_and_shift(dataset):
    items = [dataset[i] for i in range(6)]
    batch = PatientCollator(objective="generate", seed=0)(items)
    lengths = [len(item["input_ids"]) for item in items]
    size, width = len(items), max(lengths) - 1
    assert batch["input_ids"].tolist() == [[MASK_ID]] * size
    assert batch["attention_mask"].tolist() == [[1]] * size
    for key in ("decoder_input_ids", "decoder_attention_mask", "labels"):
        assert batch[key].shape == (size, width) and batch[key].dtype == torch.long
    assert batch["x_num"].shape == (size, 1) and batch["x_num"].dtype == torch.float32
    assert batch["x_cat"].shape == (size, 1) and batch["x_cat"].dtype == torch.long
    assert batch["subject_ids"].tolist() == [item["subject_id"] for item in items]
    assert batch["lvef_reduced"].dtype == torch.long and batch["lvef_reduced"].shape == (size,)
    assert batch["event_days"].dtype == torch.float32
    assert batch["event_observed"].dtype == torch.long
    assert batch["risk_category"].dtype == torch.long

    real = batch["decoder_attention_mask"].bool()
    assert real.sum(dim=1).tolist() == [n - 1 for n in lengths]
    assert (batch["decoder_input_ids"][:, 0] == BOS_ID).all()
    assert (batch["decoder_input_ids"][~real] == PAD_ID).all()
    assert (batch["labels"][~real] == IGNORE_INDEX).all()
    assert (batch["labels"][real] != IGNORE_INDEX).all()
    both_real = real[:, 1:] & real[:, :-1]
    assert torch.equal(
        batch["decoder_input_ids"][:, 1:][both_real], batch["labels"][:, :-1][both_real]
    )
    for row, item in zip(batch["labels"], items, strict=True):
        n = len(item["input_ids"]) - 1
        assert row[:n].tolist() == item["input_ids"][1:].tolist()
        assert row[n - 1] == EOS_ID


def test_infill_masks_one_span_within_one_visit(dataset):
    items = [dataset[i] for i in range(len(dataset))]
    batch = PatientCollator(objective="infill", seed=3)(items)
    for row, mask, item in zip(batch["input_ids"], batch["attention_mask"], items, strict=True):
        encoder_ids = row[mask.bool()].tolist()
        original = item["input_ids"].tolist()
        assert encoder_ids.count(MASK_ID) == 1
        position = encoder_ids.index(MASK_ID)
        removed = len(original) - len(encoder_ids) + 1
        assert 1 <= removed
        # the prefix and suffix around the mask are the original's; the span has codes only
        assert encoder_ids[:position] == original[:position]
        assert encoder_ids[position + 1 :] == original[position + removed :]
        span = original[position : position + removed]
        assert all(token not in (VISIT_START_ID, VISIT_END_ID, BOS_ID, EOS_ID) for token in span)
    # the decoder target is still the whole patient
    for row, item in zip(batch["labels"], items, strict=True):
        n = len(item["input_ids"]) - 1
        assert row[:n].tolist() == item["input_ids"][1:].tolist()


def test_infill_span_lengths_follow_lambda(dataset):
    items = [dataset[i] for i in range(len(dataset))] * 10
    removed = []
    for lam in (1.0, 4.0):
        batch = PatientCollator(objective="infill", mask_span_lambda=lam, seed=0)(items)
        kept = batch["attention_mask"].sum(dim=1)
        original = torch.tensor([len(item["input_ids"]) for item in items])
        removed.append((original - kept + 1).float().mean().item())
    assert removed[0] < removed[1]


def test_infill_spans_are_reproducible_by_seed(dataset):
    items = [dataset[i] for i in range(len(dataset))]
    first = PatientCollator(objective="infill", seed=11)(items)["input_ids"]
    again = PatientCollator(objective="infill", seed=11)(items)["input_ids"]
    other = PatientCollator(objective="infill", seed=12)(items)["input_ids"]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_infill_patient_without_codes_gets_a_mask():
    collator = PatientCollator(objective="infill", seed=0)
    rng = np.random.default_rng(0)
    assert collator.mask_one_span([BOS_ID, EOS_ID], rng) == [BOS_ID, MASK_ID, EOS_ID]


def test_collator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="objective"):
        PatientCollator(objective="translate")
    with pytest.raises(ValueError, match="mask_span_lambda"):
        PatientCollator(mask_span_lambda=0)


# ------------------------------------------------------------------------ dataloaders
def test_make_dataloaders(cohort):
    train, val, test = split_cohort(cohort, seed=0)
    vocab = Vocabulary.build(train)
    normalizer = AgeNormalizer.fit(train)
    loaders = make_dataloaders(
        train, val, test, vocab, normalizer, batch_size=8, max_length=16, seed=5
    )
    assert [len(d) for d in loaders.datasets] == [len(train), len(val), len(test)]
    first_epoch = torch.cat([batch["subject_ids"] for batch in loaders.train])
    assert sorted(first_epoch.tolist()) == sorted(subject_ids(train))
    again = make_dataloaders(
        train, val, test, vocab, normalizer, batch_size=8, max_length=16, seed=5
    )
    assert torch.equal(first_epoch, torch.cat([b["subject_ids"] for b in again.train]))
    val_order = torch.cat([batch["subject_ids"] for batch in loaders.val]).tolist()
    assert val_order == [p.subject_id for p in val]
    batch = next(iter(loaders.train))
    assert batch["decoder_input_ids"].shape[1] <= 15


def test_infill_loader_with_workers_is_reproducible(cohort):
    vocab, normalizer = Vocabulary.build(cohort), AgeNormalizer.fit(cohort)

    def first_epoch(seed: int) -> list[torch.Tensor]:
        loaders = make_dataloaders(
            cohort,
            cohort,
            cohort,
            vocab,
            normalizer,
            batch_size=8,
            max_length=64,
            objective="infill",
            seed=seed,
            num_workers=2,
        )
        return [batch["input_ids"] for batch in loaders.train]

    first, again, other = first_epoch(5), first_epoch(5), first_epoch(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(
        a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other, strict=True)
    )


def test_workers_draw_different_spans(vocab, normalizer):
    # 16 copies of one patient: worker 0 collates batch 0, worker 1 batch 1; a collator
    # copied into both workers without reseeding would mask both batches identically
    patient = Patient(1, "F", 50.0, [Visit(CODES[:5], 50.0), Visit(CODES[5:], 51.0)])
    dataset = PatientDataset(Cohort([patient] * 16), vocab, normalizer, 64)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=8,
        num_workers=2,
        collate_fn=PatientCollator(objective="infill", seed=0),
        generator=torch.Generator().manual_seed(0),
    )
    first, second = (batch["input_ids"] for batch in loader)
    assert not torch.equal(first, second)
