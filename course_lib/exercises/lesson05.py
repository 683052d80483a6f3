"""Lesson 05's exercises: head sizes, a focal-loss sex head, a head on the mean state (lesson 05)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from course_lib.exercises import exercise_check, not_attempted, passed, require
from course_lib.exercises.expected import EXPECTED
from course_lib.losses import IGNORE_INDEX, sex_loss
from course_lib.model import make_aux_head


@exercise_check
def check_aux_head_parameters(count_parameters: Callable[[int, int, str], int] | None) -> bool:
    """Compare the learner's formula with the heads ``make_aux_head`` builds, for many shapes."""
    name = "aux_head_parameters"
    if count_parameters is None:
        return not_attempted(name, "write aux_head_parameters(d_model, n_outputs, kind)")
    cases = [(d, k, kind) for d in (32, 128, 768) for k in (1, 2, 5) for kind in ("linear", "mlp")]
    for d_model, n_outputs, kind in cases:
        head = make_aux_head(d_model, n_outputs, kind)
        expected = sum(parameter.numel() for parameter in head.parameters())
        got = count_parameters(d_model, n_outputs, kind)
        require(
            got == expected,
            name,
            f"d_model {d_model}, n_outputs {n_outputs}, kind {kind!r}: counted {got}, "
            f"make_aux_head has {expected} (difference {got - expected})",
        )
    return passed(name, f"matches make_aux_head for {len(cases)} shapes")


# --- Exercise 2: a focal loss for the sex head ----------------------------------------------


FOCAL_GAMMAS = (0.0, 1.0, 2.0, 5.0)


def focal_batches() -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(batch, sex_logits, sex_target)``: the check's random batches."""
    generator = torch.Generator().manual_seed(5)
    batches = []
    for batch, scale in ((8, 1.0), (33, 4.0)):
        sex_logits = torch.randn(batch, 2, generator=generator) * scale
        sex_target = torch.randint(0, 2, (batch,), generator=generator)
        batches.append((batch, sex_logits, sex_target))
    return batches


@exercise_check
def check_focal_sex_loss(
    focal_loss: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None,
) -> bool:
    """Against the definition on random logits; gamma 0 must be ``course_lib.losses.sex_loss``."""
    name = "focal_sex_loss"
    if focal_loss is None:
        return not_attempted(name, "write focal_sex_loss(sex_logits, sex_target, gamma)")
    for batch, sex_logits, sex_target in focal_batches():
        for gamma in FOCAL_GAMMAS:
            got = focal_loss(sex_logits, sex_target, gamma)
            require(
                isinstance(got, torch.Tensor) and got.dim() == 0,
                name,
                f"expected a 0-dim tensor, got {getattr(got, 'shape', type(got).__name__)}",
            )
            expected = torch.tensor(EXPECTED["focal_sex_loss"][f"{batch}:{gamma}"])
            require(
                torch.allclose(got.float(), expected, atol=1e-6, rtol=1e-5),
                name,
                f"batch {batch}, gamma {gamma}: got {float(got):.6f}, expected {float(expected):.6f}",
            )
        plain = focal_loss(sex_logits, sex_target, 0.0).float()
        require(
            torch.allclose(plain, sex_loss(sex_logits, sex_target)),
            name,
            "gamma 0 must give the plain cross-entropy (course_lib.losses.sex_loss)",
        )
    logits = torch.tensor([[0.0, 1.0]], requires_grad=True)
    focal_loss(logits, torch.tensor([1]), 2.0).backward()
    require(
        logits.grad is not None and bool(torch.isfinite(logits.grad).all()),
        name,
        "the loss must be differentiable (build it from torch operations, no .item())",
    )
    return passed(name, "matches the focal loss for 4 gammas; gamma 0 is sex_loss")


# --- Exercise 3: a head on the mean decoder state --------------------------------------------


def padded_states() -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states ``[4, 7, 6]`` and labels with right padding of lengths 7, 5, 2, 1."""
    generator = torch.Generator().manual_seed(11)
    hidden = torch.randn(4, 7, 6, generator=generator)
    labels = torch.randint(7, 30, (4, 7), generator=generator)
    for row, length in enumerate((7, 5, 2, 1)):
        labels[row, length:] = IGNORE_INDEX
        hidden[row, length:] = 100.0  # what a head must never average in
    return hidden, labels


@exercise_check
def check_mean_decoder_state(
    mean_state: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
) -> bool:
    """On hidden states with right padding of different lengths, padding full of large values."""
    name = "mean_decoder_state"
    if mean_state is None:
        return not_attempted(name, "write mean_decoder_state(hidden, labels)")
    hidden, labels = padded_states()
    got = mean_state(hidden, labels)
    require(
        isinstance(got, torch.Tensor) and tuple(got.shape) == (4, 6),
        name,
        f"expected a [batch, d_model] = (4, 6) tensor, got {getattr(got, 'shape', type(got).__name__)}",
    )
    expected = torch.tensor(EXPECTED["mean_decoder_state"])
    require(
        bool((got.abs() < 50).all()),
        name,
        "values near 100 came from the padded positions: average only where labels != -100",
    )
    require(
        torch.allclose(got, expected, atol=1e-6),
        name,
        f"patient 1 (5 scored positions): got {got[1, :3].tolist()}, "
        f"expected {expected[1, :3].tolist()} (first 3 features)",
    )
    return passed(name, "averages the scored positions only")
