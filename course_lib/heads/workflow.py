"""The steps ``python -m course_lib heads`` chains, as functions a lesson can call (lesson 11).

:func:`load_head_data` reads a run, a cohort folder and its outcomes and returns frozen
features with their targets; :func:`make_split` picks the patient or temporal split;
:func:`load_saved_heads` loads the chosen head versions (and the binary head a confidence head
was trained against); :func:`evaluate_saved_heads` re-scores them. The command line only
parses flags and prints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from course_lib.cohort import Cohort
from course_lib.heads.features import FeatureSet, cached_features, feature_size
from course_lib.heads.modules import HEAD_NAMES
from course_lib.heads.splits import SPLITS, SplitIndex, patient_split, temporal_split
from course_lib.heads.storage import HeadStorageError, StoredHead, list_heads, load_head
from course_lib.heads.targets import HeadTargets, build_targets, read_outcomes
from course_lib.heads.train import binary_correct, evaluate_head

DEFAULT_FEATURE_KIND = "decoder_end"


@dataclass
class HeadData:
    """A run's model and settings, a cohort, its features (one kind) and targets."""

    model: torch.nn.Module
    normalizer: object
    run_config: object
    cohort: Cohort
    outcomes: object
    features: FeatureSet
    targets: HeadTargets


def load_head_data(
    run: Path,
    data: Path,
    heads: Sequence[str],
    cache_dir: Path,
    kind: str,
    *,
    unknown_codes: str | None = None,
) -> HeadData:
    """Outcomes first (bad labels fail before the slow steps), then the run, the cohort and
    its cached features. ``unknown_codes`` (``--unknown-codes``: "skip" or "error") is how
    the cohort's codes outside ICD-9-CM v32 are met; default: the run's own setting."""
    from course_lib.mimic import load_mimic
    from course_lib.runs import load_run

    outcomes = read_outcomes(data, list(heads))
    model, _, normalizer, config = load_run(run)
    cohort = load_mimic(data, unknown_codes=unknown_codes or config.unknown_codes)
    features = cached_features(
        model, cohort, normalizer, cache_dir, kind=kind, max_length=config.max_length
    )
    targets = build_targets(outcomes, features.subject_ids)
    return HeadData(model, normalizer, config, cohort, outcomes, features, targets)


def make_split(
    kind: str, cohort: Cohort, subject_ids: Sequence[int], run: Path | None, seed: int
) -> SplitIndex:
    """The ``temporal`` split, or the ``patient`` split (the run's own splits when it has)."""
    if kind not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {kind!r}")
    if kind == "temporal":
        return temporal_split(cohort, subject_ids)
    return patient_split(subject_ids, run_dir=run, seed=seed)


def choose_versions(heads_dir: Path, version: str | None = None) -> dict[str, str]:
    """``head name -> version folder``: the one ``version`` given, else the latest of each."""
    if version:
        path = heads_dir / version
        if not (path / "config.json").is_file():
            raise HeadStorageError(
                f"{path}: no such head version (expected a folder with config.json)"
            )
        return {json.loads((path / "config.json").read_text())["head"]: version}
    chosen = {row.head: row.version for row in list_heads(heads_dir)}  # latest wins
    if not chosen:
        raise HeadStorageError(f"no head versions in {heads_dir}")
    return chosen


def feature_kind_of(heads_dir: Path, version: str) -> str:
    """The feature kind a saved head version was trained on."""
    config = json.loads((heads_dir / version / "config.json").read_text())
    return config.get("feature_kind", DEFAULT_FEATURE_KIND)


def load_saved_heads(
    heads_dir: Path, chosen: dict[str, str], model: torch.nn.Module
) -> tuple[dict[str, StoredHead], StoredHead | None]:
    """The chosen versions checked against the model's feature width, and the binary head a
    confidence head was trained against (None when not needed)."""
    stored = {
        name: load_head(
            heads_dir,
            name,
            folder,
            expected_input_size=feature_size(model, feature_kind_of(heads_dir, folder)),
        )
        for name, folder in chosen.items()
    }
    binary = stored.get("binary")
    if "confidence" in stored and binary is None:
        binary = load_head(heads_dir, "binary", stored["confidence"].config.get("binary_version"))
    return stored, binary


def confidence_from_binary(
    binary: StoredHead, features: torch.Tensor, targets: HeadTargets
) -> torch.Tensor:
    """The confidence head's target on these patients: is the binary head right? (NaN where
    the binary label is missing)."""
    labelled = np.flatnonzero(~np.isnan(targets.binary.numpy()))
    confidence = torch.full((len(targets.subject_ids),), float("nan"))
    confidence[labelled] = binary_correct(binary.head, features, targets, labelled)
    return confidence


@dataclass
class SavedHeadScores:
    """What :func:`evaluate_saved_heads` returns, per head name."""

    metrics: dict[str, dict]
    curves: dict[str, dict]
    versions: dict[str, str]
    untrained: list[str]


def evaluate_saved_heads(
    stored: dict[str, StoredHead],
    binary: StoredHead | None,
    data: HeadData,
    run: Path,
    cache_dir: Path,
    subset: str = "test",
) -> SavedHeadScores:
    """Metrics of each saved head on the ``test`` patients of its own split, or on ``all``."""
    features_by_kind = {data.features.kind: data.features}
    scores = SavedHeadScores({}, {}, {}, [])
    for name in [n for n in HEAD_NAMES if n in stored]:
        item = stored[name]
        kind = item.config.get("feature_kind", DEFAULT_FEATURE_KIND)
        if kind not in features_by_kind:
            features_by_kind[kind] = cached_features(
                data.model,
                data.cohort,
                data.normalizer,
                cache_dir,
                kind=kind,
                max_length=data.run_config.max_length,
            )
        features = features_by_kind[kind]
        targets = build_targets(
            data.outcomes, features.subject_ids, item.config.get("horizons_days")
        )
        split_info = item.config.get("split", {})
        split = make_split(
            split_info.get("kind", "patient"),
            data.cohort,
            features.subject_ids,
            run,
            int(split_info.get("seed", 0)),
        )
        rows = split.test if subset == "test" else np.arange(len(features.subject_ids))
        if name == "confidence":
            targets.confidence = confidence_from_binary(binary, features.features, targets)
        scores.metrics[name], scores.curves[name] = evaluate_head(
            name, item.head, features.features, targets, rows, split.train
        )
        scores.versions[name] = item.version
        if not item.head.trained:
            scores.untrained.append(item.version)
    return scores
