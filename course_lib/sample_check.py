"""The per-epoch sample check: is the generator collapsing? (lessons 03 and 10)

At the end of each epoch :class:`SampleCheck` samples a few patients with the generation
rules (:func:`course_lib.generation.build_processors`) for the demographics of real
validation patients, and raises the evaluation's mode-collapse alarms
(:func:`course_lib.evaluation.diversity.mode_collapse_alarms`) against those same real
patients cut to the same length. It is a callback of :func:`course_lib.training.train`, so the
training loop itself needs neither generation nor evaluation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.config import TrainConfig
from course_lib.evaluation.diversity import (
    AlarmThresholds,
    diversity_metrics,
    mode_collapse_alarms,
    top_code_share,
)
from course_lib.generation import SEX_ORDER, build_processors, sample_sequences
from course_lib.tokens import Vocabulary
from course_lib.training import EpochCallback, EpochContext


def _cohort(vocabulary: Vocabulary, sequences: list[list[int]], sexes: list[int]) -> Cohort:
    """Patients of decoded id sequences (``<unk>`` dropped; age is irrelevant here)."""
    return Cohort(
        [
            Patient(index, SEX_ORDER[sex], 0.0, [Visit(codes, 0.0) for codes in visits])
            for index, (ids, sex) in enumerate(zip(sequences, sexes, strict=True))
            for visits in [vocabulary.decode(ids, keep_unknown=False)]
        ]
    )


@torch.no_grad()
def sample_check(
    model, vocabulary, dataset, n: int, max_new_tokens: int, seed: int, collapse_ratio: float = 0.5
) -> dict[str, Any]:
    """Sample ``n`` patients for demographics of ``dataset`` and measure their diversity.

    The same patients' real sequences, cut to the same number of tokens, are the reference of
    the alarms: fewer than ``collapse_ratio`` times their unique codes, a top code in more
    than ``1 / collapse_ratio`` times the real top code's share of patients (the notes'
    collapse: 31 unique codes, the top code in 12.5% of patients), or chapters per patient
    far less spread. The global RNG is left untouched, so the check does not change the
    training that follows.
    """
    n = min(n, len(dataset))
    if n == 0:
        return {}
    picked = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    x_num = torch.tensor([[dataset.x_num[i]] for i in picked], dtype=torch.float32)
    x_cat = torch.tensor([dataset.x_cat[i] for i in picked], dtype=torch.long)  # [n, n_cat]
    was_training, device = model.training, model.device
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        sequences = sample_sequences(
            model,
            x_num.to(device),
            x_cat.to(device),
            build_processors(vocabulary, [], []),
            max_new_tokens=max_new_tokens,
        )
    model.train(was_training)
    sexes = [int(dataset.x_cat[i][0]) for i in picked]
    sampled = _cohort(vocabulary, sequences.tolist(), sexes)
    real_ids = [dataset.sequences[i][: max_new_tokens + 1] for i in picked]
    real = _cohort(vocabulary, real_ids, sexes)
    metrics = diversity_metrics(sampled, real)
    top_code, top_share = top_code_share(sampled)
    real_top_code, real_top_share = top_code_share(real)
    thresholds = AlarmThresholds(
        unique_codes_ratio=collapse_ratio,
        top_code_share_ratio=1 / collapse_ratio if collapse_ratio > 0 else math.inf,
    )
    alarms = [
        f"{alarm} (top code {top_code})" if alarm.startswith("top_code_share") else alarm
        for alarm in mode_collapse_alarms(metrics, thresholds)
    ]
    return {
        "sampled_patients": n,
        "sampled_unique_codes": int(metrics["unique_codes"]),
        "sampled_top_code": top_code,
        "sampled_top_code_share": top_share,
        "sampled_codes_per_patient": metrics["codes_per_patient_mean"],
        "real_unique_codes": int(metrics["unique_codes_real"]),
        "real_top_code": real_top_code,
        "real_top_code_share": real_top_share,
        "alarms": alarms,
    }


class SampleCheck:
    """End-of-epoch callback: :func:`sample_check` on ``config.sample_every_epoch`` validation
    patients (training patients when there is no validation split); off when that is 0."""

    def __call__(self, context: EpochContext) -> dict[str, Any]:
        config = context.config
        if not config.sample_every_epoch:
            return {}
        check_set = context.val_set if len(context.val_set) else context.train_set
        return sample_check(
            context.model,
            context.vocabulary,
            check_set,
            config.sample_every_epoch,
            config.sample_max_new_tokens,
            seed=config.seed + context.epoch,
            collapse_ratio=config.collapse_ratio,
        )


def default_callbacks(config: TrainConfig | None = None) -> list[EpochCallback]:
    """The callbacks the ``train`` command, the pipeline and the lessons train with."""
    return [SampleCheck()]
