"""The training loop: one loop for a CPU, a GPU and several GPUs or nodes (lesson 03).

``train(config, data)`` splits the cohort by patient, builds the vocabulary and the age
normaliser on the training split, builds a :class:`~course_lib.model.PromptBart` and trains it
with AdamW, a linear warm-up then linear (or cosine) decay, gradient clipping and gradient
accumulation. Hugging Face Accelerate places tensors on the device, turns on mixed precision
(``mixed_precision="auto"``: bf16 on GPUs that support it, else fp16 with a gradient scaler,
none on a CPU) and wraps the model in DDP when the script runs under ``torchrun`` or
``accelerate launch --multi_gpu`` (several CPU processes: ``torchrun``; see
``scripts/train_ddp_cpu.sh``); the loop itself is the same everywhere. Each process trains on
its own shard of every epoch; only the main process writes files.

The loss terms (``lm``, ``age``, ``sex`` and the optional ``cooc``/``diversity``) are combined
by a :mod:`course_lib.weighting` strategy. The trainer weighs and logs ``diversity`` shifted by
``log(n_codes)``, i.e. ``KL(mean code distribution || uniform) >= 0``: the same gradient as
:func:`course_lib.losses.diversity_loss`, and a term that every strategy can weigh. Its learnable parameters (the log-variances of
``uncertainty``) are a second AdamW parameter group, without weight decay, whose learning rate
(``weighting_lr``, default ``lr``) follows the same schedule; GradNorm updates its own weights
inside ``forward`` from the gradients on ``model.last_shared_layer()``. Under DDP the strategy's
gradients and state are averaged across processes after each step, so every rank applies the
same weights.

A run folder holds::

    config.yaml              the resolved configuration (every field, presets filled in)
    vocab.json normalizer.json splits.json train_demographics.csv
    model/                   save_pretrained of the best model (lowest validation LM loss)
    checkpoints/last/        everything --resume needs (model, optimiser, scheduler, weighting,
                             RNG states, data order, step); replaced atomically
    logs/train.jsonl         one JSON object per logged step: every term raw/weight/weighted/share
    logs/epochs.jsonl        one per epoch: validation terms, sampled unique codes, alarms

Resuming is exact: a run stopped at step k and resumed logs the same losses as an
uninterrupted one (on the same machine, ``num_workers=0``), because the data order of an epoch
is a function of ``(seed, epoch)`` (``DistributedSampler``), the position in the epoch is saved,
and every random state (python, numpy, torch, the collator's generator) is restored.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from course_lib.cohort import Cohort
from course_lib.presets import get_preset

TERMS = ("lm", "age", "sex")
EXTRA_LOSSES = ("cooc", "diversity")
OBJECTIVES = ("generate", "infill")
PROMPT_LOCATIONS = ("encoder", "decoder", "both", "none")
AUX_HEADS = ("mlp", "linear")
SCHEDULERS = ("linear", "cosine", "constant_with_warmup")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
WEIGHTINGS = ("static", "scheduled", "uncertainty", "dwa", "gradnorm", "normalize")
# Fields a resumed run may change: they do not alter what is computed.
RESUME_MUTABLE = frozenset({"data", "out", "progress", "num_workers", "cpu_threads"})


class TrainConfigError(ValueError):
    """A configuration value (YAML key, CLI flag or argument) that training cannot use."""


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss stopped training; the last good checkpoint is kept."""


class ResumeError(ValueError):
    """``--resume`` on a run folder that cannot be resumed with this configuration."""


# ---------------------------------------------------------------------------- configuration
@dataclass
class TrainConfig:
    """Everything one training run depends on; saved as ``config.yaml`` in the run folder.

    ``None`` for ``epochs``, ``batch_size``, ``lr`` and ``max_length`` means "the preset's"
    (``max_length`` is the preset's and the model's ``max_sequence_length``: tokens per patient).
    ``max_steps``, when set, overrides ``epochs`` (as in ``transformers``). ``model`` holds
    overrides of the preset's BART shape (``d_model``, ``encoder_layers``, ``dropout``...).
    """

    data: str | None = None
    out: str = "runs/train"
    preset: str = "tiny"
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    scheduler: str = "linear"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    accumulation: int = 1
    seed: int = 0
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    objective: str = "generate"
    prompt_location: str = "both"
    aux_head: str = "mlp"
    loss_weights: dict[str, float] = field(default_factory=lambda: {"age": 0.001, "sex": 0.001})
    weighting: str = "static"
    weighting_options: dict[str, Any] = field(default_factory=dict)
    weighting_lr: float | None = None
    extra_losses: list[str] = field(default_factory=list)
    cooc_threshold: float = 5.0
    patience: int | None = 3
    min_delta: float = 0.0
    sample_every_epoch: int = 64
    sample_max_new_tokens: int = 64
    collapse_ratio: float = 0.5
    mixed_precision: str = "auto"
    cpu: bool = False
    log_every: int = 10
    checkpoint_every: int | None = None
    max_length: int | None = None
    min_code_count: int = 1
    chapter_tokens: bool = False
    model: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 0
    cpu_threads: int | None = None
    progress: bool = True

    # --- building ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """A config from a mapping; unknown keys are an error naming them and ``source``."""
        if not isinstance(values, Mapping):
            raise TrainConfigError(
                f"{source}: expected a mapping of settings, got {type(values).__name__}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TrainConfigError(
                f"{source}: unknown setting(s) {unknown}; known settings: {sorted(names)}"
            )
        return cls(**dict(values))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TrainConfigError(f"{path}: no such config file") from None
        except yaml.YAMLError as error:
            raise TrainConfigError(f"{path}: not valid YAML ({error})") from None
        return cls.from_dict(values or {}, source=str(path))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def terms(self) -> list[str]:
        """The loss terms of this run, in logging order."""
        return [*TERMS, *self.extra_losses]

    def resolved(self) -> TrainConfig:
        """A validated copy with the preset's values filled in for every ``None`` that has one."""
        self.validate()
        preset = get_preset(self.preset)
        return self.replace(
            epochs=self.epochs if self.epochs is not None else preset.epochs,
            batch_size=self.batch_size if self.batch_size is not None else preset.batch_size,
            lr=self.lr if self.lr is not None else preset.learning_rate,
            max_length=self.max_length
            if self.max_length is not None
            else preset.max_sequence_length,
            split_fractions=[float(f) for f in self.split_fractions],
            loss_weights={k: float(v) for k, v in self.loss_weights.items()},
            extra_losses=list(self.extra_losses),
        )

    def validate(self) -> None:
        """Raise :class:`TrainConfigError` naming the first bad setting; does no work."""

        def fail(name: str, expected: str) -> None:
            raise TrainConfigError(f"setting {name}={getattr(self, name)!r}: expected {expected}")

        def check_int(name: str, minimum: int, optional: bool = False) -> None:
            value = getattr(self, name)
            if value is None and optional:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                fail(name, f"an integer >= {minimum}" + (" or null" if optional else ""))

        def check_float(name: str, low: float, high: float = math.inf, optional=False) -> None:
            value = getattr(self, name)
            if value is None and optional:
                return
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not low <= value <= high
            ):
                fail(name, f"a number in [{low}, {high}]" + (" or null" if optional else ""))

        def check_choice(name: str, choices: Sequence[str]) -> None:
            if getattr(self, name) not in choices:
                fail(name, f"one of {list(choices)}")

        try:
            get_preset(self.preset)
        except ValueError as error:
            raise TrainConfigError(f"setting preset: {error}") from None
        if self.data is not None and not isinstance(self.data, str | os.PathLike):
            fail("data", "a folder path")
        if not isinstance(self.out, str | os.PathLike) or not str(self.out):
            fail("out", "a folder path")
        check_int("epochs", 1, optional=True)
        check_int("max_steps", 1, optional=True)
        check_int("batch_size", 1, optional=True)
        check_float("lr", 0.0, optional=True)
        if self.lr is not None and self.lr <= 0:
            fail("lr", "a number > 0")
        check_choice("scheduler", SCHEDULERS)
        check_float("warmup_ratio", 0.0, 1.0)
        check_float("weight_decay", 0.0)
        check_float("grad_clip", 0.0, optional=True)
        check_int("accumulation", 1)
        check_int("seed", 0)
        fractions = self.split_fractions
        if (
            not isinstance(fractions, list | tuple)
            or len(fractions) != 3
            or not all(isinstance(f, int | float) and f >= 0 for f in fractions)
            or not math.isclose(sum(fractions), 1.0)
            or fractions[0] <= 0
        ):
            fail("split_fractions", "three numbers >= 0 summing to 1 (train, val, test), train > 0")
        check_choice("objective", OBJECTIVES)
        check_choice("prompt_location", PROMPT_LOCATIONS)
        check_choice("aux_head", AUX_HEADS)
        if not isinstance(self.loss_weights, Mapping):
            fail("loss_weights", "a mapping such as {age: 0.001, sex: 0.001}")
        for name, value in self.loss_weights.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise TrainConfigError(
                    f"setting loss_weights: weight of {name!r} is {value!r}; expected a number >= 0"
                )
        if not isinstance(self.extra_losses, list | tuple) or any(
            e not in EXTRA_LOSSES for e in self.extra_losses
        ):
            fail("extra_losses", f"a list drawn from {list(EXTRA_LOSSES)}")
        if len(set(self.extra_losses)) != len(self.extra_losses):
            fail("extra_losses", "each extra loss at most once")
        stray = [name for name in self.loss_weights if name not in self.terms]
        if stray:
            raise TrainConfigError(
                f"setting loss_weights: {stray} is not a loss term of this run; terms: {self.terms}"
                " (add cooc/diversity to extra_losses to use them)"
            )
        check_choice("weighting", WEIGHTINGS)
        if not isinstance(self.weighting_options, Mapping):
            fail("weighting_options", "a mapping of option -> value")
        check_float("weighting_lr", 0.0, optional=True)
        check_float("cooc_threshold", 0.0)
        check_int("patience", 1, optional=True)
        check_float("min_delta", 0.0)
        check_int("sample_every_epoch", 0)
        check_int("sample_max_new_tokens", 1)
        check_float("collapse_ratio", 0.0, 1.0)
        check_choice("mixed_precision", MIXED_PRECISION)
        check_int("log_every", 1)
        check_int("checkpoint_every", 1, optional=True)
        check_int("max_length", 5, optional=True)
        check_int("min_code_count", 1)
        check_int("num_workers", 0)
        check_int("cpu_threads", 1, optional=True)
        for name in ("cpu", "chapter_tokens", "progress"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "true or false")
        if not isinstance(self.model, Mapping):
            fail("model", "a mapping of BART shape overrides, e.g. {d_model: 64}")
        try:
            make_loss_weighting(self)
        except (TypeError, ValueError) as error:
            raise TrainConfigError(f"setting weighting={self.weighting!r}: {error}") from None


def _schedules_from_options(config: TrainConfig) -> dict[str, Any]:
    """``scheduled`` strategy: every term but ``lm`` gets ``Constant(loss_weights[term])``
    unless ``weighting_options.schedules`` names a schedule for it, as a number or a mapping
    ``{type: linear_warmup|off_after_epoch|off_below_threshold|constant, w: ..., ...}``."""
    from course_lib import weighting

    kinds = {
        "constant": weighting.Constant,
        "linear_warmup": weighting.LinearWarmup,
        "off_after_epoch": weighting.OffAfterEpoch,
        "off_below_threshold": weighting.OffBelowThreshold,
    }
    given = dict(config.weighting_options.get("schedules", {}) or {})
    schedules: dict[str, Any] = {}
    for term in config.terms:
        if term == "lm" and term not in given:
            continue
        spec = given.pop(term, config.loss_weights.get(term))
        if spec is None:
            raise ValueError(f"no weight or schedule for the {term!r} loss")
        if isinstance(spec, Mapping):
            spec = dict(spec)
            kind = spec.pop("type", "constant")
            if kind not in kinds:
                raise ValueError(
                    f"schedule type {kind!r} for {term!r}; choose one of {sorted(kinds)}"
                )
            schedules[term] = kinds[kind](**spec)
        else:
            schedules[term] = weighting.Constant(float(spec))
    if given:
        raise ValueError(f"schedules for unknown term(s) {sorted(given)}; terms: {config.terms}")
    return schedules


def make_loss_weighting(config: TrainConfig):
    """The :class:`~course_lib.weighting.LossWeighting` the config asks for.

    ``static`` uses ``loss_weights`` (every term but ``lm`` needs one); ``scheduled`` uses
    ``loss_weights`` as constants unless a schedule is given; ``normalize`` uses them as base
    weights when no ``weights`` option is given; the others ignore ``loss_weights``.
    """
    from course_lib.weighting import make_weighting

    options = dict(config.weighting_options)
    if config.weighting == "static":
        options.setdefault("weights", dict(config.loss_weights))
    elif config.weighting == "scheduled":
        options["schedules"] = _schedules_from_options(config)
    return make_weighting(config.weighting, config.terms, **options)


# ------------------------------------------------------------------------------ run folder
@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder and the per-epoch history."""

    run_dir: Path
    history: list[dict[str, Any]]
    steps: int
    best_epoch: int | None
    best_val_lm: float | None
    stopped: str  # "completed", "early_stopping", "max_steps" or "interrupted"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def replace_dir(filled: Path, final: Path) -> None:
    """Move the complete folder ``filled`` to ``final``, replacing an older one.

    ``os.replace`` cannot overwrite a non-empty folder, so the old one is first renamed to
    ``.<name>.old``: at every moment a complete copy exists under one of the two names
    (:func:`_existing_dir` finds it).
    """
    old = final.parent / f".{final.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(filled, final)
    if old.exists():
        shutil.rmtree(old)


def _existing_dir(final: Path) -> Path | None:
    if final.is_dir():
        return final
    old = final.parent / f".{final.name}.old"
    return old if old.is_dir() else None


def _new_temp_dir(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))


def load_run(run_dir: str | os.PathLike):
    """``(model, vocabulary, normalizer, config)`` of a finished (or interrupted) run.

    The model is the best one (``model/``), in eval mode, on the CPU.
    """
    from course_lib.dataset import AgeNormalizer
    from course_lib.model import PromptBart
    from course_lib.tokens import Vocabulary

    run_dir = Path(run_dir)
    model_dir = _existing_dir(run_dir / "model")
    if model_dir is None:
        raise FileNotFoundError(
            f"{run_dir}: no model/ folder; is this a run folder written by train?"
        )
    config = TrainConfig.from_yaml(run_dir / "config.yaml")
    vocabulary = Vocabulary.load(run_dir / "vocab.json")
    normalizer = AgeNormalizer.from_dict(json.loads((run_dir / "normalizer.json").read_text()))
    model = PromptBart.from_pretrained(model_dir)
    model.vocabulary = vocabulary
    model.eval()
    return model, vocabulary, normalizer, config


def read_run_log(run_dir: str | os.PathLike, which: str = "train") -> pd.DataFrame:
    """``logs/train.jsonl`` (``which="train"``) or ``logs/epochs.jsonl`` (``"epochs"``) of a
    run as a table; nested fields become columns such as ``terms.sex.share``."""
    if which not in ("train", "epochs"):
        raise ValueError(f"which must be 'train' or 'epochs', got {which!r}")
    path = Path(run_dir) / "logs" / f"{which}.jsonl"
    return pd.json_normalize([json.loads(line) for line in path.read_text().splitlines()])


# ------------------------------------------------------------------------------ data order
class ResumableBatches:
    """Micro-batches of one process for one epoch, startable at any position.

    The order is ``DistributedSampler``'s: a permutation seeded by ``seed + epoch``, padded
    to a multiple of the number of processes, every process taking every ``world``-th index.
    So the order depends only on ``(seed, epoch)``, and a resumed run skips the batches it has
    done without drawing a random number or collating anything.

    With ``lengths``, batches group patients of similar length (the shuffled order is cut into
    windows of ``GROUP_BATCHES`` batches, each sorted by length, and the batches are shuffled
    again): far less padding, the same patients per epoch, still a function of the seed.
    """

    GROUP_BATCHES = 16

    def __init__(
        self,
        dataset,
        batch_size: int,
        seed: int,
        rank: int,
        world: int,
        shuffle: bool,
        lengths: Sequence[int] | None = None,
    ):
        from torch.utils.data import DistributedSampler

        self.dataset = dataset
        self.batch_size = batch_size
        self.lengths = lengths
        self.sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )

    def batch_indices(self, epoch: int) -> list[list[int]]:
        self.sampler.set_epoch(epoch)
        indices = list(self.sampler)
        if self.lengths is not None:
            window = self.batch_size * self.GROUP_BATCHES
            indices = [
                index
                for start in range(0, len(indices), window)
                for index in sorted(indices[start : start + window], key=self.lengths.__getitem__)
            ]
        batches = [
            indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)
        ]
        if self.lengths is not None:
            order = torch.randperm(
                len(batches), generator=torch.Generator().manual_seed(self.sampler.seed + epoch)
            )
            batches = [batches[i] for i in order.tolist()]
        return batches

    def __len__(self) -> int:
        return math.ceil(self.sampler.num_samples / self.batch_size)

    def loader(self, epoch: int, start: int, collator, num_workers: int):
        from torch.utils.data import DataLoader

        batches = self.batch_indices(epoch)[start:]
        # Its own generator: a DataLoader otherwise draws its workers' base seed from the
        # global RNG when iterated, so a resumed run would shift every later dropout mask.
        generator = torch.Generator().manual_seed(self.sampler.seed + epoch)
        return DataLoader(
            self.dataset,
            batch_sampler=batches,
            collate_fn=collator,
            num_workers=num_workers,
            generator=generator,
        )


MODEL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "labels", "x_num", "x_cat")


def _model_inputs(batch: Mapping[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {key: batch[key].to(device, non_blocking=True) for key in MODEL_INPUTS}


# ------------------------------------------------------------------------- mode-collapse check
def _patient_code_sets(vocabulary, sequences: Sequence[Sequence[int]]) -> list[set[str]]:
    return [
        {code for visit in vocabulary.decode(ids) for code in visit if code != "<unk>"}
        for ids in sequences
    ]


def _diversity(code_sets: Sequence[set[str]]) -> tuple[int, str | None, float]:
    """Unique codes, the most common code and its share of patients."""
    counts: dict[str, int] = {}
    for codes in code_sets:
        for code in codes:
            counts[code] = counts.get(code, 0) + 1
    if not counts:
        return 0, None, 0.0
    top = max(sorted(counts), key=counts.__getitem__)
    return len(counts), top, counts[top] / max(len(code_sets), 1)


@torch.no_grad()
def sample_check(
    model, vocabulary, dataset, n: int, max_new_tokens: int, seed: int, collapse_ratio: float = 0.5
) -> dict[str, Any]:
    """Sample ``n`` patients for demographics of ``dataset`` and measure their diversity.

    The same patients' real sequences, cut to the same number of tokens, give the reference:
    an alarm is raised when the sample has fewer than ``collapse_ratio`` times the real unique
    codes, or a top-code share above the real one divided by ``collapse_ratio`` (the notes'
    collapse: 31 unique codes, the top code in 12.5% of patients). The global RNG is left
    untouched, so the check does not change the training that follows. Sampling uses the
    same grammar and no-repeat rules as :func:`course_lib.generation.generate_patients`, so
    the check sees what generation would produce.
    """
    from course_lib.generation import build_processors
    from course_lib.tokens import BOS_ID, EOS_ID, PAD_ID

    n = min(n, len(dataset))
    picked = np.sort(np.random.default_rng(seed).choice(len(dataset), size=n, replace=False))
    x_num = torch.tensor([[dataset.x_num[i]] for i in picked], dtype=torch.float32)
    x_cat = torch.tensor([[dataset.x_cat[i]] for i in picked], dtype=torch.long)
    was_training = model.training
    model.eval()
    device = model.device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        sequences = model.generate(
            x_num=x_num.to(device),
            x_cat=x_cat.to(device),
            do_sample=True,
            top_k=0,
            max_new_tokens=max_new_tokens,
            logits_processor=build_processors(vocabulary, [], []),
            pad_token_id=PAD_ID,
            eos_token_id=EOS_ID,
            decoder_start_token_id=BOS_ID,
        )
    model.train(was_training)
    sampled = _patient_code_sets(vocabulary, sequences.tolist())
    real = _patient_code_sets(
        vocabulary, [dataset.sequences[i][: max_new_tokens + 1] for i in picked]
    )
    unique, top_code, top_share = _diversity(sampled)
    real_unique, real_top_code, real_top_share = _diversity(real)
    alarms = []
    if unique == 0:
        alarms.append("no code sampled")
    elif unique < collapse_ratio * real_unique:
        alarms.append(f"few unique codes: {unique} sampled vs {real_unique} real")
    if top_code is not None and top_share > min(1.0, real_top_share / collapse_ratio):
        alarms.append(
            f"top code {top_code} in {100 * top_share:.1f}% of sampled patients "
            f"vs {100 * real_top_share:.1f}% for the real top code"
        )
    return {
        "sampled_patients": n,
        "sampled_unique_codes": unique,
        "sampled_top_code": top_code,
        "sampled_top_code_share": top_share,
        "sampled_codes_per_patient": float(np.mean([len(s) for s in sampled])) if n else 0.0,
        "real_unique_codes": real_unique,
        "real_top_code": real_top_code,
        "real_top_code_share": real_top_share,
        "alarms": alarms,
    }


# ---------------------------------------------------------------------------------- helpers
def resolve_mixed_precision(config: TrainConfig) -> str:
    if config.mixed_precision != "auto":
        return config.mixed_precision
    if config.cpu or not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _truncate_jsonl(path: Path, keep_lines: int) -> None:
    """Keep the first ``keep_lines`` records (those written before the checkpoint)."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if len(lines) != keep_lines:
        atomic_write_text(path, "".join(lines[:keep_lines]))


def _step_record(
    step: int,
    epoch: int,
    lr: float,
    total: float,
    raw: Mapping[str, float],
    weights: Mapping[str, float],
) -> dict[str, Any]:
    """Every term's raw value, weight, weighted value and share (%) of ``sum |weighted|``."""
    weighted = {term: raw[term] * weights[term] for term in raw}
    magnitude = sum(abs(v) for v in weighted.values())
    terms = {
        term: {
            "raw": raw[term],
            "weight": weights[term],
            "weighted": weighted[term],
            "share": 100.0 * abs(weighted[term]) / magnitude if magnitude > 0 else float("nan"),
        }
        for term in raw
    }
    return {"step": step, "epoch": epoch, "lr": lr, "total": total, "terms": terms}


def _parameter_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _is_tty() -> bool:
    return sys.stderr.isatty()


# ------------------------------------------------------------------------------------ train
@dataclass
class _State:
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


def _load_cohort(data: Cohort | str | os.PathLike) -> Cohort:
    if isinstance(data, Cohort):
        return data
    from course_lib.mimic import load_mimic

    return load_mimic(data)


def _prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        if _existing_dir(run_dir / "checkpoints" / "last") is None:
            raise ResumeError(f"{run_dir}: no checkpoints/last/ to resume from")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise ResumeError(
                f"{run_dir} exists and is not empty: pass resume=True (--resume) to continue it "
                "or overwrite=True (--overwrite) to start again"
            )
        shutil.rmtree(run_dir)


def _check_resume_config(run_dir: Path, config: TrainConfig) -> None:
    saved = TrainConfig.from_yaml(run_dir / "config.yaml").to_dict()
    current = config.to_dict()
    changed = sorted(k for k in current if k not in RESUME_MUTABLE and current[k] != saved.get(k))
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ResumeError(f"{run_dir}: cannot resume with a different configuration ({details})")


def train(
    config: TrainConfig,
    data: Cohort | str | os.PathLike | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after_step: int | None = None,
) -> TrainResult:
    """Train a PromptBart on ``data`` (a Cohort or a MIMIC-III folder; default ``config.data``).

    The run folder is ``config.out``. ``resume`` continues from ``checkpoints/last``;
    ``stop_after_step`` saves a checkpoint and returns after that step, as if the job had
    been stopped (the schedule still runs to the configured end when resumed).
    Raises :class:`NonFiniteLossError` on a NaN or infinite loss, naming the term and step.
    """
    from accelerate import Accelerator
    from accelerate.utils import gather_object, set_seed
    from tqdm import tqdm  # plain text bars: no widget dependency in notebooks
    from transformers import get_scheduler

    from course_lib import losses
    from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset, split_cohort
    from course_lib.model import build_model
    from course_lib.tokens import Vocabulary

    config = config.resolved()
    if data is None:
        if config.data is None:
            raise TrainConfigError("no data: pass a cohort or a folder, or set data in the config")
        data = config.data
    if not isinstance(data, Cohort):
        if not Path(data).is_dir():
            raise TrainConfigError(f"data folder not found: {data}")
        config = config.replace(data=str(data))
    if stop_after_step is not None and stop_after_step < 1:
        raise TrainConfigError(f"stop_after_step must be >= 1, got {stop_after_step}")
    run_dir = Path(config.out)
    if resume and (run_dir / "config.yaml").exists():
        _check_resume_config(run_dir, config)

    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(config), cpu=config.cpu)
    if config.cpu_threads is not None and accelerator.device.type == "cpu":
        # Process-wide. Small models gain little from intra-op threads, and on a busy machine
        # OpenMP threads waiting on each other can make every step many times slower.
        torch.set_num_threads(config.cpu_threads)
    is_main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    device = accelerator.device
    if is_main:
        _prepare_run_dir(run_dir, resume, overwrite)
    accelerator.wait_for_everyone()
    if not is_main and resume and _existing_dir(run_dir / "checkpoints" / "last") is None:
        raise ResumeError(f"{run_dir}: no checkpoints/last/ to resume from")

    # --- data, vocabulary, model ------------------------------------------------------
    cohort = _load_cohort(data)
    train_cohort, val_cohort, test_cohort = split_cohort(
        cohort, seed=config.seed, fractions=config.split_fractions
    )
    if resume:
        vocabulary = Vocabulary.load(run_dir / "vocab.json")
        normalizer = AgeNormalizer.from_dict(json.loads((run_dir / "normalizer.json").read_text()))
    else:
        vocabulary = Vocabulary.build(
            train_cohort, min_count=config.min_code_count, chapter_tokens=config.chapter_tokens
        )
        normalizer = AgeNormalizer.fit(train_cohort)
    train_set = PatientDataset(train_cohort, vocabulary, normalizer, config.max_length)
    val_set = PatientDataset(val_cohort, vocabulary, normalizer, config.max_length)
    if is_main and not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", config.to_yaml())
        vocabulary.save(run_dir / "vocab.json")
        atomic_write_text(run_dir / "normalizer.json", json.dumps(normalizer.to_dict(), indent=1))
        splits = {
            name: [p.subject_id for p in part]
            for name, part in (("train", train_cohort), ("val", val_cohort), ("test", test_cohort))
        }
        atomic_write_text(run_dir / "splits.json", json.dumps(splits))
        demographics = "age,sex\n" + "".join(f"{p.age!r},{p.sex}\n" for p in train_cohort)
        atomic_write_text(run_dir / "train_demographics.csv", demographics)

    set_seed(config.seed)  # the same initial weights on every process
    loss_weights = {term: config.loss_weights.get(term, 0.0) for term in config.terms[1:]}
    model = build_model(
        vocabulary,
        get_preset(config.preset),
        prompt_location=config.prompt_location,
        aux_head=config.aux_head,
        loss_weights=loss_weights,
        **(
            {
                "max_sequence_length": config.max_length,
                "cooccurrence_threshold": config.cooc_threshold,
            }
            | config.model
        ),
    )
    model.to(device)
    if "cooc" in config.extra_losses:
        counts = losses.build_cooccurrence_counts(
            train_set.sequences, len(vocabulary), model.code_mask("cpu")
        )
        model.set_cooccurrence_counts(counts)
    weighting = make_loss_weighting(config).to(device)
    if weighting.needs_shared_parameters:
        weighting.attach(model.last_shared_layer().parameters())

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    weighting_params = [p for p in weighting.parameters() if p.requires_grad]
    if weighting_params:
        groups.append(
            {
                "params": weighting_params,
                "weight_decay": 0.0,
                "lr": config.weighting_lr or config.lr,
            }
        )
    optimizer = torch.optim.AdamW(groups, lr=config.lr)

    batches = ResumableBatches(
        train_set,
        config.batch_size,
        config.seed,
        rank,
        world,
        shuffle=True,
        lengths=[len(ids) for ids in train_set.sequences],
    )
    micro_per_epoch = len(batches)
    steps_per_epoch = math.ceil(micro_per_epoch / config.accumulation)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = get_scheduler(
        config.scheduler,
        optimizer,
        num_warmup_steps=round(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    collator = PatientCollator(objective=config.objective, seed=config.seed + 1000 * rank)

    # --- resume -----------------------------------------------------------------------
    state = _State()
    checkpoint_dir = run_dir / "checkpoints" / "last"
    if resume:
        source = _existing_dir(checkpoint_dir)
        model.load_state_dict(torch.load(source / "model.pt", map_location=device))
        optimizer.load_state_dict(torch.load(source / "optimizer.pt", map_location=device))
        scheduler.load_state_dict(torch.load(source / "scheduler.pt"))
        weighting.load_state_dict(torch.load(source / "weighting.pt", map_location=device))
        state = _State(**json.loads((source / "state.json").read_text()))
        process_states = torch.load(source / "rng.pt", weights_only=False)
        if len(process_states) != world:
            raise ResumeError(
                f"{source}: saved by {len(process_states)} process(es), resumed with {world}"
            )
        _set_rng_state(process_states[rank]["rng"])
        collator.rng.bit_generator.state = process_states[rank]["collator"]
        if is_main:
            _truncate_jsonl(run_dir / "logs" / "train.jsonl", state.train_log_lines)
            _truncate_jsonl(run_dir / "logs" / "epochs.jsonl", state.epoch_log_lines)
    else:
        set_seed(config.seed + rank)  # dropout differs across processes, as the data does

    model, optimizer = accelerator.prepare(model, optimizer)
    if accelerator.scaler is not None and resume and (source / "scaler.pt").exists():
        accelerator.scaler.load_state_dict(torch.load(source / "scaler.pt"))
    unwrapped = accelerator.unwrap_model(model)
    model.train()
    weighting.train()
    terms = config.terms
    extra = tuple(config.extra_losses)
    fp16 = accelerator.mixed_precision == "fp16"
    logs_dir = run_dir / "logs"
    if is_main:
        logs_dir.mkdir(parents=True, exist_ok=True)

    # diversity = -H(mean code distribution) lies in [-log n_codes, 0]; adding log n_codes makes
    # it KL(mean || uniform) >= 0: the same gradient, and ratio strategies can weigh it.
    diversity_shift = math.log(len(vocabulary.code_ids))

    def loss_terms(output) -> dict[str, torch.Tensor]:
        found = output.loss_terms
        return {
            term: found[term] + diversity_shift if term == "diversity" else found[term]
            for term in terms
        }

    def append_log(name: str, record: Mapping[str, Any]) -> None:
        if is_main:
            with open(logs_dir / name, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")

    def all_reduce_(tensor: torch.Tensor, op=None) -> torch.Tensor:
        if world > 1:
            torch.distributed.all_reduce(tensor, op=op or torch.distributed.ReduceOp.SUM)
        return tensor

    def save_checkpoint() -> None:
        state.epoch_sums = epoch_sums.tolist()
        process_states = gather_object(
            [{"rng": _rng_state(), "collator": collator.rng.bit_generator.state}]
        )
        if is_main:
            temp = _new_temp_dir(checkpoint_dir)
            try:
                torch.save(unwrapped.state_dict(), temp / "model.pt")
                torch.save(optimizer.state_dict(), temp / "optimizer.pt")
                torch.save(scheduler.state_dict(), temp / "scheduler.pt")
                torch.save(weighting.state_dict(), temp / "weighting.pt")
                if accelerator.scaler is not None:
                    torch.save(accelerator.scaler.state_dict(), temp / "scaler.pt")
                torch.save(list(process_states), temp / "rng.pt")
                (temp / "state.json").write_text(json.dumps(dataclasses.asdict(state)))
                replace_dir(temp, checkpoint_dir)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
        accelerator.wait_for_everyone()

    def save_best_model() -> None:
        if is_main:
            final = run_dir / "model"
            temp = _new_temp_dir(final)
            try:
                unwrapped.save_pretrained(temp)  # PromptBart hides transformers' bars
                replace_dir(temp, final)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
        accelerator.wait_for_everyone()

    @torch.no_grad()
    def validate() -> dict[str, Any]:
        """Validation terms over this process's shard, summed over every process."""
        if len(val_set) == 0:
            return {}
        unwrapped.eval()
        shard = torch.utils.data.Subset(val_set, list(range(rank, len(val_set), world)))
        loader = torch.utils.data.DataLoader(
            shard,
            batch_size=config.batch_size,
            collate_fn=PatientCollator(objective=config.objective, seed=config.seed + 1),
            generator=torch.Generator().manual_seed(config.seed),
        )
        sums = torch.zeros(
            len(terms) + 2, dtype=torch.float64, device=device
        )  # terms, tokens, patients
        for batch in loader:
            inputs = _model_inputs(batch, device)
            output = unwrapped(**inputs, extra_losses=extra)
            tokens = inputs["labels"].ne(-100).sum()
            patients = inputs["labels"].shape[0]
            # lm (and the per-token extras) are token means, age/sex patient means
            weights = [tokens if term != "age" and term != "sex" else patients for term in terms]
            values = torch.stack(
                [
                    value.double() * w
                    for value, w in zip(loss_terms(output).values(), weights, strict=True)
                ]
            )
            sums[: len(terms)] += values
            sums[len(terms)] += tokens
            sums[len(terms) + 1] += patients
        all_reduce_(sums)
        unwrapped.train()
        tokens, patients = sums[len(terms)].item(), sums[len(terms) + 1].item()
        values = sums[: len(terms)].tolist()
        return {
            term: value / (patients if term in ("age", "sex") else tokens)
            for term, value in zip(terms, values, strict=True)
        }

    progress = tqdm(
        total=total_steps,
        initial=state.step,
        desc="training",
        unit="step",
        disable=not (config.progress and is_main and _is_tty()),
    )
    stopped = "completed"
    epoch_sums = torch.zeros(len(terms), device=device)
    if state.epoch_sums is not None:
        epoch_sums = torch.tensor(state.epoch_sums, device=device)
    started = time.perf_counter()

    while state.epoch < n_epochs and stopped == "completed":
        epoch = state.epoch
        loader = batches.loader(epoch, state.batch_in_epoch, collator, config.num_workers)
        micro_batches: Iterator = iter(loader)
        while state.batch_in_epoch < micro_per_epoch and state.step < total_steps:
            group = min(config.accumulation, micro_per_epoch - state.batch_in_epoch)
            group_raw = torch.zeros(len(terms), device=device)
            group_total = torch.zeros((), device=device)
            for index in range(group):
                batch = next(micro_batches)
                sync = index == group - 1
                with nullcontext() if sync else accelerator.no_sync(model):
                    output = model(**_model_inputs(batch, device), extra_losses=extra)
                    raw = loss_terms(output)
                    total, weights = weighting(raw, step=state.step, epoch=epoch)
                    accelerator.backward(total / group)
                detached = torch.stack([raw[term].detach().float() for term in terms])
                group_raw += detached / group
                group_total += total.detach().float() / group
            grad_norm = None
            if config.grad_clip is not None:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
            checks = [group_raw, group_total.reshape(1)]
            if grad_norm is not None and not fp16:
                checks.append(grad_norm.detach().float().reshape(1).to(device))
            finite = torch.isfinite(torch.cat(checks)).all().float()
            if not bool(all_reduce_(finite, torch.distributed.ReduceOp.MIN if world > 1 else None)):
                values = group_raw.tolist()
                bad = [
                    term
                    for term, value in zip(terms, values, strict=True)
                    if not math.isfinite(value)
                ]
                what = (
                    f"loss term(s) {bad} = {[values[terms.index(t)] for t in bad]}"
                    if bad
                    else (
                        "the weighted total"
                        if not math.isfinite(group_total.item())
                        else "the gradient norm"
                    )
                )
                if world > 1 and not bad:
                    what += " (on some process)"
                kept = _existing_dir(checkpoint_dir)
                progress.close()
                raise NonFiniteLossError(
                    f"non-finite {what} at step {state.step + 1} (epoch {epoch}); training stopped. "
                    + (
                        f"The last good checkpoint is {kept} (step {json.loads((kept / 'state.json').read_text())['step']})."
                        if kept is not None
                        else "No checkpoint had been saved yet."
                    )
                )
            lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
            if weighting_params and world > 1:
                for parameter in weighting_params:
                    if parameter.grad is not None:
                        all_reduce_(parameter.grad).div_(world)
            optimizer.step()
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if world > 1:  # strategies with per-process state (GradNorm, normalize) agree again
                for buffer in weighting.buffers():
                    if buffer.is_floating_point():
                        all_reduce_(buffer).div_(world)

            state.step += 1
            state.batch_in_epoch += group
            state.epoch_batches += 1
            epoch_sums += group_raw
            progress.update(1)
            if state.step == 1 or state.step % config.log_every == 0 or state.step == total_steps:
                logged = all_reduce_(torch.cat([group_raw, group_total.reshape(1)]).clone()) / world
                values = logged.tolist()
                record = _step_record(
                    state.step,
                    epoch,
                    lr,
                    values[-1],
                    dict(zip(terms, values[:-1], strict=True)),
                    weights,
                )
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                append_log("train.jsonl", record)
                state.train_log_lines += 1
                progress.set_postfix(
                    lm=f"{record['terms']['lm']['raw']:.3f}", total=f"{values[-1]:.3f}"
                )
            if _checkpoint_due(config, state, stop_after_step):
                save_checkpoint()
            if stop_after_step is not None and state.step >= stop_after_step:
                stopped = "interrupted"
                break
        if stopped == "interrupted":
            break

        # --- end of epoch (or of max_steps inside it): validation, sampling, early stopping
        partial = state.batch_in_epoch < micro_per_epoch
        epoch_means = (
            all_reduce_(epoch_sums.clone()) / max(world * state.epoch_batches, 1)
        ).tolist()
        train_means = dict(zip(terms, epoch_means, strict=True))
        if not partial:
            weighting.end_epoch(epoch, train_means)
        val_terms = validate()
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": state.step,
            "partial": partial,
            "train_terms": train_means,
            "val_lm": val_terms.get("lm"),
            "val_terms": val_terms,
            "elapsed_s": time.perf_counter() - started,
        }
        if config.sample_every_epoch and is_main:
            check_set = val_set if len(val_set) else train_set
            record.update(
                sample_check(
                    unwrapped,
                    vocabulary,
                    check_set,
                    config.sample_every_epoch,
                    config.sample_max_new_tokens,
                    seed=config.seed + epoch,
                    collapse_ratio=config.collapse_ratio,
                )
            )
        val_lm = val_terms.get("lm")
        if (
            val_lm is None
            or state.best_val_lm is None
            or val_lm < state.best_val_lm - config.min_delta
        ):
            state.best_val_lm, state.best_epoch, state.bad_epochs = val_lm, epoch, 0
            save_best_model()
            record["best"] = True
        else:
            state.bad_epochs += 1
            record["best"] = False
        state.history.append(record)
        append_log("epochs.jsonl", record)
        state.epoch_log_lines += 1
        if is_main and record.get("alarms"):
            progress.write(f"epoch {epoch}: " + "; ".join(record["alarms"]))
        state.epoch += 1
        state.batch_in_epoch = 0
        state.epoch_batches = 0
        epoch_sums.zero_()
        if config.patience is not None and state.bad_epochs >= config.patience:
            stopped = "early_stopping"
        elif state.step >= total_steps and config.max_steps is not None:
            stopped = "max_steps"
        save_checkpoint()
    progress.close()

    if world > 1:
        evidence = gather_object(
            [
                {
                    "rank": rank,
                    "batches_per_epoch": micro_per_epoch,
                    "samples": batches.sampler.num_samples,
                    "parameters_sha256": _parameter_digest(unwrapped),
                    "epoch0_subject_ids": [
                        train_set.subject_ids[i]
                        for batch in batches.batch_indices(0)
                        for i in batch
                    ],
                }
            ]
        )
        if is_main:
            shards = [set(record.pop("epoch0_subject_ids")) for record in evidence]
            summary = {
                "world_size": world,
                "train_patients": len(train_set),
                "epoch0_patients_covered": len(set().union(*shards)),
                # DistributedSampler pads the last round with repeats: at most world - 1
                "epoch0_patients_on_several_ranks": sum(len(a & b) for a in shards for b in shards)
                - sum(len(a) for a in shards),
                "ranks": evidence,
            }
            atomic_write_text(logs_dir / "distributed.json", json.dumps(summary, indent=1))
    accelerator.wait_for_everyone()
    return TrainResult(
        run_dir=run_dir,
        history=list(state.history),
        steps=state.step,
        best_epoch=state.best_epoch,
        best_val_lm=state.best_val_lm,
        stopped=stopped,
    )


def _checkpoint_due(config: TrainConfig, state: _State, stop_after_step: int | None) -> bool:
    """A mid-epoch checkpoint: every ``checkpoint_every`` steps, and when told to stop."""
    if stop_after_step is not None and state.step >= stop_after_step:
        return True
    return config.checkpoint_every is not None and state.step % config.checkpoint_every == 0


# -------------------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``python -m course_lib train``; each overrides ``--config`` and the defaults."""
    add = parser.add_argument
    add("--data", help="MIMIC-III-layout folder of the cohort (PATIENTS.csv, ADMISSIONS.csv, ...)")
    add("--out", help="run folder to write (default runs/train)")
    add("--config", type=Path, help="YAML file of settings (TrainConfig field names)")
    add("--resume", action="store_true", help="continue the run in --out from checkpoints/last")
    add("--overwrite", action="store_true", help="delete a non-empty --out folder first")
    add("--preset", help="model size preset: tiny, small or base")
    add("--epochs", type=int)
    add("--max-steps", type=int, help="optimizer steps; overrides --epochs")
    add("--batch-size", type=int)
    add("--lr", type=float)
    add("--scheduler", choices=SCHEDULERS)
    add("--warmup-ratio", type=float)
    add("--weight-decay", type=float)
    add("--grad-clip", type=float, help="max gradient norm (0 turns clipping off)")
    add("--accumulation", type=int, help="micro-batches per optimizer step")
    add("--seed", type=int)
    add("--objective", choices=OBJECTIVES)
    add("--prompt-location", choices=PROMPT_LOCATIONS)
    add("--aux-head", choices=AUX_HEADS)
    add("--loss-weights", help="e.g. age=0.001,sex=0.001[,cooc=0.05]")
    add("--weighting", help=f"loss weighting strategy: {', '.join(WEIGHTINGS)}")
    add("--weighting-options", help="e.g. temperature=2 or alpha=1.5,lr=0.025 (YAML values)")
    add("--weighting-lr", type=float, help="learning rate of the weighting's parameters")
    add("--extra-losses", help="comma-separated: cooc, diversity")
    add("--cooc-threshold", type=float)
    add("--patience", type=int, help="epochs without a better validation LM loss (0: never stop)")
    add("--sample-every-epoch", type=int, help="patients sampled per epoch for the collapse check")
    add("--sample-max-new-tokens", type=int)
    add("--mixed-precision", choices=MIXED_PRECISION)
    add("--cpu", action="store_true", default=None, help="train on the CPU even if a GPU is there")
    add("--log-every", type=int)
    add("--checkpoint-every", type=int, help="also checkpoint every N steps (default: each epoch)")
    add("--max-length", type=int)
    add("--model-options", help="BART shape overrides, e.g. d_model=64,encoder_layers=1,dropout=0")
    add("--chapter-tokens", action="store_true", default=None, help="add ICD-9 chapter tokens")
    add("--num-workers", type=int)
    add("--cpu-threads", type=int, help="torch intra-op threads on a CPU (1 is often fastest)")
    add("--no-progress", dest="progress", action="store_false", default=None)


def _parse_key_values(text: str, flag: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TrainConfigError(f"{flag} item {item!r}: expected KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value.strip())
    return options


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < the run's config.yaml (with --resume) < --config FILE < explicit flags."""
    from course_lib.weighting import parse_loss_weights

    values: dict[str, Any] = {}
    if args.resume and args.out and (Path(args.out) / "config.yaml").exists():
        values.update(TrainConfig.from_yaml(Path(args.out) / "config.yaml").to_dict())
    if args.config is not None:
        TrainConfig.from_yaml(args.config)  # names unknown keys, bad YAML
        values.update(_yaml_keys(args.config))
    flags = {
        "data": args.data,
        "out": args.out,
        "preset": args.preset,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "scheduler": args.scheduler,
        "warmup_ratio": args.warmup_ratio,
        "weight_decay": args.weight_decay,
        "accumulation": args.accumulation,
        "seed": args.seed,
        "objective": args.objective,
        "prompt_location": args.prompt_location,
        "aux_head": args.aux_head,
        "weighting": args.weighting,
        "weighting_lr": args.weighting_lr,
        "cooc_threshold": args.cooc_threshold,
        "sample_every_epoch": args.sample_every_epoch,
        "sample_max_new_tokens": args.sample_max_new_tokens,
        "mixed_precision": args.mixed_precision,
        "cpu": args.cpu,
        "log_every": args.log_every,
        "checkpoint_every": args.checkpoint_every,
        "max_length": args.max_length,
        "num_workers": args.num_workers,
        "cpu_threads": args.cpu_threads,
        "progress": args.progress,
        "chapter_tokens": args.chapter_tokens,
    }
    values.update({key: value for key, value in flags.items() if value is not None})
    if args.grad_clip is not None:
        values["grad_clip"] = args.grad_clip or None
    if args.patience is not None:
        values["patience"] = args.patience or None
    if args.loss_weights is not None:
        try:
            values["loss_weights"] = parse_loss_weights(args.loss_weights)
        except ValueError as error:
            raise TrainConfigError(f"--loss-weights: {error}") from None
    if args.weighting_options is not None:
        values["weighting_options"] = _parse_key_values(
            args.weighting_options, "--weighting-options"
        )
    if args.model_options is not None:
        values["model"] = _parse_key_values(args.model_options, "--model-options")
    if args.extra_losses is not None:
        values["extra_losses"] = [e.strip() for e in args.extra_losses.split(",") if e.strip()]
    config = TrainConfig.from_dict(values, source="command line")
    config.validate()
    return config


def _yaml_keys(path: Path) -> dict[str, Any]:
    """Only the keys the YAML file sets (so it does not reset the resumed run's other values)."""
    return dict(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})


def run_cli(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        if config.data is None:
            raise TrainConfigError("--data is required (a folder in the MIMIC-III CSV layout)")
        if not Path(config.data).is_dir():
            raise TrainConfigError(f"--data {config.data}: no such folder")
        result = train(config, resume=args.resume, overwrite=args.overwrite)
    except (TrainConfigError, ResumeError) as error:
        print(f"course_lib train: error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"course_lib train: {error}", file=sys.stderr)
        return 1
    from accelerate import PartialState

    if PartialState().is_main_process:
        best = "n/a" if result.best_val_lm is None else f"{result.best_val_lm:.4f}"
        print(
            f"trained {result.steps} steps ({result.stopped}); best validation LM loss {best} "
            f"at epoch {result.best_epoch}; run folder {result.run_dir}"
        )
        distributed = result.run_dir / "logs" / "distributed.json"
        if distributed.exists():
            print(distributed.read_text())
    return 0
