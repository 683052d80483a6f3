"""Frozen PromptBart hidden states as features for the prediction heads (lesson 11).

Which hidden states (``kind``):

* ``decoder_end`` (default): the decoder's final hidden state at the end-of-patient position
  (``out.end_hidden``, ``[d_model]``), with the whole patient teacher-forced into the decoder
  and the encoder fed as in training under the ``generate`` objective (prompts + one
  ``<mask>``). It is the state the auxiliary age/sex heads read: it has attended to every
  visit.
* ``encoder_mean``: the encoder's last hidden states averaged over the patient's TOKEN
  positions (prompt positions and padding left out), with the whole patient as encoder
  input. Caveat: a run trained with the ``generate`` objective never showed its encoder a
  code, so these features rest on the (tied) token embeddings more than on trained attention.
* ``concat``: both, ``[2 * d_model]``.

Extraction runs once (eval mode, no gradients, batched) and is cached on disk as
``features_<key>.pt``, the key a hash of the model's weights, the patients (ids, sex, age,
codes), the maximum length and the kind: a changed run or cohort can never reuse stale features.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from course_lib.cohort import Cohort
from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset
from course_lib.losses import OPTIONAL_TERMS
from course_lib.outcome_prompts import model_outcome_classes

FEATURE_KINDS = ("decoder_end", "encoder_mean", "concat")


@dataclass
class FeatureSet:
    """``features`` float [N, D] for the patients ``subject_ids`` [N], in cohort order."""

    subject_ids: np.ndarray
    features: torch.Tensor
    kind: str
    key: str
    cache_path: Path | None = None
    from_cache: bool = False

    @property
    def input_size(self) -> int:
        return int(self.features.shape[1])


def feature_size(model, kind: str) -> int:
    """Width of the features of ``kind`` for ``model`` (what a head's input must be)."""
    _check_kind(kind)
    return model.config.d_model * (2 if kind == "concat" else 1)


def _check_kind(kind: str) -> None:
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature kind must be one of {FEATURE_KINDS}, got {kind!r}")


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in name order: identifies the weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def cohort_digest(cohort: Cohort, normalizer: AgeNormalizer, max_length: int) -> str:
    """SHA-256 of what the features depend on in the data."""
    patients = [
        [p.subject_id, p.sex, round(float(p.age), 6), [visit.codes for visit in p.visits]]
        for p in cohort
    ]
    text = json.dumps([patients, normalizer.to_dict(), max_length], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@torch.no_grad()
def extract_features(
    model,
    cohort: Cohort,
    normalizer: AgeNormalizer,
    *,
    kind: str = "decoder_end",
    batch_size: int = 64,
    max_length: int | None = None,
) -> FeatureSet:
    """Hidden states of ``kind`` for every patient of ``cohort``; the model is left as it was."""
    _check_kind(kind)
    if model.vocabulary is None:
        raise ValueError("the model has no vocabulary attached (model.vocabulary)")
    if model_outcome_classes(model.config):
        raise ValueError(
            f"the model was trained with outcome prompts {model.config.outcome_prompts}: its "
            "features would read the labels a head predicts; use a run trained without them"
        )
    max_length = max_length or model.config.max_sequence_length
    dataset = PatientDataset(Cohort(cohort.patients), model.vocabulary, normalizer, max_length)
    collator = PatientCollator(objective="generate")
    n_encoder_prompts = model.config.n_prompts if model.prompts_encoder else 0
    was_training = model.training
    model.eval()
    device = model.device
    rows = []
    try:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = {k: v.to(device) for k, v in collator(items).items()}
            parts = []
            if kind in ("decoder_end", "concat"):
                out = model(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    decoder_input_ids=batch["decoder_input_ids"],
                    labels=batch["labels"],
                    x_num=batch["x_num"],
                    x_cat=batch["x_cat"],
                    # only the hidden states are wanted: weigh no optional term this call
                    # skips (a run trained with the validity loss stores its weight)
                    loss_weights={term: 0.0 for term in OPTIONAL_TERMS},
                )
                parts.append(out.end_hidden)  # [batch, d_model]
            if kind in ("encoder_mean", "concat"):
                parts.append(_encoder_mean(model, items, batch, n_encoder_prompts))
            rows.append(torch.cat(parts, dim=1).float().cpu())
    finally:
        model.train(was_training)
    features = torch.cat(rows) if rows else torch.zeros(0, feature_size(model, kind))
    key = feature_key(model, cohort, normalizer, kind, max_length)
    return FeatureSet(np.asarray(dataset.subject_ids, dtype=np.int64), features, kind, key)


def _encoder_mean(model, items, batch, n_prompts: int) -> torch.Tensor:
    """Mean of the encoder's token states ``[batch, d_model]`` with the whole patient as input."""
    sequences = [item["input_ids"] for item in items]
    tokens = torch.nn.utils.rnn.pad_sequence(
        sequences, batch_first=True, padding_value=model.config.pad_token_id
    ).to(batch["x_num"].device)
    token_mask = torch.nn.utils.rnn.pad_sequence(
        [torch.ones(len(s), dtype=torch.long) for s in sequences], batch_first=True
    ).to(tokens.device)
    hidden, _ = model.encode(tokens, token_mask, batch["x_num"], batch["x_cat"])
    token_hidden = hidden[:, n_prompts:]  # [batch, src, d_model]
    weights = token_mask.unsqueeze(-1).to(token_hidden.dtype)
    return (token_hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def feature_key(model, cohort: Cohort, normalizer, kind: str, max_length: int) -> str:
    parts = [model_digest(model), cohort_digest(cohort, normalizer, max_length), kind]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def cached_features(
    model,
    cohort: Cohort,
    normalizer: AgeNormalizer,
    cache_dir: str | Path,
    *,
    kind: str = "decoder_end",
    batch_size: int = 64,
    max_length: int | None = None,
) -> FeatureSet:
    """:func:`extract_features`, read from ``cache_dir/features_<key>.pt`` when there.

    The file is written to a temporary name then renamed, so an interrupted run never
    leaves a half file that a later run would trust.
    """
    _check_kind(kind)
    max_length = max_length or model.config.max_sequence_length
    key = feature_key(model, cohort, normalizer, kind, max_length)
    cache_dir = Path(cache_dir)
    path = cache_dir / f"features_{key}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        return FeatureSet(
            saved["subject_ids"].numpy(), saved["features"], kind, key, path, from_cache=True
        )
    features = extract_features(
        model, cohort, normalizer, kind=kind, batch_size=batch_size, max_length=max_length
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        payload = {
            "subject_ids": torch.from_numpy(features.subject_ids),
            "features": features.features,
        }
        torch.save(payload, temp_name)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    features.cache_path = path
    return features
