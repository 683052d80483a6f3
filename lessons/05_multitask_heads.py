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
# # 05 · Multi-task heads
#
# **Objectives.** After this lesson you can say where PromptBart's age and sex heads read the
# model and why there; count the parameters of a linear and of an MLP head, and place the
# original project's "~197k parameters per head" among them; train with
# {term}`auxiliary losses <auxiliary loss>` and read every term's curve and share from the
# training log; and explain from a run why the sex loss is the easiest term of all to drive to
# zero, and what can still hold it up.
#
# **Prerequisites.** {doc}`03_bart_for_patients` (PromptBart, the training loop) and
# {doc}`04_conditional_prompts` (the {term}`prompt` vectors that carry age and sex).
#
# **Estimated time.** 40 minutes (the lesson trains four small runs, under a minute on a CPU).

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

ctx = setup_lesson(seed=0, name="05_multitask_heads")

# %% [markdown]
# ## Where the heads read: the end-of-patient state
#
# A patient is one decoder sequence, `<patient> <visit> codes </visit> ... </patient>`. Besides
# predicting the next token, PromptBart has two small *heads* that predict the patient's
# demographics from the decoder's final hidden states: an age head (one number, the normalised
# age, trained with a mean squared error) and a sex head (two logits, trained with a
# cross-entropy). Together with the language-modelling (LM) loss they make the model
# *multi-task*.
#
# Which position should the heads read? The decoder is causal: the state at position `t` has
# seen the prompts and the tokens up to `t` only. One position has seen everything: the last
# scored one, whose label is `</patient>`. We find it in a batch from the labels alone.

# %%
import torch

from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset, split_cohort
from course_lib.mimic import load_mimic
from course_lib.tokens import EOS_ID, Vocabulary

cohort = load_mimic(ctx.data_dir)
train_cohort, val_cohort, _ = split_cohort(cohort, seed=0)
vocabulary = Vocabulary.build(train_cohort)
normalizer = AgeNormalizer.fit(train_cohort)
train_set = PatientDataset(train_cohort, vocabulary, normalizer, ctx.preset.max_sequence_length)
batch = PatientCollator()([train_set[i] for i in range(4)])

labels = batch["labels"]  # [batch, tgt], -100 after each patient's end
end_position = labels.ne(-100).sum(dim=1) - 1  # the last scored position of each patient
print("sequence lengths:", (end_position + 1).tolist())
print(
    "label there:     ", labels[torch.arange(4), end_position].tolist(), "= </patient> id", EOS_ID
)
assert bool((labels[torch.arange(4), end_position] == EOS_ID).all())

# %% [markdown]
# Every patient's last scored position is the one that emits `</patient>`, whatever its
# length: padding sits after it and is never read. `PromptBart.forward` picks the same
# position and returns the states it read as `end_hidden`, one vector per patient:

# %%
from course_lib.model import build_model

model = build_model(vocabulary, ctx.preset).eval()
inputs = {key: batch[key] for key in ("input_ids", "decoder_input_ids", "labels", "x_num", "x_cat")}
with torch.no_grad():
    output = model(**inputs)
print("end_hidden", tuple(output.end_hidden.shape), "-> age_pred", tuple(output.age_pred.shape))
print("sex_logits", tuple(output.sex_logits.shape), "| loss terms:", list(output.loss_terms))
assert torch.allclose(output.age_pred, model.age_head(output.end_hidden).squeeze(-1))

# %% [markdown]
# The first position would be a poor choice (it has seen only the prompts, so a head there
# would learn to read the prompt back and nothing about the codes); a mean over positions is
# another reasonable choice, which exercise 3 builds.
#
# ## Linear or MLP head: how many parameters?
#
# The brief of the course describes the heads as `Linear(d_model, 1)` and `Linear(d_model, 2)`,
# yet the original project's notes count about 197k parameters per head, 0.37% of the model.
# A linear layer on `d_model = 768` has 769 parameters. `course_lib.model.make_aux_head`
# builds both kinds: `"linear"`, and `"mlp"`,
# `Linear(d_model, 256) -> ReLU -> Dropout -> Linear(256, k)`. Count them by hand first:

# %%
from course_lib.model import AUX_HIDDEN, make_aux_head


def head_parameters_by_hand(d_model: int, n_outputs: int, kind: str) -> int:
    """Weights plus biases of each Linear layer of the head."""
    if kind == "linear":
        return d_model * n_outputs + n_outputs
    return d_model * AUX_HIDDEN + AUX_HIDDEN + AUX_HIDDEN * n_outputs + n_outputs


def head_parameters(d_model: int, n_outputs: int, kind: str) -> int:
    return sum(p.numel() for p in make_aux_head(d_model, n_outputs, kind).parameters())


for d_model in (ctx.preset.d_model, 768):
    for kind in ("linear", "mlp"):
        assert head_parameters(d_model, 1, kind) == head_parameters_by_hand(d_model, 1, kind)
base_age_mlp = glue("l05_base_age_mlp", head_parameters(768, 1, "mlp"))
base_age_linear = glue("l05_base_age_linear", head_parameters(768, 1, "linear"))
print(f"d_model 768: MLP age head {base_age_mlp:,} parameters, linear {base_age_linear:,}")

# %% [markdown]
# The MLP age head on `d_model = 768` has {glue:text}`l05_base_age_mlp:,` parameters: the
# notes' "~197k" is this MLP, not the linear head of {glue:text}`l05_base_age_linear:,`.
# How big is that next to the whole model? Building the `base` preset's PromptBart on
# PyTorch's `meta` device creates every parameter's shape without allocating or
# initialising its values, so counting a 100M-parameter model costs nothing on a laptop.

# %%
import pandas as pd
from IPython.display import display

from course_lib.model import PromptBart, PromptBartConfig
from course_lib.presets import PRESETS

rows = []
for preset in (ctx.preset, PRESETS["base"]):
    for kind in ("linear", "mlp"):
        config = PromptBartConfig.from_preset(preset, vocab_size=len(vocabulary), aux_head=kind)
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            counts = PromptBart(config).parameter_counts()
        rows.append(
            {
                "preset": preset.name,
                "d_model": preset.d_model,
                "head": kind,
                "age_head": counts["age_head"],
                "sex_head": counts["sex_head"],
                "model_total": counts["total"],
                "age_head_pct": 100 * counts["age_head"] / counts["total"],
            }
        )
head_table = pd.DataFrame(rows)
display(head_table.style.format({"age_head_pct": "{:.3f}", "model_total": "{:,}"}))

# %%
base_mlp = head_table.query("preset == 'base' and head == 'mlp'").iloc[0]
glue("l05_base_total", int(base_mlp["model_total"]))
glue("l05_base_mlp_pct", float(base_mlp["age_head_pct"]))
glue("l05_vocab_size", len(vocabulary))
tiny_rows = head_table.query("preset == @ctx.preset.name")
glue("l05_preset_name", ctx.preset.name)
glue("l05_preset_mlp_pct", float(tiny_rows.query("head == 'mlp'")["age_head_pct"].iloc[0]))
glue("l05_preset_linear_pct", float(tiny_rows.query("head == 'linear'")["age_head_pct"].iloc[0]))
notes_total = glue("l05_notes_total_implied", round(197_000 / 0.0037))
print(f"the notes' 197k = 0.37% implies a model of about {notes_total:,} parameters")

# %% [markdown]
# With our vocabulary of {glue:text}`l05_vocab_size:,` tokens the `base` PromptBart has
# {glue:text}`l05_base_total:,` parameters and one MLP head is
# {glue:text}`l05_base_mlp_pct:.2f`% of it, about half the notes' 0.37%: their 197k and 0.37%
# imply a model of about {glue:text}`l05_notes_total_implied:,` parameters, so their
# model was smaller than our `base` (fewer layers, most likely; the notes do not say). On the
# {glue:text}`l05_preset_name` preset the MLP head is {glue:text}`l05_preset_mlp_pct:.2f`% of
# the model, the linear head {glue:text}`l05_preset_linear_pct:.3f`%. Either way the heads are a
# rounding error in the parameter budget; what they change is the *loss*, next.
#
# The MLP is the default (`aux_head="mlp"`): its hidden layer lets the head combine features
# non-linearly, so the decoder does not have to make age and sex linearly readable.
#
# ## Training with auxiliary losses
#
# The total loss is `lm + w_age * age + w_sex * sex`. The notes used weights between 0.001 and
# 0.2; we take 0.05 for both, large enough to see the heads' terms in the log. On a CPU the
# run is cut to two epochs' worth of optimiser steps (`max_steps`); on a GPU it runs the
# preset's epochs.

# %%
from course_lib.training import TrainConfig, load_run, train

aux_weights = {"age": 0.05, "sex": 0.05}
aux_config = TrainConfig(
    preset=ctx.preset.name,
    max_steps=100 if ctx.preset.name == "tiny" else None,
    loss_weights=aux_weights,
    log_every=2,
    sample_every_epoch=0,  # no sampling check here: lesson 08 generates
    patience=None,
    progress=False,
    seed=ctx.seed,
)


def train_into(config: TrainConfig):
    """A ``train(folder)`` function for ``ctx.load_or_train``: the run lands in ``folder``."""
    return lambda folder: train(config.replace(out=str(folder)), data=cohort)


aux_model, _, _, _ = ctx.load_or_train("aux_w0.05", train_into(aux_config), load_run)
aux_dir = ctx.run_dir("aux_w0.05")

# %% [markdown]
# Every logged step of `logs/train.jsonl` holds, for each term, its raw value, its weight, the
# weighted value and its share of the total in %. Flattened into one row per step and term:

# %%
from pathlib import Path

from course_lib.runs import Run


def read_step_log(run_dir: Path) -> pd.DataFrame:
    """``logs/train.jsonl`` as rows ``(step, term, raw, weight, weighted, share)``."""
    table = Run(run_dir).log("train").set_index("step").filter(like="terms.")
    table.columns = table.columns.str.split(".", expand=True).droplevel(0)  # (term, value)
    return table.stack(level=0, future_stack=True).rename_axis(["step", "term"]).reset_index()


aux_log = read_step_log(aux_dir)
raw = aux_log.pivot(index="step", columns="term", values="raw")  # [steps, terms]
share = aux_log.pivot(index="step", columns="term", values="share")
display(aux_log.tail(3))

# %% tags=["remove-input"]
import math

import matplotlib.pyplot as plt

chance = {"lm": math.log(len(vocabulary)), "age": 1.0, "sex": math.log(2)}
chance_label = {"lm": "log(vocab)", "age": "predict the mean", "sex": "log 2"}

fig, axes = plt.subplots(1, 4, figsize=(12, 3.0))
for ax, term in zip(axes, ("lm", "age", "sex"), strict=False):
    ax.plot(raw.index, raw[term], color="#3d85c6")
    ax.axhline(chance[term], color="grey", linestyle="--", label=chance_label[term])
    ax.set_title(f"{term} (raw)")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
axes[3].stackplot(
    share.index, *(share[t] for t in ("lm", "age", "sex")), labels=["lm", "age", "sex"]
)
axes[3].set_ylim(max(0, share["lm"].min() - 2), 100)  # zoom on the thin aux bands
axes[3].set_title("share of the total (%)")
axes[3].set_xlabel("step")
axes[3].legend(loc="lower left", fontsize=8)
fig.tight_layout()
plt.show()

# %%
last = aux_log[aux_log["step"] == aux_log["step"].max()].set_index("term")
glue("l05_aux_steps", int(aux_log["step"].max()))
glue("l05_aux_lm_first", float(raw["lm"].iloc[0]))
glue("l05_aux_lm_last", float(last.loc["lm", "raw"]))
glue("l05_aux_age_last", float(last.loc["age", "raw"]))
glue("l05_aux_sex_last", float(last.loc["sex", "raw"]))
glue("l05_aux_lm_share", float(last.loc["lm", "share"]))
glue("l05_aux_age_share", float(last.loc["age", "share"]))
glue("l05_aux_sex_share", float(last.loc["sex", "share"]))
display(last[["raw", "weight", "weighted", "share"]])

# %% [markdown]
# In {glue:text}`l05_aux_steps` steps the LM loss fell from {glue:text}`l05_aux_lm_first:.2f`
# to {glue:text}`l05_aux_lm_last:.2f` (the dashed line is a uniform guess over the
# vocabulary). At the last step the age term was {glue:text}`l05_aux_age_last:.3f` (1 is what
# always predicting the mean age scores, since ages are z-scores) and the sex term
# {glue:text}`l05_aux_sex_last:.3f` (log 2 = 0.693 is a coin flip). The right panel shows how
# the total is made up: the LM term is {glue:text}`l05_aux_lm_share:.1f`% of the total, age
# {glue:text}`l05_aux_age_share:.2f`% and sex {glue:text}`l05_aux_sex_share:.2f`%.
#
# ## Why the sex loss vanishes, and what holds it up
#
# The notes saw the sex loss fall from 0.167 to 0.000 by epoch 14: "trivially predictable".
# Two things give sex away. First, the sex-specific codes: a patient with a code that the
# {term}`MCE` reserves for one sex (pregnancy, prostate...) reveals it. How many of our
# training patients have one?

# %%
from course_lib.icd9 import rules_for


def has_sex_specific_code(patient) -> bool:
    return any(rule in ("male", "female") for code in patient.codes for rule in rules_for(code))


sex_specific_share = glue(
    "l05_sex_specific_pct",
    100 * sum(map(has_sex_specific_code, train_cohort)) / len(train_cohort),
)
female_share = sum(p.sex == "F" for p in train_cohort) / len(train_cohort)
majority_share = glue("l05_majority_pct", 100 * max(female_share, 1 - female_share))
codes_only_ceiling = glue(
    "l05_codes_ceiling_pct",
    sex_specific_share + (100 - sex_specific_share) * majority_share / 100,
)
print(f"{sex_specific_share:.1f}% of training patients have a sex-specific code")
print(f"codes alone: at most about {codes_only_ceiling:.1f}% accuracy")

# %% [markdown]
# Only {glue:text}`l05_sex_specific_pct:.1f`% do. A head that read codes alone could be sure
# for those and guess the majority sex ({glue:text}`l05_majority_pct:.1f`% of patients) for
# the rest: about {glue:text}`l05_codes_ceiling_pct:.1f`% accuracy at best. The second give-away
# is much stronger: sex *is* an input. The sex prompt sits in front of every sequence, so the
# end-of-patient state can carry it for 100% of patients, if the decoder learns to carry it
# there. To see how easy each clue is, train on the sex loss alone for a few steps (weights
# `lm` 0, `age` 0, `sex` 1), three ways: with the prompts and the MLP head; with the prompts
# and a linear head; and without any prompt (`prompt_location="none"`), so that only the codes
# can tell.

# %%
sex_only_steps = 20
sex_only_runs = {
    "prompts, MLP head": {},
    "prompts, linear head": {"aux_head": "linear"},
    "no prompts, MLP head": {"prompt_location": "none"},
}
sex_only_models, sex_only_logs = {}, {}
for label, changes in sex_only_runs.items():
    run_name = "sex_only_" + label.replace(",", "").replace(" ", "_")
    config = aux_config.replace(
        max_steps=sex_only_steps,
        loss_weights={"lm": 0.0, "age": 0.0, "sex": 1.0},
        log_every=1,
        **changes,
    )
    sex_only_models[label], *_ = ctx.load_or_train(run_name, train_into(config), load_run)
    sex_only_logs[label] = read_step_log(ctx.run_dir(run_name)).query("term == 'sex'")

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(7.0, 3.2))
aux_sex = aux_log.query("term == 'sex'")
ax.plot(aux_sex["step"], aux_sex["raw"], marker=".", label="LM + 0.05 age + 0.05 sex (MLP)")
for label, log in sex_only_logs.items():
    ax.plot(log["step"], log["raw"], marker=".", label=f"sex loss alone: {label}")
ax.axhline(math.log(2), color="grey", linestyle="--", label="log 2 (coin flip)")
ax.set_xlim(0, 2 * sex_only_steps)
ax.set_xlabel("step")
ax.set_ylabel("sex loss (raw)")
ax.set_title("The sex loss, alone or beside the LM loss")
ax.legend(fontsize=7.5, loc="center right")
plt.show()

# %%
final_sex = {label: float(log["raw"].iloc[-1]) for label, log in sex_only_logs.items()}
glue("l05_alone_steps", sex_only_steps)
glue("l05_alone_first", float(sex_only_logs["prompts, MLP head"]["raw"].iloc[0]))
glue("l05_alone_mlp_final", final_sex["prompts, MLP head"])
glue("l05_alone_linear_final", final_sex["prompts, linear head"])
alone_codes_final = glue("l05_alone_codes_final", final_sex["no prompts, MLP head"])
print({label: round(value, 3) for label, value in final_sex.items()})

# %% [markdown]
# With the prompts, the sex loss alone goes from {glue:text}`l05_alone_first:.3f` to
# {glue:text}`l05_alone_mlp_final:.3f` in {glue:text}`l05_alone_steps` steps with the MLP head,
# and to {glue:text}`l05_alone_linear_final:.3f` with the linear head: the answer is in the
# prompt, and either head can read it once the decoder passes it on. Without prompts it ends at
# {glue:text}`l05_alone_codes_final:.3f`: the codes are a weak and slow clue. In the
# multi-task run (plotted over the same first steps) the sex loss ended at
# {glue:text}`l05_aux_sex_last:.3f`, against 0.693 for a coin flip. What differs is what the
# decoder's end state carries. Measure it on the validation patients: the head's accuracy, and
# how much `end_hidden` moves when only the sex input `x_cat` is flipped (a relative change of
# 0 means the state does not depend on the sex input at all).

# %%
val_set = PatientDataset(val_cohort, vocabulary, normalizer, ctx.preset.max_sequence_length)
collate = PatientCollator()


@torch.no_grad()
def sex_head_report(model, dataset, batch_size: int = 50) -> dict[str, float]:
    """Sex-head accuracy, and the relative change of ``end_hidden`` when ``x_cat`` is flipped."""
    model.eval()
    correct, change = 0, 0.0
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        inputs = {k: batch[k] for k in ("input_ids", "decoder_input_ids", "labels", "x_num")}
        real = model(**inputs, x_cat=batch["x_cat"])
        flipped = model(**inputs, x_cat=1 - batch["x_cat"])
        correct += int((real.sex_logits.argmax(-1) == batch["x_cat"][:, 0]).sum())
        moved = (real.end_hidden - flipped.end_hidden).norm(dim=1) / real.end_hidden.norm(dim=1)
        change += float(moved.sum())
    return {
        "sex_accuracy_pct": 100 * correct / len(dataset),
        "end_state_change": change / len(dataset),
    }


models = {"LM + aux (0.05)": aux_model} | {
    f"alone: {label}": model for label, model in sex_only_models.items()
}
report = pd.DataFrame({label: sex_head_report(m, val_set) for label, m in models.items()}).T
display(report.style.format("{:.3f}"))

# %%
aux_acc = glue("l05_aux_acc", float(report.loc["LM + aux (0.05)", "sex_accuracy_pct"]))
aux_change = glue("l05_aux_change", float(report.loc["LM + aux (0.05)", "end_state_change"]))
for key, label in (("mlp", "prompts, MLP head"), ("linear", "prompts, linear head")):
    glue(f"l05_alone_{key}_acc", float(report.loc[f"alone: {label}", "sex_accuracy_pct"]))
    glue(f"l05_alone_{key}_change", float(report.loc[f"alone: {label}", "end_state_change"]))
glue("l05_codes_acc", float(report.loc["alone: no prompts, MLP head", "sex_accuracy_pct"]))
val_female = sum(p.sex == "F" for p in val_cohort) / len(val_cohort)
val_majority = glue("l05_val_majority_pct", 100 * max(val_female, 1 - val_female))
glue(
    "l05_aux_knows",
    "hardly depends on the sex" if aux_change < 0.05 else "already depends on the sex",
)
aux_beats = glue(
    "l05_aux_beats", "no better than" if aux_acc <= val_majority + 1 else "better than"
)

# %% [markdown]
# On the validation patients the multi-task model's sex head is right for
# {glue:text}`l05_aux_acc:.1f`% of them, {glue:text}`l05_aux_beats` always answering the
# majority sex ({glue:text}`l05_val_majority_pct:.1f`%), and flipping `x_cat` moves its end
# state by {glue:text}`l05_aux_change:.4f` of its norm: the state
# {glue:text}`l05_aux_knows`. Trained on the sex loss alone with the prompts, the head is right
# for {glue:text}`l05_alone_mlp_acc:.1f`% (MLP) and {glue:text}`l05_alone_linear_acc:.1f`%
# (linear), and the same flip moves the end state by {glue:text}`l05_alone_mlp_change:.2f` and
# {glue:text}`l05_alone_linear_change:.2f` of its norm: the decoder routes the sex prompt to the
# end position as soon as something asks it to. Without prompts the flip changes nothing (there
# is no input to flip) and the head is right for {glue:text}`l05_codes_acc:.1f`%, against the
# codes-only ceiling of about {glue:text}`l05_codes_ceiling_pct:.1f`%.
#
# Why does the multi-task run not ask loudly enough? Compare the two gradients that reach the
# decoder's last layer, the layer that every head and the LM head share, on one batch:

# %%
shared = list(aux_model.last_shared_layer().parameters())
train_batch = collate([train_set[i] for i in range(32)])
aux_model.eval()  # no dropout: the same forward for both gradients
model_keys = ("input_ids", "decoder_input_ids", "labels", "x_num", "x_cat")
terms = aux_model(**{k: train_batch[k] for k in model_keys}).loss_terms


def gradient_norm(loss: torch.Tensor) -> float:
    grads = torch.autograd.grad(loss, shared, retain_graph=True)
    return float(torch.sqrt(sum((g**2).sum() for g in grads)))


lm_grad = glue("l05_lm_grad", gradient_norm(terms["lm"]))
sex_grad = glue("l05_sex_grad", gradient_norm(aux_weights["sex"] * terms["sex"]))
glue("l05_grad_ratio", lm_grad / sex_grad)
print(
    f"|grad lm| = {lm_grad:.4f}, |grad 0.05 * sex| = {sex_grad:.6f}, ratio {lm_grad / sex_grad:.0f}"
)

# %% [markdown]
# On the shared layer the LM gradient is {glue:text}`l05_grad_ratio:.0f` times larger than the
# weighted sex gradient: the shared layers follow the LM loss, and the sex prompt reaches the
# end state only slowly. The notes' run shows where this ends: by epoch 14 their sex loss was
# 0.000. The task is trivial; a multi-task run only needs the time for the decoder to carry the
# prompt to the end position. From then on the sex term teaches nothing: at best it wastes its weight, at worst it rewards a
# decoder that copies the prompt instead of modelling the patient. Lesson 07 turns this into
# remedies: scheduling the sex weight off once it has converged, balancing the terms' gradient
# magnitudes, or checking sex validity with rules instead of a loss.
#
# ## Summary
#
# - The age and sex heads read the decoder state at the position that emits `</patient>`, the
#   only one that has seen the whole patient; `PromptBart` returns it as `end_hidden`.
# - A linear head on `d_model = 768` has {glue:text}`l05_base_age_linear:,` parameters, the
#   MLP head {glue:text}`l05_base_age_mlp:,`: the notes' ~197k. Either is a small share of the
#   model; building the model on the `meta` device counts it for free.
# - `logs/train.jsonl` holds every term's raw value, weight and share per step; with weights
#   0.05 the LM term is still about {glue:text}`l05_aux_lm_share:.0f`% of the total.
# - The sex head's task is trivial (sex is an input; sex-specific codes give it away for
#   {glue:text}`l05_sex_specific_pct:.0f`% of patients): alone it is learnt within
#   {glue:text}`l05_alone_steps` steps. In multi-task training the LM gradient dominates the
#   shared layers, so it waits until they carry the prompt to the end position; then it
#   vanishes and stops teaching anything.
#
# ## Exercises
#
# 1. **Count a head.** Write `aux_head_parameters(d_model, n_outputs, kind)` that returns the
#    number of parameters of `make_aux_head(d_model, n_outputs, kind)` without building it.

# %%
from course_lib.exercises.lesson05 import (
    check_aux_head_parameters,
    check_focal_sex_loss,
    check_mean_decoder_state,
)


# TODO: write your answer in place of the stub's raise.
def aux_head_parameters(d_model: int, n_outputs: int, kind: str) -> int:
    """Parameters of an auxiliary head of this kind."""
    raise NotImplementedError("TODO: replace this line with your code")


aux_head_parameters_done = check_aux_head_parameters(aux_head_parameters)

# %% [markdown]
# 2. **A focal-loss sex head.** A sex head that is already sure for most patients keeps being
#    pushed by them under cross-entropy. The focal loss
#    `mean_b -(1 - p_b)^gamma log p_b` ({math}`p_b` the probability of the true class) weighs
#    confident right answers down. Write `focal_sex_loss(sex_logits, sex_target, gamma)`; with
#    `gamma = 0` it must equal `course_lib.losses.sex_loss`.


# %%
# TODO: write your answer in place of the stub's raise.
def focal_sex_loss(sex_logits, sex_target, gamma: float = 2.0):
    """Mean focal loss of the sex head (a 0-dim tensor)."""
    raise NotImplementedError("TODO: replace this line with your code")


focal_sex_loss_done = check_focal_sex_loss(focal_sex_loss)

# %% [markdown]
# 3. **A head on the mean decoder state.** Instead of the end-of-patient state, a head could
#    read the mean of the decoder states over the patient's positions. Write
#    `mean_decoder_state(hidden, labels)`: `hidden [batch, seq, d_model]`, `labels [batch, seq]`
#    with `-100` at padding, returning `[batch, d_model]`; padding must not count.


# %%
# TODO: write your answer in place of the stub's raise.
def mean_decoder_state(hidden, labels):
    """[batch, d_model]: the mean decoder state over the real (non-padding) positions."""
    raise NotImplementedError("TODO: replace this line with your code")


mean_decoder_state_done = check_mean_decoder_state(mean_decoder_state)

# %% [markdown]
# 4. **Codes only, for longer.** Train the prompts-off, sex-only run for 300 steps. Does its
#    validation accuracy approach the codes-only ceiling of
#    {glue:text}`l05_codes_ceiling_pct:.1f`% computed above? Which patients does it get right?
