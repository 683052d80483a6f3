"""Reference solutions and wrong answers for lesson02's exercises (tests only)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from course_lib.dataset import MIN_MAX_LENGTH, truncate_visit_chunks
from course_lib.exercises.lesson02 import (
    check_keep_latest_visits,
    check_visit_lengths,
)
from course_lib.tokens import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    VISIT_END_ID,
    VISIT_START_ID,
    Vocabulary,
)
from exercise_solutions import Exercise

# --- Exercise 1: how many codes does each visit of an id sequence hold? ----------------------


def solution_keep_latest_visits(
    visit_chunks: list[list[int]], max_length: int
) -> tuple[list[int], bool]:
    """Join encoded visits into ``<patient> ... </patient>`` of at most ``max_length`` tokens,
    keeping the LATEST whole visits that fit, in their order; if even the last visit does not
    fit, keep its first codes (the principal diagnosis comes first) and close it."""
    if max_length < MIN_MAX_LENGTH:
        raise ValueError(f"max_length must be >= {MIN_MAX_LENGTH}, got {max_length}")
    budget = max_length - 2  # room between <patient> and </patient>
    kept: list[list[int]] = []
    for chunk in reversed(visit_chunks):
        if len(chunk) > budget:
            break
        kept.append(chunk)
        budget -= len(chunk)
    truncated = len(kept) < len(visit_chunks)
    if not kept and visit_chunks:
        inner = visit_chunks[-1][1:-1][: budget - 2]
        kept = [[VISIT_START_ID, *inner, VISIT_END_ID]]
    return [BOS_ID, *(token for chunk in reversed(kept) for token in chunk), EOS_ID], truncated


def solution_visit_lengths(ids: Sequence[int] | torch.Tensor, vocab: Vocabulary) -> list[int]:
    """Codes (code ids and ``<unk>``) per visit of an encoded patient, in visit order.

    Chapter tokens and the structural tokens are not codes; reading stops at ``</patient>``,
    so the padding of a batch row is ignored.
    """
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    lengths: list[int] = []
    for token_id in ids:
        if token_id == EOS_ID:
            break
        if token_id == VISIT_START_ID:
            lengths.append(0)
        elif lengths and (token_id == UNK_ID or vocab.is_code_id(token_id)):
            lengths[-1] += 1
    return lengths


def _counts_every_inner_token(ids, vocab: Vocabulary) -> list[int]:
    """Counts chapter tokens as codes."""
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    lengths: list[int] = []
    for token_id in ids:
        if token_id == EOS_ID:
            break
        if token_id == VISIT_START_ID:
            lengths.append(0)
        elif lengths and token_id not in (VISIT_END_ID, PAD_ID):
            lengths[-1] += 1
    return lengths


def _forgets_unknown_codes(ids, vocab: Vocabulary) -> list[int]:
    return [len(visit) for visit in vocab.decode(ids, keep_unknown=False)]


def _keeps_earliest(visit_chunks: list[list[int]], max_length: int) -> tuple[list[int], bool]:
    """The library's policy, not the one asked for."""
    return truncate_visit_chunks(visit_chunks, max_length)


def _latest_in_reverse_order(visit_chunks: list[list[int]], max_length: int):
    ids, truncated = solution_keep_latest_visits(visit_chunks[::-1], max_length)
    return ids, truncated


def _cuts_mid_visit(visit_chunks: list[list[int]], max_length: int):
    """Keeps the last tokens whatever they are: visits are cut in the middle."""
    if max_length < MIN_MAX_LENGTH:
        raise ValueError(f"max_length must be >= {MIN_MAX_LENGTH}, got {max_length}")
    inner = [token for chunk in visit_chunks for token in chunk]
    kept = inner[-(max_length - 2) :]
    return [BOS_ID, *kept, EOS_ID], len(kept) < len(inner)


def _no_length_check(visit_chunks: list[list[int]], max_length: int):
    if max_length < MIN_MAX_LENGTH:
        return [BOS_ID, EOS_ID], bool(visit_chunks)
    return solution_keep_latest_visits(visit_chunks, max_length)


EXERCISES = [
    Exercise(
        "visit_lengths",
        check_visit_lengths,
        solution_visit_lengths,
        wrong_answers=(_counts_every_inner_token, _forgets_unknown_codes),
    ),
    Exercise(
        "keep_latest_visits",
        check_keep_latest_visits,
        solution_keep_latest_visits,
        wrong_answers=(
            _keeps_earliest,
            _latest_in_reverse_order,
            _cuts_mid_visit,
            _no_length_check,
        ),
    ),
]
