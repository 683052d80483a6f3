"""How demographics reach PromptBart: prompt vectors, the "unknown" value, rule masks (lessons 04, 06).

* :class:`ConditionalPrompt` turns age and sex into prompt vectors (PromptEHR's
  reparameterisation: a per-feature vector in a hidden space, then an MLP to ``d_model``).
  With ``unknown=True`` it also learns one "unknown" vector per feature, used where
  ``x_num`` is NaN or ``x_cat`` is :data:`UNKNOWN_CATEGORY`: classifier-free guidance needs
  the model to also predict *without* demographics.
* :class:`ValidityMasks` holds, for one vocabulary, which codes the MCE age/sex rules forbid
  in each age band and for each sex, so the validity loss picks a patient's row per batch
  instead of calling :func:`course_lib.icd9.check_code` per token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import LogitsProcessor
from transformers import initialization as init

from course_lib import icd9

UNKNOWN_CATEGORY = -1  # x_cat value meaning "not given"; x_num uses NaN
SEXES = ("F", "M")  # x_cat index -> sex, as course_lib.dataset.SEX_TO_INDEX
# Whole-year age bands inside which every MCE age rule gives the same answer.
AGE_BAND_EDGES: tuple[int, ...] = tuple(
    sorted(
        {low for low, _ in icd9.AGE_RULES.values()} | {h + 1 for _, h in icd9.AGE_RULES.values()}
    )
)[:-1]
"""Left edges of the bands: (0, 1, 12, 15, 18, 56); the last band runs to the end of life."""


class ConditionalPrompt(nn.Module):
    """Turn demographics into prompt vectors, one per feature.

    Numeric feature ``j``: ``proj(W_j * x_j + b_j)`` with per-feature vectors ``W_j, b_j``.
    Categorical feature ``j``: ``proj(E_j[x_j] + b_j)``. ``proj`` is shared by all features
    of this module and maps ``prompt_hidden -> d_model``. With ``unknown=True`` a NaN
    ``x_num`` or a ``-1`` ``x_cat`` selects a learned "unknown" hidden vector instead.
    """

    def __init__(
        self,
        n_num: int,
        cat_cardinalities: Sequence[int],
        hidden: int,
        d_model: int,
        unknown: bool = False,
    ):
        super().__init__()
        self.n_num = n_num
        self.num_weight = nn.Parameter(torch.randn(n_num, hidden) * 0.02)
        self.num_bias = nn.Parameter(torch.zeros(n_num, hidden))
        self.cat_embeddings = nn.ModuleList(nn.Embedding(k, hidden) for k in cat_cardinalities)
        self.cat_bias = nn.Parameter(torch.zeros(len(cat_cardinalities), hidden))
        self.proj = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d_model))
        self.unknown = (
            nn.Parameter(torch.randn(n_num + len(cat_cardinalities), hidden)) if unknown else None
        )

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
        if self.unknown is not None:
            init.normal_(self.unknown, std=1.0)
        for layer in (self.proj[0], self.proj[2]):
            init.xavier_uniform_(layer.weight)
            init.zeros_(layer.bias)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """``x_num [batch, n_num]`` float, ``x_cat [batch, n_cat]`` long -> ``[batch, n_prompts, d_model]``."""
        missing_num, missing_cat = torch.isnan(x_num), x_cat.eq(UNKNOWN_CATEGORY)
        numeric = torch.nan_to_num(x_num).unsqueeze(-1) * self.num_weight + self.num_bias
        categorical = [
            embedding(x_cat[:, j].clamp(min=0)) + self.cat_bias[j]
            for j, embedding in enumerate(self.cat_embeddings)
        ]
        hidden = torch.cat([numeric, torch.stack(categorical, dim=1)], dim=1)
        missing = torch.cat([missing_num, missing_cat], dim=1)  # [batch, n_prompts]
        if self.unknown is not None:
            hidden = torch.where(missing.unsqueeze(-1), self.unknown.to(hidden.dtype), hidden)
        elif bool(missing.any()):
            raise ValueError(
                "unknown demographics (NaN age or sex -1) need a model trained with "
                "condition_dropout > 0 (it learns the 'unknown' value)"
            )
        return self.proj(hidden)


def age_band_index(ages: torch.Tensor) -> torch.Tensor:
    """Band of :data:`AGE_BAND_EDGES` for ages in years (whole years, as the MCE counts them).

    ``1e-3`` years of slack absorb the float32 round trip through the age normaliser, so a
    patient aged exactly 18 is not read as 17.99999.
    """
    years = torch.floor(ages.float() + 1e-3)
    edges = torch.tensor(AGE_BAND_EDGES[1:], dtype=years.dtype, device=ages.device)
    return torch.bucketize(years, edges, right=True)


class ValidityMasks:
    """``forbidden[band, sex, token]``: True where the MCE rules forbid that code.

    Built once per vocabulary (one :func:`icd9.check_code` per code, band and sex); a batch
    then picks its rows with :meth:`for_patients`. Non-code tokens are never forbidden.
    """

    def __init__(self, vocabulary) -> None:
        forbidden = torch.zeros(len(AGE_BAND_EDGES), len(SEXES), len(vocabulary), dtype=torch.bool)
        for token_id in vocabulary.code_ids:
            code = vocabulary.id_to_code(token_id)
            if not icd9.rules_for(code):
                continue
            for band, low in enumerate(AGE_BAND_EDGES):
                for sex_index, sex in enumerate(SEXES):
                    forbidden[band, sex_index, token_id] = (
                        icd9.check_code(code, low, sex) is not None
                    )
        self.forbidden = forbidden

    def for_patients(self, ages: torch.Tensor, sex_index: torch.Tensor) -> torch.Tensor:
        """``[batch, vocab]`` bool for ages in years ``[batch]`` and sex indices ``[batch]``."""
        table = self.forbidden.to(ages.device)
        return table[age_band_index(ages), sex_index.long()]


class GuidanceLogitsProcessor(LogitsProcessor):
    """Classifier-free guidance (Ho & Salimans, 2022; Sanchez et al., 2023) in one batch.

    ``PromptBart.generate(guidance_scale=s)`` runs ``2 * batch`` rows per step: the
    conditional rows, then the same rows with the demographics replaced by the learned
    "unknown" value. This processor (it must come first) returns ``batch`` rows of logits::

        guided = uncond + s * (cond - uncond)

    Their softmax is that of the same mix of log-probabilities, ``log_softmax(uncond) + s *
    (log_softmax(cond) - log_softmax(uncond))``: the normalisers are one constant per row, and
    a softmax ignores constants (so the processor skips two log-softmaxes per step).

    ``s = 1`` is the conditional model; ``s > 1`` pushes further from what the model would
    write for anyone, towards what is specific to these demographics.
    """

    def __init__(self, guidance_scale: float):
        if not guidance_scale > 0:
            raise ValueError(f"guidance_scale must be > 0, got {guidance_scale}")
        self.guidance_scale = float(guidance_scale)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != 2 * input_ids.shape[0]:
            raise ValueError(
                f"GuidanceLogitsProcessor expects 2 x {input_ids.shape[0]} rows of scores "
                f"(conditional then unconditional), got {scores.shape[0]}"
            )
        conditional, unconditional = scores.float().chunk(2, dim=0)
        return unconditional + self.guidance_scale * (conditional - unconditional)
