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

This module imports torch and the model's data pipeline, so it is not imported by
``course_lib.evaluation`` itself (the CLI stays light).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from course_lib.cohort import Cohort
from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset
from course_lib.model import PromptBart
from course_lib.outcome_prompts import model_outcome_classes
from course_lib.tokens import Vocabulary

IGNORE_INDEX = -100


def _dataset(
    cohort: Cohort,
    vocabulary: Vocabulary,
    normalizer: AgeNormalizer,
    max_length: int | None,
    outcome_prompts=(),
) -> PatientDataset:
    if len(cohort) == 0:
        raise ValueError("patient log-likelihoods need a non-empty cohort")
    return PatientDataset(cohort, vocabulary, normalizer, max_length or 512, outcome_prompts)


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
    collate = PatientCollator(objective="generate")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    try:
        for start in range(0, len(dataset), batch_size):
            batch = collate(
                [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            )
            labels = batch["labels"].to(device)
            output = model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                decoder_input_ids=batch["decoder_input_ids"].to(device),
                x_num=batch["x_num"].to(device),
                x_cat=batch["x_cat"].to(device),
            )
            log_probs = torch.log_softmax(output.logits.float(), dim=-1)
            scored = labels.ne(IGNORE_INDEX)
            picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            totals.append((picked * scored).sum(dim=1).cpu().numpy())
            counts.append(scored.sum(dim=1).cpu().numpy())
    finally:
        model.train(was_training)
    total, n_tokens = np.concatenate(totals), np.concatenate(counts)
    return pd.DataFrame(
        {
            "SUBJECT_ID": dataset.subject_ids,
            "log_likelihood": total,
            "n_tokens": n_tokens,
            "per_token": total / np.maximum(n_tokens, 1),
        }
    )


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
