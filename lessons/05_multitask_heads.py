# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
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
# original project's "~197k parameters per head" among them; read every loss term's curve and
# share from the training log; explain from measured runs why the sex loss vanishes (the head
# reads the prompt), and show that the heads are not what makes generated patients respect
# their sex and age.
#
# **Prerequisites.** {doc}`03_bart_for_patients` (PromptBart, the training loop) and
# {doc}`04_conditional_prompts` (the {term}`prompt` vectors that carry age and sex).
#
# **Estimated time.** 40 minutes (the lesson loads four stored runs; each trains in about a
# minute on a CPU when it is missing).

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
# The total loss is `lm + w_age * age + w_sex * sex`, plus, in the course's default recipe,
# `w_validity * validity_log` with `w_validity` = {glue:text}`l05_validity_weight:g` (lesson 04).
# The notes used aux weights between 0.001 and 0.2; the default keeps their smallest, 0.001. Four stored runs of the same budget (300 steps of the `narrow`
# model, `course_lib/recipes.py`) answer this lesson's questions:
#
# | run | prompts | aux weights (age, sex) | validity loss |
# |---|---|---|---|
# | `prompts_both_add` (the default, lesson 04) | both + decoder vector | 0.001, 0.001 | on |
# | `prompts_none` (lesson 04) | none | 0.001, 0.001 | on |
# | `aux_heavy` | both + decoder vector | **1, 1** | off |
# | `aux_off` | both + decoder vector | 0, 0 | off |

# %%
RUNS = {
    "default (0.001 + validity)": "prompts_both_add",
    "no prompts (0.001 + validity)": "prompts_none",
    "heavy heads (1, no validity)": "aux_heavy",
    "no heads (0, no validity)": "aux_off",
}
runs = {label: ctx.train_or_load(name) for label, name in RUNS.items()}
RUNS_LABEL = "default (0.001 + validity)"
heavy, default = runs["heavy heads (1, no validity)"], runs[RUNS_LABEL]
glue("l05_validity_weight", default.config.loss_weights["validity_log"])

# %% [markdown]
# Every logged step of `logs/train.jsonl` holds, for each term, its raw value, its weight, the
# weighted value and its share of the total in %. Flattened into one row per step and term,
# for the heavy run:

# %%
from course_lib.runs import Run


def read_step_log(run: Run) -> pd.DataFrame:
    """``logs/train.jsonl`` as rows ``(step, term, raw, weight, weighted, share)``."""
    table = run.log("train").set_index("step").filter(like="terms.")
    table.columns = table.columns.str.split(".", expand=True).droplevel(0)  # (term, value)
    return table.stack(level=0, future_stack=True).rename_axis(["step", "term"]).reset_index()


aux_log = read_step_log(heavy.run)
raw = aux_log.pivot(index="step", columns="term", values="raw")  # [steps, terms]
share = aux_log.pivot(index="step", columns="term", values="share")
display(aux_log.tail(3))

# %% tags=["remove-input"]
import math

import matplotlib.pyplot as plt

chance = {"lm": math.log(len(heavy.vocabulary)), "age": 1.0, "sex": math.log(2)}
chance_label = {"lm": "log(vocab)", "age": "predict the mean", "sex": "log 2"}

fig, axes = plt.subplots(1, 4, figsize=(12, 3.0))
for ax, term in zip(axes, ("lm", "age", "sex"), strict=False):
    ax.plot(raw.index, raw[term], color="#3d85c6")
    ax.axhline(chance[term], color="grey", linestyle="--", label=chance_label[term])
    ax.set_title(f"{term} (raw), heavy heads")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
axes[2].set_yscale("log")
axes[3].stackplot(
    share.index, *(share[t] for t in ("lm", "age", "sex")), labels=["lm", "age", "sex"]
)
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
display(last[["raw", "weight", "weighted", "share"]])

# %% [markdown]
# With both heads at weight 1, in {glue:text}`l05_aux_steps` steps the LM loss fell from
# {glue:text}`l05_aux_lm_first:.2f` to {glue:text}`l05_aux_lm_last:.2f` (the dashed line is a
# uniform guess over the vocabulary); at the last step the age term was
# {glue:text}`l05_aux_age_last:.3f` (1 is what always predicting the mean age scores, since
# ages are z-scores) and the sex term {glue:text}`l05_aux_sex_last:.2g` (log 2 = 0.693 is a
# coin flip; note the log axis). The LM term is {glue:text}`l05_aux_lm_share:.0f`% of the total.
#
# ## The sex loss vanishes, as in the notes
#
# The notes saw the multi-task sex loss fall 0.167 -> 0.015 -> 0.001 -> 0.000 over their
# epochs: "trivially predictable". The validation sex loss of our runs, epoch by epoch (the sex
# term is computed, and logged, even where its weight is 0):

# %%
NOTES_SEX_LOSS = [0.167, 0.015, 0.001, 0.000]  # the notes' multi-task run, as they report it
sex_by_epoch = pd.DataFrame(
    {label: run.epochs.set_index("epoch")["val_terms.sex"] for label, run in runs.items()}
)
display(sex_by_epoch.style.format("{:.4f}"))
print("the notes:", " -> ".join(f"{v:.3f}" for v in NOTES_SEX_LOSS))

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(7.0, 3.2))
for label in sex_by_epoch:
    ax.plot(sex_by_epoch.index + 1, sex_by_epoch[label], marker="o", label=label)
ax.axhline(math.log(2), color="grey", linestyle="--", label="log 2 (coin flip)")
ax.set_yscale("log")
ax.set_xlabel("epoch")
ax.set_ylabel("validation sex loss")
ax.set_title("The sex head's validation loss")
ax.legend(fontsize=7.5, loc="lower left")
plt.show()

# %%
from course_lib.claims import check_above, check_below, check_true, check_within

final_sex = sex_by_epoch.iloc[-1]
for key, label in (
    ("heavy", "heavy heads (1, no validity)"),
    ("default", RUNS_LABEL),
    ("none", "no prompts (0.001 + validity)"),
):
    glue(f"l05_final_sex_{key}", float(final_sex[label]))
glue("l05_first_sex_heavy", float(sex_by_epoch["heavy heads (1, no validity)"].iloc[0]))
glue("l05_first_sex_default", float(sex_by_epoch[RUNS_LABEL].iloc[0]))
check_below(
    "weight 1: the sex loss vanishes", float(final_sex["heavy heads (1, no validity)"]), 0.01
)
check_below(
    "weight 0.001 with prompts: the sex loss vanishes too", float(final_sex[RUNS_LABEL]), 0.05
)
check_within(
    "no prompts: the sex loss stays at a coin flip (log 2 +- 0.02)",
    float(final_sex["no prompts (0.001 + validity)"]),
    math.log(2),
    0.02,
)

# %% [markdown]
# The notes' curve is back. With the heads at weight 1 the validation sex loss is
# {glue:text}`l05_first_sex_heavy:.2g` after the first epoch and
# {glue:text}`l05_final_sex_heavy:.1g` at the end. More surprising: even at the notes' tiny
# weight 0.001 it falls from {glue:text}`l05_first_sex_default:.3f` to
# {glue:text}`l05_final_sex_default:.4f`. The one run where it does not fall is the one without
# prompts: {glue:text}`l05_final_sex_none:.3f`, a coin flip. That is the whole story of the
# vanishing sex loss: the head reads the decoder's end state, and that state has *seen the sex
# prompt* (and, in the default, the demographic vector added at every position). The head does
# not learn sex from the codes; it copies it from the input.
#
# How much could the codes alone tell? A patient with a code that the {term}`MCE` reserves for
# one sex (pregnancy, prostate...) reveals it:

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
# Only {glue:text}`l05_sex_specific_pct:.1f`% do: a head that read codes alone could reach
# about {glue:text}`l05_codes_ceiling_pct:.1f`% accuracy at best. The heads' accuracy on the
# validation patients, and how much `end_hidden` moves when only the sex input `x_cat` is
# flipped (0: the state does not depend on the sex input at all):

# %%
from course_lib import losses

collate = PatientCollator()


@torch.no_grad()
def sex_head_report(trained, batch_size: int = 50) -> dict[str, float]:
    """Sex-head accuracy on the run's validation split; relative end-state change on a flip."""
    model = trained.model.eval()
    dataset = PatientDataset(
        trained.run.split(cohort, "val"),
        trained.vocabulary,
        trained.normalizer,
        ctx.preset.max_sequence_length,
    )
    correct, change = 0, 0.0
    for start in range(0, len(dataset), batch_size):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = {key: value.to(model.device) for key, value in collate(rows).items()}
        inputs = {k: batch[k] for k in ("input_ids", "decoder_input_ids", "labels", "x_num")}
        inputs["loss_weights"] = dict.fromkeys(losses.VALIDITY_LOSSES, 0.0)  # the heads only
        real = model(**inputs, x_cat=batch["x_cat"])
        flipped = model(**inputs, x_cat=1 - batch["x_cat"])
        correct += int((real.sex_logits.argmax(-1) == batch["x_cat"][:, 0]).sum())
        moved = (real.end_hidden - flipped.end_hidden).norm(dim=1) / real.end_hidden.norm(dim=1)
        change += float(moved.sum())
    return {
        "sex_accuracy_pct": 100 * correct / len(dataset),
        "end_state_change": change / len(dataset),
    }


report = pd.DataFrame(
    {label: sex_head_report(run) for label, run in runs.items() if "no heads" not in label}
).T
display(report.style.format("{:.3f}"))
glue("l05_default_acc", float(report.loc[RUNS_LABEL, "sex_accuracy_pct"]))
glue("l05_codes_acc", float(report.loc["no prompts (0.001 + validity)", "sex_accuracy_pct"]))
check_above(
    "with prompts the sex head beats the codes-only ceiling",
    float(report.loc[RUNS_LABEL, "sex_accuracy_pct"]),
    codes_only_ceiling,
)

# %% [markdown]
# With prompts the head is right for {glue:text}`l05_default_acc:.1f`% of the validation
# patients, above anything the codes allow; without prompts, {glue:text}`l05_codes_acc:.1f`%.
# A vanished sex loss is therefore no sign that the model has learned how sex shapes a
# record. It only says that the decoder passes its input on.
#
# ## Do the heads change what is generated?
#
# The question that matters for a generator: does a model trained with strong heads write
# fewer codes that break the sex and age rules? Compare the heavy-heads run with the same
# model without heads (both without the validity loss) and with the default recipe: violations
# of one generated patient per training patient (stored with each run, no masked decoding;
# patient-clustered standard errors as in lesson 04), and the sex information in the first
# code (`prompt_information_sex_nats` on the test patients, with its standard error over
# patients).

# %%
import numpy as np

from course_lib.evaluation.conditioning import (
    model_first_code_probabilities,
    smooth,
    swapped_demographics,
)
from course_lib.evaluation.validity import rule_violations


def violation_rates(cohort_) -> dict[str, float]:
    """Age and sex violation rates per code occurrence, with patient-clustered standard errors."""
    codes = np.array([len(p.codes) for p in cohort_], dtype=float)
    table = rule_violations(cohort_)
    out = {}
    for family in ("age", "sex"):
        counts = np.bincount(
            table.loc[table["family"] == family, "patient"], minlength=len(cohort_)
        ).astype(float)
        rate = counts.sum() / codes.sum()
        out[f"{family} rate"] = rate
        out[f"{family} se"] = np.sqrt(np.sum((counts - rate * codes) ** 2)) / codes.sum()
    return out


def sex_information(trained) -> tuple[float, float]:
    """Mean and standard error over test patients of log p(first code | own sex) - | flipped)."""
    test = [p for p in trained.run.split(cohort, "test") if p.visits and p.visits[0].codes]
    test = [p for p in test if p.visits[0].codes[0] in trained.vocabulary]
    ages, sexes, codes = (
        [p.age for p in test],
        [p.sex for p in test],
        [p.visits[0].codes[0] for p in test],
    )
    n_codes = len(trained.vocabulary.code_ids)

    def log_p(a, s):
        probabilities = model_first_code_probabilities(
            trained.model, trained.vocabulary, trained.normalizer, a, s, codes
        )
        return np.log(smooth(probabilities, n_codes))

    gain = log_p(ages, sexes) - log_p(*swapped_demographics(ages, sexes, "sex"))
    return float(gain.mean()), float(gain.std(ddof=1) / np.sqrt(len(gain)))


compared = ["no heads (0, no validity)", "heavy heads (1, no validity)", RUNS_LABEL]
effects = pd.DataFrame(
    {
        label: violation_rates(runs[label].generated())
        | dict(
            zip(
                ("sex information (nats)", "sex information se"),
                sex_information(runs[label]),
                strict=True,
            )
        )
        for label in compared
    }
).T
display(effects.style.format("{:.4f}"))

# %% tags=["remove-input"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
short = ["no heads", "heavy heads", "default"]
for ax, family in zip(axes, ("age", "sex"), strict=True):
    ax.bar(
        short,
        100 * effects[f"{family} rate"],
        yerr=200 * effects[f"{family} se"],
        capsize=4,
        color=["#999999", "#6fa8dc", "#e06666"],
    )
    ax.set_ylabel(f"{family} violations (% of codes)")
    ax.set_title("bars: 2 standard errors", fontsize=9)
plt.tight_layout()
plt.show()


# %%
def gap(a: str, b: str, column: str) -> tuple[float, float]:
    """Difference a - b of a column and its standard error (independent estimates)."""
    se = column.replace("rate", "se") if "rate" in column else "sex information se"
    return (
        float(effects.loc[a, column] - effects.loc[b, column]),
        float(np.hypot(effects.loc[a, se], effects.loc[b, se])),
    )


no_heads, heavy_label = compared[0], compared[1]
for family in ("age", "sex"):
    for label, key in zip(compared, ("off", "heavy", "default"), strict=True):
        glue(f"l05_{family}_{key}", float(effects.loc[label, f"{family} rate"]))
    check_below(
        f"the validity recipe writes fewer {family} violations than heavy heads",
        float(effects.loc[RUNS_LABEL, f"{family} rate"]),
        float(effects.loc[heavy_label, f"{family} rate"]),
        noise=gap(RUNS_LABEL, heavy_label, f"{family} rate")[1],
    )
    heads_gain = -gap(heavy_label, no_heads, f"{family} rate")[0]
    validity_gain = -gap(RUNS_LABEL, heavy_label, f"{family} rate")[0]
    check_true(
        f"{family}: going from heavy heads to the validity loss removes more violations than "
        "adding the heads did",
        validity_gain > heads_gain,
        f"removed by the heads {heads_gain:+.4f} (negative: added), by the validity loss a "
        f"further {validity_gain:+.4f}",
    )


def verdict(difference: float, noise: float, smaller: str, larger: str) -> str:
    """Words for a difference against twice its standard error."""
    if abs(difference) <= 2 * noise:
        return f"within two standard errors ({difference:+.4f} +- {2 * noise:.4f}): no measurable change"
    word = smaller if difference < 0 else larger
    return f"{word} beyond two standard errors ({difference:+.4f} +- {2 * noise:.4f})"


for family in ("age", "sex"):
    glue(
        f"l05_heads_{family}_verdict",
        verdict(*gap(heavy_label, no_heads, f"{family} rate"), "fewer", "more"),
    )
glue(
    "l05_heads_info_verdict",
    verdict(*gap(heavy_label, no_heads, "sex information (nats)"), "less", "more"),
)
for label, key in zip(compared, ("off", "heavy", "default"), strict=True):
    glue(f"l05_info_{key}", float(effects.loc[label, "sex information (nats)"]))
verdicts = {
    what: verdict(*gap(heavy_label, no_heads, column), *words)
    for what, column, words in (
        ("age violations", "age rate", ("fewer", "more")),
        ("sex violations", "sex rate", ("fewer", "more")),
        ("sex information", "sex information (nats)", ("less", "more")),
    )
}
for what, words in verdicts.items():
    print(f"heavy heads vs no heads, {what}: {words}")

# %% [markdown]
# Heavy heads against no heads, both without the validity loss: age violations
# {glue:text}`l05_age_heavy:.2%` against {glue:text}`l05_age_off:.2%`,
# {glue:text}`l05_heads_age_verdict`; sex violations {glue:text}`l05_sex_heavy:.2%` against
# {glue:text}`l05_sex_off:.2%`, {glue:text}`l05_heads_sex_verdict`; sex information in the
# first code {glue:text}`l05_info_heavy:.3f` against {glue:text}`l05_info_off:.3f` nats,
# {glue:text}`l05_heads_info_verdict`. Each is one training run, so a difference beyond the
# sampling noise may still be partly the training seed. Whatever the heads did, the default
# recipe goes much further: {glue:text}`l05_age_default:.2%` age and
# {glue:text}`l05_sex_default:.2%` sex violations, below the heavy heads by more than two
# standard errors (the check lines).
#
# Why the heads are the wrong lever: under teacher forcing they read hidden states of *real*
# sequences, and their gradient shapes those representations, never directly the probability
# that the LM head gives to a forbidden code. With the prompt in view, the sex head copies the
# answer from the input (the vanished loss above), and a loss near zero sends almost no
# gradient back at all. What acts on the probability of an invalid code directly: the
# conditioning itself (where the demographics enter, lesson 04), a validity term on the codes
# the rules forbid for this patient (lessons 04 and 06; the unlikelihood form is Welleck et al.
# 2019),
# classifier-free guidance at decoding (`condition_dropout` in training plus
# `generate_patients(..., guidance=s)`), and masked decoding as a safety net (lesson 08).
#
# ## Summary
#
# - The age and sex heads read the decoder state at the position that emits `</patient>`, the
#   only one that has seen the whole patient; `PromptBart` returns it as `end_hidden`.
# - A linear head on `d_model = 768` has {glue:text}`l05_base_age_linear:,` parameters, the
#   MLP head {glue:text}`l05_base_age_mlp:,`: the notes' ~197k. Either is a small share of the
#   model; building the model on the `meta` device counts it for free.
# - `logs/train.jsonl` holds every term's raw value, weight and share per step.
# - The sex loss vanishes in the multi-task run, as in the notes, at weight 1
#   ({glue:text}`l05_final_sex_heavy:.1g`) and even at 0.001
#   ({glue:text}`l05_final_sex_default:.4f`), because the head reads a state that has seen the
#   sex prompt; without prompts it stays at a coin flip ({glue:text}`l05_final_sex_none:.3f`).
# - The heads are not what makes the generator respect sex and age. Heavy heads against none:
#   age violations {glue:text}`l05_heads_age_verdict`, sex violations
#   {glue:text}`l05_heads_sex_verdict`. The validity loss with prompts on both sides and the
#   decoder vector (lesson 04) removes more violations than the heads did, in both families,
#   and writes fewer than the heavy heads beyond two standard errors.
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
# 4. **Codes only.** Train a run without prompts and with the sex weight at 1
#    (`TrainConfig(prompt_location="none", loss_weights={"age": 0.0, "sex": 1.0})`, 300
#    steps). Does its validation accuracy approach the codes-only ceiling of
#    {glue:text}`l05_codes_ceiling_pct:.1f`% computed above? Which patients does it get right?
