"""The run folder: the one place that knows its layout (lesson 03 onwards).

``train`` writes a run folder through the functions below and everything else reads it
through :class:`Run`::

    config.yaml              the resolved configuration (every field, presets filled in)
    vocab.json normalizer.json splits.json train_demographics.csv
    train_visit_gaps.csv     years between consecutive visits of the training patients
                             (column gap_years): what generation draws visit gaps from
    model/                   save_pretrained of the best model, plus fingerprint.json: the
                             sha256 of every model file and of the vocabulary it was trained with
    checkpoints/last/        everything --resume needs (course_lib.checkpoint)
    logs/train.jsonl         one JSON object per logged step
    logs/epochs.jsonl        one per epoch: validation terms, sample check, alarms

``Run.load(path)`` checks every file before anything uses it: a missing or damaged file is a
:class:`RunError` naming it. :class:`RunWriter` makes writing safe: a lock file beside the
folder keeps a second process out, and ``overwrite`` writes the new run beside the old one,
swapping it in only when training returns (a failed run leaves the old one untouched).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from course_lib.cohort import Cohort, cohort_visit_gaps
from course_lib.config import TrainConfig, TrainConfigError
from course_lib.dataset import AgeNormalizer
from course_lib.files import atomic_write_text, existing_dir, new_temp_dir, replace_dir
from course_lib.model import PromptBart
from course_lib.outcome_prompts import cohort_prompt_labels
from course_lib.tokens import Vocabulary, VocabularyFileError

SPLITS = ("train", "val", "test")
VISIT_GAPS = "train_visit_gaps.csv"
LOGS = ("train", "epochs")
SplitName = Literal["train", "val", "test"]
LogName = Literal["train", "epochs"]
FINGERPRINT = "fingerprint.json"


class RunError(ValueError):
    """A run folder that is missing, incomplete, damaged or in use."""


class ResumeError(RunError):
    """``--resume`` on a run folder that cannot be resumed with this configuration."""


# ------------------------------------------------------------------------------- reading
def vocabulary_fingerprint(vocabulary: Vocabulary) -> str:
    """sha256 of the token list: any added, removed or swapped code changes it."""
    return hashlib.sha256("\n".join(vocabulary.tokens).encode("utf-8")).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Run:
    """A run folder written by ``train``; each part is read (and checked) on first use."""

    path: Path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Run:
        """The run at ``path`` with every file read and checked; :class:`RunError` if not."""
        run = cls(Path(path))
        if not run.path.is_dir():
            raise RunError(f"{run.path}: no such run folder")
        run.config, run.vocabulary, run.normalizer, run.model  # noqa: B018  (check them all)
        return run

    def file(self, name: str) -> Path:
        path = self.path / name
        if not path.is_file():
            raise RunError(f"{path} is missing; is {self.path} a run folder written by train?")
        return path

    @cached_property
    def config(self) -> TrainConfig:
        try:
            return TrainConfig.from_yaml(self.file("config.yaml"))
        except TrainConfigError as error:
            raise RunError(f"{self.path / 'config.yaml'}: {error}") from None

    @cached_property
    def vocabulary(self) -> Vocabulary:
        try:
            return Vocabulary.load(self.file("vocab.json"))
        except VocabularyFileError as error:
            raise RunError(str(error)) from None

    @cached_property
    def normalizer(self) -> AgeNormalizer:
        path = self.file("normalizer.json")
        try:
            return AgeNormalizer.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as error:
            raise RunError(f"{path}: not a saved age normaliser ({error})") from None

    @cached_property
    def model(self) -> PromptBart:
        """The best model (``model/``), checked against its fingerprint, in eval mode."""
        folder = existing_dir(self.path / "model")
        if folder is None:
            raise RunError(f"{self.path}: no model/ folder; is this a run folder written by train?")
        if not (folder / "config.json").is_file():
            raise RunError(
                f"{folder / 'config.json'} is missing: the model's shape is unknown; "
                "restore the file or train the run again"
            )
        self._check_fingerprint(folder)
        try:
            model = PromptBart.from_pretrained(folder)
        except Exception as error:  # safetensors/transformers raise many kinds
            raise RunError(f"{folder}: cannot load the model weights ({error})") from None
        if model.config.vocab_size != len(self.vocabulary):
            raise RunError(
                f"{self.path / 'vocab.json'} has {len(self.vocabulary)} tokens but the model "
                f"was trained with {model.config.vocab_size}"
            )
        model.vocabulary = self.vocabulary
        return model.eval()

    def _check_fingerprint(self, folder: Path) -> None:
        """Compare the model files and the vocabulary with the sha256 saved beside them
        (runs written before fingerprints existed are not checked)."""
        path = folder / FINGERPRINT
        if not path.is_file():
            return
        saved = json.loads(path.read_text(encoding="utf-8"))
        for name, digest in saved["files"].items():
            if not (folder / name).is_file():
                raise RunError(f"{folder / name} is missing (listed in {path})")
            if _file_sha256(folder / name) != digest:
                raise RunError(
                    f"{folder / name} is damaged or truncated: its sha256 differs from the one "
                    "saved with the model; restore it or train the run again"
                )
        if vocabulary_fingerprint(self.vocabulary) != saved["vocabulary_sha256"]:
            raise RunError(
                f"{self.path / 'vocab.json'} is not the vocabulary the model was trained with "
                f"(fingerprint differs from {path}); restore the run's vocab.json"
            )

    def parts(self) -> tuple[PromptBart, Vocabulary, AgeNormalizer, TrainConfig]:
        """``(model, vocabulary, normalizer, config)``, the tuple :func:`load_run` returns."""
        return self.model, self.vocabulary, self.normalizer, self.config

    def log(self, which: LogName = "train") -> pd.DataFrame:
        """``logs/train.jsonl`` or ``logs/epochs.jsonl`` as a table; nested fields become
        columns such as ``terms.sex.share``."""
        if which not in LOGS:
            raise ValueError(f"which must be one of {LOGS}, got {which!r}")
        lines = self.file(f"logs/{which}.jsonl").read_text(encoding="utf-8").splitlines()
        return pd.json_normalize([json.loads(line) for line in lines if line.strip()])

    @property
    def distributed(self) -> dict[str, Any]:
        """``logs/distributed.json``: each process's share of the data and final weights."""
        return json.loads(self.file("logs/distributed.json").read_text(encoding="utf-8"))

    @cached_property
    def split_ids(self) -> dict[str, list[int]]:
        """Subject ids of the train, val and test splits."""
        splits = json.loads(self.file("splits.json").read_text(encoding="utf-8"))
        return {name: list(splits[name]) for name in SPLITS}

    def split(self, cohort: Cohort, which: SplitName) -> Cohort:
        """The patients of ``cohort`` in split ``which``, exactly as the run split them."""
        if which not in SPLITS:
            raise ValueError(f"which must be one of {SPLITS}, got {which!r}")
        return cohort.subset(self.split_ids[which])

    def splits(self, cohort: Cohort) -> dict[str, Cohort]:
        return {name: self.split(cohort, name) for name in SPLITS}

    @property
    def train_demographics(self) -> pd.DataFrame:
        """``age``/``sex`` (and outcome prompt labels) of the training patients: what
        ``generate`` samples by default."""
        return pd.read_csv(self.file("train_demographics.csv"))

    def visit_gaps(self) -> np.ndarray | None:
        """Years between consecutive visits of the training patients (``train_visit_gaps.csv``),
        what generation draws a synthetic patient's gaps from; None for a run written before
        the file existed (its generated visits then all carry the prompt age)."""
        path = self.path / VISIT_GAPS
        if not path.is_file():
            return None
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or lines[0].strip() != "gap_years":
            raise RunError(f"{path}: expected the header gap_years, got {lines[:1]}")
        gaps = []
        for number, line in enumerate(lines[1:], start=2):
            try:
                gap = float(line)
            except ValueError:
                gap = None
            if gap is None or not (np.isfinite(gap) and gap >= 0):
                raise RunError(
                    f"{path}, line {number}: expected a number of years >= 0, got {line!r}"
                )
            gaps.append(gap)
        return np.asarray(gaps, dtype=np.float64)


def load_run(run_dir: str | os.PathLike) -> tuple[PromptBart, Vocabulary, AgeNormalizer, Any]:
    """``(model, vocabulary, normalizer, config)`` of a finished (or interrupted) run."""
    return Run.load(run_dir).parts()


def read_run_log(run_dir: str | os.PathLike, which: LogName = "train") -> pd.DataFrame:
    """``Run(run_dir).log(which)``."""
    return Run(Path(run_dir)).log(which)


# ------------------------------------------------------------------------------- writing
def write_run_files(
    run_dir: Path,
    config: TrainConfig,
    vocabulary: Vocabulary,
    normalizer: AgeNormalizer,
    splits: dict[str, Cohort],
) -> None:
    """Everything of a run but the model and the logs, each file written atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", config.to_yaml())
    vocabulary.save(run_dir / "vocab.json")
    atomic_write_text(run_dir / "normalizer.json", json.dumps(normalizer.to_dict(), indent=1))
    ids = {name: [p.subject_id for p in splits[name]] for name in SPLITS}
    atomic_write_text(run_dir / "splits.json", json.dumps(ids))
    # with the outcome prompts' labels: `generate` samples whole rows, so the labels it
    # requests keep their joint distribution with age and sex
    train = splits["train"]
    columns = list(config.outcome_prompts)
    labels = cohort_prompt_labels(train, columns, [p.subject_id for p in train]).tolist()
    rows = "".join(
        ",".join([repr(p.age), p.sex, *map(str, row)]) + "\n"
        for p, row in zip(train, labels, strict=True)
    )
    header = ",".join(["age", "sex", *columns]) + "\n"
    atomic_write_text(run_dir / "train_demographics.csv", header + rows)
    # what generation draws visit gaps from (the model writes no time)
    gaps = "".join(f"{gap!r}\n" for gap in cohort_visit_gaps(train).tolist())
    atomic_write_text(run_dir / VISIT_GAPS, "gap_years\n" + gaps)


def save_model(model: PromptBart, run_dir: Path, vocabulary: Vocabulary) -> None:
    """``save_pretrained`` into a new folder with its fingerprint, then swap it in."""
    final = run_dir / "model"
    temp = new_temp_dir(final)
    try:
        model.save_pretrained(temp)  # PromptBart hides transformers' bars
        files = {p.name: _file_sha256(p) for p in sorted(temp.iterdir()) if p.is_file()}
        fingerprint = {"vocabulary_sha256": vocabulary_fingerprint(vocabulary), "files": files}
        atomic_write_text(temp / FINGERPRINT, json.dumps(fingerprint, indent=1))
        replace_dir(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def append_log(run_dir: Path, which: LogName, record: dict[str, Any]) -> None:
    path = run_dir / "logs" / f"{which}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


# ------------------------------------------------------------------ safe run folders
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class RunWriter:
    """Where ``train`` writes, holding the folder's lock.

    ``path`` is the run folder itself, or, when ``overwrite`` replaces a non-empty one,
    ``.<name>.staging`` beside it; :meth:`finish` swaps that in, :meth:`abandon` deletes it.
    The lock file ``.<name>.lock`` (beside the folder) holds the writer's host and pid; a lock
    whose process is gone (same host) is stale and taken over.
    """

    def __init__(self, final: Path, *, resume: bool, overwrite: bool):
        self.final = Path(final)
        self.lock = self.final.parent / f".{self.final.name}.lock"
        if self.final.exists() and not self.final.is_dir():
            raise RunError(f"--out {self.final} is a file; expected a run folder")
        replacing = not resume and self.final.is_dir() and any(self.final.iterdir())
        if replacing and not overwrite:
            raise ResumeError(
                f"{self.final} exists and is not empty: pass resume=True (--resume) to continue "
                "it or overwrite=True (--overwrite) to replace it"
            )
        staging = self.final.parent / f".{self.final.name}.staging"
        self.path = staging if replacing else self.final
        if resume and existing_dir(self.final / "checkpoints" / "last") is None:
            raise ResumeError(f"{self.final}: no checkpoints/last/ to resume from")

    def acquire(self) -> None:
        """Take the lock (main process only); :class:`RunError` if a live process holds it."""
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                handle = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self._owner()
                if owner.get("host") == me["host"] and not _pid_alive(int(owner.get("pid", -1))):
                    self.lock.unlink(missing_ok=True)  # stale: its process was killed
                    continue
                raise RunError(
                    f"{self.final} is being written by process {owner.get('pid')} on "
                    f"{owner.get('host')} (lock {self.lock}); wait for it to finish, or delete "
                    "the lock file if that process is gone"
                ) from None
            with os.fdopen(handle, "w") as out:
                json.dump(me, out)
            break
        if self.path != self.final and self.path.exists():
            shutil.rmtree(self.path)  # left by an earlier failed overwrite

    def _owner(self) -> dict[str, Any]:
        try:
            return json.loads(self.lock.read_text())
        except (OSError, ValueError):
            return {}

    def finish(self) -> None:
        if self.path != self.final and self.path.exists():
            replace_dir(self.path, self.final)
        self.release()

    def abandon(self) -> None:
        if self.path != self.final:
            shutil.rmtree(self.path, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self._owner().get("pid") == os.getpid():
            self.lock.unlink(missing_ok=True)
