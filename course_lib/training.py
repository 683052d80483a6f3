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

The loss terms (:data:`course_lib.losses.LOSS_TERMS`) are combined by a
:mod:`course_lib.weighting` strategy. The trainer weighs and logs ``diversity`` shifted by
``log(n_codes)``, i.e. ``KL(mean code distribution || uniform) >= 0``: the same gradient as
:func:`course_lib.losses.diversity_loss`, and a term every strategy can weigh. The strategy's
learnable parameters are a second AdamW parameter group without weight decay (learning rate
``weighting_lr``, default ``lr``); under DDP its gradients and state are averaged across
processes after each step, so every rank applies the same weights. Batches are drawn at
random (``group_by_length`` sorts them by length instead: less padding, but a batch of short
records alone teaches the model to end records early; lesson 10). The model projects only the
scored positions onto the vocabulary (``packed_logits``), so padding costs little either way.
Batches hold different numbers of tokens, so the strategy sees each per-position term as the
batch's token sum over a fixed count (:func:`course_lib.losses.balance_by_tokens`): every token
counts once per epoch. The log keeps each batch's per-token means.

The run folder's layout is :mod:`course_lib.runs`'; checkpoints and the exact-resume
guarantee are :mod:`course_lib.checkpoint`'s; settings are :mod:`course_lib.config`'s.
What happens at the end of each epoch beyond validation (the sample check of
:mod:`course_lib.sample_check`) comes in as ``callbacks``, so this module knows nothing of
generation or evaluation.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast, gather_object
from tqdm import tqdm  # plain text bars: no widget dependency in notebooks

from course_lib import checkpoint, losses
from course_lib.checkpoint import LoopState
from course_lib.cohort import Cohort
from course_lib.config import TrainConfig, TrainConfigError, make_loss_weighting
from course_lib.dataset import (
    PatientCollator,
    PatientDataset,
)
from course_lib.files import atomic_write_text
from course_lib.model import PromptBart
from course_lib.runs import (
    ResumeError,
    RunWriter,
    append_log,
    load_run,
    read_run_log,
    save_model,
)
from course_lib.tokens import Vocabulary
from course_lib.train_setup import (
    Loop,
    check_resume_config,
    make_accelerator,
    resolve_inputs,
    resolve_mixed_precision,
    setup,
    write_distributed_evidence,
)

__all__ = [  # names lessons and callers import from here
    "EpochContext",
    "NonFiniteLossError",
    "ResumeError",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "atomic_write_text",
    "load_run",
    "make_loss_weighting",
    "read_run_log",
    "resolve_mixed_precision",
    "train",
]
MODEL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "labels", "x_num", "x_cat")


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss stopped training; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder and the per-epoch history."""

    run_dir: Path
    history: list[dict[str, Any]]
    steps: int
    best_epoch: int | None
    best_val_lm: float | None
    stopped: str  # "completed", "early_stopping", "max_steps", "max_minutes" or "interrupted"


@dataclass
class EpochContext:
    """What an end-of-epoch callback sees (main process only, model in train mode)."""

    model: PromptBart
    vocabulary: Vocabulary
    train_set: PatientDataset
    val_set: PatientDataset
    epoch: int
    config: TrainConfig


# A callback returns fields to add to the epoch's record in logs/epochs.jsonl (or None).
EpochCallback = Callable[[EpochContext], Mapping[str, Any] | None]


@dataclass
class _Step:
    """One optimizer step's numbers, averaged over its micro-batches (this process)."""

    raw: torch.Tensor  # one value per term
    total: torch.Tensor
    weights: Mapping[str, float]
    grad_norm: torch.Tensor | None
    lr: float


# ------------------------------------------------------------------------------------ train
def train(
    config: TrainConfig,
    data: Cohort | str | os.PathLike | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after_step: int | None = None,
    callbacks: Sequence[EpochCallback] = (),
) -> TrainResult:
    """Train a PromptBart on ``data`` (a Cohort or a MIMIC-III folder; default ``config.data``).

    The run folder is ``config.out``. ``resume`` continues from ``checkpoints/last``;
    ``overwrite`` replaces a non-empty folder, but only once this run returns; ``stop_after_step``
    saves a checkpoint and returns after that step, as if the job had been stopped.
    ``callbacks`` run at the end of each epoch (e.g. :class:`course_lib.sample_check.SampleCheck`).
    Raises :class:`NonFiniteLossError` on a NaN or infinite loss, naming the term and step.
    """
    config, data = resolve_inputs(config, data, stop_after_step)
    if resume and (Path(config.out) / "config.yaml").exists():
        check_resume_config(Path(config.out), config)
    accelerator = make_accelerator(config)
    writer = RunWriter(Path(config.out), resume=resume, overwrite=overwrite)
    accelerator.wait_for_everyone()  # every process has checked the folder before any writes
    if accelerator.is_main_process:
        writer.acquire()
    try:
        loop = setup(config, data, accelerator, writer.path, resume)
        state = loop.state
        progress = tqdm(
            total=loop.total_steps,
            initial=state.step,
            desc="training",
            unit="step",
            disable=not (config.progress and loop.is_main and sys.stderr.isatty()),
        )
        stopped, started = "completed", time.perf_counter()
        with progress:
            while state.epoch < loop.n_epochs and stopped == "completed":
                micro_batches = iter(
                    loop.batches.loader(
                        state.epoch, state.batch_in_epoch, loop.collator, config.num_workers
                    )
                )
                out_of_time = False
                while state.batch_in_epoch < len(loop.batches) and state.step < loop.total_steps:
                    step = _train_step(loop, micro_batches)
                    progress.update(1)
                    if state.step in (1, loop.total_steps) or state.step % config.log_every == 0:
                        _log_step(loop, step, progress)
                    if _checkpoint_due(config, state, stop_after_step):
                        _save_checkpoint(loop)
                    if stop_after_step is not None and state.step >= stop_after_step:
                        stopped = "interrupted"
                        break
                    if out_of_time := _out_of_time(loop, started):
                        break
                if stopped == "interrupted":
                    break
                record = _end_epoch(loop, callbacks, time.perf_counter() - started)
                if record.get("alarms") and loop.is_main:
                    progress.write(f"epoch {record['epoch']}: " + "; ".join(record["alarms"]))
                stopped = "max_minutes" if out_of_time else _stop_reason(loop)
                if config.epoch_checkpoints:
                    _save_checkpoint(loop)
        if config.keep == "last" and stopped != "interrupted" and loop.is_main:
            save_model(loop.unwrapped, loop.run_dir, loop.vocabulary)
        if loop.world > 1:
            write_distributed_evidence(loop)
        accelerator.wait_for_everyone()
    except BaseException:
        if accelerator.is_main_process:
            writer.abandon()
        raise
    if accelerator.is_main_process:
        writer.finish()
    accelerator.wait_for_everyone()
    return TrainResult(
        run_dir=writer.final,
        history=list(state.history),
        steps=state.step,
        best_epoch=state.best_epoch,
        best_val_lm=state.best_val_lm,
        stopped=stopped,
    )


# --------------------------------------------------------------------------------- step
def _model_inputs(batch: Mapping[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {key: batch[key].to(device, non_blocking=True) for key in MODEL_INPUTS}


def _loss_terms(loop: Loop, output: Any) -> dict[str, torch.Tensor]:
    """The run's terms from the model's output, ``diversity`` shifted to a KL >= 0."""
    found = output.loss_terms
    return {
        term: found[term] + loop.diversity_shift if term == "diversity" else found[term]
        for term in loop.terms
    }


def _train_step(loop: Loop, micro_batches: Iterator) -> _Step:
    """One optimizer step: forward/backward over ``accumulation`` micro-batches (gradients
    synchronised on the last), clipping, the non-finite check, AdamW and the schedule."""
    config, state, accelerator, model = loop.config, loop.state, loop.accelerator, loop.model
    device, extra = accelerator.device, tuple(config.extra_losses)
    group = min(config.accumulation, len(loop.batches) - state.batch_in_epoch)
    group_raw = torch.zeros(len(loop.terms), device=device)
    group_total = torch.zeros((), device=device)
    for index in range(group):
        batch = next(micro_batches)
        with nullcontext() if index == group - 1 else accelerator.no_sync(model):
            output = model(**_model_inputs(batch, device), extra_losses=extra, packed_logits=True)
            raw = _loss_terms(loop, output)
            n_tokens = batch["labels"].ne(-100).sum().item()
            balanced = losses.balance_by_tokens(raw, n_tokens, loop.tokens_per_batch)
            total, weights = loop.weighting(balanced, step=state.step, epoch=state.epoch)
            accelerator.backward(total / group)
        group_raw += torch.stack([raw[term].detach().float() for term in loop.terms]) / group
        group_total += total.detach().float() / group
    grad_norm = None
    if config.grad_clip is not None:
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
    _check_finite(loop, group_raw, group_total, grad_norm)
    lr = loop.optimizer.param_groups[0]["lr"]  # the rate this step uses
    weighting_params = [p for p in loop.weighting.parameters() if p.requires_grad]
    for parameter in weighting_params if loop.world > 1 else ():
        if parameter.grad is not None:
            loop.all_reduce_(parameter.grad).div_(loop.world)
    loop.optimizer.step()
    if not accelerator.optimizer_step_was_skipped:
        loop.scheduler.step()
    loop.optimizer.zero_grad(set_to_none=True)
    if loop.world > 1:  # strategies with per-process state (GradNorm, normalize) agree again
        for buffer in loop.weighting.buffers():
            if buffer.is_floating_point():
                loop.all_reduce_(buffer).div_(loop.world)
    state.step += 1
    state.batch_in_epoch += group
    state.epoch_batches += 1
    loop.epoch_sums += group_raw
    return _Step(group_raw, group_total, weights, grad_norm, lr)


def _check_finite(
    loop: Loop, raw: torch.Tensor, total: torch.Tensor, grad_norm: torch.Tensor | None
) -> None:
    """Raise :class:`NonFiniteLossError` (on every process) when a term, the total or the
    gradient norm is NaN or infinite on any process: naming which, the step and the last
    good checkpoint. Under fp16 an infinite gradient norm is the scaler's business."""
    checks = [raw, total.reshape(1)]
    if grad_norm is not None and loop.accelerator.mixed_precision != "fp16":
        checks.append(grad_norm.detach().float().reshape(1).to(raw.device))
    finite = torch.isfinite(torch.cat(checks)).all().float()
    if bool(loop.all_reduce_(finite, torch.distributed.ReduceOp.MIN if loop.world > 1 else None)):
        return
    values = raw.tolist()
    bad = [term for term, value in zip(loop.terms, values, strict=True) if not math.isfinite(value)]
    if bad:
        what = f"loss term(s) {bad} = {[values[loop.terms.index(t)] for t in bad]}"
    else:
        what = "the weighted total" if not math.isfinite(total.item()) else "the gradient norm"
        what += " (on some process)" if loop.world > 1 else ""
    kept = checkpoint.last_checkpoint(loop.run_dir)
    where = (
        f"The last good checkpoint is {kept} (step {checkpoint.saved_step(kept)})."
        if kept is not None
        else "No checkpoint had been saved yet."
    )
    raise NonFiniteLossError(
        f"non-finite {what} at step {loop.state.step + 1} (epoch {loop.state.epoch}); "
        f"training stopped. {where}"
    )


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


def _log_step(loop: Loop, step: _Step, progress: tqdm) -> None:
    """One line of ``logs/train.jsonl``: the step's terms averaged over the processes."""
    logged = loop.all_reduce_(torch.cat([step.raw, step.total.reshape(1)]).clone()) / loop.world
    values = logged.tolist()
    raw = dict(zip(loop.terms, values[:-1], strict=True))
    state = loop.state
    record = _step_record(state.step, state.epoch, step.lr, values[-1], raw, step.weights)
    if step.grad_norm is not None:
        record["grad_norm"] = float(step.grad_norm)
    if loop.is_main:
        append_log(loop.run_dir, "train", record)
    state.train_log_lines += 1
    progress.set_postfix(lm=f"{raw['lm']:.3f}", total=f"{values[-1]:.3f}")


def _checkpoint_due(config: TrainConfig, state: LoopState, stop_after_step: int | None) -> bool:
    """A mid-epoch checkpoint: every ``checkpoint_every`` steps, and when told to stop."""
    if stop_after_step is not None and state.step >= stop_after_step:
        return True
    return config.checkpoint_every is not None and state.step % config.checkpoint_every == 0


def _save_checkpoint(loop: Loop) -> None:
    loop.state.epoch_sums = loop.epoch_sums.tolist()
    process_states = gather_object(
        [{"rng": checkpoint.rng_state(), "collator": loop.collator.rng.bit_generator.state}]
    )
    if loop.is_main:
        parts = {
            "model": loop.unwrapped,
            "optimizer": loop.optimizer,
            "scheduler": loop.scheduler,
            "weighting": loop.weighting,
            "scaler": loop.accelerator.scaler,
        }
        checkpoint.save_checkpoint(loop.run_dir, parts, loop.state, process_states)
    loop.accelerator.wait_for_everyone()


# -------------------------------------------------------------------------- end of epoch
@torch.no_grad()
def _validate(loop: Loop) -> dict[str, float]:
    """Validation terms over this process's shard, summed over every process; each term
    averaged over what it is a mean of (``LOSS_TERMS[term].per``: tokens or patients)."""
    config, val_set, device = loop.config, loop.val_set, loop.accelerator.device
    if len(val_set) == 0:
        return {}
    loop.unwrapped.eval()
    shard = torch.utils.data.Subset(
        val_set, list(range(loop.accelerator.process_index, len(val_set), loop.world))
    )
    loader = torch.utils.data.DataLoader(
        shard,
        batch_size=config.batch_size,
        collate_fn=PatientCollator(objective=config.objective, seed=config.seed + 1),
        generator=torch.Generator().manual_seed(config.seed),
    )
    per = [losses.LOSS_TERMS[term].per for term in loop.terms]
    sums = torch.zeros(
        len(loop.terms) + 2, dtype=torch.float64, device=device
    )  # + tokens, patients
    for batch in loader:
        inputs = _model_inputs(batch, device)
        output = loop.unwrapped(
            **inputs, extra_losses=tuple(config.extra_losses), packed_logits=True
        )
        counts = {"token": inputs["labels"].ne(-100).sum(), "patient": inputs["labels"].shape[0]}
        values = _loss_terms(loop, output).values()
        sums[:-2] += torch.stack([v.double() * counts[p] for v, p in zip(values, per, strict=True)])
        sums[-2] += counts["token"]
        sums[-1] += counts["patient"]
    loop.all_reduce_(sums)
    loop.unwrapped.train()
    totals = {"token": sums[-2].item(), "patient": sums[-1].item()}
    return {
        term: value / totals[p]
        for term, value, p in zip(loop.terms, sums[:-2].tolist(), per, strict=True)
    }


def _end_epoch(loop: Loop, callbacks: Sequence[EpochCallback], elapsed: float) -> dict[str, Any]:
    """Validation, the callbacks, the best model, ``logs/epochs.jsonl``; the next epoch."""
    state, epoch = loop.state, loop.state.epoch
    partial = state.batch_in_epoch < len(loop.batches)  # max_steps ended it early
    means = loop.all_reduce_(loop.epoch_sums.clone()) / max(loop.world * state.epoch_batches, 1)
    train_means = dict(zip(loop.terms, means.tolist(), strict=True))
    if not partial:
        loop.weighting.end_epoch(epoch, train_means)
    val_terms = _validate(loop)
    val_lm = val_terms.get("lm")
    record: dict[str, Any] = {
        "epoch": epoch,
        "step": state.step,
        "partial": partial,
        "train_terms": train_means,
        "val_lm": val_lm,
        "val_terms": val_terms,
        "elapsed_s": elapsed,
    }
    if loop.is_main:
        context = EpochContext(
            loop.unwrapped, loop.vocabulary, loop.train_set, loop.val_set, epoch, loop.config
        )
        for callback in callbacks:
            record.update(callback(context) or {})
    improved = (
        val_lm is None
        or state.best_val_lm is None
        or val_lm < state.best_val_lm - loop.config.min_delta
    )
    if improved:
        state.best_val_lm, state.best_epoch, state.bad_epochs = val_lm, epoch, 0
        if loop.is_main and loop.config.keep == "best":
            save_model(loop.unwrapped, loop.run_dir, loop.vocabulary)
        loop.accelerator.wait_for_everyone()
    else:
        state.bad_epochs += 1
    record["best"] = improved
    state.history.append(record)
    if loop.is_main:
        append_log(loop.run_dir, "epochs", record)
    state.epoch_log_lines += 1
    state.epoch, state.batch_in_epoch, state.epoch_batches = epoch + 1, 0, 0
    loop.epoch_sums.zero_()
    return record


def _out_of_time(loop: Loop, started: float) -> bool:
    """``max_minutes`` spent; rank 0's clock decides, so every process stops at the same step."""
    if loop.config.max_minutes is None:
        return False
    spent = time.perf_counter() - started >= 60 * loop.config.max_minutes
    if loop.world == 1:
        return spent
    return bool(broadcast(torch.tensor([float(spent)], device=loop.accelerator.device))[0])


def _stop_reason(loop: Loop) -> str:
    config, state = loop.config, loop.state
    if config.patience is not None and state.bad_epochs >= config.patience:
        return "early_stopping"
    if state.step >= loop.total_steps and config.max_steps is not None:
        return "max_steps"
    return "completed"
