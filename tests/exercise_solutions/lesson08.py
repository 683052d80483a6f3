"""Reference solutions and wrong answers for lesson08's exercises (tests only)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from course_lib import icd9
from course_lib.exercises.lesson08 import (
    _MENTAL,
    check_chapter_ban,
    check_gumbel_sampler,
    check_max_visits,
)
from course_lib.tokens import EOS_ID, VISIT_END_ID, VISIT_START_ID, Vocabulary
from exercise_solutions import Exercise

# --- Exercise 1: ban a chapter for children -------------------------------------------------


class SolutionChapterBanProcessor(LogitsProcessor):
    """Mask every code of ``chapter`` for the sequences whose age is below ``max_age``."""

    def __init__(self, vocabulary: Vocabulary, ages: Sequence[float], chapter: str, max_age: float):
        in_chapter = torch.zeros(len(vocabulary), dtype=torch.bool)
        for token_id in vocabulary.code_ids:
            in_chapter[token_id] = icd9.chapter_of(vocabulary.id_to_code(token_id)) == chapter
        is_child = torch.tensor([age < max_age for age in ages])
        self.banned = is_child[:, None] & in_chapter[None, :]  # [batch, vocab]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores.masked_fill(self.banned.to(scores.device), -float("inf"))


class _BansEveryone(SolutionChapterBanProcessor):
    def __init__(self, vocabulary, ages, chapter, max_age):
        super().__init__(vocabulary, ages, chapter, max_age=float("inf"))


class _BansAtTheCutOff(SolutionChapterBanProcessor):
    def __init__(self, vocabulary, ages, chapter, max_age):
        super().__init__(vocabulary, ages, chapter, max_age=max_age + 1e-9)


class _AlwaysMental(SolutionChapterBanProcessor):
    def __init__(self, vocabulary, ages, chapter, max_age):
        super().__init__(vocabulary, ages, _MENTAL, max_age)


# --- Exercise 2: at most N visits -----------------------------------------------------------


class SolutionMaxVisitsProcessor(LogitsProcessor):
    """Ban ``<visit>`` once ``max_visits`` visits are closed (the grammar then leaves only
    ``</patient>``)."""

    def __init__(self, max_visits: int):
        if max_visits < 1:
            raise ValueError(f"max_visits must be >= 1, got {max_visits}")
        self.max_visits = max_visits

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        full = input_ids.eq(VISIT_END_ID).sum(dim=1) >= self.max_visits
        scores = scores.clone()
        scores[full, VISIT_START_ID] = -float("inf")
        return scores


class _OffByOne(SolutionMaxVisitsProcessor):
    def __init__(self, max_visits):
        super().__init__(max_visits)
        self.max_visits = max_visits + 1


class _BansEndOfPatient(SolutionMaxVisitsProcessor):
    def __call__(self, input_ids, scores):
        full = input_ids.eq(VISIT_END_ID).sum(dim=1) >= self.max_visits
        scores = scores.clone()
        scores[full, EOS_ID] = -float("inf")
        return scores


class _CountsOpenedVisits(SolutionMaxVisitsProcessor):
    def __call__(self, input_ids, scores):
        full = input_ids.eq(VISIT_START_ID).sum(dim=1) >= self.max_visits
        scores = scores.clone()
        scores[full, VISIT_START_ID] = -float("inf")
        return scores


# --- Exercise 4: the Gumbel-max draw -------------------------------------------------------


class SolutionGumbelMaxSampler(LogitsProcessor):
    """argmax(scores + Gumbel noise) is a draw from softmax(scores); leave only that token."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        uniform = torch.rand_like(scores).clamp_min(torch.finfo(scores.dtype).tiny)
        token = (scores - (-uniform.log()).log()).argmax(dim=-1, keepdim=True)
        return torch.full_like(scores, -float("inf")).scatter_(1, token, 0.0)


class _Greedy(SolutionGumbelMaxSampler):
    def __call__(self, input_ids, scores):
        token = scores.argmax(dim=-1, keepdim=True)
        return torch.full_like(scores, -float("inf")).scatter_(1, token, 0.0)


class _UniformNoise(SolutionGumbelMaxSampler):
    def __call__(self, input_ids, scores):
        token = (scores + torch.rand_like(scores)).argmax(dim=-1, keepdim=True)
        return torch.full_like(scores, -float("inf")).scatter_(1, token, 0.0)


class _NoisyScores(SolutionGumbelMaxSampler):
    def __call__(self, input_ids, scores):
        return scores - (-torch.rand_like(scores).log()).log()


class _StubChapterBanProcessor(LogitsProcessor):
    """What lesson 08 ships (both exercises)."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("TODO: write __init__ and __call__")


class _StubGumbelMaxSampler(LogitsProcessor):
    """What lesson 08 ships for exercise 4."""

    def __call__(self, input_ids, scores):
        raise NotImplementedError("TODO: draw one token per row by the Gumbel-max trick")


EXERCISES = [
    Exercise(
        "chapter_ban",
        check_chapter_ban,
        SolutionChapterBanProcessor,
        stub=_StubChapterBanProcessor,
        wrong_answers=(_BansEveryone, _BansAtTheCutOff, _AlwaysMental),
    ),
    Exercise(
        "max_visits",
        check_max_visits,
        SolutionMaxVisitsProcessor,
        stub=_StubChapterBanProcessor,
        wrong_answers=(_OffByOne, _BansEndOfPatient, _CountsOpenedVisits),
    ),
    Exercise(
        "gumbel_sampler",
        check_gumbel_sampler,
        SolutionGumbelMaxSampler,
        stub=_StubGumbelMaxSampler,
        wrong_answers=(_Greedy, _UniformNoise, _NoisyScores),
    ),
]
