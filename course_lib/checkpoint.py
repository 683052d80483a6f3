"""Checkpoints that make a resumed run exact (lesson 03, lesson 12).

``checkpoints/last/`` holds everything a run needs to continue as if it had never stopped:
each stateful part's ``state_dict`` (``model.pt``, ``optimizer.pt``, ``scheduler.pt``,
``weighting.pt``, ``scaler.pt`` under fp16), every process's random states (``rng.pt``:
python, numpy, torch, CUDA and the collator's generator) and the loop's position
(``state.json``). The folder is written beside the old one and swapped in with one rename
(:func:`course_lib.files.replace_dir`), so a crash mid-save keeps the previous checkpoint.

Plain ``torch.save`` files rather than Accelerate's ``save_state``: its per-process RNG
files and sampler bookkeeping do not cover the collator's generator or the position inside
an epoch of our own batch order, which the bit-identical resume test needs.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course_lib.files import atomic_write_text, existing_dir, new_temp_dir, replace_dir

LAST = Path("checkpoints") / "last"


@dataclass
class LoopState:
    """The loop's position and book-keeping; saved with each checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already trained on
    best_val_lm: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    train_log_lines: int = 0
    epoch_log_lines: int = 0
    epoch_sums: list[float] | None = None  # this epoch's sum of raw terms (local process)
    epoch_batches: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def rng_state() -> dict[str, Any]:
    """Every global random state of this process."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def last_checkpoint(run_dir: Path) -> Path | None:
    """The complete ``checkpoints/last`` folder (or the copy a crashed swap left), else None."""
    return existing_dir(Path(run_dir) / LAST)


def saved_step(folder: Path) -> int:
    return int(json.loads((folder / "state.json").read_text())["step"])


def save_checkpoint(
    run_dir: Path,
    parts: Mapping[str, Any],
    state: LoopState,
    process_states: Sequence[Mapping[str, Any]],
) -> None:
    """Write ``<name>.pt`` of each part's ``state_dict``, the RNG states and ``state.json``
    into a new folder, then swap it in for ``checkpoints/last`` (main process only)."""
    final = Path(run_dir) / LAST
    temp = new_temp_dir(final)
    try:
        for name, part in parts.items():
            if part is not None:
                torch.save(part.state_dict(), temp / f"{name}.pt")
        torch.save(list(process_states), temp / "rng.pt")
        atomic_write_text(temp / "state.json", json.dumps(dataclasses.asdict(state)))
        replace_dir(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def load_parts(folder: Path, parts: Mapping[str, Any], device: torch.device | str) -> None:
    """Load each part's ``<name>.pt`` from ``folder``; a file that is not there (``scaler.pt``
    of a run without fp16) is skipped."""
    for name, part in parts.items():
        path = folder / f"{name}.pt"
        if part is not None and path.exists():
            part.load_state_dict(torch.load(path, map_location=device))


def read_state(folder: Path) -> tuple[LoopState, list[dict[str, Any]]]:
    """The loop state and every process's random states saved in ``folder``."""
    state = LoopState(**json.loads((folder / "state.json").read_text()))
    return state, torch.load(folder / "rng.pt", weights_only=False)


def truncate_jsonl(path: Path, keep_lines: int) -> None:
    """Keep the first ``keep_lines`` records (those written before the checkpoint)."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if len(lines) != keep_lines:
        atomic_write_text(path, "".join(lines[:keep_lines]))
