"""PromptBart: BART conditioned on demographics through learned prompt vectors (lessons 03-05).

The design follows PromptEHR (Wang & Sun, 2022): every demographic feature becomes one
prompt vector that is *prepended* to the token embeddings of the encoder and/or the
decoder. The model is built from a ``BartConfig`` with random weights; nothing is downloaded.

Training objective (see :mod:`course_lib.dataset`): the encoder sees only the prompts and
a single ``<mask>`` token, and the decoder writes the whole patient
``<patient> <visit> codes </visit> ... </patient>``: generation from demographics alone,
which is what the course evaluates. PromptEHR-style span infilling (one ``<mask>`` over a
Poisson(3) span of codes in the encoder input, the whole patient as the target) is the
collator's ``objective="infill"``; the model is the same.

Auxiliary heads read the decoder's final hidden state at the end-of-patient position, the
position that emits ``</patient>``: it has attended to the whole sequence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import BartConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.bart.modeling_bart import BartModel
from transformers.utils import ModelOutput

from course_lib.config import AUX_HEADS, PROMPT_LOCATIONS
from course_lib import losses
from course_lib.presets import Preset

AUX_HEAD_KINDS = AUX_HEADS  # the choices are defined once, in course_lib.config
AUX_HIDDEN = 256


class PromptBartConfig(PretrainedConfig):
    """Everything needed to rebuild a :class:`PromptBart`; saved as ``config.json``."""

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
        prompt_hidden: int | None = None,
        prompt_location: str = "both",
        aux_head: str = "mlp",
        loss_weights: Mapping[str, float] | None = None,
        cooccurrence_threshold: float = 5.0,
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
        self.prompt_hidden = prompt_hidden or d_model
        self.prompt_location = prompt_location
        self.aux_head = aux_head
        self.loss_weights = dict(loss_weights or {"age": 0.0, "sex": 0.0})
        self.cooccurrence_threshold = cooccurrence_threshold
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


class ConditionalPrompt(nn.Module):
    """Turn demographics into prompt vectors, one per feature.

    Numeric feature ``j``: ``proj(W_j * x_j + b_j)`` with per-feature vectors ``W_j, b_j``.
    Categorical feature ``j``: ``proj(E_j[x_j] + b_j)``. ``proj`` is shared by all features
    of this module and maps ``prompt_hidden -> d_model``.
    """

    def __init__(self, n_num: int, cat_cardinalities: Sequence[int], hidden: int, d_model: int):
        super().__init__()
        self.n_num = n_num
        self.num_weight = nn.Parameter(torch.randn(n_num, hidden) * 0.02)
        self.num_bias = nn.Parameter(torch.zeros(n_num, hidden))
        self.cat_embeddings = nn.ModuleList(nn.Embedding(k, hidden) for k in cat_cardinalities)
        self.cat_bias = nn.Parameter(torch.zeros(len(cat_cardinalities), hidden))
        self.proj = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d_model))

    def reset_parameters(self) -> None:
        """Unit-scale start: prompts must not drown under BART's position embeddings.

        BART adds a position embedding (std 0.02 per element) to every input vector and then
        layer-normalises it; with the usual 0.02 initialisation a prompt would be a rounding
        error on top of its position and every patient would look alike at the start.
        """
        init.normal_(self.num_weight, std=1.0)
        init.zeros_(self.num_bias)
        init.zeros_(self.cat_bias)
        for embedding in self.cat_embeddings:
            init.normal_(embedding.weight, std=1.0)
        for layer in (self.proj[0], self.proj[2]):
            init.xavier_uniform_(layer.weight)
            init.zeros_(layer.bias)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """``x_num [batch, n_num]`` float, ``x_cat [batch, n_cat]`` long -> ``[batch, n_prompts, d_model]``."""
        numeric = x_num.unsqueeze(-1) * self.num_weight + self.num_bias  # [batch, n_num, hidden]
        categorical = [
            embedding(x_cat[:, j]) + self.cat_bias[j]
            for j, embedding in enumerate(self.cat_embeddings)
        ]
        hidden = torch.cat([numeric, torch.stack(categorical, dim=1)], dim=1)
        return self.proj(hidden)


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


@dataclass
class PromptBartOutput(ModelOutput):
    """What :meth:`PromptBart.forward` returns.

    ``loss`` is the total under the config's (or the call's) static weights; ``loss_terms``
    holds every raw term (``lm``, ``age``, ``sex``, and ``cooc``/``diversity`` when asked for),
    so a trainer can combine them with any weighting strategy instead.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: object | None = None
    loss_terms: dict[str, torch.Tensor] | None = None
    age_pred: torch.Tensor | None = None
    sex_logits: torch.Tensor | None = None
    end_hidden: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None


class PromptBart(PreTrainedModel, GenerationMixin):
    """BART encoder-decoder with conditional prompts and auxiliary age/sex heads."""

    config_class = PromptBartConfig
    base_model_prefix = "bart"
    main_input_name = "input_ids"
    _tied_weights_keys = {"lm_head.weight": "bart.shared.weight"}
    _supports_sdpa = True

    def __init__(self, config: PromptBartConfig):
        super().__init__(config)
        self.bart = BartModel(config.to_bart_config())
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.bart.shared.weight  # tied input/output embeddings, as in BART
        prompt_args = (
            config.n_num_features,
            config.cat_cardinalities,
            config.prompt_hidden,
            config.d_model,
        )
        self.encoder_prompt = ConditionalPrompt(*prompt_args) if self.prompts_encoder else None
        self.decoder_prompt = ConditionalPrompt(*prompt_args) if self.prompts_decoder else None
        self.age_head = make_aux_head(config.d_model, 1, config.aux_head, config.dropout)
        self.sex_head = make_aux_head(
            config.d_model, config.cat_cardinalities[0], config.aux_head, config.dropout
        )
        self.register_buffer("cooccurrence_counts", None, persistent=False)
        self.vocabulary = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ConditionalPrompt):  # visited after its children
            module.reset_parameters()

    # --- structure -------------------------------------------------------------------
    @property
    def prompts_encoder(self) -> bool:
        return self.config.prompt_location in ("encoder", "both")

    @property
    def prompts_decoder(self) -> bool:
        return self.config.prompt_location in ("decoder", "both")

    @property
    def n_decoder_prompts(self) -> int:
        return self.config.n_prompts if self.prompts_decoder else 0

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bart.shared

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def get_encoder(self):
        return self.bart.encoder

    def last_shared_layer(self) -> nn.Module:
        """The decoder's last layer: shared by the LM head and the auxiliary heads (GradNorm's W)."""
        return self.bart.decoder.layers[-1]

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part, for the lessons' tables (shared embeddings counted once)."""

        def count(module: nn.Module | None) -> int:
            return sum(p.numel() for p in module.parameters()) if module is not None else 0

        parts = {
            "bart": count(self.bart),
            "encoder_prompt": count(self.encoder_prompt),
            "decoder_prompt": count(self.decoder_prompt),
            "age_head": count(self.age_head),
            "sex_head": count(self.sex_head),
        }
        parts["total"] = sum(p.numel() for p in self.parameters())
        return parts

    def set_cooccurrence_counts(self, counts: torch.Tensor | None) -> None:
        """Training-split co-occurrence counts ``[vocab, vocab]``, needed by the ``cooc`` loss."""
        self.cooccurrence_counts = None if counts is None else counts.to(self.device, torch.float32)

    # --- forward ---------------------------------------------------------------------
    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        x_num: torch.Tensor,
        x_cat: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the encoder on ``[prompts; tokens]``; return hidden states and the extended mask."""
        embeds = self.bart.shared(input_ids)  # [batch, src, d_model], already scaled
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id).long()
        if self.encoder_prompt is not None:
            prompts = self.encoder_prompt(x_num.to(embeds.dtype), x_cat).to(embeds.dtype)
            embeds = torch.cat([prompts, embeds], dim=1)
            attention_mask = torch.cat(
                [attention_mask.new_ones(prompts.shape[:2]), attention_mask], dim=1
            )
        hidden = self.bart.encoder(
            inputs_embeds=embeds, attention_mask=attention_mask
        ).last_hidden_state
        return hidden, attention_mask

    def _decoder_embeds(self, decoder_input_ids, x_num, x_cat, first_step: bool) -> torch.Tensor:
        embeds = self.bart.shared(decoder_input_ids)
        if self.decoder_prompt is not None and first_step:
            prompts = self.decoder_prompt(x_num.to(embeds.dtype), x_cat).to(embeds.dtype)
            embeds = torch.cat([prompts, embeds], dim=1)
        return embeds

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        x_num: torch.Tensor | None = None,
        x_cat: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        loss_weights: Mapping[str, float] | None = None,
        extra_losses: Sequence[str] = (),
        use_cache: bool | None = None,
        **kwargs,
    ) -> PromptBartOutput:
        """Shapes: ``input_ids [batch, src]``, ``decoder_input_ids``/``labels [batch, tgt]``,
        ``x_num [batch, n_num]``, ``x_cat [batch, n_cat]``.

        With ``labels`` the LM loss is computed, and with ``x_num``/``x_cat`` the age and sex
        losses too; ``extra_losses`` may add ``"cooc"`` and ``"diversity"``.
        """
        if x_num is None or x_cat is None:
            raise ValueError("PromptBart needs x_num [batch, n_num] and x_cat [batch, n_cat]")
        kwargs.pop("decoder_attention_mask", None)  # right padding + causal mask: not needed
        cache = kwargs.pop("cache", kwargs.pop("past_key_values", None))
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("PromptBart needs decoder_input_ids or labels")
            decoder_input_ids = shift_right(
                labels, self.config.pad_token_id, self.config.decoder_start_token_id
            )

        if encoder_outputs is None:
            if input_ids is None:
                input_ids = torch.full(
                    (x_num.shape[0], 1), _mask_id(), dtype=torch.long, device=x_num.device
                )
            encoder_hidden, attention_mask = self.encode(input_ids, attention_mask, x_num, x_cat)
        else:
            encoder_hidden = encoder_outputs[0]
            if attention_mask is None:
                attention_mask = encoder_hidden.new_ones(encoder_hidden.shape[:2], dtype=torch.long)

        first_step = cache is None or cache.get_seq_length() == 0
        decoder_embeds = self._decoder_embeds(decoder_input_ids, x_num, x_cat, first_step)
        decoder_out = self.bart.decoder(
            inputs_embeds=decoder_embeds,
            encoder_hidden_states=encoder_hidden,
            encoder_attention_mask=attention_mask,
            cache=cache,
            use_cache=use_cache,
        )
        hidden = decoder_out.last_hidden_state
        if first_step and self.n_decoder_prompts:
            hidden = hidden[:, self.n_decoder_prompts :]  # drop the prompt positions
        logits = self.lm_head(hidden)  # [batch, tgt, vocab]

        output = PromptBartOutput(
            logits=logits, cache=decoder_out.cache, encoder_last_hidden_state=encoder_hidden
        )
        if labels is None:
            return output

        end_position = labels.ne(-100).sum(dim=1).clamp(min=1) - 1  # emits </patient>
        end_hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), end_position]
        output.end_hidden = end_hidden  # [batch, d_model]
        output.age_pred = self.age_head(end_hidden).squeeze(-1)
        output.sex_logits = self.sex_head(end_hidden)
        terms = {
            "lm": losses.lm_loss(logits, labels),
            "age": losses.age_loss(output.age_pred, x_num[:, 0].to(logits.dtype)),
            "sex": losses.sex_loss(output.sex_logits, x_cat[:, 0]),
        }
        code_mask = self.code_mask(logits.device)
        if "cooc" in extra_losses:
            if self.cooccurrence_counts is None:
                raise ValueError("the 'cooc' loss needs set_cooccurrence_counts(...) first")
            terms["cooc"] = losses.cooccurrence_loss(
                logits,
                labels,
                self.cooccurrence_counts,
                self.config.cooccurrence_threshold,
                code_mask,
            )
        if "diversity" in extra_losses:
            terms["diversity"] = losses.diversity_loss(logits, labels, code_mask)
        weights = dict(self.config.loss_weights) | dict(loss_weights or {})
        output.loss_terms = terms
        output.loss = losses.total_loss(terms, weights)
        return output

    def code_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[vocab]`` bool: True for code tokens (ids after the special and chapter tokens)."""
        if self.vocabulary is not None:
            mask = torch.zeros(self.config.vocab_size, dtype=torch.bool)
            mask[list(self.vocabulary.code_ids)] = True
            return mask.to(device)
        mask = torch.ones(self.config.vocab_size, dtype=torch.bool, device=device)
        mask[: _first_code_id()] = False
        return mask

    # --- generation ------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        x_num: torch.Tensor,
        x_cat: torch.Tensor,
        **kwargs,
    ) -> torch.Tensor:
        """``GenerationMixin.generate`` with the demographics passed through.

        The encoder runs once here (with its prompts); ``x_num``/``x_cat`` travel in the model
        kwargs, so the decoder prompts are built on the first step and then live in the KV cache.
        Without ``input_ids`` the encoder sees one ``<mask>``: generation from demographics alone.
        """
        if input_ids is None:
            input_ids = torch.full(
                (x_num.shape[0], 1), _mask_id(), dtype=torch.long, device=self.device
            )
        encoder_hidden, attention_mask = self.encode(
            input_ids.to(self.device),
            None if attention_mask is None else attention_mask.to(self.device),
            x_num.to(self.device),
            x_cat.to(self.device),
        )
        kwargs.setdefault("max_new_tokens", self.config.max_sequence_length - 1)
        return super().generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden),
            attention_mask=attention_mask,
            x_num=x_num.to(self.device),
            x_cat=x_cat.to(self.device),
            **kwargs,
        )

    # --- saving ----------------------------------------------------------------------
    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """Also writes ``vocab.json`` when a vocabulary is attached, so a run folder is complete."""
        with quiet_progress_bars():
            super().save_pretrained(save_directory, *args, **kwargs)
        if self.vocabulary is not None:
            self.vocabulary.save(Path(save_directory) / "vocab.json")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> PromptBart:
        kwargs.setdefault("local_files_only", True)  # never reach out to a hub
        with quiet_progress_bars():
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        vocab_path = Path(pretrained_model_name_or_path) / "vocab.json"
        if vocab_path.exists():
            from course_lib.tokens import Vocabulary

            model.vocabulary = Vocabulary.load(vocab_path)
        return model


@contextmanager
def quiet_progress_bars():
    """Hide transformers' per-file "Loading weights"/"Writing model shards" bars."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def shift_right(labels: torch.Tensor, pad_id: int, start_id: int) -> torch.Tensor:
    """Teacher-forcing decoder input: ``[start, labels[:-1]]`` with ``-100`` turned into padding."""
    shifted = labels.new_full(labels.shape, pad_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_id
    return shifted.masked_fill(shifted.eq(-100), pad_id)


def _mask_id() -> int:
    from course_lib.tokens import MASK_ID

    return MASK_ID


def _first_code_id() -> int:
    from course_lib.tokens import UNK_ID

    return UNK_ID + 1


def build_model(
    vocabulary,
    preset: Preset,
    *,
    prompt_location: str = "both",
    aux_head: str = "mlp",
    loss_weights: Mapping[str, float] | None = None,
    **overrides,
) -> PromptBart:
    """A random-init :class:`PromptBart` for ``vocabulary`` in the shape of ``preset``."""
    config = PromptBartConfig.from_preset(
        preset,
        vocab_size=len(vocabulary),
        prompt_location=prompt_location,
        aux_head=aux_head,
        loss_weights=loss_weights,
        **overrides,
    )
    model = PromptBart(config)
    model.vocabulary = vocabulary
    return model
