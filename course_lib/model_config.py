"""PromptBart's configuration and its auxiliary heads (lessons 03-05).

Split from :mod:`course_lib.model` (which re-exports every name here) to keep modules short.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn
from transformers import BartConfig, PretrainedConfig

from course_lib.config import AUX_HEADS, PROMPT_LOCATIONS
from course_lib.presets import Preset

AUX_HEAD_KINDS = AUX_HEADS  # the choices are defined once, in course_lib.config
AUX_HIDDEN = 256


class PromptBartConfig(PretrainedConfig):
    """Everything needed to rebuild a :class:`PromptBart`; saved as ``config.json``.

    Conditioning options (issue 11): ``decoder_prompt_add`` adds a demographic vector to
    every decoder input position (not only prompts prepended at the start, which later
    positions reach only through attention); ``condition_dropout`` replaces the demographics
    of that share of training patients by a learned "unknown" value, so the same model also
    predicts unconditionally (classifier-free guidance at generation); ``age_mean``/``age_std``
    are the age normaliser's statistics: the ``validity`` loss needs ages in years.
    ``outcome_prompts`` (issue 14) names the outcome columns read as further categorical
    prompts after sex: ``cat_cardinalities`` is ``[2, *their class counts]``.
    """

    model_type = "prompt_bart"

    def __init__(
        self,
        vocab_size: int = 64,
        d_model: int = 128,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        attention_heads: int = 4,
        ffn_dim: int = 256,
        max_sequence_length: int = 128,
        dropout: float = 0.1,
        n_num_features: int = 1,
        cat_cardinalities: Sequence[int] = (2,),
        outcome_prompts: Sequence[str] = (),
        prompt_hidden: int | None = None,
        prompt_location: str = "both",
        aux_head: str = "mlp",
        loss_weights: Mapping[str, float] | None = None,
        cooccurrence_threshold: float = 5.0,
        decoder_prompt_add: bool = False,
        condition_dropout: float = 0.0,
        age_mean: float | None = None,
        age_std: float | None = None,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        decoder_start_token_id: int = 1,
        **kwargs,
    ) -> None:
        if prompt_location not in PROMPT_LOCATIONS:
            raise ValueError(
                f"prompt_location must be one of {PROMPT_LOCATIONS}, got {prompt_location!r}"
            )
        if aux_head not in AUX_HEAD_KINDS:
            raise ValueError(f"aux_head must be one of {AUX_HEAD_KINDS}, got {aux_head!r}")
        if not 0.0 <= condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must be in [0, 1), got {condition_dropout}")
        if (age_mean is None) != (age_std is None) or (age_std is not None and age_std <= 0):
            raise ValueError(
                f"age_mean and age_std come together (std > 0), got {age_mean} and {age_std}"
            )
        if len(cat_cardinalities) != 1 + len(outcome_prompts):
            raise ValueError(
                f"cat_cardinalities {list(cat_cardinalities)} must hold sex's and one per "
                f"outcome prompt {list(outcome_prompts)}"
            )
        if d_model % attention_heads:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by attention_heads ({attention_heads})"
            )
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.attention_heads = attention_heads
        self.ffn_dim = ffn_dim
        self.max_sequence_length = max_sequence_length
        self.dropout = dropout
        self.n_num_features = n_num_features
        self.cat_cardinalities = list(cat_cardinalities)
        self.outcome_prompts = list(outcome_prompts)
        self.prompt_hidden = prompt_hidden or d_model
        self.prompt_location = prompt_location
        self.aux_head = aux_head
        self.loss_weights = dict(loss_weights or {"age": 0.0, "sex": 0.0})
        self.cooccurrence_threshold = cooccurrence_threshold
        self.decoder_prompt_add = bool(decoder_prompt_add)
        self.condition_dropout = float(condition_dropout)
        self.age_mean = age_mean
        self.age_std = age_std
        self.tie_word_embeddings = kwargs.pop("tie_word_embeddings", True)
        kwargs["is_encoder_decoder"] = True
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=decoder_start_token_id,
            **kwargs,
        )

    @property
    def n_prompts(self) -> int:
        return self.n_num_features + len(self.cat_cardinalities)

    def to_bart_config(self) -> BartConfig:
        # Positions count the decoder prompts too, hence the margin.
        return BartConfig(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            encoder_layers=self.encoder_layers,
            decoder_layers=self.decoder_layers,
            encoder_attention_heads=self.attention_heads,
            decoder_attention_heads=self.attention_heads,
            encoder_ffn_dim=self.ffn_dim,
            decoder_ffn_dim=self.ffn_dim,
            max_position_embeddings=self.max_sequence_length + self.n_prompts + 8,
            dropout=self.dropout,
            attention_dropout=self.dropout,
            activation_dropout=0.0,
            scale_embedding=True,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            decoder_start_token_id=self.decoder_start_token_id,
            forced_eos_token_id=None,
        )

    @classmethod
    def from_preset(cls, preset: Preset, vocab_size: int, **overrides) -> PromptBartConfig:
        return cls(vocab_size=vocab_size, **(preset.model_kwargs() | overrides))


def make_aux_head(d_model: int, n_outputs: int, kind: str, dropout: float = 0.1) -> nn.Module:
    """``Linear(d_model, k)`` or ``Linear(d_model, 256) -> ReLU -> Dropout -> Linear(256, k)``."""
    if kind == "linear":
        return nn.Linear(d_model, n_outputs)
    return nn.Sequential(
        nn.Linear(d_model, AUX_HIDDEN),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(AUX_HIDDEN, n_outputs),
    )
