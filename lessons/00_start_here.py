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
# # 00 · Start here
#
# **Objectives.** After this lesson you can run any lesson of the course on your laptop, on
# Colab or on a cluster; you know which model size (*preset*) a lesson will use and why; and you
# know how lessons, the `course_lib` package and the exercises fit together.
#
# **Prerequisites.** Python, NumPy and a first course in deep learning (what a transformer layer
# and a cross-entropy loss are). No clinical background: the {doc}`glossary </book/glossary>` explains
# the medical and technical terms as they appear.
#
# **Estimated time.** 20 minutes.

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

# %% [markdown]
# The cell above does something only on Colab. It installs `course_lib` from the same branch as
# the notebook you opened, and never installs `torch`: Colab's own build stays, so a change in
# Colab's preinstalled libraries cannot break the lesson through us.
#
# Every lesson then runs the same header cell. It seeds `random`, NumPy and torch, picks the
# preset and the device, sets plot defaults, finds the course repository and prints one line
# saying where the lesson runs.

# %%
from course_lib.lesson import glue, setup_lesson

ctx = setup_lesson(seed=0, name="00_start_here")

# %% [markdown]
# ## The course map
#
# The course follows one pipeline, from a cohort of patients to the plots that judge a
# generator. Each box names the `course_lib` modules that implement the stage; the lessons of a
# part build those modules step by step, and later lessons import them instead of re-typing them.

# %% tags=["remove-input"]
import importlib.util

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

pipeline_stages = [
    ("data", ["simulate", "mimic", "cohort"], "Data and model"),
    ("tokens", ["tokens", "dataset"], "Data and model"),
    ("model", ["model"], "Data and model"),
    ("losses &\nweighting", ["losses", "weighting"], "Data and model"),
    ("training", ["training"], "Training, generation, evaluation"),
    ("generation", ["generation"], "Training, generation, evaluation"),
    ("evaluation", ["evaluation"], "Training, generation, evaluation"),
    ("plots & report", ["summary", "evaluation.report"], "Training, generation, evaluation"),
]
part_colours = {"Data and model": "#cfe2f3", "Training, generation, evaluation": "#fce5cd"}


def module_exists(module: str) -> bool:
    """Whether course_lib.<module> is in this checkout (found without importing it)."""
    try:
        return importlib.util.find_spec(f"course_lib.{module}") is not None
    except ModuleNotFoundError:
        return False


fig, ax = plt.subplots(figsize=(9, 3.6))
box_width, box_height = 2.0, 1.1
centres = [(1.2 + 2.6 * (i % 4), 2.9 if i < 4 else 0.9) for i in range(len(pipeline_stages))]
centres[4:] = centres[4:][::-1]  # the second row runs right to left: a snake
for (stage, modules, part), (x, y) in zip(pipeline_stages, centres, strict=True):
    written = all(module_exists(module) for module in modules)
    ax.add_patch(
        FancyBboxPatch(
            (x - box_width / 2, y - box_height / 2),
            box_width,
            box_height,
            boxstyle="round,pad=0.05",
            facecolor=part_colours[part],
            edgecolor="black",
            linestyle="-" if written else "--",
        )
    )
    ax.text(x, y + 0.22, stage, ha="center", va="center", fontsize=9.5, fontweight="bold")
    ax.text(
        x, y - 0.25, "\n".join(modules), ha="center", va="center", fontsize=7.5, family="monospace"
    )
for (x0, y0), (x1, y1) in zip(centres[:-1], centres[1:], strict=True):
    if y0 == y1:
        step = box_width / 2 + 0.05
        start, end = (
            (x0 + step * (1 if x1 > x0 else -1), y0),
            (x1 - step * (1 if x1 > x0 else -1), y1),
        )
    else:
        start, end = (x0, y0 - box_height / 2 - 0.05), (x1, y1 + box_height / 2 + 0.05)
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="#444444"))
for part, colour in part_colours.items():
    ax.bar(0, 0, color=colour, edgecolor="black", label=part)
ax.legend(loc="upper center", bbox_to_anchor=(0.5, 1.13), ncol=2, frameon=False, fontsize=9)
ax.set_xlim(0, 10.4)
ax.set_ylim(0.2, 3.6)
ax.set_axis_off()
ax.set_title("From patients to plots (dashed: module not written yet)", fontsize=10, y=-0.06)
plt.show()

# %% [markdown]
# ## Set-up: laptop, Colab or cluster
#
# - **Laptop (CPU).** Clone the repository, then
#   `python -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"` and open the
#   lessons with `jupyter lab lessons/`. Every lesson runs on a CPU with the `tiny` preset.
# - **Colab (GPU).** Use the rocket button at the top of a lesson page, then *Runtime → Change
#   runtime type → GPU*. The first cell installs `course_lib`; the header then picks `base`.
# - **Cluster.** The lessons on scale run the same training entry point,
#   `python -m course_lib train`, under `torchrun` or `accelerate launch` from a SLURM script.
#
# The header's choices can be overridden with environment variables set before Jupyter starts:
# `COURSE_PRESET` (a preset name), `COURSE_DATA_DIR` (a folder with the sample cohort) and
# `COURSE_RUNS_DIR` (where trained runs are cached).
#
# Here the header found these folders:

# %%
print("repository root:     ", ctx.repo_root)
print("runs of this lesson: ", ctx.runs_dir)

# %% [markdown]
# A lesson that trains asks its context for a named *recipe* (`course_lib.recipes.RECIPES`):
# `ctx.train_or_load("baseline_none")` loads the reference run stored with the course in
# `reference_runs/` when it matches the recipe and the code that trained it, else a run this
# machine trained earlier in `ctx.runs_dir`, and trains it otherwise (`COURSE_RETRAIN=1`
# forces training). Rerunning a lesson on a laptop is then cheap, and the numbers in the book
# are those of runs trained past the point where their story shows.
#
# ## Presets: how big is the model?
#
# A preset fixes the shape of the BART encoder-decoder and the training budget. The table lists
# them; the last column counts the parameters of the encoder and decoder layers, which the shape
# alone determines (the embeddings also depend on the vocabulary, built in a later lesson).

# %%
from dataclasses import asdict

import pandas as pd
from IPython.display import display

from course_lib.presets import PRESETS, Preset


def body_parameters(preset: Preset) -> int:
    """Weights and biases of BART's encoder and decoder layers (no embeddings)."""
    d, f = preset.d_model, preset.ffn_dim
    attention = 4 * (d * d + d)  # q, k, v and output projections
    feed_forward = (d * f + f) + (f * d + d)
    layer_norm = 2 * d
    encoder_layer = attention + feed_forward + 2 * layer_norm
    decoder_layer = 2 * attention + feed_forward + 3 * layer_norm  # self- and cross-attention
    return preset.encoder_layers * encoder_layer + preset.decoder_layers * decoder_layer


preset_table = pd.DataFrame([asdict(preset) for preset in PRESETS.values()]).set_index("name")
preset_table["body_parameters"] = [body_parameters(preset) for preset in PRESETS.values()]
display(preset_table)

# %%
tiny_body = glue("tiny_body_parameters", body_parameters(PRESETS["tiny"]))
base_body = glue("base_body_parameters", body_parameters(PRESETS["base"]))
base_over_tiny = glue("base_over_tiny", round(base_body / tiny_body))
print(f"tiny: {tiny_body:,} body parameters; base: {base_body:,} ({base_over_tiny}x tiny)")

# %% [markdown]
# The `tiny` preset's layers hold {glue:text}`tiny_body_parameters:,` parameters, `base`'s
# {glue:text}`base_body_parameters:,`: about {glue:text}`base_over_tiny` times more, close to
# the BART-base shape used in the original project's notes {cite}`lewis2020bart,wang2022promptehr`.
# `tiny` trains in minutes on a CPU, which is what continuous integration (CI) and a laptop
# need; `base` needs a GPU. A lesson never hard-codes a preset: it uses `ctx.preset`, so the
# same notebook runs everywhere and the figures it prints say which preset made them.

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.barh(preset_table.index, preset_table["body_parameters"], color="#6fa8dc")
ax.set_xscale("log")
ax.set_xlim(right=preset_table["body_parameters"].max() * 20)  # room for the labels
ax.set_xlabel("parameters in encoder and decoder layers (log scale)")
for position, count in enumerate(preset_table["body_parameters"]):
    ax.text(count, position, f" {count:,}", va="center", fontsize=8)
ax.invert_yaxis()
plt.show()

# %% [markdown]
# ## How lessons, `course_lib` and exercises fit together
#
# - A **lesson** (this notebook) shows an idea in a few lines, checks those lines against
#   `course_lib`, then uses `course_lib`. Its source is `lessons/NN_name.py`; the notebook
#   `lessons/NN_name.ipynb` is generated from it. CI executes every lesson on each change, so
#   the book cannot drift from the package.
# - **`course_lib`** is a small, hand-written package, one module per pipeline stage (the map
#   above). Each module's docstring names the lesson that introduces it.
# - **Exercises** ask you to extend `course_lib`. Each has a check in
#   `course_lib/exercises/lessonNN.py`. The exercise cell holds a stub whose body raises
#   `NotImplementedError` (marked `TODO`): replace it with your answer and rerun the cell. The
#   check reports a stub as "not done yet", a wrong answer raises an error saying what is
#   wrong. The course's tests run every check against a reference solution and against wrong
#   answers, so the checks themselves are tested; those solutions live in the repository's
#   `tests/`, not in the package you install.
#
# ## Summary
#
# - The first cell installs `course_lib` on Colab only; the header `setup_lesson` seeds, picks
#   the preset (`tiny` on CPU, `base` on GPU, `COURSE_PRESET` overrides) and the device.
# - Trained runs are cached per lesson: a rerun loads them instead of training again.
# - Lessons teach, `course_lib` keeps the code, exercises extend `course_lib` and are checked
#   automatically.
#
# ## Exercises
#
# 1. **A `micro` preset.** Add a preset named `"micro"` to `PRESETS` in
#    `course_lib/presets.py`, narrower than `tiny` and no deeper, with a valid attention shape.
#    Restart the kernel, then run the check below.

# %%
from course_lib.exercises.lesson00 import check_bart_parameters, check_micro_preset
from course_lib.presets import PRESETS

micro_preset_done = check_micro_preset(PRESETS.get("micro"))

# %% [markdown]
# 2. **Every parameter.** `body_parameters` leaves out the embeddings. Write
#    `count_bart_parameters(preset, vocab_size, max_positions)` that counts all the parameters of
#    a `BartModel`: add the token embeddings (shared by encoder and decoder), the learned
#    position embeddings (BART keeps two extra positions) and the layer norms applied to the
#    embeddings. The check compares your count with a real `BartModel` built from a `BartConfig`.


# %%
# TODO: write your answer in place of the stub's raise.
def count_bart_parameters(preset, vocab_size: int, max_positions: int) -> int:
    """Every parameter of a BartModel with preset's shape, embeddings included."""
    raise NotImplementedError("TODO: replace this line with your code")


bart_parameters_done = check_bart_parameters(count_bart_parameters)

# %% [markdown]
# 3. **Another preset.** Restart the kernel with `COURSE_PRESET=small` in the environment and
#    rerun the header: which line changes?
