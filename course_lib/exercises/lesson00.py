"""Lesson 00's exercises: a ``micro`` preset and BART's full parameter count (lesson 00)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from course_lib.exercises import Exercise, not_attempted, passed, require
from course_lib.presets import PRESETS, Preset

# --- Exercise 1: a preset smaller than tiny, for quick experiments --------------------------


def solution_micro_preset() -> Preset:
    return micro_like(d_model=32, attention_heads=2)


def micro_like(**shape) -> Preset:
    """A one-layer preset derived from ``tiny`` (so new Preset fields keep tiny's values)."""
    fields = dict(
        name="micro", d_model=32, encoder_layers=1, decoder_layers=1, attention_heads=2,
        ffn_dim=64, batch_size=16, epochs=2, learning_rate=3e-3,
    )  # fmt: skip
    return replace(PRESETS["tiny"], **{**fields, **shape})


def check_micro_preset(micro: Preset | None) -> bool:
    """``micro`` must be a valid BART shape strictly smaller than ``tiny`` in width and depth."""
    name = "micro_preset"
    if micro is None:
        return not_attempted(name, 'add "micro" to PRESETS in course_lib/presets.py')
    tiny = PRESETS["tiny"]
    require(isinstance(micro, Preset), name, f"expected a Preset, got {type(micro).__name__}")
    require(micro.name == "micro", name, f'name must be "micro", got {micro.name!r}')
    require(
        0 < micro.d_model < tiny.d_model,
        name,
        f"d_model {micro.d_model}: expected between 1 and tiny's {tiny.d_model - 1}",
    )
    require(
        micro.attention_heads > 0 and micro.d_model % micro.attention_heads == 0,
        name,
        f"d_model {micro.d_model} must be divisible by attention_heads {micro.attention_heads}",
    )
    for layers in ("encoder_layers", "decoder_layers"):
        value = getattr(micro, layers)
        require(
            1 <= value <= getattr(tiny, layers),
            name,
            f"{layers} {value}: expected 1 to tiny's {getattr(tiny, layers)}",
        )
    require(
        micro.ffn_dim >= micro.d_model,
        name,
        f"ffn_dim {micro.ffn_dim} should be at least d_model {micro.d_model}",
    )
    require(
        micro.max_sequence_length >= 32,
        name,
        f"max_sequence_length {micro.max_sequence_length}: too short for a patient",
    )
    require(micro.batch_size > 0 and micro.epochs > 0, name, "batch_size and epochs must be > 0")
    require(
        0 < micro.learning_rate < 1, name, f"learning_rate {micro.learning_rate}: expected (0, 1)"
    )
    return passed(
        name, f"d_model {micro.d_model}, {micro.encoder_layers}+{micro.decoder_layers} layers"
    )


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


def _bart_model_parameters(preset: Preset, vocab_size: int, max_positions: int) -> int:
    from transformers import BartConfig
    from transformers.models.bart.modeling_bart import BartModel

    config = BartConfig(
        vocab_size=vocab_size,
        d_model=preset.d_model,
        encoder_layers=preset.encoder_layers,
        decoder_layers=preset.decoder_layers,
        encoder_attention_heads=preset.attention_heads,
        decoder_attention_heads=preset.attention_heads,
        encoder_ffn_dim=preset.ffn_dim,
        decoder_ffn_dim=preset.ffn_dim,
        max_position_embeddings=max_positions,
    )
    return sum(parameter.numel() for parameter in BartModel(config).parameters())


def check_bart_parameters(count_parameters: Callable[[Preset, int, int], int] | None) -> bool:
    """Compare the learner's count with a real ``BartModel`` for two shapes and vocabularies."""
    name = "bart_parameters"
    if count_parameters is None:
        return not_attempted(name, "write count_bart_parameters(preset, vocab_size, max_positions)")
    cases = [(solution_micro_preset(), 50, 64), (PRESETS["tiny"], 300, 130)]
    for preset, vocab_size, max_positions in cases:
        expected = _bart_model_parameters(preset, vocab_size, max_positions)
        got = count_parameters(preset, vocab_size, max_positions)
        require(
            got == expected,
            name,
            f"preset {preset.name}, vocab_size {vocab_size}, max_positions {max_positions}: "
            f"counted {got}, BartModel has {expected} (difference {got - expected})",
        )
    return passed(name, f"matches BartModel for {len(cases)} shapes")


def _forgot_positions(preset: Preset, vocab_size: int, max_positions: int) -> int:
    return (
        solution_bart_parameters(preset, vocab_size, max_positions)
        - 2 * (max_positions + 2) * preset.d_model
    )


EXERCISES = [
    Exercise(
        "micro_preset",
        check_micro_preset,
        solution_micro_preset(),
        wrong_answers=(
            micro_like(d_model=30, attention_heads=4),  # 4 heads do not divide 30
            micro_like(d_model=256, ffn_dim=512),  # wider than tiny
            micro_like(name="nano"),
            micro_like(encoder_layers=0),
        ),
    ),
    Exercise(
        "bart_parameters",
        check_bart_parameters,
        solution_bart_parameters,
        wrong_answers=(_forgot_positions,),
    ),
]
