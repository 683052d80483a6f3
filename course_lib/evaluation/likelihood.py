"""The model's own log-likelihood of each patient: membership inference and perplexity
(lesson 09).

A model that memorised its training patients gives them a higher likelihood than patients it
never saw; HALO's likelihood attack reads exactly that (``mia_likelihood_auc`` in
:mod:`course_lib.evaluation.privacy`). The same numbers give the held-out perplexity.

For each patient, the sequence ``<patient> visit ... </patient>`` is encoded as in training
(:class:`course_lib.dataset.PatientDataset`, generation objective: the encoder sees only the
prompts and ``<mask>``), and::

    log_likelihood = sum over the decoder's target tokens t of log p(token_t | tokens_<t, prompt)
    per_token      = log_likelihood / n_tokens
    perplexity     = exp(-sum of log_likelihood / sum of n_tokens)     (over a cohort)

The unigram baseline scores each token by its frequency among the training patients' target
tokens (add-one smoothing), ignoring context and prompt: a model must beat it to have learned
anything about how codes go together.

The same forward pass gives, at each visit boundary (the decoder position right after a
``</visit>``), the model's probability that the record ends there, ``p(</patient>)``, next to
whether the real record does (lesson 10: a model trained on length-grouped batches ends records
too early).

This module imports torch and the model's data pipeline, so it is not imported by
``course_lib.evaluation`` itself (the CLI stays light).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from course_lib.cohort import Cohort
from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset
from course_lib.model import PromptBart
from course_lib.outcome_prompts import model_outcome_classes
from course_lib.tokens import EOS_ID, VISIT_END_ID, VISIT_START_ID, Vocabulary

IGNORE_INDEX = -100


def _dataset(
    cohort: Cohort,
    vocabulary: Vocabulary,
    normalizer: AgeNormalizer,
    max_length: int | None,
    outcome_prompts=(),
    purpose: str = "patient log-likelihoods",
) -> PatientDataset:
    if len(cohort) == 0:
        raise ValueError(f"{purpose} need a non-empty cohort")
    return PatientDataset(cohort, vocabulary, normalizer, max_length or 512, outcome_prompts)


@contextmanager
def _eval_mode(model: PromptBart) -> Iterator[torch.device]:
    """The model in eval mode (no dropout) for the block, then back as it was; its device."""
    was_training = model.training
    model.eval()
    try:
        yield next(model.parameters()).device
    finally:
        model.train(was_training)


def _batches(dataset: PatientDataset, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """The dataset in order, collated as in training (generation objective)."""
    collate = PatientCollator(objective="generate")
    for start in range(0, len(dataset), batch_size):
        yield collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])


def _log_probs(model: PromptBart, batch: dict[str, torch.Tensor], device) -> torch.Tensor:
    """Teacher-forced log-probabilities [B, T, V] of the decoder's next token."""
    output = model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        decoder_input_ids=batch["decoder_input_ids"].to(device),
        x_num=batch["x_num"].to(device),
        x_cat=batch["x_cat"].to(device),
    )
    return torch.log_softmax(output.logits.float(), dim=-1)


@torch.no_grad()
def patient_log_likelihoods(
    model: PromptBart,
    vocabulary: Vocabulary,
    normalizer: AgeNormalizer,
    cohort: Cohort,
    *,
    max_length: int | None = None,
    batch_size: int = 64,
) -> pd.DataFrame:
    """One row per patient: ``SUBJECT_ID``, ``log_likelihood`` (nats), ``n_tokens`` and
    ``per_token`` (module docstring). ``max_length`` should be the run's (longer records are
    cut as in training)."""
    # a model with outcome prompts reads each patient's labels too (cohort.outcomes)
    classes = model_outcome_classes(model.config)
    dataset = _dataset(cohort, vocabulary, normalizer, max_length, classes)
    totals: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    with _eval_mode(model) as device:
        for batch in _batches(dataset, batch_size):
            labels = batch["labels"].to(device)
            log_probs = _log_probs(model, batch, device)
            scored = labels.ne(IGNORE_INDEX)
            picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            totals.append((picked * scored).sum(dim=1).cpu().numpy())
            counts.append(scored.sum(dim=1).cpu().numpy())
    total, n_tokens = np.concatenate(totals), np.concatenate(counts)
    return pd.DataFrame(
        {
            "SUBJECT_ID": dataset.subject_ids,
            "log_likelihood": total,
            "n_tokens": n_tokens,
            "per_token": total / np.maximum(n_tokens, 1),
        }
    )


@torch.no_grad()
def end_of_record_probabilities(
    model: PromptBart,
    vocabulary: Vocabulary,
    normalizer: AgeNormalizer,
    cohort: Cohort,
    *,
    max_length: int | None = None,
    batch_size: int = 64,
) -> pd.DataFrame:
    """One row per visit boundary of each patient (the position right after a ``</visit>``).

    Columns: ``SUBJECT_ID``, ``visit`` (1-based index of the visit just closed), ``p_end``
    (the model's teacher-forced probability of ``</patient>`` there), ``p_visit`` (that of
    ``<visit>``, the only other token the generation grammar allows there, so a sampler ends
    the record with ``p_end / (p_end + p_visit)``) and ``ended`` (1 when the real record ends
    after that visit, else 0). Comparing the mean ``p_end`` after visit k with the mean
    ``ended`` shows whether the model stops records as often as real ones stop. A record cut
    at ``max_length`` (the run's) ends early only in the encoding: its last kept visit has
    ``ended`` 0, since the real record goes on.
    """
    classes = model_outcome_classes(model.config)
    dataset = _dataset(
        cohort, vocabulary, normalizer, max_length, classes, "end-of-record probabilities"
    )
    real_visits = [len(patient.visits) for patient in cohort]  # dataset order = cohort order
    rows: list[pd.DataFrame] = []
    first = 0
    with _eval_mode(model) as device:
        for batch in _batches(dataset, batch_size):
            decoder_ids = batch["decoder_input_ids"]
            closes = decoder_ids.eq(VISIT_END_ID)
            visit = closes.cumsum(dim=1)  # visits closed so far, at each position
            row, column = closes.nonzero(as_tuple=True)
            probs = _log_probs(model, batch, device)[..., [EOS_ID, VISIT_START_ID]].exp().cpu()
            patients = first + row.numpy()
            visit_index = visit[row, column].numpy()
            rows.append(
                pd.DataFrame(
                    {
                        "SUBJECT_ID": np.asarray(dataset.subject_ids)[patients],
                        "visit": visit_index,
                        "p_end": probs[row, column, 0].numpy().astype(float),
                        "p_visit": probs[row, column, 1].numpy().astype(float),
                        "ended": (visit_index == np.asarray(real_visits)[patients]).astype(int),
                    }
                )
            )
            first += len(decoder_ids)
    return pd.concat(rows, ignore_index=True)


def end_of_record_by_visit(table: pd.DataFrame, last: int = 4) -> pd.DataFrame:
    """Per visit index (``last`` pools visits ``last`` and later) of an
    :func:`end_of_record_probabilities` table: ``n`` boundaries, mean ``p_end``, ``p_visit`` and ``p_sampler``
    (``p_end / (p_end + p_visit)``, the end probability under the generation grammar) with
    their standard errors, and the real end rate ``real`` with its binomial standard error."""
    if len(table) == 0:
        raise ValueError("end_of_record_by_visit needs at least one visit boundary (empty table)")
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    rows = table.assign(
        p_sampler=table["p_end"] / (table["p_end"] + table["p_visit"]),
        visit=table["visit"].clip(upper=last),
    )
    grouped = rows.groupby("visit")
    summary = grouped.agg(
        n=("ended", "size"),
        p_end=("p_end", "mean"),
        p_visit=("p_visit", "mean"),
        p_sampler=("p_sampler", "mean"),
        real=("ended", "mean"),
    )
    n = summary["n"]
    for column in ("p_end", "p_sampler"):
        summary[f"{column}_se"] = grouped[column].std(ddof=1).fillna(0.0) / np.sqrt(n)
    summary["real_se"] = np.sqrt(summary["real"] * (1 - summary["real"]) / n)
    summary.index = [f"{k}+" if k == last else str(k) for k in summary.index]
    summary.index.name = "visit"
    return summary


def perplexity(log_likelihoods: pd.DataFrame) -> float:
    """``exp(-sum log_likelihood / sum n_tokens)`` of a :func:`patient_log_likelihoods` table."""
    n_tokens = float(log_likelihoods["n_tokens"].sum())
    if n_tokens == 0:
        return math.nan
    return float(math.exp(-float(log_likelihoods["log_likelihood"].sum()) / n_tokens))


def unigram_perplexity(
    train: Cohort,
    test: Cohort,
    vocabulary: Vocabulary,
    normalizer: AgeNormalizer,
    *,
    max_length: int | None = None,
) -> float:
    """Perplexity on ``test`` of token frequencies among ``train``'s target tokens (add-one)."""
    train_tokens = np.concatenate(
        [
            np.asarray(ids[1:])
            for ids in _dataset(train, vocabulary, normalizer, max_length).sequences
        ]
    )
    test_tokens = np.concatenate(
        [
            np.asarray(ids[1:])
            for ids in _dataset(test, vocabulary, normalizer, max_length).sequences
        ]
    )
    size = int(max(train_tokens.max(), test_tokens.max(), len(vocabulary) - 1)) + 1
    counts = np.bincount(train_tokens, minlength=size) + 1.0
    log_probs = np.log(counts / counts.sum())
    return float(math.exp(-log_probs[test_tokens].mean()))
