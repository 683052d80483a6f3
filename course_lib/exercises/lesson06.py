"""Lesson 06's exercises: a label-smoothed LM loss and a PMI co-occurrence support (lesson 06)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from course_lib.exercises import exercise_check, not_attempted, passed, require
from course_lib.exercises.expected import EXPECTED
from course_lib.losses import IGNORE_INDEX, build_cooccurrence_counts, lm_loss


@exercise_check
def check_smoothed_lm_loss(
    smoothed_loss: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None,
) -> bool:
    """Against torch's ``label_smoothing`` on padded batches; smoothing 0 is ``lm_loss``."""
    name = "smoothed_lm_loss"
    if smoothed_loss is None:
        return not_attempted(name, "write smoothed_lm_loss(logits, labels, smoothing)")
    generator = torch.Generator().manual_seed(3)
    for batch, seq, vocab in ((2, 5, 11), (4, 9, 40)):
        logits = torch.randn(batch, seq, vocab, generator=generator) * 3
        labels = torch.randint(0, vocab, (batch, seq), generator=generator)
        labels[0, seq // 2 :] = IGNORE_INDEX  # right padding in one patient
        for smoothing in (0.0, 0.1, 0.3):
            got = smoothed_loss(logits, labels, smoothing)
            require(
                isinstance(got, torch.Tensor) and got.dim() == 0,
                name,
                f"expected a 0-dim tensor, got {getattr(got, 'shape', type(got).__name__)}",
            )
            expected = F.cross_entropy(
                logits.reshape(-1, vocab),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                label_smoothing=smoothing,
            )
            require(
                torch.allclose(got.float(), expected, atol=1e-5),
                name,
                f"shape {(batch, seq, vocab)}, smoothing {smoothing}: got {float(got):.6f}, "
                f"expected {float(expected):.6f}",
            )
        require(
            torch.allclose(smoothed_loss(logits, labels, 0.0).float(), lm_loss(logits, labels)),
            name,
            "smoothing 0 must give course_lib.losses.lm_loss",
        )
    return passed(name, "matches cross_entropy(label_smoothing=...) with padding")


# --- Exercise 2: pointwise mutual information instead of raw counts -------------------------


def _toy_patients() -> tuple[list[list[int]], int, torch.Tensor]:
    """Token-id lists of a few patients over a 12-token vocabulary (codes are ids 7 to 11)."""
    patients = [
        [1, 3, 7, 8, 4, 2],
        [1, 3, 7, 8, 4, 3, 9, 4, 2],
        [1, 3, 7, 9, 4, 2],
        [1, 3, 10, 11, 4, 2],
        [1, 3, 10, 4, 3, 7, 4, 2],
        [1, 3, 8, 4, 2],
        [1, 3, 7, 8, 11, 4, 2],
    ]
    vocab_size = 12
    code_mask = torch.arange(vocab_size) >= 7
    return patients, vocab_size, code_mask


def pmi_inputs() -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(cooccurrence_counts, code_counts, n_patients)`` of the toy cohort."""
    patients, vocab_size, code_mask = _toy_patients()
    counts = build_cooccurrence_counts(patients, vocab_size, code_mask)
    code_counts = torch.zeros(vocab_size, dtype=torch.int64)
    for token_ids in patients:
        for token_id in {t for t in token_ids if code_mask[t]}:
            code_counts[token_id] += 1
    return counts, code_counts, len(patients)


@exercise_check
def check_pmi_matrix(
    pmi_matrix: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None,
) -> bool:
    """On the co-occurrence counts of a toy cohort: values, symmetry and ``-inf`` for pairs never
    seen together."""
    name = "pmi_matrix"
    if pmi_matrix is None:
        return not_attempted(name, "write pmi_matrix(cooccurrence_counts, code_counts, n_patients)")
    counts, code_counts, n_patients = pmi_inputs()
    vocab_size = counts.shape[0]
    got = pmi_matrix(counts, code_counts, n_patients)
    require(
        isinstance(got, torch.Tensor) and tuple(got.shape) == (vocab_size, vocab_size),
        name,
        f"expected a [{vocab_size}, {vocab_size}] tensor, "
        f"got {getattr(got, 'shape', type(got).__name__)}",
    )
    got = got.double()
    expected = torch.tensor(EXPECTED["pmi_matrix"], dtype=torch.float64)
    never = counts.eq(0)
    require(
        bool(torch.isneginf(got[never]).all()),
        name,
        "pairs never seen together (count 0) must be -inf (log 0), not NaN or a number",
    )
    require(torch.equal(got, got.T), name, "PMI must be symmetric: pmi[i, j] == pmi[j, i]")
    finite = ~never
    worst = (got[finite] - expected[finite]).abs().argmax()
    require(
        torch.allclose(got[finite], expected[finite], atol=1e-5),
        name,
        f"a pair seen together: got {float(got[finite][worst]):.4f}, expected "
        f"{float(expected[finite][worst]):.4f} = log(n_ij * N / (n_i * n_j))",
    )
    return passed(name, f"PMI of {int(finite.sum()) // 2} code pairs of a toy cohort")
