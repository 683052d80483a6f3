"""Reference solutions and wrong answers for lesson00's exercises (tests only)."""

from __future__ import annotations

from dataclasses import replace

from course_lib.exercises.lesson00 import check_bart_parameters, check_micro_preset
from course_lib.presets import PRESETS, Preset
from exercise_solutions import Exercise


def micro_like(**shape) -> Preset:
    """A one-layer preset derived from ``tiny`` (so new Preset fields keep tiny's values)."""
    fields = dict(
        name="micro", d_model=32, encoder_layers=1, decoder_layers=1, attention_heads=2,
        ffn_dim=64, batch_size=16, epochs=2, learning_rate=3e-3,
    )  # fmt: skip
    return replace(PRESETS["tiny"], **{**fields, **shape})


# --- Exercise 2: count every parameter of a BART, embeddings included -----------------------


def solution_bart_parameters(preset: Preset, vocab_size: int, max_positions: int) -> int:
    """Parameters of a ``BartModel`` with ``preset``'s shape (no LM head: it is tied)."""
    d, f = preset.d_model, preset.ffn_dim
    attention = 4 * (d * d + d)  # q, k, v, out projections with biases
    layer_norm = 2 * d
    feed_forward = (d * f + f) + (f * d + d)
    encoder_layer = attention + feed_forward + 2 * layer_norm
    decoder_layer = 2 * attention + feed_forward + 3 * layer_norm  # + cross-attention
    embeddings = vocab_size * d + 2 * (max_positions + 2) * d  # shared tokens; positions offset 2
    embedding_norms = 2 * layer_norm
    return (
        preset.encoder_layers * encoder_layer
        + preset.decoder_layers * decoder_layer
        + embeddings
        + embedding_norms
    )


def _forgot_positions(preset: Preset, vocab_size: int, max_positions: int) -> int:
    return (
        solution_bart_parameters(preset, vocab_size, max_positions)
        - 2 * (max_positions + 2) * preset.d_model
    )


EXERCISES = [
    Exercise(
        "micro_preset",
        check_micro_preset,
        micro_like(d_model=32, attention_heads=2),
        wrong_answers=(
            micro_like(d_model=30, attention_heads=4),  # 4 heads do not divide 30
            micro_like(d_model=256, ffn_dim=512),  # wider than tiny
            micro_like(name="nano"),
            micro_like(encoder_layers=0),
        ),
        stub=None,  # the lesson passes PRESETS.get("micro"): None until the preset exists
    ),
    Exercise(
        "bart_parameters",
        check_bart_parameters,
        solution_bart_parameters,
        wrong_answers=(_forgot_positions,),
    ),
]
