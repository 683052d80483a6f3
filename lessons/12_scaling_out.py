# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 12 · Scaling out
#
# **Objectives.** After this lesson you can say what each preset costs (parameters, memory, time
# per step); explain what mixed precision changes and what Accelerate picks on your hardware; run
# the course's training entry point on several processes, GPUs and nodes with `torchrun`,
# `accelerate launch` and SLURM; use a Colab GPU; and resume a preempted job exactly where it
# stopped.
#
# **Prerequisites.** Lesson 00 (presets) and lesson 03 (training a run: `TrainConfig`, the run
# folder and its logs).
#
# **Estimated time.** 40 minutes.

# %%
# Colab only: install course_lib from the course repository. Written by
# scripts/write_install_cell.py from _config.yml's `repository` (change the fork there).
# Colab's own torch is kept: the install fails, loudly, rather than replace it.
import sys

if "google.colab" in sys.modules:
    import importlib.metadata
    import subprocess
    import tempfile
    from pathlib import Path

    COURSE_PACKAGE = "course_lib @ git+https://github.com/course-ehr/conditional-ehr-course@main"
    keep_torch = Path(tempfile.mkdtemp()) / "keep_torch.txt"
    keep_torch.write_text(f"torch=={importlib.metadata.version('torch')}\n")
    pip = [sys.executable, "-m", "pip", "install", "-q", "-c", str(keep_torch), COURSE_PACKAGE]
    if subprocess.run(pip, check=False).returncode != 0:
        raise RuntimeError(f"pip could not install {COURSE_PACKAGE}: see pip's output above")
    print(f"course_lib installed from {COURSE_PACKAGE}")

# %%
from course_lib.lesson import glue, setup_lesson

ctx = setup_lesson(seed=0, name="12_scaling_out")

# %% [markdown]
# ## What a preset costs
#
# Lesson 00 counted the parameters of the encoder and decoder layers. The whole PromptBart also
# has the token embeddings (one row per code of the vocabulary), the prompt encoders and the
# auxiliary heads. Building a model on PyTorch's `meta` device creates every parameter's shape
# and no storage: counting the largest preset costs nothing.

# %%
import pandas as pd
import torch
from IPython.display import display

from course_lib.dataset import AgeNormalizer, split_cohort
from course_lib.mimic import load_mimic
from course_lib.model import build_model
from course_lib.presets import PRESETS
from course_lib.tokens import Vocabulary

cohort = load_mimic(ctx.data_dir)
train_cohort, _, _ = split_cohort(cohort, seed=0)
vocabulary = Vocabulary.build(train_cohort)
normalizer = AgeNormalizer.fit(train_cohort)

rows = {}
for name, preset in PRESETS.items():
    with torch.device("meta"):
        model = build_model(vocabulary, preset)
    counts = model.parameter_counts()
    layers = [*model.bart.encoder.layers, *model.bart.decoder.layers]
    rows[name] = {
        "d_model": preset.d_model,
        "layers": f"{preset.encoder_layers}+{preset.decoder_layers}",
        "parameters": counts["total"],
        "in layers": sum(p.numel() for layer in layers for p in layer.parameters()),
        "age head": counts["age_head"],
        "age head share (%)": round(100 * counts["age_head"] / counts["total"], 2),
        "fp32 weights (MB)": round(4 * counts["total"] / 1e6, 1),
    }
preset_costs = pd.DataFrame(rows).T
display(preset_costs)

# %%
parameters = {name: int(row["parameters"]) for name, row in rows.items()}
for name, count in parameters.items():
    glue(f"{name}_parameters", count)
glue("vocab_size", len(vocabulary))
base_age_head = glue("base_age_head", int(rows["base"]["age head"]))
base_age_head_share = glue("base_age_head_share", float(rows["base"]["age head share (%)"]))
# the notes: aux heads of about 197k parameters, 0.37% of their model
notes_model_parameters = glue("notes_model_parameters", 197_000 / 0.0037)
glue("base_vs_notes_model", "larger" if parameters["base"] > notes_model_parameters else "smaller")
glue("base_layer_parameters", int(rows["base"]["in layers"]))
print(f"base: {parameters['base']:,} parameters; its age head {base_age_head:,}")
print(f"the notes' share implies a model of about {notes_model_parameters / 1e6:.0f}M parameters")

# %% [markdown]
# With the sample cohort's vocabulary ({glue:text}`vocab_size:,` tokens), `tiny` has
# {glue:text}`tiny_parameters:,` parameters, `small` {glue:text}`small_parameters:,` and `base`
# {glue:text}`base_parameters:,`. The base preset's MLP age head has
# {glue:text}`base_age_head:,` parameters, the size the original project's notes give for their
# auxiliary heads (about 197k): the same `d_model` and head shape. Its share of the model,
# {glue:text}`base_age_head_share:.2f`%, differs from the notes' 0.37%, which implies a model of
# about {glue:text}`notes_model_parameters:,.0f` parameters: ours is
# {glue:text}`base_vs_notes_model`. Its encoder and decoder layers alone hold
# {glue:text}`base_layer_parameters:,` (lesson 00's count), so the notes' share was taken of a
# smaller model or of another count; the notes do not say which.
#
# ## Time per step
#
# One optimiser step on one batch of the preset's size, on this machine. The first step of a
# fresh model is slower (memory allocation, kernel selection), so we time the next two and keep
# the faster. On a CPU the lesson uses one thread: the machines that build this book are shared,
# and there several threads waiting on each other can make a step many times slower (on your own
# laptop, more threads are usually faster). On a CPU
# we measure `tiny` and `small` and *extrapolate* `base` from `small`: a transformer's training
# cost grows with parameters times tokens, so we scale `small`'s time by the ratio of parameters
# and of batch sizes. An extrapolation on a CPU is a rough guide, not a measurement; the table
# says which is which. On a GPU all three are measured.

# %%
import time

from course_lib.dataset import PatientCollator, PatientDataset

MODEL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "labels", "x_num", "x_cat")


def seconds_per_step(preset, device) -> float:
    """Wall time of an AdamW step on one batch of ``preset.batch_size`` (best of two, after a
    warm-up step)."""
    model = build_model(vocabulary, preset).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.learning_rate)
    patients = PatientDataset(train_cohort, vocabulary, normalizer, preset.max_sequence_length)
    batch = PatientCollator(objective="generate", seed=0)(
        [patients[i] for i in range(preset.batch_size)]
    )
    inputs = {key: batch[key].to(device) for key in MODEL_INPUTS}
    timings = []
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    return min(timings[1:])


measured = ["tiny", "small"] + (["base"] if ctx.device.type == "cuda" else [])
threads = torch.get_num_threads()
if ctx.device.type == "cpu":
    torch.set_num_threads(1)  # see the prose above: one thread, on a shared machine
step_seconds = {name: seconds_per_step(PRESETS[name], ctx.device) for name in measured}
torch.set_num_threads(threads)
timing_rows = {}
for name, preset in PRESETS.items():
    if name in step_seconds:
        seconds, how = step_seconds[name], f"measured on {ctx.device.type}"
    else:
        scale = (parameters[name] / parameters["small"]) * (
            preset.batch_size / PRESETS["small"].batch_size
        )
        seconds, how = step_seconds["small"] * scale, "EXTRAPOLATED from small"
    timing_rows[name] = {
        "batch": preset.batch_size,
        "seconds per step": round(seconds, 3),
        "patients per second": round(preset.batch_size / seconds, 1),
        "how": how,
    }
timing = pd.DataFrame(timing_rows).T
display(timing)

# %% tags=["remove-input"]
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 2.4))
for position, (_, row) in enumerate(timing.iterrows()):
    extrapolated = row["how"].startswith("EXTRAPOLATED")
    ax.barh(
        position,
        row["seconds per step"],
        color="#f6b26b" if extrapolated else "#6fa8dc",
        hatch="//" if extrapolated else None,
    )
    label = f" {row['seconds per step']:.2f} s ({'extrapolated' if extrapolated else 'measured'})"
    ax.text(row["seconds per step"], position, label, va="center", fontsize=8)
ax.set_yticks(range(len(timing)), timing.index)
ax.set_xscale("log")
ax.set_xlim(right=float(timing["seconds per step"].max()) * 30)
ax.set_xlabel(f"seconds per optimiser step on {ctx.device.type} (log scale)")
ax.invert_yaxis()
plt.show()

# %%
for name in PRESETS:
    glue(f"{name}_step_seconds", float(timing.loc[name, "seconds per step"]))
glue("device_type", ctx.device.type)
glue("base_how", str(timing.loc["base", "how"]).lower())
base_epoch_hours = glue(
    "base_epoch_hours",
    float(timing.loc["base", "seconds per step"])
    * len(train_cohort)
    / PRESETS["base"].batch_size
    / 3600,
)
print(f"base, one epoch of the {len(train_cohort):,} sample patients: {base_epoch_hours:.2f} h")
# MIMIC-III holds 46,520 patients; 80% of them would be training patients
mimic_train_patients = 0.8 * 46_520
base_epochs = glue("base_epochs", PRESETS["base"].epochs)
mimic_days = glue(
    "base_mimic_days",
    base_epoch_hours * mimic_train_patients / len(train_cohort) * base_epochs / 24,
)
print(f"base, {base_epochs} epochs of MIMIC-III at this speed: {mimic_days:.0f} days")

# %% [markdown]
# On this {glue:text}`device_type`, a `tiny` step takes {glue:text}`tiny_step_seconds:.2f` s and
# a `small` one {glue:text}`small_step_seconds:.2f` s; a `base` step is
# {glue:text}`base_how` at {glue:text}`base_step_seconds:.1f` s, so one epoch of the small
# sample cohort would take {glue:text}`base_epoch_hours:.2f` h, and the preset's
# {glue:text}`base_epochs` epochs over MIMIC-III's 46,520 patients {cite}`johnson2016mimic`
# about {glue:text}`base_mimic_days:.0f` days at that speed. That is why `base` needs a GPU, and
# why the original project's notes trained on a cluster with a 48-hour, 64 GB job.
#
# ## Mixed precision
#
# On a GPU most of a step's time goes into matrix products, and GPUs multiply 16-bit numbers
# several times faster than 32-bit ones. {term}`Mixed precision <mixed precision>` runs those
# products in 16 bits and keeps the weights, the optimiser state and the reductions in 32 bits.
# There are two 16-bit formats, and they fail differently:

# %%
gradient_values = torch.tensor([1e-8, 1e-4, 0.1, 7e4])
print("float32 ", gradient_values.tolist())
print("float16 ", gradient_values.to(torch.float16).float().tolist())
print("bfloat16", gradient_values.to(torch.bfloat16).float().tolist())

# %% [markdown]
# `float16` has more precision but a narrow range: a gradient of 1e-8 becomes 0 and 70,000
# becomes infinite. Training in fp16 therefore multiplies the loss by a large factor before the
# backward pass (so small gradients survive), divides the gradients by it before the step, and
# skips a step whose gradients overflowed, shrinking the factor: a *gradient scaler*.
# `bfloat16` keeps float32's range with less precision, and needs no scaler. Under
# `torch.autocast` the matrix products run in the 16-bit type while the weights stay float32:

# %%
layer = torch.nn.Linear(8, 8)
with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
    output = layer(torch.randn(2, 8))
print(f"weights {layer.weight.dtype}, output {output.dtype}")

# %% [markdown]
# The trainer hands this to Hugging Face Accelerate. `TrainConfig.mixed_precision="auto"` (the
# default) resolves to `bf16` on a GPU that supports it (Ampere and later: A100, L4, H100), to
# `fp16` with Accelerate's gradient scaler on older GPUs (the T4 of a free Colab session), and to
# no mixed precision on a CPU. The rule, written out, against the library's:

# %%
from course_lib.training import TrainConfig, resolve_mixed_precision


def mixed_precision_for(cpu: bool) -> str:
    if cpu or not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


for on_cpu in (True, False):
    ours = mixed_precision_for(on_cpu)
    library = resolve_mixed_precision(TrainConfig(mixed_precision="auto", cpu=on_cpu))
    assert ours == library
    print(f"cpu={on_cpu}: auto -> {library}")
resolved_here = glue("resolved_here", resolve_mixed_precision(TrainConfig()))

# %% [markdown]
# Here `auto` resolves to {glue:text}`resolved_here`. Nothing else in the loop changes:
# Accelerate wraps the forward pass in `autocast` and, for fp16, scales the loss in
# `accelerator.backward` and unscales before gradient clipping.
#
# ## One entry point, many processes
#
# `python -m course_lib train` is the only training command. Launched normally, it is one
# process; launched by `torchrun` or `accelerate launch`, every process runs the same script,
# Accelerate wraps the model in DistributedDataParallel ({term}`DDP`), each process reads its own
# shard of every epoch, and the gradients are averaged before each step, so all processes keep
# identical weights. The commands, from one GPU to several nodes:
#
# ```bash
# # one GPU (or the CPU)
# python -m course_lib train --data data/mimic --out runs/base --preset base
# # one node, 4 GPUs: torchrun or accelerate, the same run
# torchrun --standalone --nproc_per_node 4 -m course_lib train --data data/mimic --out runs/base --preset base
# accelerate launch --multi_gpu --num_processes 4 -m course_lib train --data data/mimic --out runs/base --preset base
# # two nodes of 4 GPUs: the same line on each node, meeting at node1:29500
# torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint node1:29500 \
#     --rdzv_id job42 -m course_lib train --data data/mimic --out runs/base --preset base
# ```
#
# The batch size is per process: with 8 processes and `batch_size: 64` a step sees 512
# patients, so scale the learning rate (or use `accumulation` on fewer GPUs to reach the same
# effective batch).
#
# ### A SLURM script
#
# On a cluster, SLURM starts the job on its nodes; `scripts/slurm_train.sbatch` starts one
# `torchrun` per node and asks for what the notes' job had: 48 hours and 64 GB per node.

# %%
from pathlib import Path

slurm_script = (ctx.repo_root or Path.cwd()) / "scripts" / "slurm_train.sbatch"
if slurm_script.is_file():
    print(slurm_script.read_text())
else:  # e.g. on Colab, where course_lib comes from pip without the repository's scripts/
    print(f"{slurm_script} is not here: the script is in the course repository, scripts/")

# %% [markdown]
# The `#SBATCH` lines ask for 2 nodes with 4 GPUs each, 64 GB and 48 hours. `--requeue` lets
# SLURM put a preempted job back in the queue, and `--signal=B:USR1@600` warns the script ten
# minutes before the time limit, so it can requeue itself. Whether a start resumes is decided
# from the run folder. With `DRY_RUN=1` the script prints its launch command instead of running
# it; here for an empty folder (the run we are about to stop and resume is made further down):

# %%
import os
import subprocess


def slurm_dry_run(run_dir: Path) -> str:
    """What the SLURM script would launch for ``run_dir`` (DRY_RUN=1: nothing is started)."""
    if not slurm_script.is_file():
        return "(no scripts/slurm_train.sbatch here)"
    environment = {**os.environ, "DRY_RUN": "1", "RUN_DIR": str(run_dir)}
    finished = subprocess.run(
        ["bash", str(slurm_script)], env=environment, capture_output=True, text=True, check=True
    )
    return finished.stdout


print(slurm_dry_run(ctx.runs_dir / "not_started"))

# %% [markdown]
# ### Two processes on this CPU
#
# DDP also runs on CPUs (the `gloo` backend), which lets us check the distributed path here. A
# small simulated cohort and a very small model keep it short; `cpu: true` keeps the processes on
# the CPU even on a GPU machine.

# %%
from course_lib.cli import main as course_lib_cli

ddp_dir = ctx.runs_dir / "ddp_cpu"
ddp_data = ddp_dir / "data"
if not ddp_data.exists():
    course_lib_cli(["simulate", "--patients", "200", "--seed", "7", "--out", str(ddp_data)])
ddp_config = ddp_dir / "train.yaml"
ddp_config.write_text(
    "preset: tiny\n"
    "model: {d_model: 32, encoder_layers: 1, decoder_layers: 1, ffn_dim: 64}\n"
    "max_length: 48\nbatch_size: 8\nmax_steps: 10\nlog_every: 2\n"
    "sample_every_epoch: 0\ncpu: true\n"
)
command = [
    sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
    "-m", "course_lib", "train", "--data", str(ddp_data), "--out", str(ddp_dir / "run"),
    "--config", str(ddp_config), "--overwrite", "--no-progress",
]  # fmt: skip
print("torchrun " + " ".join(command[3:]).replace(str(ctx.runs_dir), "<runs>"))
started = time.perf_counter()
finished = subprocess.run(
    command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True
)
ddp_seconds = time.perf_counter() - started
if finished.returncode != 0:
    raise RuntimeError(f"the 2-process run failed:\n{finished.stderr[-3000:]}")
print(finished.stdout.splitlines()[0])
print(f"({ddp_seconds:.1f} s, two processes started, joined and finished)")

# %% [markdown]
# Rank 0 alone writes the run folder; `logs/distributed.json` holds what each process reported
# at the end: its share of the training patients and a digest of its final weights.

# %%
from course_lib.runs import Run

evidence = Run(ddp_dir / "run").distributed
for rank in evidence["ranks"]:
    print(
        f"rank {rank['rank']}: {rank['samples']} patients, {rank['batches_per_epoch']} batches "
        f"per epoch, final weights {rank['parameters_sha256']}"
    )
digests = {rank["parameters_sha256"] for rank in evidence["ranks"]}
assert len(digests) == 1, "the processes ended with different weights"
assert evidence["epoch0_patients_covered"] == evidence["train_patients"]
glue("ddp_world", evidence["world_size"])
glue("ddp_train_patients", evidence["train_patients"])
glue("ddp_rank_patients", evidence["ranks"][0]["samples"])
glue("ddp_overlap", evidence["epoch0_patients_on_several_ranks"])
ddp_steps = Run(ddp_dir / "run").log("train")["step"].tolist()
print(f"logged steps {ddp_steps}, written once by rank 0")

# %% [markdown]
# Each of the {glue:text}`ddp_world` processes read {glue:text}`ddp_rank_patients` of the
# {glue:text}`ddp_train_patients` training patients in the first epoch; together they covered
# all of them, with {glue:text}`ddp_overlap` patients read twice (the sampler repeats a few
# patients when the count does not divide evenly). Both ended with the same weights: the
# gradient averaging worked. On GPUs the only changes are the launcher's process count and
# `cpu: true` left out.
#
# ## Colab GPU
#
# On a lesson page, the rocket button opens the notebook in Colab. Then *Runtime → Change
# runtime type → T4 GPU* (or a larger GPU when you have one) and *Runtime → Run all*. The first
# cell installs `course_lib` and leaves Colab's own `torch` alone; the header cell then finds the
# GPU and prints `device cuda`, the preset becomes `base`, and `mixed_precision="auto"` picks
# fp16 with a scaler on a T4 and bf16 on an A100 or L4. To keep a Colab session's runs, set
# `COURSE_RUNS_DIR` to a folder of your mounted Google Drive before the header cell: Colab
# deletes the machine's disk when the session ends, and the next session then resumes from
# Drive.
#
# ## Checkpoints and resuming after preemption
#
# A long job stops for reasons that are not its own: the time limit, a preemption by a more
# urgent job, a node failure. The trainer keeps a checkpoint in `checkpoints/last/` (model,
# optimiser, learning-rate schedule, loss-weighting state, every random generator's state and
# the position in the epoch), written to a temporary folder and renamed into place, every
# epoch and every `checkpoint_every` steps. `train(config, resume=True)` continues from it.
#
# The test of a resume is strict: a run stopped part-way and resumed must log the same losses,
# step by step, as a run that never stopped. Two small runs on the simulated cohort, the second
# stopped after step `stop_after`, as a preemption would, then resumed:

# %%
from course_lib.training import train

resume_config = TrainConfig(
    preset="tiny",
    model={"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 64},
    max_length=48,
    batch_size=8,
    max_steps=12,
    log_every=1,
    checkpoint_every=4,
    sample_every_epoch=0,
    patience=None,
    cpu=True,
    cpu_threads=1,
    progress=False,
)
stop_after = glue("stop_after", 5)
uninterrupted = train(
    resume_config.replace(out=str(ctx.runs_dir / "uninterrupted")), ddp_data, overwrite=True
)
interrupted_config = resume_config.replace(out=str(ctx.runs_dir / "interrupted"))
stopped = train(interrupted_config, ddp_data, overwrite=True, stop_after_step=stop_after)
print(f"first job: {stopped.steps} steps, then {stopped.stopped}")
checkpoint = ctx.runs_dir / "interrupted" / "checkpoints" / "last"
print("checkpoint:", sorted(path.name for path in checkpoint.iterdir()))

# %% [markdown]
# Restarted on this folder, the SLURM script would now pass `--resume`. (Its default
# `--preset base` would then be refused: a resumed run keeps its configuration; only the data and
# output paths, the progress bar, the loader workers and the CPU threads may change.)

# %%
print(slurm_dry_run(ctx.runs_dir / "interrupted"))

# %%
resumed = train(interrupted_config, ddp_data, resume=True)
print(f"second job: resumed at step {stop_after}, finished at step {resumed.steps}")


def logged_losses(run: str) -> pd.Series:
    log = Run(ctx.runs_dir / run).log("train")
    return log.set_index("step")["terms.lm.raw"].rename(run)


losses = pd.concat([logged_losses("uninterrupted"), logged_losses("interrupted")], axis=1)
max_difference = glue(
    "resume_max_difference", float((losses["uninterrupted"] - losses["interrupted"]).abs().max())
)
glue("resume_steps", len(losses))
display(losses.round(5))
print(f"largest difference between the two logs: {max_difference:.2e}")

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(losses.index, losses["uninterrupted"], linewidth=3, alpha=0.4, label="uninterrupted run")
ax.plot(losses.index, losses["interrupted"], "o", markersize=4, label="stopped, then resumed")
ax.axvline(stop_after + 0.5, color="grey", linestyle="--", label=f"stop after step {stop_after}")
ax.set(xlabel="optimiser step", ylabel="training LM loss")
ax.legend(fontsize=8)
ax.set_title("Resuming after preemption")
plt.show()

# %% [markdown]
# Over the {glue:text}`resume_steps` logged steps the largest difference between the two logs is
# {glue:text}`resume_max_difference:.1e`. Exact resumption needs more than the weights: the
# optimiser's moments, the schedule's position, the random generators (dropout masks, the
# collator's masking) and the data order of the epoch (a function of the seed and the epoch, so
# the resumed job skips the batches already done). On a GPU, exactness also needs the same
# number of processes (a checkpoint saved by 8 processes refuses to resume with 4) and is
# limited by non-deterministic GPU kernels: expect differences of the order of float rounding,
# not of the loss.
#
# ## Summary
#
# - `base` has about {glue:text}`base_parameters:,` parameters with this vocabulary; on a CPU
#   one of its steps would take seconds, so it needs a GPU, and MIMIC-sized training a cluster.
# - Mixed precision: bf16 on GPUs that support it, fp16 with a gradient scaler on older ones,
#   none on a CPU; `mixed_precision="auto"` picks, Accelerate applies it.
# - One entry point everywhere: `python -m course_lib train`, under `torchrun` or
#   `accelerate launch` for several GPUs and nodes, from `scripts/slurm_train.sbatch` on a cluster.
# - Checkpoints every `checkpoint_every` steps and `--resume` make preemption cost only the
#   steps since the last checkpoint; a resumed run logs the same losses as an uninterrupted one.
#
# ## Exercises
#
# 1. **What training needs in memory.** Write `training_state_bytes(n_parameters) -> int`: the
#    bytes of everything AdamW training in float32 keeps per parameter, besides activations.
#    The check trains a small model for one step and weighs its tensors. Then use it for
#    `base`: does it fit a 16 GB T4?

# %%
from course_lib.exercises.lesson12 import check_checkpoint_retention, check_training_state_bytes


# TODO: write your answer in place of the stub's raise.
def training_state_bytes(n_parameters: int) -> int:
    """Bytes of the training state of a model with n_parameters fp32 parameters."""
    raise NotImplementedError("TODO: replace this line with your code")


training_state_done = check_training_state_bytes(training_state_bytes)

# %% [markdown]
# 2. **A checkpoint retention policy.** `checkpoints/last` keeps one checkpoint. A long run
#    often keeps more: the latest few, to survive a corrupted write, and every N-th step, to
#    study training later. Write `checkpoints_to_keep(saved_steps, keep_last, keep_every) ->
#    set[int]` that returns the steps to keep: the `keep_last` most recent ones and every step
#    that is a multiple of `keep_every` (`keep_every=0` means none).


# %%
# TODO: write your answer in place of the stub's raise.
def checkpoints_to_keep(saved_steps: list[int], keep_last: int, keep_every: int) -> set[int]:
    """The saved steps a retention policy keeps."""
    raise NotImplementedError("TODO: replace this line with your code")


retention_done = check_checkpoint_retention(checkpoints_to_keep)

# %% [markdown]
# 3. **More processes.** Rerun the two-process cell with `--nproc_per_node 3`. How many
#    patients does each rank read now, and how many are read twice?
