"""The training losses of PromptBart and how much each one weighs in the total (lesson 06).

Every loss is a plain function of tensors, independent of the model, so a lesson can
check it by hand on a tiny example before the model uses it. Conventions:

* ``logits`` are ``[batch, seq, vocab]``; ``labels`` are ``[batch, seq]`` token ids with
  ``-100`` (:data:`IGNORE_INDEX`) at the positions that are not scored (padding);
* ``code_mask`` is a ``[vocab]`` bool tensor, True for code tokens (not special or chapter
  tokens); the vocabulary (:mod:`course_lib.tokens`) or ``PromptBart.code_mask()`` makes it;
* every loss returns a 0-dim tensor that autograd can differentiate.

The total the notes trained on is ``lm + w_age * age + w_sex * sex (+ w_cooc * cooc)``
(:func:`total_loss`); :func:`loss_breakdown` says which share of it each term is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import sparse

IGNORE_INDEX = -100
# Ids 0..6 are the special tokens (<pad> ... <unk>); codes come after them (course_lib.tokens).
FIRST_NON_SPECIAL_ID = 7


@dataclass(frozen=True)
class LossTerm:
    """One loss term of PromptBart: the single place a new term is declared.

    ``per`` says what the term is a mean over (``"token"``: scored label positions;
    ``"patient"``: sequences), which the trainer needs to average it over a validation set.
    ``optional`` terms are computed only when a run asks for them (``extra_losses``).
    ``kind`` is the likelihood behind the term, which uncertainty weighting needs;
    ``default_weight`` is used when a run turns the term on without giving it a weight.
    ``position_mean`` marks a mean over the batch's scored positions, which the trainer
    re-weights by the batch's token count (:func:`balance_by_tokens`); a statistic of the
    whole batch (``diversity``) is not one.
    """

    name: str
    per: Literal["token", "patient"]
    optional: bool
    doc: str
    kind: Literal["regression", "classification"] = "regression"
    default_weight: float | None = None
    position_mean: bool = False


LOSS_TERMS: dict[str, LossTerm] = {
    term.name: term
    for term in (
        LossTerm("lm", "token", False, "next-code cross-entropy", "classification", 1.0, True),
        LossTerm("age", "patient", False, "MSE of the age head on the normalised age"),
        LossTerm("sex", "patient", False, "cross-entropy of the sex head", "classification"),
        LossTerm(
            "cooc", "token", True, "co-occurrence loss of the original notes", position_mean=True
        ),
        LossTerm("diversity", "token", True, "negative entropy of the mean code distribution"),
        LossTerm(
            "validity",
            "token",
            True,
            "unlikelihood of the codes the MCE age/sex rules forbid for the patient",
            "classification",  # -log(1 - p_forbidden): a Bernoulli log-likelihood
            100.0,  # the best weight of this form on issue 11's benchmark
            True,
        ),
        LossTerm(
            "validity_log",
            "token",
            True,
            "hinge on the log of the forbidden mass above VALIDITY_LOG_FLOOR",
            "regression",
            1.0,  # issue 11's measured winner, the default (benchmarks/conditioning.py)
            True,
        ),
    )
}
"""Every loss term, in logging order. A new term: one entry here and its line in the model."""

CORE_TERMS = tuple(name for name, term in LOSS_TERMS.items() if not term.optional)
OPTIONAL_TERMS = tuple(name for name, term in LOSS_TERMS.items() if term.optional)


class LossInputError(ValueError):
    """Tensors of the wrong shape or content given to a loss function."""


# --- the model's own losses --------------------------------------------------------------
def _check_logits_labels(logits: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    if logits.dim() != 3:
        raise LossInputError(
            f"{name}: logits must be [batch, seq, vocab], got {tuple(logits.shape)}"
        )
    if labels.shape != logits.shape[:2]:
        raise LossInputError(
            f"{name}: labels must be [batch, seq] = {tuple(logits.shape[:2])}, got {tuple(labels.shape)}"
        )


def _scored_positions(labels: torch.Tensor, name: str) -> torch.Tensor:
    """``[batch, seq]`` bool of the positions that count; an all-ignored batch is a data bug."""
    scored = labels.ne(IGNORE_INDEX)
    if not bool(scored.any()):
        raise LossInputError(
            f"{name}: every label is {IGNORE_INDEX}, there is no position to score"
        )
    return scored


def _check_code_mask(code_mask: torch.Tensor, vocab_size: int, name: str) -> torch.Tensor:
    if code_mask.dtype != torch.bool or code_mask.shape != (vocab_size,):
        raise LossInputError(
            f"{name}: code_mask must be a bool tensor of shape [{vocab_size}], "
            f"got {code_mask.dtype} {tuple(code_mask.shape)}"
        )
    if not bool(code_mask.any()):
        raise LossInputError(f"{name}: code_mask marks no code token")
    return code_mask


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token cross-entropy (nats), the language-modelling loss.

    ``lm = -1/N * sum_{(b,t): labels[b,t] != -100} log softmax(logits[b,t])[labels[b,t]]``,
    N = number of scored positions: every real token counts equally, padding not at all.
    Uniform predictions score ``log(vocab)``, the yardstick for a random-init model.
    """
    _check_logits_labels(logits, labels, "lm_loss")
    _scored_positions(labels, "lm_loss")
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def age_loss(age_pred: torch.Tensor, age_target: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the *normalised* age: ``age = mean_b (pred_b - target_b)^2``.

    Both are ``[batch]`` (a ``[batch, 1]`` head output is accepted). The target is the
    z-score of the training split (``course_lib.dataset.AgeNormalizer``), so a constant
    "mean age" prediction scores about 1 and the loss is comparable across cohorts; on raw
    years it would be in the hundreds and swamp the LM loss under any fixed weight.
    """
    if age_pred.dim() == 2 and age_pred.shape[1] == 1:
        age_pred = age_pred[:, 0]
    if age_pred.dim() != 1 or age_target.shape != age_pred.shape:
        # Broadcasting [B, 1] against [B] would silently give a [B, B] loss: refuse it.
        raise LossInputError(
            f"age_loss: age_pred and age_target must both be [batch], "
            f"got {tuple(age_pred.shape)} and {tuple(age_target.shape)}"
        )
    return F.mse_loss(age_pred.float(), age_target.float())


def sex_loss(sex_logits: torch.Tensor, sex_target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the sex head: ``sex = -mean_b log softmax(sex_logits[b])[sex_target[b]]``.

    ``sex_logits`` ``[batch, 2]``, ``sex_target`` ``[batch]`` (or ``x_cat``'s ``[batch, 1]``)
    holding 0 or 1. ``log 2 = 0.693`` is chance; the notes saw it reach 0.000 by epoch 14
    because sex-specific codes give the answer away.
    """
    if sex_target.dim() == 2 and sex_target.shape[1] == 1:
        sex_target = sex_target[:, 0]
    if sex_logits.dim() != 2 or sex_target.shape != sex_logits.shape[:1]:
        raise LossInputError(
            f"sex_loss: expected sex_logits [batch, classes] and sex_target [batch], "
            f"got {tuple(sex_logits.shape)} and {tuple(sex_target.shape)}"
        )
    return F.cross_entropy(sex_logits.float(), sex_target.long())


# --- co-occurrence and diversity ---------------------------------------------------------
def build_cooccurrence_counts(
    patients_token_ids: Sequence[Sequence[int]],
    vocab_size: int,
    code_mask: torch.Tensor,
) -> torch.Tensor:
    """``[vocab, vocab]`` int32: in how many patients each pair of distinct codes occurs together.

    Each patient counts once per unordered pair of distinct code tokens it holds, whatever
    the visits or repeats; the matrix is symmetric, the diagonal and every row and column
    of a non-code token are 0. Build it on the TRAINING split only, or the loss leaks the
    evaluation patients. Computed as ``P^T P`` with ``P`` the sparse patient x code
    presence matrix. Dense int32 on return: 4 V^2 bytes, 196 MB for the notes' 6,985 codes.
    """
    if vocab_size <= 0:
        raise ValueError(
            f"build_cooccurrence_counts: vocab_size must be positive, got {vocab_size}"
        )
    code_mask = _check_code_mask(
        torch.as_tensor(code_mask), vocab_size, "build_cooccurrence_counts"
    )
    is_code = code_mask.cpu().numpy()
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for patient_index, token_ids in enumerate(patients_token_ids):
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            bad = ids[(ids < 0) | (ids >= vocab_size)][0]
            raise ValueError(
                f"build_cooccurrence_counts: patient {patient_index} has token id {bad}, "
                f"expected ids in [0, {vocab_size})"
            )
        codes = np.unique(ids[is_code[ids]])
        rows.append(np.full(codes.size, patient_index, dtype=np.int64))
        cols.append(codes)
    n_patients = len(rows)
    row_index = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    col_index = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    presence = sparse.csr_matrix(
        (np.ones(row_index.size, dtype=np.int32), (row_index, col_index)),
        shape=(n_patients, vocab_size),
    )
    counts = (presence.T @ presence).toarray().astype(np.int32)
    np.fill_diagonal(counts, 0)
    return torch.from_numpy(counts)


def cooccurrence_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    cooccurrence_counts: torch.Tensor,
    threshold: float = 5.0,
    code_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Probability mass the model puts on codes that never co-occur with the patient's codes.

    At target position ``t`` let ``S_t`` be the code tokens among ``labels[:, :t]`` (the
    codes the patient already has). A code ``c`` is *unsupported* at ``t`` if
    ``max_{s in S_t} count(s, c) < threshold``. With ``p_t = softmax(logits[:, t])`` over
    the full vocabulary::

        cooc = mean_{t : S_t non-empty, labels[t] != -100}  sum_{c code, unsupported at t} p_t(c)

    so it lies in [0, 1]. Positions before the first code are skipped (nothing to be
    coherent with); a batch without any such position gives 0. The diagonal of the counts
    is 0, so repeating a code already in ``S_t`` counts as unsupported unless another seen
    code supports it. ``code_mask`` defaults to every id after the special tokens.

    Vectorised: ``max_s count(s, c) >= threshold`` is "some seen ``s`` has
    ``count(s, c) >= threshold``", so the count rows of the label codes are thresholded,
    gathered into a ``[batch, seq, vocab]`` tensor and summed cumulatively over ``seq``
    (exclusive of ``t``). Memory: a few ``B*T*V`` tensors (the support, the softmax and
    its gradient), 115 MB each in float32 for B=32, T=128, V=7,000: forward and backward
    took about 0.5 GB extra and 1.3 s on 2 CPU cores there.

    The notes used threshold 5 and weight 0.05: their term stayed flat at ~3.66 (so it was
    not this [0, 1] mass) while generation collapsed to a 31-code template. Putting all
    mass on a few well-supported codes is the cheapest way to satisfy such a loss.
    """
    _check_logits_labels(logits, labels, "cooccurrence_loss")
    batch, seq, vocab = logits.shape
    if cooccurrence_counts.shape != (vocab, vocab):
        raise LossInputError(
            f"cooccurrence_loss: cooccurrence_counts must be [{vocab}, {vocab}], "
            f"got {tuple(cooccurrence_counts.shape)}"
        )
    if code_mask is None:
        code_mask = torch.arange(vocab, device=logits.device) >= FIRST_NON_SPECIAL_ID
    code_mask = _check_code_mask(code_mask.to(logits.device), vocab, "cooccurrence_loss")
    scored = _scored_positions(labels, "cooccurrence_loss")

    with torch.no_grad():  # the support depends on labels and counts only
        label_ids = labels.clamp(min=0)
        is_code = scored & code_mask[label_ids]  # [batch, seq]
        supports = cooccurrence_counts.to(logits.device) >= threshold  # [vocab, vocab]
        rows = supports[label_ids] & is_code.unsqueeze(-1)  # [batch, seq, vocab]
        seen_support = torch.cumsum(rows, dim=1, dtype=torch.float32) - rows.float()
        unsupported = seen_support.eq(0) & code_mask  # [batch, seq, vocab]
        codes_seen = (torch.cumsum(is_code.int(), dim=1) - is_code.int()) > 0
        counted = codes_seen & scored  # [batch, seq]

    if not bool(counted.any()):
        return logits.sum() * 0.0  # keeps the graph (and a zero gradient) for the caller
    probs = logits.float().softmax(dim=-1)  # [batch, seq, vocab]
    unsupported_mass = (probs * unsupported).sum(dim=-1)  # [batch, seq]
    return unsupported_mass[counted].mean()


def diversity_loss(
    logits: torch.Tensor, labels: torch.Tensor, code_mask: torch.Tensor
) -> torch.Tensor:
    """Negative entropy (nats) of the batch-mean predicted distribution over code tokens.

    ``q_n = softmax(logits_n restricted to codes)`` at each scored position n (the
    probabilities on code tokens, renormalised to sum to 1); ``qbar = mean_n q_n``;
    ``diversity = sum_c qbar_c log qbar_c = -H(qbar)``.

    Range ``[-log(n_codes), 0]``: 0 when every position puts all its mass on the same code
    (mode collapse), ``-log(n_codes)`` when the batch as a whole spreads mass evenly.
    Minimising it spreads mass across codes *between* positions while each position may
    stay confident, which is the point: a per-position entropy bonus would just blur
    every prediction.
    """
    _check_logits_labels(logits, labels, "diversity_loss")
    code_mask = _check_code_mask(code_mask.to(logits.device), logits.shape[-1], "diversity_loss")
    scored = _scored_positions(labels, "diversity_loss")
    code_logits = logits[scored][:, code_mask].float()  # [n_scored, n_codes]
    mean_probs = code_logits.softmax(dim=-1).mean(dim=0)  # [n_codes]
    return torch.special.xlogy(mean_probs, mean_probs).sum()  # 0 log 0 = 0


# --- validity ----------------------------------------------------------------------------
def _check_forbidden(
    logits: torch.Tensor, labels: torch.Tensor, forbidden: torch.Tensor, name: str
) -> None:
    """Both validity terms take ``forbidden`` as a bool ``[batch, vocab]`` mask."""
    _check_logits_labels(logits, labels, name)
    if forbidden.dtype != torch.bool or forbidden.shape != (logits.shape[0], logits.shape[2]):
        raise LossInputError(
            f"{name}: forbidden must be bool [batch, vocab] = "
            f"{(logits.shape[0], logits.shape[2])}, got {forbidden.dtype} {tuple(forbidden.shape)}"
        )


def validity_loss(
    logits: torch.Tensor, labels: torch.Tensor, forbidden: torch.Tensor
) -> torch.Tensor:
    """Unlikelihood (Welleck et al., 2019) of the codes the patient may not have.

    ``forbidden`` ``[batch, vocab]`` bool marks, per patient, the codes the MCE age/sex rules
    forbid (``PromptBart.forbidden_codes``). With ``q_t`` the softmax mass on them at
    position ``t``::

        validity = -mean_{t scored} log(1 - q_t)

    over every scored position (a forbidden code is wrong wherever it would be written).
    It is 0 when the model never puts mass on a forbidden code and grows without bound as
    ``q_t -> 1``; unlike cross-entropy on the real next code, it acts directly on the
    probability of the wrong codes, which the real sequences rarely contrast.
    Computed stably as ``logsumexp(all logits) - logsumexp(allowed logits)``.
    """
    _check_forbidden(logits, labels, forbidden, "validity_loss")
    if bool(forbidden.all(dim=1).any()):
        raise LossInputError("validity_loss: a patient has every token forbidden")
    scored = _scored_positions(labels, "validity_loss")
    logits = logits.float()
    allowed = logits.masked_fill(forbidden.unsqueeze(1), -math.inf)
    per_position = torch.logsumexp(logits, dim=-1) - torch.logsumexp(allowed, dim=-1)
    return per_position[scored].mean()


VALIDITY_LOG_FLOOR = 1e-4  # forbidden mass below this costs nothing


def validity_log_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    forbidden: torch.Tensor,
    floor: float = VALIDITY_LOG_FLOOR,
) -> torch.Tensor:
    """The same forbidden mass ``q_t`` as :func:`validity_loss`, penalised in log space::

        validity_log = mean_{t scored} max(0, log q_t - log floor)

    ``-log(1 - q)`` is about ``q`` for small ``q``, so its pull fades as the forbidden mass
    shrinks; the log hinge pulls just as hard at ``q = 1e-3`` as at ``q = 0.1`` and stops at
    ``floor``. A patient with no forbidden code costs nothing at any position.
    """
    _check_forbidden(logits, labels, forbidden, "validity_log_loss")
    if not 0 < floor < 1:
        raise LossInputError(f"validity_log_loss: floor must lie in (0, 1), got {floor}")
    scored = _scored_positions(labels, "validity_log_loss")
    logits = logits.float()
    # a finite fill, not -inf: a row without forbidden codes must give a zero gradient, not NaN
    only_forbidden = logits.masked_fill(~forbidden.unsqueeze(1), -1e4)
    log_q = torch.logsumexp(only_forbidden, dim=-1) - torch.logsumexp(logits, dim=-1)
    return torch.relu(log_q - math.log(floor))[scored].mean()


VALIDITY_LOSSES = {"validity": validity_loss, "validity_log": validity_log_loss}


# --- combining the terms -----------------------------------------------------------------
def balance_by_tokens(
    raw: Mapping[str, torch.Tensor], n_tokens: int | torch.Tensor, tokens_per_batch: float
) -> dict[str, torch.Tensor]:
    """Each per-position mean term times ``n_tokens / tokens_per_batch``: a sum over the
    batch's scored positions divided by a fixed count, the same for every batch.

    A plain per-batch mean gives every batch the same say. With length-grouped batches
    (:class:`course_lib.dataset.ResumableBatches`) a batch of one-visit patients holds a few
    hundred tokens and one of long records a thousand or more, so each token of a short
    record weighs several times more, and the model learns to end records too early (lesson
    03 measures it). With ``tokens_per_batch`` = the mean number of scored tokens per batch,
    every token counts once over an epoch, as in the validation loss. Other terms (means
    over patients, batch statistics) pass through unchanged.
    """
    if not tokens_per_batch > 0:
        raise ValueError(f"tokens_per_batch must be > 0, got {tokens_per_batch}")
    scale = n_tokens / tokens_per_batch
    return {
        term: value * scale if LOSS_TERMS[term].position_mean else value
        for term, value in raw.items()
    }


def resolve_weights(terms: Sequence[str], weights: Mapping[str, float]) -> dict[str, float]:
    """The weight of every term: ``lm`` defaults to 1, every other term must be given.

    A weight for a term that is not there is an error unless it is 0, so a typo such as
    ``sexx=0.2`` cannot pass silently while a config listing ``cooc=0`` for a run without
    the co-occurrence loss still works.
    """
    missing = [term for term in terms if term != "lm" and term not in weights]
    if missing:
        raise ValueError(
            f"no weight for loss term(s) {missing}; weights given for {sorted(weights)}"
        )
    stray = [name for name, value in weights.items() if name not in terms and float(value) != 0.0]
    if stray:
        raise ValueError(
            f"non-zero weight(s) for {stray} but there is no such loss term; terms: {list(terms)}"
        )
    return {term: float(weights.get(term, 1.0)) for term in terms}


def total_loss(raw: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """``total = sum_i w_i * L_i`` with ``w_lm = 1`` unless given.

    The notes' check on a random-init model, batch 8: LM 7.514641, age 1.760908,
    sex 0.748391 with weights 0.005 give 7.527187.
    """
    if not raw:
        raise ValueError("total_loss: no loss term given")
    resolved = resolve_weights(list(raw), weights)
    return sum(resolved[term] * value for term, value in raw.items())


def loss_breakdown(raw: Mapping[str, float], weights: Mapping[str, float]) -> pd.DataFrame:
    """Per term: raw value, weight, weighted value and share of the total in %.

    ``share_i = 100 * |w_i L_i| / sum_j |w_j L_j|``: the magnitudes, so a negative term
    (the diversity loss) shows how much it pulls instead of making the shares exceed 100.
    For positive terms this is plain share of the total; the shares sum to 100 (NaN when
    every weighted term is 0). Index: the term names, in the order of ``raw``.
    """
    if not raw:
        raise ValueError("loss_breakdown: no loss term given")
    resolved = resolve_weights(list(raw), weights)
    values = {term: float(value) for term, value in raw.items()}
    bad = [term for term, value in values.items() if not math.isfinite(value)]
    if bad:
        raise ValueError(f"loss_breakdown: loss term(s) {bad} are not finite")
    frame = pd.DataFrame(
        {
            "raw": list(values.values()),
            "weight": [resolved[term] for term in values],
        },
        index=pd.Index(list(values), name="term"),
    )
    frame["weighted"] = frame["raw"] * frame["weight"]
    magnitude = frame["weighted"].abs()
    total = magnitude.sum()
    frame["share_pct"] = 100.0 * magnitude / total if total > 0 else float("nan")
    return frame
