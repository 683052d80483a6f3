"""Vocabulary: fixed special ids, frequency order, round trip, tolerant decoding, JSON files."""

from __future__ import annotations

import json

import pytest
import torch

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.tokens import (
    BOS_ID,
    CHAPTER_TOKENS,
    EOS_ID,
    MASK_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    VISIT_END_ID,
    VISIT_START_ID,
    Vocabulary,
    VocabularyFileError,
)


def make_patient(subject_id: int, sex: str, age: float, visits: list[list[str]]) -> Patient:
    return Patient(subject_id, sex, age, [Visit(codes, age + i) for i, codes in enumerate(visits)])


@pytest.fixture
def training_cohort() -> Cohort:
    # 4019 x4, 4280 x3, 0389 x2, V3000 x2, E8889 x1, 042 x1, 25000 x1
    return Cohort(
        [
            make_patient(1, "M", 70, [["4019", "4280", "25000"], ["4019", "E8889"]]),
            make_patient(2, "F", 0, [["V3000"], ["V3000", "0389"]]),
            make_patient(3, "F", 55, [["4019", "4280", "0389", "042"]]),
            make_patient(4, "M", 80, [["4280", "4019"]]),
        ]
    )


def test_special_ids_are_fixed():
    assert (PAD_ID, BOS_ID, EOS_ID, VISIT_START_ID, VISIT_END_ID, MASK_ID, UNK_ID) == tuple(
        range(7)
    )
    assert SPECIAL_TOKENS == (
        "<pad>",
        "<patient>",
        "</patient>",
        "<visit>",
        "</visit>",
        "<mask>",
        "<unk>",
    )
    empty = Vocabulary([])
    assert empty.size == len(empty) == 7
    assert empty.special_ids == list(range(7))
    assert empty.token_to_id("<mask>") == MASK_ID


def test_codes_ordered_by_training_frequency_then_code(training_cohort):
    vocab = Vocabulary.build(training_cohort)
    assert vocab.codes == ["4019", "4280", "0389", "V3000", "042", "25000", "E8889"]
    assert vocab.code_ids == list(range(7, 14))
    assert vocab.code_to_id("4019") == 7
    assert vocab.id_to_code(7) == "4019"
    assert vocab.code_to_id("401.9") == 7  # dotted input accepted
    assert vocab.code_counts["4280"] == 3
    assert vocab.is_code_id(7) and not vocab.is_code_id(UNK_ID) and not vocab.is_code_id(14)
    with pytest.raises(ValueError, match="not a code id"):
        vocab.id_to_code(EOS_ID)


def test_min_count_drops_rare_codes(training_cohort):
    vocab = Vocabulary.build(training_cohort, min_count=2)
    assert vocab.codes == ["4019", "4280", "0389", "V3000"]
    assert vocab.code_to_id("042") == UNK_ID
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build(training_cohort, min_count=0)


def test_encode_layout(training_cohort):
    vocab = Vocabulary.build(training_cohort)
    ids = vocab.encode_patient(training_cohort.patients[1])
    v3000, c0389 = vocab.code_to_id("V3000"), vocab.code_to_id("0389")
    assert ids == [BOS_ID, 3, v3000, 4, 3, v3000, c0389, 4, EOS_ID]


def test_round_trip_is_lossless_for_known_codes(training_cohort):
    vocab = Vocabulary.build(training_cohort)
    for patient in training_cohort:
        ids = vocab.encode_patient(patient)
        back = vocab.decode_patient(
            ids,
            patient.sex,
            patient.age,
            patient.subject_id,
            visit_ages=[v.age for v in patient.visits],
        )
        assert back == patient
    # V and E codes and the leading zero survive
    assert vocab.decode(vocab.encode_patient(training_cohort.patients[1])) == [
        ["V3000"],
        ["V3000", "0389"],
    ]
    assert vocab.unknown_count == 0


def test_round_trip_with_chapter_tokens(training_cohort):
    vocab = Vocabulary.build(training_cohort, chapter_tokens=True)
    assert vocab.chapter_token_ids == list(range(7, 7 + len(CHAPTER_TOKENS)))
    assert vocab.code_ids[0] == 7 + len(CHAPTER_TOKENS)
    patient = training_cohort.patients[0]
    ids = vocab.encode_patient(patient)
    tokens = [vocab.id_to_token(i) for i in ids]
    assert tokens == [
        "<patient>",
        "<visit>",
        "<chapter:390-459>",
        "4019",
        "4280",
        "<chapter:240-279>",
        "25000",
        "</visit>",
        "<visit>",
        "<chapter:390-459>",
        "4019",
        "<chapter:E>",
        "E8889",
        "</visit>",
        "</patient>",
    ]
    assert vocab.decode(ids) == [v.codes for v in patient.visits]


def test_unknown_codes_are_counted(training_cohort):
    vocab = Vocabulary.build(training_cohort)
    ids = vocab.encode_visits([["4019", "99591"], ["5849", "99591"]])
    assert ids.count(UNK_ID) == 3
    assert vocab.unknown_count == 3
    assert vocab.unknown_codes == {"99591": 2, "5849": 1}
    assert vocab.decode(ids) == [["4019", "<unk>"], ["<unk>", "<unk>"]]
    assert vocab.decode(ids, keep_unknown=False) == [["4019"]]
    vocab.reset_unknown_count()
    assert vocab.unknown_count == 0 and not vocab.unknown_codes


def test_decode_tolerates_generated_sequences(training_cohort):
    vocab = Vocabulary.build(training_cohort)
    a, b, c = (vocab.code_to_id(code) for code in ("4019", "4280", "042"))
    # a code outside a visit opens one; PAD/BOS/MASK ignored; stops at EOS
    assert vocab.decode([BOS_ID, a, VISIT_END_ID, PAD_ID, VISIT_START_ID, b, EOS_ID, c]) == [
        ["4019"],
        ["4280"],
    ]
    # unclosed visit closed at the end; <visit> inside a visit starts a new one; empty dropped
    assert vocab.decode([VISIT_START_ID, a, VISIT_START_ID, VISIT_START_ID, b, MASK_ID, c]) == [
        ["4019"],
        ["4280", "042"],
    ]
    assert vocab.decode(torch.tensor([BOS_ID, VISIT_START_ID, c, VISIT_END_ID])) == [["042"]]
    assert vocab.decode([EOS_ID, VISIT_START_ID, a]) == []
    with pytest.raises(ValueError, match="out of range"):
        vocab.decode([BOS_ID, vocab.size])


def test_decode_patient_uses_patient_age_by_default(training_cohort):
    vocab = Vocabulary.build(training_cohort)
    ids = vocab.encode_visits([["4019"], ["4280"]])
    patient = vocab.decode_patient(ids, "F", 61.5, 99)
    assert (patient.subject_id, patient.sex, patient.age) == (99, "F", 61.5)
    assert [v.age for v in patient.visits] == [61.5, 61.5]
    with pytest.raises(ValueError, match="visit_ages"):
        vocab.decode_patient(ids, "F", 61.5, 99, visit_ages=[61.5])


def test_save_and_load_round_trip(tmp_path, training_cohort):
    vocab = Vocabulary.build(training_cohort, chapter_tokens=True)
    path = vocab.save(tmp_path / "run" / "vocab.json")
    assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]  # no temp file left
    loaded = Vocabulary.load(path)
    assert loaded.tokens == vocab.tokens
    assert loaded.chapter_tokens and loaded.code_counts == vocab.code_counts


def test_save_is_atomic(tmp_path, training_cohort, monkeypatch):
    path = tmp_path / "vocab.json"
    path.write_text("previous content")
    vocab = Vocabulary.build(training_cohort)

    def failing_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", failing_dump)
    with pytest.raises(OSError, match="disk full"):
        vocab.save(path)
    assert path.read_text() == "previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a vocabulary file"),
        (
            '{"format": "course_lib.vocabulary", "version": 9, "chapter_tokens": false, "codes": []}',
            "version 9",
        ),
        (
            '{"format": "course_lib.vocabulary", "version": 1, "chapter_tokens": false, "codes": "4019"}',
            "malformed vocabulary",
        ),
        (
            '{"format": "course_lib.vocabulary", "version": 1, "chapter_tokens": false,'
            ' "codes": ["4019", "4019"]}',
            "unique",
        ),
    ],
)
def test_load_malformed_file_names_file_and_expectation(tmp_path, content, message):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(VocabularyFileError, match=message) as error:
        Vocabulary.load(path)
    assert "broken.json" in str(error.value)
    assert isinstance(error.value, ValueError)


def test_load_missing_file(tmp_path):
    with pytest.raises(VocabularyFileError, match="no such vocabulary file"):
        Vocabulary.load(tmp_path / "absent.json")
