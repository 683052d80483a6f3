"""Lesson 08's exercises: two new logits processors for generation and a sampler (lesson 08).

The processor checks call the learner's class on small hand-made batches (a six-code
vocabulary, flat scores) and compare the banned tokens with what the exercise asks, row by row;
the chapter ban is also run inside a ``LogitsProcessorList`` after
:class:`PatientGrammarProcessor`, as ``generate_patients`` would chain it. The sampler check
draws 20,000 tokens from a five-token distribution and tests them against it (chi-square).
"""

from __future__ import annotations

import torch
from scipy import stats
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


def _call(processor, input_ids: torch.Tensor, n_tokens: int, name: str, scores=None):
    """The learner's processor on ``scores`` (flat zeros by default), its output checked."""
    if scores is None:
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


_DRAW_LOGITS = (1.0, 0.0, -float("inf"), 2.0, -1.0)  # the third token is masked


@exercise_check
def check_gumbel_sampler(sampler_class) -> bool:
    """One finite score per row, never a masked token, and the softmax's frequencies."""
    name = "gumbel_sampler"
    if sampler_class is None:
        return not_attempted(name, "write GumbelMaxSampler()")
    sampler = sampler_class()
    require(isinstance(sampler, LogitsProcessor), name, "the class must subclass LogitsProcessor")
    n = 20_000
    scores = torch.tensor([_DRAW_LOGITS]).expand(n, -1).clone()
    torch.manual_seed(0)
    out = _call(sampler, torch.zeros(n, 1, dtype=torch.long), len(_DRAW_LOGITS), name, scores)
    finite = torch.isfinite(out)
    require(
        bool(finite.sum(dim=1).eq(1).all()),
        name,
        "leave exactly one finite score per row (the drawn token) and -inf everywhere else, "
        f"got {sorted(set(finite.sum(dim=1).tolist()))} finite scores per row",
    )
    counts = torch.bincount(out.argmax(dim=1), minlength=len(_DRAW_LOGITS))
    require(counts[2] == 0, name, f"the masked token (score -inf) was drawn {int(counts[2])} times")
    probabilities = torch.tensor(_DRAW_LOGITS, dtype=torch.float64).softmax(-1)
    kept = probabilities > 0
    expected = (probabilities[kept] * n).numpy()
    p_value = stats.chisquare(counts[kept].double().numpy(), expected).pvalue
    require(
        p_value > 1e-3,
        name,
        f"20,000 draws: {counts[kept].tolist()}, the softmax expects "
        f"{[round(e) for e in expected]} (chi-square p = {p_value:.2g})",
    )
    return passed(name, f"20,000 draws fit the softmax (chi-square p = {p_value:.2f})")
