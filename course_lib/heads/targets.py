"""Outcome labels of the prediction heads, read from ``OUTCOMES.csv`` and checked (lesson 11).

One row per patient: ``LVEF_REDUCED`` (0/1), ``EVENT_DAYS`` (days from the last admission to
an adverse event or to censoring, >= 0), ``EVENT_OBSERVED`` (1 event, 0 censored) and
``RISK_CATEGORY`` (0 low, 1 medium, 2 high). An empty cell means "no label": that patient is
left out of that head's loss and metrics, never guessed.

Multi-horizon targets respect censoring. For a horizon of ``h`` days:

* ``1`` if the event was observed within ``h`` days (``EVENT_OBSERVED = 1`` and
  ``EVENT_DAYS <= h``);
* ``0`` if the patient is known to be event-free at ``h`` (``EVENT_DAYS > h``, event later or
  censored later);
* masked out (no target) if the patient was censored before ``h``: we do not know.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from course_lib.simulate import HORIZONS_DAYS

RISK_CLASSES = ("low", "medium", "high")

# column -> allowed values (None: any finite number >= 0)
LABEL_COLUMNS: dict[str, tuple[int, ...] | None] = {
    "LVEF_REDUCED": (0, 1),
    "EVENT_DAYS": None,
    "EVENT_OBSERVED": (0, 1),
    "RISK_CATEGORY": (0, 1, 2),
}
# head -> the columns its targets need
HEAD_COLUMNS: dict[str, tuple[str, ...]] = {
    "binary": ("LVEF_REDUCED",),
    "horizon": ("EVENT_DAYS", "EVENT_OBSERVED"),
    "risk": ("RISK_CATEGORY",),
    "confidence": ("LVEF_REDUCED",),
}


class LabelsFileError(ValueError):
    """OUTCOMES.csv is missing, lacks a column, or holds a value that is not a valid label."""


def _where(path: Path, row: int) -> str:
    return f"{path}: data row {row + 1} (1-based, header not counted)"


def read_outcomes(
    directory: str | Path, heads: Sequence[str] = tuple(HEAD_COLUMNS)
) -> pd.DataFrame:
    """The checked outcome table of ``directory/OUTCOMES.csv`` for the given heads.

    Returns ``SUBJECT_ID`` (int) and the needed label columns as floats (``NaN`` = no label).
    Raises :class:`LabelsFileError` naming the file, column and row of the first bad value.
    """
    directory = Path(directory)
    path = directory / "OUTCOMES.csv"
    if not path.is_file():
        raise LabelsFileError(
            f"{path}: not found; the prediction heads need an outcomes file with columns "
            f"SUBJECT_ID, {', '.join(LABEL_COLUMNS)}"
        )
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise LabelsFileError(f"{path}: not a readable CSV file ({error})") from None
    unknown_heads = [head for head in heads if head not in HEAD_COLUMNS]
    if unknown_heads:
        raise ValueError(f"unknown head(s) {unknown_heads}; expected some of {list(HEAD_COLUMNS)}")
    needed = ["SUBJECT_ID", *dict.fromkeys(c for head in heads for c in HEAD_COLUMNS[head])]
    for column in needed:
        if column not in table.columns:
            users = [head for head in heads if column in HEAD_COLUMNS[head]] or ["every head"]
            raise LabelsFileError(
                f"{path}: header line: missing column {column} (needed by {', '.join(users)}; "
                f"found {', '.join(map(str, table.columns))})"
            )
    checked = {"SUBJECT_ID": _subject_ids(path, table["SUBJECT_ID"])}
    for column in needed[1:]:
        checked[column] = _label_values(path, column, table[column])
    return pd.DataFrame(checked)


def _subject_ids(path: Path, column: pd.Series) -> np.ndarray:
    ids = np.empty(len(column), dtype=np.int64)
    seen: dict[int, int] = {}
    for row, text in enumerate(column.str.strip()):
        try:
            ids[row] = int(text)
        except ValueError:
            raise LabelsFileError(
                f"{_where(path, row)}: column SUBJECT_ID: {text!r} is not an integer id"
            ) from None
        if ids[row] in seen:
            raise LabelsFileError(
                f"{_where(path, row)}: column SUBJECT_ID: {ids[row]} repeats data row "
                f"{seen[ids[row]] + 1} (expected one row per patient)"
            )
        seen[ids[row]] = row
    return ids


def _label_values(path: Path, column: str, texts: pd.Series) -> np.ndarray:
    allowed = LABEL_COLUMNS[column]
    values = np.full(len(texts), np.nan)
    for row, text in enumerate(texts.str.strip()):
        if text == "":
            continue  # no label for this patient
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        expected = (
            "a number of days >= 0" if allowed is None else f"one of {', '.join(map(str, allowed))}"
        )
        if not math.isfinite(value):
            raise LabelsFileError(
                f"{_where(path, row)}: column {column}: {text!r} is not a number (expected {expected})"
            )
        if (allowed is None and value < 0) or (allowed is not None and value not in allowed):
            raise LabelsFileError(
                f"{_where(path, row)}: column {column}: {text} is out of range (expected {expected})"
            )
        values[row] = value
    return values


@dataclass
class HeadTargets:
    """Targets of every head for patients in ``subject_ids`` order; masks say which exist.

    ``binary`` float [N] (NaN none), ``horizon`` float [N, H] with ``horizon_mask`` bool [N, H],
    ``risk`` long [N] (-100 none). The confidence head's target depends on a binary head's
    predictions, so :func:`course_lib.heads.train.confidence_targets` adds it later.
    """

    subject_ids: np.ndarray
    binary: torch.Tensor
    horizon: torch.Tensor
    horizon_mask: torch.Tensor
    risk: torch.Tensor
    horizons_days: tuple[int, ...] = HORIZONS_DAYS
    confidence: torch.Tensor | None = None

    def target(self, head: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(target, mask)`` of ``head``; mask is [N] (or [N, H] for ``horizon``) bool."""
        if head == "binary":
            return self.binary, ~torch.isnan(self.binary)
        if head == "horizon":
            return self.horizon, self.horizon_mask
        if head == "risk":
            return self.risk, self.risk.ge(0)
        if head == "confidence":
            if self.confidence is None:
                raise ValueError("the confidence targets are not set; see confidence_targets()")
            return self.confidence, ~torch.isnan(self.confidence)
        raise ValueError(f"unknown head {head!r}; expected one of {list(HEAD_COLUMNS)}")


def horizon_targets(
    event_days: np.ndarray, event_observed: np.ndarray, horizons_days: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(target [N, H] float, mask [N, H] bool)`` by the censoring rule of the module docstring."""
    days = np.asarray(event_days, dtype=np.float64)[:, None]
    observed = np.asarray(event_observed, dtype=np.float64)[:, None]
    horizons = np.asarray(horizons_days, dtype=np.float64)[None, :]
    known = np.isfinite(days) & np.isfinite(observed)
    event_by_h = known & (observed == 1) & (days <= horizons)
    free_at_h = known & (days > horizons)
    return event_by_h.astype(np.float32), event_by_h | free_at_h


def build_targets(
    outcomes: pd.DataFrame,
    subject_ids: Sequence[int],
    horizons_days: Sequence[int] | None = None,
) -> HeadTargets:
    """Targets for ``subject_ids`` (a patient without an outcomes row gets no label);
    ``horizons_days`` defaults to the simulator's 30/90/180/365."""
    horizons_days = tuple(horizons_days or HORIZONS_DAYS)
    table = outcomes.set_index("SUBJECT_ID").reindex(list(subject_ids))

    def column(name: str) -> np.ndarray:
        if name not in table.columns:
            return np.full(len(table), np.nan)
        return table[name].to_numpy(dtype=np.float64)

    horizon, mask = horizon_targets(column("EVENT_DAYS"), column("EVENT_OBSERVED"), horizons_days)
    risk = column("RISK_CATEGORY")
    return HeadTargets(
        subject_ids=np.asarray(subject_ids, dtype=np.int64),
        binary=torch.tensor(column("LVEF_REDUCED"), dtype=torch.float32),
        horizon=torch.tensor(horizon),
        horizon_mask=torch.tensor(mask),
        risk=torch.tensor(np.where(np.isnan(risk), -100, risk), dtype=torch.long),
        horizons_days=tuple(int(h) for h in horizons_days),
    )
