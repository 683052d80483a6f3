"""Lesson 08's exercises: two new logits processors for generation (lesson 08).

Both checks call the learner's class on small hand-made batches (a six-code vocabulary, flat
scores) and compare the banned tokens with what the exercise asks, row by row; the chapter ban
is also run inside a ``LogitsProcessorList`` after :class:`PatientGrammarProcessor`, as
``generate_patients`` would chain it.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from course_lib import icd9
from course_lib.exercises import exercise_check, not_attempted, passed, require
from course_lib.generation import PatientGrammarProcessor
from course_lib.tokens import BOS_ID, PAD_ID, VISIT_END_ID, VISIT_START_ID, Vocabulary

# Two mental-disorder codes (chapter 290-319) among codes of other chapters.
_CODES = ("4019", "29620", "25000", "3051", "V3000", "78659")
_MENTAL = "290-319"


def _vocabulary() -> Vocabulary:
    return Vocabulary(list(_CODES))


def _banned(scores: torch.Tensor) -> list[set[int]]:
    return [set(torch.isinf(row).nonzero().flatten().tolist()) for row in scores]


def _call(processor, input_ids: torch.Tensor, n_tokens: int, name: str) -> torch.Tensor:
    scores = torch.zeros(input_ids.shape[0], n_tokens)
    out = processor(input_ids, scores.clone())
    require(
        isinstance(out, torch.Tensor) and tuple(out.shape) == tuple(scores.shape),
        name,
        f"__call__ must return the scores tensor of shape {tuple(scores.shape)}, "
        f"got {type(out).__name__} {tuple(getattr(out, 'shape', ()))}",
    )
    return out


@exercise_check
def check_chapter_ban(processor_class) -> bool:
    """Children (age < max_age) lose every code of the chapter; nothing else is banned."""
    name = "chapter_ban"
    if processor_class is None:
        return not_attempted(name, "write ChapterBanProcessor(vocabulary, ages, chapter, max_age)")
    vocabulary = _vocabulary()
    mental = {vocabulary.code_to_id(c) for c in _CODES if icd9.chapter_of(c) == _MENTAL}
    ages = [4.0, 17.9, 18.0, 70.0]
    processor = processor_class(vocabulary, ages, chapter=_MENTAL, max_age=18)
    require(isinstance(processor, LogitsProcessor), name, "the class must subclass LogitsProcessor")
    input_ids = torch.tensor([[BOS_ID, VISIT_START_ID]] * len(ages))
    banned = _banned(_call(processor, input_ids, len(vocabulary), name))
    for age, row in zip(ages, banned, strict=True):
        expected = mental if age < 18 else set()
        require(
            row == expected,
            name,
            f"age {age}, chapter {_MENTAL}, max_age 18: banned "
            f"{sorted(vocabulary.id_to_token(t) for t in row)}, expected "
            f"{sorted(vocabulary.id_to_token(t) for t in expected)}",
        )
    # Another chapter and cut-off: the processor must not hard-code the mental chapter.
    processor = processor_class(vocabulary, [10.0, 10.0], chapter="V", max_age=12)
    banned = _banned(_call(processor, input_ids[:2], len(vocabulary), name))
    expected = {vocabulary.code_to_id("V3000")}
    require(
        banned == [expected, expected],
        name,
        f'chapter "V", ages 10 and 10, max_age 12: banned '
        f"{[sorted(vocabulary.id_to_token(t) for t in row) for row in banned]}, expected "
        f"[['V3000'], ['V3000']]",
    )
    # Chained after the grammar processor, a child just inside a visit may write any code but
    # the mental ones (and the grammar's own bans stay).
    chained = LogitsProcessorList(
        [
            PatientGrammarProcessor(vocabulary),
            processor_class(vocabulary, [6.0], chapter=_MENTAL, max_age=18),
        ]
    )
    allowed = set(
        torch.isfinite(chained(input_ids[:1], torch.zeros(1, len(vocabulary)))[0])
        .nonzero()
        .flatten()
        .tolist()
    )
    require(
        allowed == set(vocabulary.code_ids) - mental,
        name,
        "chained after PatientGrammarProcessor, a 6-year-old after <visit> should be allowed "
        f"the non-mental codes only, got {sorted(vocabulary.id_to_token(t) for t in allowed)}",
    )
    return passed(name, f"bans {len(mental)} mental-disorder codes for children only")


@exercise_check
def check_max_visits(processor_class) -> bool:
    """After ``max_visits`` closed visits only ``<visit>`` is banned, and only then."""
    name = "max_visits"
    if processor_class is None:
        return not_attempted(name, "write MaxVisitsProcessor(max_visits)")
    code = 7  # the first code id of any vocabulary without chapter tokens
    V, E = VISIT_START_ID, VISIT_END_ID
    rows = {
        "no visit yet": [BOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
        "one visit closed": [BOS_ID, V, code, E, PAD_ID, PAD_ID, PAD_ID],
        "inside the second visit": [BOS_ID, V, code, E, V, code, PAD_ID],
        "two visits closed": [BOS_ID, V, code, E, V, code, E],
    }
    input_ids = torch.tensor(list(rows.values()))
    for max_visits in (1, 2):
        processor = processor_class(max_visits)
        require(
            isinstance(processor, LogitsProcessor), name, "the class must subclass LogitsProcessor"
        )
        banned = _banned(_call(processor, input_ids, 12, name))
        closed = [row.count(E) for row in rows.values()]
        for (state, _), n_closed, row in zip(rows.items(), closed, banned, strict=True):
            expected = {V} if n_closed >= max_visits else set()
            require(
                row == expected,
                name,
                f"max_visits {max_visits}, {state}: banned ids {sorted(row)}, expected "
                f"{sorted(expected)} (<visit> is id {V})",
            )
    return passed(name, "bans <visit> exactly when max_visits visits are closed")
