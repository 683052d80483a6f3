"""Patient-level and temporal splits for the prediction heads (lesson 11).

* ``patient``: every patient lands in one split. When the PromptBart run's own
  ``splits.json`` covers the cohort, it is reused, so the heads' test patients are patients
  the language model never trained on either; otherwise the ids are split with
  :func:`course_lib.dataset.split_cohort`'s rule (seeded shuffle, 80/10/10).
* ``temporal``: patients ordered by the time of their LAST admission (ties by id): the
  earliest 80% are for fitting (the earliest 70% train, the next 10% validation for early
  stopping) and the latest 20% are the test split. It asks "does a head fitted on the past
  hold up on later patients?". Caveat: MIMIC-III shifts every patient's dates by its own
  random offset, so on MIMIC this order is not the true calendar order; on the simulator
  the dates are drawn per patient too: treat it as a distribution-shift check.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course_lib.cohort import Cohort

SPLITS = ("patient", "temporal")


@dataclass(frozen=True)
class SplitIndex:
    """Row positions (into the feature/target arrays) of each split, and how it was made."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    kind: str
    source: str

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _positions(subject_ids: np.ndarray, wanted: Sequence[int]) -> np.ndarray:
    wanted_set = set(int(i) for i in wanted)
    return np.flatnonzero([int(i) in wanted_set for i in subject_ids])


def _check(split: SplitIndex) -> SplitIndex:
    empty = [name for name, size in split.sizes().items() if size == 0]
    if empty:
        raise ValueError(
            f"{split.kind} split ({split.source}) leaves no patient in {empty}; "
            "the cohort is too small for train/validation/test"
        )
    return split


def patient_split(
    subject_ids: Sequence[int], *, run_dir: str | Path | None = None, seed: int = 0
) -> SplitIndex:
    """By patient: the run's ``splits.json`` if it covers every id, else a seeded 80/10/10."""
    ids = np.asarray(subject_ids, dtype=np.int64)
    if run_dir is not None and (Path(run_dir) / "splits.json").is_file():
        path = Path(run_dir) / "splits.json"
        saved = json.loads(path.read_text(encoding="utf-8"))
        known = {int(i) for part in ("train", "val", "test") for i in saved.get(part, [])}
        if set(ids.tolist()) <= known:
            parts = [_positions(ids, saved[part]) for part in ("train", "val", "test")]
            return _check(SplitIndex(*parts, kind="patient", source=f"{path}"))
    shuffled = np.random.default_rng(seed).permutation(np.sort(ids))
    exact = np.array([0.8, 0.1, 0.1]) * len(ids)
    sizes = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - sizes), kind="stable")[: len(ids) - sizes.sum()]:
        sizes[index] += 1
    cut_train, cut_val = sizes[0], sizes[0] + sizes[1]
    parts = (shuffled[:cut_train], shuffled[cut_train:cut_val], shuffled[cut_val:])
    return _check(
        SplitIndex(
            *(_positions(ids, part) for part in parts), kind="patient", source=f"seed {seed}"
        )
    )


def temporal_split(cohort: Cohort, subject_ids: Sequence[int]) -> SplitIndex:
    """Earliest 70% train, next 10% validation, latest 20% test, by last admission time."""
    last_time = {}
    for patient in cohort:
        times = [visit.admit_time for visit in patient.visits]
        if not times or any(time is None for time in times):
            raise ValueError(
                f"patient {patient.subject_id} has a visit without an admission time; "
                "the temporal split needs ADMITTIME for every visit"
            )
        last_time[patient.subject_id] = max(times)
    ids = np.asarray(subject_ids, dtype=np.int64)
    missing = [int(i) for i in ids if int(i) not in last_time]
    if missing:
        raise ValueError(f"temporal split: patients {missing[:5]} are not in the cohort")
    order = sorted(range(len(ids)), key=lambda row: (last_time[int(ids[row])], int(ids[row])))
    order = np.asarray(order, dtype=np.int64)
    cut_train, cut_val = int(round(0.7 * len(ids))), int(round(0.8 * len(ids)))
    return _check(
        SplitIndex(
            np.sort(order[:cut_train]),
            np.sort(order[cut_train:cut_val]),
            np.sort(order[cut_val:]),
            kind="temporal",
            source="last admission time: earliest 70% train, next 10% val, latest 20% test",
        )
    )
