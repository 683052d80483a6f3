"""Lesson 00's exercises: a ``micro`` preset and BART's full parameter count (lesson 00)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from course_lib.exercises import exercise_check, not_attempted, passed, require
from course_lib.presets import PRESETS, Preset

# --- Exercise 1: a preset smaller than tiny, for quick experiments --------------------------


def _narrow_preset() -> Preset:
    """A one-layer shape narrower than ``tiny``: a second case for the parameter count."""
    return replace(
        PRESETS["tiny"], name="narrow", d_model=32, encoder_layers=1, decoder_layers=1,
        attention_heads=2, ffn_dim=64,
    )  # fmt: skip


@exercise_check
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


@exercise_check
def check_bart_parameters(count_parameters: Callable[[Preset, int, int], int] | None) -> bool:
    """Compare the learner's count with a real ``BartModel`` for two shapes and vocabularies."""
    name = "bart_parameters"
    if count_parameters is None:
        return not_attempted(name, "write count_bart_parameters(preset, vocab_size, max_positions)")
    cases = [(_narrow_preset(), 50, 64), (PRESETS["tiny"], 300, 130)]
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
