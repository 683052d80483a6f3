"""What the training loop is built from (lesson 03): data, model, optimiser, schedule, batch
order, restored from a checkpoint when resuming, bundled in one :class:`Loop`.

:func:`course_lib.training.train` calls :func:`setup` once, then runs its loop on the
returned :class:`Loop`; :func:`write_distributed_evidence` records, after a run on several
processes, that every rank saw its own share of the data and ended with the same weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from transformers import get_scheduler

from course_lib import checkpoint, losses
from course_lib.checkpoint import LoopState
from course_lib.cli import format_notes
from course_lib.cohort import Cohort
from course_lib.config import RESUME_MUTABLE, TrainConfig, TrainConfigError, make_loss_weighting
from course_lib.dataset import (
    AgeNormalizer,
    PatientCollator,
    PatientDataset,
    ResumableBatches,
    split_cohort,
)
from course_lib.files import atomic_write_text
from course_lib.mimic import load_mimic
from course_lib.model import PromptBart, build_model
from course_lib.presets import get_preset
from course_lib.runs import ResumeError, write_run_files
from course_lib.tokens import Vocabulary


@dataclass
class Loop:
    """Everything the loop's small functions share."""

    config: TrainConfig
    run_dir: Path  # where this run writes (a staging folder when overwriting)
    accelerator: Accelerator
    model: torch.nn.Module  # as prepared by Accelerate (DDP-wrapped on several processes)
    unwrapped: PromptBart
    optimizer: torch.optim.Optimizer
    scheduler: Any
    weighting: Any
    collator: PatientCollator
    batches: ResumableBatches
    train_set: PatientDataset
    val_set: PatientDataset
    vocabulary: Vocabulary
    state: LoopState
    total_steps: int
    n_epochs: int
    epoch_sums: torch.Tensor
    diversity_shift: float
    tokens_per_batch: float  # mean scored tokens of a training micro-batch (balance_by_tokens)

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def terms(self) -> list[str]:
        return self.config.terms

    def all_reduce_(self, tensor: torch.Tensor, op: Any = None) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(tensor, op=op or torch.distributed.ReduceOp.SUM)
        return tensor


def resolve_mixed_precision(config: TrainConfig) -> str:
    """``auto``: bf16 on a GPU that supports it, else fp16 on a GPU, none on a CPU."""
    if config.mixed_precision != "auto":
        return config.mixed_precision
    if config.cpu or not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def make_accelerator(config: TrainConfig) -> Accelerator:
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(config), cpu=config.cpu)
    if config.cpu_threads is not None and accelerator.device.type == "cpu":
        # Process-wide. Small models gain little from intra-op threads, and on a busy machine
        # OpenMP threads waiting on each other can make every step many times slower.
        torch.set_num_threads(config.cpu_threads)
    return accelerator


def prepare_data(
    config: TrainConfig, data: Cohort | str | os.PathLike, run_dir: Path, resume: bool, main: bool
) -> tuple[Vocabulary, PatientDataset, PatientDataset]:
    """Split the cohort; build (or, resuming, read) the vocabulary and the normaliser.

    A folder read here has its loader notes (rows skipped and why, the age mapping) printed
    once, by the main process, so that a real download's skipped codes never go unseen."""
    if isinstance(data, Cohort):
        cohort = data
    else:
        cohort = load_mimic(data, unknown_codes=config.unknown_codes)
        if main and cohort.notes:
            print(format_notes(cohort.notes), flush=True)
    parts = split_cohort(cohort, seed=config.seed, fractions=config.split_fractions)
    splits = dict(zip(("train", "val", "test"), parts, strict=True))
    if resume:
        vocabulary = Vocabulary.load(run_dir / "vocab.json")
        normalizer = AgeNormalizer.from_dict(json.loads((run_dir / "normalizer.json").read_text()))
    else:
        vocabulary = Vocabulary.build(
            splits["train"], min_count=config.min_code_count, chapter_tokens=config.chapter_tokens
        )
        normalizer = AgeNormalizer.fit(splits["train"])
        if main:
            write_run_files(run_dir, config, vocabulary, normalizer, splits)
    prompts = config.outcome_prompts  # class counts from the training split; val must fit
    train_set = PatientDataset(splits["train"], vocabulary, normalizer, config.max_length, prompts)
    classes = train_set.outcome_classes
    val_set = PatientDataset(splits["val"], vocabulary, normalizer, config.max_length, classes)
    return vocabulary, train_set, val_set


def build_model_and_weighting(
    config: TrainConfig, vocabulary: Vocabulary, train_set: PatientDataset, device: torch.device
) -> tuple[PromptBart, Any]:
    """The model (the same initial weights on every process) and its loss weighting."""
    set_seed(config.seed)
    loss_weights = {term: config.loss_weights.get(term, 0.0) for term in config.terms[1:]}
    shape = {
        "max_sequence_length": config.max_length,
        "cooccurrence_threshold": config.cooc_threshold,
        "cat_cardinalities": [2, *train_set.outcome_classes.values()],
        "outcome_prompts": list(train_set.outcome_classes),
    }
    model = build_model(
        vocabulary,
        get_preset(config.preset),
        prompt_location=config.prompt_location,
        aux_head=config.aux_head,
        loss_weights=loss_weights,
        normalizer=train_set.normalizer,
        decoder_prompt_add=config.decoder_prompt_add,
        condition_dropout=config.condition_dropout,
        **(shape | config.model),
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
    return model, weighting


def build_optimizer(config: TrainConfig, model: PromptBart, weighting: Any) -> torch.optim.AdamW:
    """AdamW: weight decay on matrices only; the weighting's parameters in their own group."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    weighting_params = [p for p in weighting.parameters() if p.requires_grad]
    if weighting_params:
        lr = config.weighting_lr or config.lr
        groups.append({"params": weighting_params, "weight_decay": 0.0, "lr": lr})
    return torch.optim.AdamW(groups, lr=config.lr)


def setup(
    config: TrainConfig,
    data: Cohort | str | os.PathLike,
    accelerator: Accelerator,
    run_dir: Path,
    resume: bool,
) -> Loop:
    """Data, model, optimiser, schedule and batch order; restored from the checkpoint when
    resuming (RNG states included), so the loop continues exactly where it stopped."""
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    main = accelerator.is_main_process
    vocabulary, train_set, val_set = prepare_data(config, data, run_dir, resume, main)
    model, weighting = build_model_and_weighting(config, vocabulary, train_set, device)
    optimizer = build_optimizer(config, model, weighting)
    lengths = [len(ids) for ids in train_set.sequences]
    batches = ResumableBatches(
        train_set,
        config.batch_size,
        config.seed,
        rank,
        world,
        True,
        lengths if config.group_by_length else None,
    )
    steps_per_epoch = math.ceil(len(batches) / config.accumulation)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    scheduler = get_scheduler(
        config.scheduler,
        optimizer,
        num_warmup_steps=round(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    collator = PatientCollator(objective=config.objective, seed=config.seed + 1000 * rank)
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "weighting": weighting}
    state, source = LoopState(), checkpoint.last_checkpoint(run_dir) if resume else None
    if source is not None:
        checkpoint.load_parts(source, parts, device)
        state, process_states = checkpoint.read_state(source)
        if len(process_states) != world:
            raise ResumeError(
                f"{source}: saved by {len(process_states)} process(es), resumed with {world}"
            )
        checkpoint.set_rng_state(process_states[rank]["rng"])
        collator.rng.bit_generator.state = process_states[rank]["collator"]
        if main:
            checkpoint.truncate_jsonl(run_dir / "logs" / "train.jsonl", state.train_log_lines)
            checkpoint.truncate_jsonl(run_dir / "logs" / "epochs.jsonl", state.epoch_log_lines)
    else:
        set_seed(config.seed + rank)  # dropout differs across processes, as the data does
    prepared, optimizer = accelerator.prepare(model, optimizer)
    if source is not None and accelerator.scaler is not None:
        checkpoint.load_parts(source, {"scaler": accelerator.scaler}, device)
    prepared.train()
    weighting.train()
    sums = state.epoch_sums or [0.0] * len(config.terms)
    return Loop(
        config=config,
        run_dir=run_dir,
        accelerator=accelerator,
        model=prepared,
        unwrapped=accelerator.unwrap_model(prepared),
        optimizer=optimizer,
        scheduler=scheduler,
        weighting=weighting,
        collator=collator,
        batches=batches,
        train_set=train_set,
        val_set=val_set,
        vocabulary=vocabulary,
        state=state,
        total_steps=total_steps,
        n_epochs=math.ceil(total_steps / steps_per_epoch),
        epoch_sums=torch.tensor(sums, device=device),
        # diversity = -H(mean code distribution) lies in [-log n_codes, 0]; adding log n_codes
        # makes it KL(mean || uniform) >= 0: the same gradient, and ratio strategies can weigh it.
        diversity_shift=math.log(len(vocabulary.code_ids)),
        # a patient's labels are its ids after <patient>: len - 1 scored tokens
        tokens_per_batch=config.batch_size * (sum(lengths) / len(lengths) - 1),
    )


# ------------------------------------------------------------------------ distributed
def _parameter_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def write_distributed_evidence(loop: Loop) -> None:
    """``logs/distributed.json``: each rank's share of the data and a digest of its final
    parameters (identical on every rank when DDP kept them in step)."""
    train_set, batches = loop.train_set, loop.batches
    evidence = gather_object(
        [
            {
                "rank": loop.accelerator.process_index,
                "batches_per_epoch": len(batches),
                "samples": batches.sampler.num_samples,
                "parameters_sha256": _parameter_digest(loop.unwrapped),
                "epoch0_subject_ids": [
                    train_set.subject_ids[i] for batch in batches.batch_indices(0) for i in batch
                ],
            }
        ]
    )
    if not loop.is_main:
        return
    shards = [set(record.pop("epoch0_subject_ids")) for record in evidence]
    summary = {
        "world_size": loop.world,
        "train_patients": len(train_set),
        "epoch0_patients_covered": len(set().union(*shards)),
        # DistributedSampler pads the last round with repeats: at most world - 1
        "epoch0_patients_on_several_ranks": sum(len(a & b) for a in shards for b in shards)
        - sum(len(a) for a in shards),
        "ranks": evidence,
    }
    atomic_write_text(loop.run_dir / "logs" / "distributed.json", json.dumps(summary, indent=1))


def resolve_inputs(
    config: TrainConfig, data: Cohort | str | os.PathLike | None, stop_after_step: int | None
) -> tuple[TrainConfig, Cohort | str | os.PathLike]:
    """The config with the preset's values filled in, and the data to train on (checked)."""
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
    return config, data


def check_resume_config(run_dir: Path, config: TrainConfig) -> None:
    """A resumed run must continue the same experiment: only RESUME_MUTABLE settings change."""
    saved = TrainConfig.from_yaml(run_dir / "config.yaml").to_dict()
    current = config.to_dict()
    changed = sorted(k for k in current if k not in RESUME_MUTABLE and current[k] != saved.get(k))
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ResumeError(f"{run_dir}: cannot resume with a different configuration ({details})")
