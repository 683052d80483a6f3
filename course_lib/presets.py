"""Model size presets and the device-aware choice between them (lesson 00).

On a CPU the lessons use ``tiny``; on a GPU ``base``. ``COURSE_PRESET`` overrides both.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Preset:
    """BART shape plus the training budget a lesson uses with it."""

    name: str
    d_model: int
    encoder_layers: int
    decoder_layers: int
    attention_heads: int
    ffn_dim: int
    max_sequence_length: int
    batch_size: int
    epochs: int
    learning_rate: float

    def model_kwargs(self) -> dict:
        fields = asdict(self)
        for key in ("name", "batch_size", "epochs", "learning_rate"):
            fields.pop(key)
        return fields


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", 128, 2, 2, 4, 256, 128, 32, 6, 2e-3),
    "small": Preset("small", 256, 3, 3, 4, 1024, 192, 32, 20, 1e-3),
    "base": Preset("base", 768, 6, 6, 12, 3072, 256, 64, 30, 2e-4),
}
PRESET_ENV = "COURSE_PRESET"


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None


def default_preset_name() -> str:
    """``$COURSE_PRESET`` if set, else ``base`` on a CUDA GPU and ``tiny`` on a CPU."""
    override = os.environ.get(PRESET_ENV)
    if override:
        get_preset(override)
        return override
    import torch

    return "base" if torch.cuda.is_available() else "tiny"
