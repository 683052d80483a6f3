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
from transformers import GenerationMixin, LogitsProcessorList, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.bart.modeling_bart import BartModel
from transformers.utils import ModelOutput

from course_lib import losses
from course_lib.kv_cache import use_growing_cache
from course_lib.model_config import (  # noqa: F401 (re-exported: lessons import them here)
    AUX_HEAD_KINDS,
    AUX_HIDDEN,
    PROMPT_LOCATIONS,
    PromptBartConfig,
    make_aux_head,
)
from course_lib.presets import Preset
from course_lib.prompts import (
    UNKNOWN_CATEGORY,
    ConditionalPrompt,
    GuidanceLogitsProcessor,
    ValidityMasks,
)
from course_lib.tokens import MASK_ID, UNK_ID


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
        unknown = config.condition_dropout > 0
        self.encoder_prompt = (
            ConditionalPrompt(*prompt_args, unknown=unknown) if self.prompts_encoder else None
        )
        self.decoder_prompt = (
            ConditionalPrompt(*prompt_args, unknown=unknown) if self.prompts_decoder else None
        )
        self.decoder_condition = (
            ConditionalPrompt(*prompt_args, unknown=unknown) if config.decoder_prompt_add else None
        )
        self.age_head = make_aux_head(config.d_model, 1, config.aux_head, config.dropout)
        self.sex_head = make_aux_head(
            config.d_model, config.cat_cardinalities[0], config.aux_head, config.dropout
        )
        self.register_buffer("cooccurrence_counts", None, persistent=False)
        self.vocabulary = None
        self._validity_masks: ValidityMasks | None = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ConditionalPrompt):  # visited after its children
            module.reset_parameters()  # unit scale for decoder_condition too: measured
            # against a zero start on the sample, it learned the rules sooner (issue 11)

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
            "decoder_condition": count(self.decoder_condition),
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
        if self.decoder_condition is not None:  # every position, every generation step
            condition = self.decoder_condition(x_num.to(embeds.dtype), x_cat).sum(dim=1)
            embeds = embeds + condition.unsqueeze(1).to(embeds.dtype)
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
        guidance_encoder_hidden: torch.Tensor | None = None,
        packed_logits: bool = False,
        **kwargs,
    ) -> PromptBartOutput:
        """Shapes: ``input_ids [batch, src]``, ``decoder_input_ids``/``labels [batch, tgt]``,
        ``x_num [batch, n_num]``, ``x_cat [batch, n_cat]``.

        With ``labels`` the LM loss is computed, and with ``x_num``/``x_cat`` the age and sex
        losses too; ``extra_losses`` may add ``"cooc"``, ``"diversity"``, ``"validity"`` and
        ``"validity_log"``.
        In training, ``condition_dropout`` hides the demographics of some patients from the
        prompts (never from the loss targets). ``guidance_encoder_hidden`` (set by
        :meth:`generate` for classifier-free guidance) appends one unconditional row per row:
        the logits then have ``2 * batch`` rows, conditional first.

        ``packed_logits=True`` (with ``labels``; the trainer's choice) projects only the scored
        positions onto the vocabulary: ``logits`` is ``[n_scored, 1, vocab]``, one row per
        ``labels != -100`` in row-major order, and the loss terms are unchanged. Random batches
        are mostly padding, so this is the same objective at a fraction of the cost (``cooc``
        needs each record in order and keeps the full logits).
        """
        if x_num is None or x_cat is None:
            raise ValueError("PromptBart needs x_num [batch, n_num] and x_cat [batch, n_cat]")
        kwargs.pop("decoder_attention_mask", None)  # right padding + causal mask: not needed
        cache = kwargs.pop("cache", kwargs.pop("past_key_values", None))
        guidance_hidden = guidance_encoder_hidden
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("PromptBart needs decoder_input_ids or labels")
            decoder_input_ids = shift_right(
                labels, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        true_num, true_cat = x_num, x_cat
        if self.training and self.config.condition_dropout > 0:
            x_num, x_cat = self._drop_conditions(x_num, x_cat)

        if encoder_outputs is None:
            if input_ids is None:
                input_ids = torch.full(
                    (x_num.shape[0], 1), MASK_ID, dtype=torch.long, device=x_num.device
                )
            encoder_hidden, attention_mask = self.encode(input_ids, attention_mask, x_num, x_cat)
        else:
            encoder_hidden = encoder_outputs[0]
            if attention_mask is None:
                attention_mask = encoder_hidden.new_ones(encoder_hidden.shape[:2], dtype=torch.long)
        if guidance_hidden is not None:  # [conditional rows; unconditional rows]
            decoder_input_ids = torch.cat([decoder_input_ids, decoder_input_ids])
            encoder_hidden = torch.cat([encoder_hidden, guidance_hidden.to(encoder_hidden)])
            attention_mask = torch.cat([attention_mask, attention_mask])
            x_num = torch.cat([x_num, torch.full_like(x_num, float("nan"))])
            x_cat = torch.cat([x_cat, torch.full_like(x_cat, UNKNOWN_CATEGORY)])

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
        scored = None  # with packed logits: the [batch, tgt] mask of the projected positions
        if packed_logits and labels is not None and "cooc" not in extra_losses:
            scored = labels.ne(-100)
            logits = self.lm_head(hidden[scored]).unsqueeze(1)  # [n_scored, 1, vocab]
        else:
            logits = self.lm_head(hidden)  # [batch, tgt, vocab]

        output = PromptBartOutput(
            logits=logits, cache=decoder_out.cache, encoder_last_hidden_state=encoder_hidden
        )
        if labels is None:
            return output
        if guidance_hidden is not None:
            raise ValueError("guidance_encoder_hidden is for generation; pass no labels with it")
        conditioned = x_cat[:, 0].ne(UNKNOWN_CATEGORY)  # rows whose prompts saw demographics
        output.loss_terms = self._loss_terms(
            output, hidden, logits, labels, true_num, true_cat, conditioned, extra_losses, scored
        )
        weights = dict(self.config.loss_weights) | dict(loss_weights or {})
        output.loss = losses.total_loss(output.loss_terms, weights)
        return output

    def _drop_conditions(
        self, x_num: torch.Tensor, x_cat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Classifier-free guidance's training half: hide whole patients' demographics."""
        drop = torch.rand(x_num.shape[0], device=x_num.device) < self.config.condition_dropout
        x_num = x_num.masked_fill(drop.unsqueeze(1), float("nan"))
        x_cat = x_cat.masked_fill(drop.unsqueeze(1), UNKNOWN_CATEGORY)
        return x_num, x_cat

    def _loss_terms(
        self, output, hidden, logits, labels, x_num, x_cat, conditioned, extra_losses, scored
    ) -> dict[str, torch.Tensor]:
        """Every raw loss term; also fills the heads' outputs into ``output``. ``scored`` is
        the mask of the positions that packed ``logits`` hold (None: full logits)."""
        end_position = labels.ne(-100).sum(dim=1).clamp(min=1) - 1  # emits </patient>
        end_hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), end_position]
        output.end_hidden = end_hidden  # [batch, d_model]
        output.age_pred = self.age_head(end_hidden).squeeze(-1)
        output.sex_logits = self.sex_head(end_hidden)
        age = losses.age_loss(output.age_pred, x_num[:, 0].to(logits.dtype))
        sex = losses.sex_loss(output.sex_logits, x_cat[:, 0])
        if scored is not None:  # packed: one row per scored position
            rows = scored.nonzero()[:, 0]  # each position's patient
            labels, conditioned = labels[scored].unsqueeze(1), conditioned[rows]
            x_num, x_cat = x_num[rows], x_cat[rows]
        terms = {"lm": losses.lm_loss(logits, labels), "age": age, "sex": sex}
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
        for name in [name for name in extra_losses if name in losses.VALIDITY_LOSSES]:
            if not bool(conditioned.any()):  # every prompt dropped: nothing to hold it to
                terms[name] = logits.sum() * 0.0
            else:
                forbidden = self.forbidden_codes(x_num, x_cat)[conditioned]
                loss = losses.VALIDITY_LOSSES[name]
                terms[name] = loss(logits[conditioned], labels[conditioned], forbidden)
        return terms

    def ages_in_years(self, x_num: torch.Tensor) -> torch.Tensor:
        """``x_num[:, 0]`` back in years, with the normaliser statistics in the config."""
        if self.config.age_mean is None:
            raise ValueError("the validity rules need ages in years: pass age_mean/age_std")
        return x_num[:, 0].double() * self.config.age_std + self.config.age_mean

    def forbidden_codes(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """``[batch, vocab]`` bool: the codes the MCE rules forbid for each patient."""
        if self._validity_masks is None:
            if self.vocabulary is None:
                raise ValueError("the validity rules need the model's vocabulary attached")
            self._validity_masks = ValidityMasks(self.vocabulary)
        return self._validity_masks.for_patients(self.ages_in_years(x_num), x_cat[:, 0])

    def code_mask(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[vocab]`` bool: True for code tokens (ids after the special and chapter tokens)."""
        if self.vocabulary is not None:
            mask = torch.zeros(self.config.vocab_size, dtype=torch.bool)
            mask[list(self.vocabulary.code_ids)] = True
            return mask.to(device)
        mask = torch.ones(self.config.vocab_size, dtype=torch.bool, device=device)
        mask[: UNK_ID + 1] = False  # the first code id
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
        guidance_scale: float | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """``GenerationMixin.generate`` with the demographics passed through.

        The encoder runs once here (with its prompts); ``x_num``/``x_cat`` travel in the model
        kwargs, so the decoder prompts are built on the first step and then live in the KV cache.
        Without ``input_ids`` the encoder sees one ``<mask>``: generation from demographics alone.

        ``guidance_scale`` (classifier-free guidance; needs ``condition_dropout > 0`` in
        training): every step runs each row twice in ONE batched forward, with and without
        demographics, and :class:`course_lib.prompts.GuidanceLogitsProcessor` (put first)
        mixes the two log-probabilities. 1 is plain conditional sampling.
        """
        if guidance_scale is not None and guidance_scale != 1.0:
            if self.config.condition_dropout <= 0:
                raise ValueError(
                    "guidance_scale needs a model trained with condition_dropout > 0 "
                    "(it never learned to predict without demographics)"
                )
            unknown_num = torch.full_like(x_num, float("nan"))
            unknown_cat = torch.full_like(x_cat, UNKNOWN_CATEGORY)
            kwargs["guidance_encoder_hidden"] = self.generate_encoder_hidden(
                input_ids, attention_mask, unknown_num, unknown_cat
            )[0]
            processors = LogitsProcessorList([GuidanceLogitsProcessor(guidance_scale)])
            processors.extend(kwargs.pop("logits_processor", None) or [])
            kwargs["logits_processor"] = processors
        encoder_hidden, attention_mask = self.generate_encoder_hidden(
            input_ids, attention_mask, x_num, x_cat
        )
        kwargs.setdefault("max_new_tokens", self.config.max_sequence_length - 1)
        use_growing_cache(kwargs)
        return super().generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden),
            attention_mask=attention_mask,
            x_num=x_num.to(self.device),
            x_cat=x_cat.to(self.device),
            **kwargs,
        )

    def generate_encoder_hidden(
        self, input_ids, attention_mask, x_num: torch.Tensor, x_cat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's output for generation (one ``<mask>`` when ``input_ids`` is None)."""
        if input_ids is None:
            input_ids = torch.full((len(x_num), 1), MASK_ID, dtype=torch.long, device=self.device)
        return self.encode(
            input_ids.to(self.device),
            None if attention_mask is None else attention_mask.to(self.device),
            x_num.to(self.device),
            x_cat.to(self.device),
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


def build_model(
    vocabulary,
    preset: Preset,
    *,
    prompt_location: str = "both",
    aux_head: str = "mlp",
    loss_weights: Mapping[str, float] | None = None,
    normalizer=None,
    **overrides,
) -> PromptBart:
    """A random-init :class:`PromptBart` for ``vocabulary`` in the shape of ``preset``.

    ``normalizer`` (the training split's ``AgeNormalizer``) lets the model read ages in
    years, which the ``validity`` loss needs; ``overrides`` are config fields.
    """
    if normalizer is not None:
        overrides = {"age_mean": normalizer.mean, "age_std": normalizer.std} | overrides
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
