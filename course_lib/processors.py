"""Logits processors: what the sampler may emit, and the draw itself (lesson 08).

Each is a ``transformers.LogitsProcessor``, applied in the order :func:`build_processors` and
:func:`sampling_processors` list them:

- :class:`PatientGrammarProcessor` keeps sequences well formed: codes only inside a visit,
  no empty visits, never ``<pad>``/``<patient>``/``<mask>``/``<unk>``.
- :class:`NoRepeatCodeProcessor` bans a code already in the current visit (the brief's
  duplicate criterion) or, as an option, anywhere in the patient. Unlike
  ``no_repeat_ngram_size=1`` it leaves visit markers and later visits alone.
- :class:`ValidityProcessor` masks codes that the Medicare Code Editor forbids for the
  patient's age and sex (rule-constrained decoding).
- :class:`InverseCdfSampler` draws the token (after ``transformers``' own temperature,
  top-k and top-p warpers) so that greedy decoding samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from course_lib import icd9
from course_lib.tokens import EOS_ID, PAD_ID, UNK_ID, VISIT_END_ID, VISIT_START_ID, Vocabulary

DUPLICATE_SCOPES = ("visit", "patient", "none")


def _code_mask(vocabulary: Vocabulary, device) -> torch.Tensor:
    mask = torch.zeros(len(vocabulary), dtype=torch.bool, device=device)
    mask[list(vocabulary.code_ids)] = True
    return mask


class PatientGrammarProcessor(LogitsProcessor):
    """Allow only tokens that keep ``<visit> codes </visit> ... </patient>`` well formed.

    Outside a visit the next token is ``<visit>`` or ``</patient>`` (the latter only after
    at least one visit); right after ``<visit>`` it is a code; later in a visit, a code or
    ``</visit>``. A visit is closed when it reaches ``max_codes_per_visit``.
    """

    def __init__(self, vocabulary: Vocabulary, max_codes_per_visit: int = 40):
        self.code_mask = _code_mask(vocabulary, "cpu")
        self.max_codes_per_visit = max_codes_per_visit

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        code_mask = self.code_mask.to(scores.device)
        last = input_ids[:, -1]
        opened = input_ids.eq(VISIT_START_ID).cumsum(1)
        closed = input_ids.eq(VISIT_END_ID).cumsum(1)
        inside = opened[:, -1] > closed[:, -1]
        # codes since the last <visit>: positions after the last opening, inside the visit
        in_current = opened.eq(opened[:, -1:]) & inside.unsqueeze(1)
        n_codes = (in_current & code_mask[input_ids]).sum(1)

        allowed = torch.zeros_like(scores, dtype=torch.bool)
        outside = ~inside
        allowed[outside, VISIT_START_ID] = True
        allowed[outside & (opened[:, -1] > 0), EOS_ID] = True
        may_add_code = inside & (n_codes < self.max_codes_per_visit)
        allowed[may_add_code] |= code_mask
        allowed[inside & last.ne(VISIT_START_ID), VISIT_END_ID] = True
        done = input_ids.eq(EOS_ID).any(1)
        scores = scores.masked_fill(~allowed, -float("inf"))
        # A finished patient (after </patient>) pads, whatever an earlier processor banned
        # (no_repeat_ngram_size=1 bans a second <pad>): a row of -inf has no softmax.
        scores[done] = -float("inf")
        scores[done, PAD_ID] = 0.0
        return scores


class NoRepeatCodeProcessor(LogitsProcessor):
    """Ban a code that already appears in the current visit (``scope="visit"``) or in the
    patient so far (``scope="patient"``). Special tokens are never banned."""

    def __init__(self, vocabulary: Vocabulary, scope: str = "visit"):
        if scope not in ("visit", "patient"):
            raise ValueError(f"scope must be 'visit' or 'patient', got {scope!r}")
        self.code_mask = _code_mask(vocabulary, "cpu")
        self.scope = scope

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        is_code = self.code_mask.to(scores.device)[input_ids]
        if self.scope == "visit":
            visit_index = input_ids.eq(VISIT_START_ID).cumsum(1)
            is_code &= visit_index.eq(visit_index[:, -1:])
        seen = torch.zeros_like(scores, dtype=torch.bool)
        seen.scatter_(1, input_ids, is_code)  # a non-code position writes False: harmless
        seen[:, : UNK_ID + 1] = False
        return scores.masked_fill(seen, -float("inf"))


class ValidityProcessor(LogitsProcessor):
    """Mask every code the MCE rules forbid for each sequence's age and sex.

    ``ages`` are years, ``sexes`` ``"F"``/``"M"``, one per sequence in the batch (repeat them
    yourself for ``num_return_sequences > 1``). Masks are cached per (whole year, sex).
    """

    _cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def __init__(self, vocabulary: Vocabulary, ages: Sequence[float], sexes: Sequence[str]):
        self.invalid = torch.stack(
            [self.invalid_mask(vocabulary, age, sex) for age, sex in zip(ages, sexes, strict=True)]
        )

    @classmethod
    def invalid_mask(cls, vocabulary: Vocabulary, age: float, sex: str) -> torch.Tensor:
        key = (id(vocabulary), int(age), sex)
        if key not in cls._cache:
            mask = torch.zeros(len(vocabulary), dtype=torch.bool)
            for token_id in vocabulary.code_ids:
                code = vocabulary.id_to_code(token_id)
                mask[token_id] = icd9.rules_for(code) != () and not icd9.is_valid_for(
                    code, age, sex
                )
            cls._cache[key] = mask
        return cls._cache[key]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores.masked_fill(self.invalid.to(scores.device), -float("inf"))


def build_processors(
    vocabulary: Vocabulary,
    ages: Sequence[float],
    sexes: Sequence[str],
    *,
    no_duplicates: str = "visit",
    validity: bool = False,
    grammar: bool = True,
) -> LogitsProcessorList:
    """The processors for one batch, in the order they apply."""
    if no_duplicates not in DUPLICATE_SCOPES:
        raise ValueError(f"no_duplicates must be one of {DUPLICATE_SCOPES}, got {no_duplicates!r}")
    processors = LogitsProcessorList()
    if grammar:
        processors.append(PatientGrammarProcessor(vocabulary))
    if no_duplicates != "none":
        processors.append(NoRepeatCodeProcessor(vocabulary, no_duplicates))
    if validity:
        processors.append(ValidityProcessor(vocabulary, ages, sexes))
    return processors


class InverseCdfSampler(LogitsProcessor):
    """Draw one token per row from ``softmax(scores)`` and return scores that leave only it,
    so that greedy decoding (``generate(do_sample=False)``) samples. Put it last.

    Why not ``generate(do_sample=True)``: ``torch.multinomial`` on a CPU draws one exponential
    per vocabulary entry, which took about half of a generation step for 256 patients and
    4,537 tokens in this course's profile. Inverse transform sampling draws one uniform per row
    and finds where it falls in the cumulative distribution: the same distribution, other
    random numbers (so other patients for the same seed).
    """

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        wide = torch.float32 if scores.device.type == "mps" else torch.float64  # MPS: no float64
        cdf = scores.float().softmax(dim=-1).to(wide).cumsum(dim=-1)  # many small terms
        total = cdf[:, -1:]
        if bool(total.isnan().any()):  # a row of -inf has no softmax
            row = int(total.isnan().nonzero()[0, 0])
            raise ValueError(f"row {row} of the scores has no finite entry: nothing to sample")
        # u in [0, total): the first position whose cdf exceeds u holds mass (cdf rises there)
        below_total = torch.nextafter(total, torch.zeros_like(total))
        draw = torch.rand(total.shape, dtype=cdf.dtype, device=cdf.device) * total
        token = torch.searchsorted(cdf, torch.minimum(draw, below_total), right=True)
        return torch.full_like(scores, -float("inf")).scatter_(1, token, 0.0)


def sampling_processors(
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> LogitsProcessorList:
    """``transformers``' warpers in the order ``generate(do_sample=True)`` applies them, then
    :class:`InverseCdfSampler`: append to the processors and decode with ``do_sample=False``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    processors = LogitsProcessorList()
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k:
        processors.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    processors.append(InverseCdfSampler())
    return processors
