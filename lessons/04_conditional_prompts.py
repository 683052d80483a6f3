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
# # 04 · Conditional prompts
#
# **Objectives.** After this lesson you can turn a patient's age and sex into *prompt* vectors
# in a few lines of torch and check them against `course_lib`'s `ConditionalPrompt`; say where
# the demographics can enter BART (encoder prompts, decoder prompts, both, and a vector added at
# every decoder position) and what each choice costs; compare the five variants, all trained
# with the validity loss, on MCE violations with error bars; and measure what each path carries
# (first-code probability mass, prompt information) instead of guessing it.
#
# **Prerequisites.** {doc}`03_bart_for_patients` (the unconditional baseline and its
# violation rates).
#
# **Estimated time.** 50 minutes.

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

ctx = setup_lesson(seed=0, name="04_conditional_prompts")

# %% [markdown]
# ## From demographics to vectors
#
# A batch carries the demographics as two tensors (lesson 02): {term}`x_num`, the normalised
# age, `[batch, 1]`, and {term}`x_cat`, the sex index (F = 0, M = 1), `[batch, 1]`. Four
# patients to follow through the lesson: a newborn girl, a woman and a man of 30, a man of 80.

# %%
import torch

from course_lib.dataset import AgeNormalizer, split_cohort
from course_lib.generation import demographics_tensors
from course_lib.mimic import load_mimic

cohort = load_mimic(ctx.data_dir)
train_cohort, val_cohort, test_cohort = split_cohort(cohort, seed=0)
normalizer = AgeNormalizer.fit(train_cohort)
ages, sexes = [0.0, 30.0, 30.0, 80.0], ["F", "F", "M", "M"]
labels = [f"{sex}, {age:.0f}" for age, sex in zip(ages, sexes, strict=True)]
x_num, x_cat = demographics_tensors(ages, sexes, normalizer)
print("x_num", x_num.squeeze(1).tolist())
print("x_cat", x_cat.squeeze(1).tolist())

# %% [markdown]
# PromptEHR {cite}`wang2022promptehr` makes **one prompt vector per feature**. A numeric
# feature $x_j$ becomes $x_j W_j + b_j$ with learned vectors $W_j, b_j$ (a line through the
# hidden space, one point per age); a categorical feature becomes a row of an embedding table
# plus a bias. A small shared network then projects every feature's vector to the model width
# `d_model`. In torch:

# %%
from torch import nn

hidden = d_model = ctx.preset.d_model
num_weight = torch.randn(1, hidden) * 0.02  # one row per numeric feature
num_bias = torch.zeros(1, hidden)
sex_table = nn.Embedding(2, hidden)
sex_bias = torch.zeros(hidden)
projection = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d_model))

age_hidden = x_num.unsqueeze(-1) * num_weight + num_bias  # [batch, 1, hidden]
sex_hidden = sex_table(x_cat[:, 0]) + sex_bias  # [batch, hidden]
prompts = projection(torch.cat([age_hidden, sex_hidden.unsqueeze(1)], dim=1))
print("prompts", list(prompts.shape), "= [batch, n_num + n_cat, d_model]")

# %% [markdown]
# `course_lib.model.ConditionalPrompt` is the same computation, written once for any number of
# numeric features and any list of category cardinalities. Give it our weights and it must
# return our prompts:

# %%
from course_lib.model import ConditionalPrompt

library_prompt = ConditionalPrompt(n_num=1, cat_cardinalities=[2], hidden=hidden, d_model=d_model)
with torch.no_grad():
    library_prompt.num_weight.copy_(num_weight)
    library_prompt.num_bias.copy_(num_bias)
    library_prompt.cat_embeddings[0].weight.copy_(sex_table.weight)
    library_prompt.cat_bias[0].copy_(sex_bias)
    library_prompt.proj.load_state_dict(projection.state_dict())
    same_prompts = glue("same_prompts", torch.allclose(library_prompt(x_num, x_cat), prompts))
print("ConditionalPrompt gives our prompts:", same_prompts)

# %% [markdown]
# *Prepending* is one `torch.cat` along the sequence axis. The encoder's input in the course's
# task is a single `<mask>` token; with the prompts in front it becomes three positions, and the
# attention mask grows with it (prompts are always attended to). We take the `<mask>` embedding
# from a fresh `PromptBart` with encoder prompts:

# %%
from course_lib.model import build_model
from course_lib.tokens import MASK_ID, Vocabulary

vocabulary = Vocabulary.build(train_cohort)
encoder_model = build_model(vocabulary, ctx.preset, prompt_location="encoder").eval()
mask_ids = torch.full((len(ages), 1), MASK_ID)
mask_embedding = encoder_model.bart.shared(mask_ids)  # [batch, 1, d_model]
encoder_input = torch.cat([prompts, mask_embedding], dim=1)
print("encoder input with prompts", list(encoder_input.shape))

# %% [markdown]
# `PromptBart.encode` does exactly this (with its own prompt encoder) before running the
# encoder; the shapes agree:

# %%
with torch.no_grad():
    encoder_hidden, encoder_mask = encoder_model.encode(mask_ids, None, x_num, x_cat)
print("encoder output", list(encoder_hidden.shape), "attention mask", encoder_mask.tolist()[0])

# %% [markdown]
# ## Where the prompts go
#
# `build_model(..., prompt_location=...)` takes four values:
#
# - `"encoder"`: the prompts are extra encoder positions. The decoder sees them only through
#   cross-attention, after the encoder has mixed them with the `<mask>`.
# - `"decoder"`: the prompts are prepended to the decoder's input, so every generated token
#   attends to them directly in self-attention; their output positions are dropped before the
#   LM head (they predict nothing). During generation they sit in the key/value cache.
# - `"both"`: two independent prompt encoders, one per side.
# - `"none"`: lesson 03's baseline.
#
# Each `ConditionalPrompt` adds the same number of parameters:

# %%
import pandas as pd
from IPython.display import display

LOCATIONS = ("none", "encoder", "decoder", "both")
parameter_table = pd.DataFrame(
    {
        location: build_model(vocabulary, ctx.preset, prompt_location=location).parameter_counts()
        for location in LOCATIONS
    }
).T[["bart", "encoder_prompt", "decoder_prompt", "total"]]
prompt_parameters = glue("prompt_parameters", int(parameter_table.loc["encoder", "encoder_prompt"]))
prompt_share = glue("prompt_share", prompt_parameters / parameter_table.loc["none", "total"])
display(parameter_table)

# %% [markdown]
# One prompt encoder is {glue:text}`prompt_parameters:,` parameters,
# {glue:text}`prompt_share:.1%` of the model: conditioning is cheap in size. Whether it is
# cheap to *learn* is another matter. Compare the prompts with the token embeddings they sit
# beside (BART scales token embeddings by $\sqrt{d_{model}}$):

# %%
with torch.no_grad():
    prompt_norm = encoder_model.encoder_prompt(x_num, x_cat).norm(dim=-1).mean().item()
    token_norm = encoder_model.bart.shared(mask_ids[:1]).norm(dim=-1).item()
glue("prompt_norm", prompt_norm)
glue("token_norm", token_norm)
longer, shorter = ("prompt vector", "`<mask>` embedding")
if token_norm > prompt_norm:
    longer, shorter = shorter, longer
norm_ratio = glue("norm_ratio", max(token_norm, prompt_norm) / min(token_norm, prompt_norm))
glue(
    "norm_sentence",
    f"At initialisation a {longer} is {norm_ratio:.1f} times longer than a {shorter} "
    f"(norms {prompt_norm:.2f} for the prompt, {token_norm:.2f} for `<mask>`).",
)
print(f"mean prompt norm {prompt_norm:.4f}; <mask> embedding norm {token_norm:.3f}")

# %% [markdown]
# {glue:text}`norm_sentence` Training has to bring the prompts and the tokens to scales at which
# the model reads both.
#
# ## The decoder vector
#
# Prepended prompts are positions the decoder *may* attend to. The conditioning recipe of the
# course (issue 11's measured winner, now the default) adds a second path: a third
# `ConditionalPrompt`, whose vectors are summed into one demographic vector that is **added to
# the decoder's input at every position**, at every generation step. No token can ignore it.
# It costs one more prompt encoder:

# %%
with_add = build_model(vocabulary, ctx.preset, prompt_location="both", decoder_prompt_add=True)
add_parameters = glue("add_parameters", int(with_add.parameter_counts()["decoder_condition"]))
print(f"decoder vector: {add_parameters:,} parameters")

# %% [markdown]
# ## The validity loss
#
# The prompts only say *who* the patient is; nothing in the LM loss says that a code the
# MCE rules forbid for that patient is worse than any other wrong code. The default recipe
# adds that: a penalty $\max(0, \log p_{\text{forbidden}} - \log 10^{-4})$ at every code
# position, where $p_{\text{forbidden}}$ is the probability the model puts on the codes the
# age and sex rules forbid for this patient (`course_lib.losses.validity_log_loss`, weight
# {glue:text}`validity_weight:g`; lesson 06 compares it with the unlikelihood
# $-\log(1 - p_{\text{forbidden}})$). It can only
# help a model that *knows* the patient's age and sex, which is what the prompts are for.
#
# ## Training the variants
#
# Five runs of one recipe (`course_lib/recipes.py`), the validity loss on in all of them, the
# same budget (300 steps of the `narrow` model), differing only in where the demographics
# enter:
#
# | run | prompts | decoder vector |
# |---|---|---|
# | `prompts_none` | none | no |
# | `prompts_encoder` | encoder | no |
# | `prompts_decoder` | decoder (prepended) | no |
# | `prompts_both` | both | no |
# | `prompts_both_add` | both | **yes** (the default) |
#
# `ctx.train_or_load` loads each stored reference run (or trains it, about a minute on two
# cores, when it is missing or stale). Each run stored one generated patient per training
# patient (same age and sex, no masked decoding), so the comparison costs no generation here.

# %%
import matplotlib.pyplot as plt
import numpy as np

from course_lib import icd9
from course_lib.tokens import BOS_ID, VISIT_START_ID

VARIANTS = {
    "none": "prompts_none",
    "encoder": "prompts_encoder",
    "decoder": "prompts_decoder",
    "both": "prompts_both",
    "both + add": "prompts_both_add",
}
runs = {label: ctx.train_or_load(name) for label, name in VARIANTS.items()}
default_run = runs["both + add"]
glue("validity_weight", default_run.config.loss_weights["validity_log"])
assert all(r.vocabulary.tokens == default_run.vocabulary.tokens for r in runs.values())
summary = pd.DataFrame(
    {
        label: {
            "steps": int(run.epochs["step"].iloc[-1]),
            "best validation LM": run.epochs["val_lm"].min(),
            "training seconds": run.epochs["elapsed_s"].iloc[-1],
        }
        for label, run in runs.items()
    }
).T
display(summary.style.format({"best validation LM": "{:.4f}", "training seconds": "{:.0f}"}))

# %% [markdown]
# ## Violations: does the model respect who the patient is?
#
# The MCE age and sex violations of each generated cohort (lesson 03), as a share of code
# occurrences. The noise: the codes of one patient are not independent draws, so the standard
# error is computed over patients (a ratio of sums, the delta method), a little wider than the
# binomial $\sqrt{p(1-p)/N}$.

# %%
from course_lib.claims import check_above, check_below, check_true
from course_lib.evaluation.validity import rule_violations


def violation_rates(cohort_) -> dict[str, float]:
    """Age and sex violation rates per code occurrence, with patient-clustered standard errors."""
    codes = np.array([len(p.codes) for p in cohort_], dtype=float)
    table = rule_violations(cohort_)
    out = {"patients": len(cohort_), "codes": int(codes.sum())}
    for family in ("age", "sex"):
        counts = np.bincount(
            table.loc[table["family"] == family, "patient"], minlength=len(cohort_)
        ).astype(float)
        rate = counts.sum() / codes.sum()
        out[f"{family} rate"] = rate
        out[f"{family} se"] = np.sqrt(np.sum((counts - rate * codes) ** 2)) / codes.sum()
    return out


real_train = default_run.run.split(cohort, "train")
cohorts = {"real": real_train} | {label: run.generated() for label, run in runs.items()}
violations = pd.DataFrame({name: violation_rates(c) for name, c in cohorts.items()}).T
display(
    violations.style.format(
        {c: "{:.2%}" for c in violations.columns if "rate" in c or "se" in c}
        | {"patients": "{:.0f}", "codes": "{:,.0f}"}
    )
)

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(8, 3.3))
labels_v = list(VARIANTS)
positions = np.arange(len(labels_v))
for offset, (family, colour) in enumerate((("age", "#6fa8dc"), ("sex", "#e06666"))):
    ax.bar(
        positions + (offset - 0.5) * 0.38,
        100 * violations.loc[labels_v, f"{family} rate"].astype(float),
        width=0.38,
        yerr=200 * violations.loc[labels_v, f"{family} se"].astype(float),
        capsize=3,
        color=colour,
        label=f"{family} rules",
    )
ax.set_xticks(positions, labels_v)
ax.set_xlabel("where the demographics enter (validity loss on in every run)")
ax.set_ylabel("code occurrences breaking\nan MCE rule (%)")
ax.set_title("generated, one patient per training patient; bars: 2 standard errors", fontsize=9)
ax.legend()
plt.tight_layout()
plt.show()


# %%
def gap_noise(a: str, b: str, family: str) -> float:
    """Standard error of the difference of two independent cohorts' rates."""
    return float(np.hypot(violations.loc[a, f"{family} se"], violations.loc[b, f"{family} se"]))


for family in ("age", "sex"):
    for label in VARIANTS:
        glue(
            f"{family}_rate_{label.replace(' + ', '_')}",
            float(violations.loc[label, f"{family} rate"]),
        )
    gap = float(
        violations.loc["none", f"{family} rate"] - violations.loc["both + add", f"{family} rate"]
    )
    noise = gap_noise("both + add", "none", family)
    glue(f"{family}_gap_se", abs(gap) / noise if noise > 0 else 0.0)  # no violation at all: 0
    if abs(gap) <= 2 * noise:
        verdict = "no difference beyond two standard errors"
    else:
        verdict = f"{'fewer' if gap > 0 else 'more'} with the default, beyond two standard errors"
    glue(f"{family}_gap_text", verdict)
    print(f"{family}: no prompts minus default {gap:+.5f}, noise {noise:.5f}: {verdict}")
blind = violations.loc["none", ["age rate", "sex rate"]].astype(float)
check_true(
    "with the validity loss the no-prompt model breaks an age or a sex rule in fewer than 0.5% "
    "of its codes",
    bool((blind < 0.005).all()),
    f"age {blind['age rate']:.5f}, sex {blind['sex rate']:.5f}",
)
default_broken = rule_violations(runs["both + add"].generated())
default_ages = [p.age for p in runs["both + add"].generated()]
age_broken = default_broken[default_broken["family"] == "age"]
newborn_broken = age_broken[age_broken["rule"] == "newborn"]
glue("default_newborn_violation_share", len(newborn_broken) / max(len(age_broken), 1))
glue("default_age_violations", len(age_broken))
glue(
    "default_violation_median_age",
    float(np.median([default_ages[i] for i in newborn_broken["patient"]]))
    if len(newborn_broken)
    else float("nan"),
)
print(
    f"the default's age violations: {len(age_broken)}, of which newborn codes for patients aged "
    f"1 or more: {len(newborn_broken)}"
)
fewest = violations.loc[labels_v, ["age rate", "sex rate"]].astype(float).sum(axis=1).idxmin()
glue("fewest_violations", fewest)
print(f"fewest violations (age + sex): {fewest}")

# %% [markdown]
# Without prompts the model cannot know whom it writes for, and yet with the validity loss it
# breaks the age rules in only {glue:text}`age_rate_none:.2%` of its codes and the sex rules
# in {glue:text}`sex_rate_none:.2%`: it learns to avoid every code that some patient may not
# have. With prompts on both sides and the decoder vector (the default) the rates are
# {glue:text}`age_rate_both_add:.2%` and {glue:text}`sex_rate_both_add:.2%`,
# {glue:text}`age_gap_se:.1f` and {glue:text}`sex_gap_se:.1f` standard errors from the no-prompt
# model's (age: {glue:text}`age_gap_text`; sex: {glue:text}`sex_gap_text`). Of the default's
# {glue:text}`default_age_violations` age violations, a share of
# {glue:text}`default_newborn_violation_share:.0%` are newborn codes written for patients past
# their first birthday (median age {glue:text}`default_violation_median_age:.1f` years): the
# model writes newborn codes for the very young, and the line the MCE draws at one year is
# not sharp in what it learned. The run with the fewest violations overall is
# **{glue:text}`fewest_violations`**; the other rows are in the table: encoder prompts
# {glue:text}`age_rate_encoder:.2%` / {glue:text}`sex_rate_encoder:.2%`, prepended decoder
# prompts {glue:text}`age_rate_decoder:.2%` / {glue:text}`sex_rate_decoder:.2%`, both
# {glue:text}`age_rate_both:.2%` / {glue:text}`sex_rate_both:.2%` (age / sex).
#
# ## Newborns and adults
#
# The clearest age signal in the data: newborn-only codes (the MCE's `newborn` list, mostly
# the perinatal chapter) belong to patients under one year. Their share among the codes of
# generated newborns and of generated adults (18 and over):

# %%
NEWBORN_CODES = icd9.mce_rules()["newborn"]


def newborn_share(cohort_, keep) -> tuple[float, float]:
    """Share of the kept patients' codes that are newborn-only, and its patient-clustered se."""
    kept = [p for p in cohort_ if keep(p)]
    codes = np.array([len(p.codes) for p in kept], dtype=float)
    hits = np.array([sum(c in NEWBORN_CODES for c in p.codes) for p in kept], dtype=float)
    share = hits.sum() / codes.sum()
    return share, float(np.sqrt(np.sum((hits - share * codes) ** 2)) / codes.sum())


newborn_table = pd.DataFrame(
    {
        name: {
            "newborns": newborn_share(c, lambda p: p.age < 1)[0],
            "newborns se": newborn_share(c, lambda p: p.age < 1)[1],
            "adults": newborn_share(c, lambda p: p.age >= 18)[0],
            "adults se": newborn_share(c, lambda p: p.age >= 18)[1],
        }
        for name, c in cohorts.items()
    }
).T
display(newborn_table.style.format("{:.2%}"))
for name in ("real", "none", "both + add"):
    key = name.replace(" + ", "_")
    glue(f"newborn_share_{key}", float(newborn_table.loc[name, "newborns"]))
    glue(f"adult_share_{key}", float(newborn_table.loc[name, "adults"]))
no_vector_newborns = newborn_table.loc[["none", "encoder", "decoder", "both"], "newborns"]
glue("newborn_share_no_vector_max", float(no_vector_newborns.max()))
check_below(
    "every run without the decoder vector gives its newborns < 2% newborn-only codes",
    float(no_vector_newborns.max()),
    0.02,
)
check_above(
    "default model: newborns get more newborn-only codes than adults",
    float(newborn_table.loc["both + add", "newborns"]),
    float(newborn_table.loc["both + add", "adults"]),
    noise=float(np.hypot(*newborn_table.loc["both + add", ["newborns se", "adults se"]])),
)
check_above(
    "newborns get more newborn-only codes with the default prompts than without prompts",
    float(newborn_table.loc["both + add", "newborns"]),
    float(newborn_table.loc["none", "newborns"]),
    noise=float(
        np.hypot(
            newborn_table.loc["both + add", "newborns se"], newborn_table.loc["none", "newborns se"]
        )
    ),
)

# %% [markdown]
# Real newborns: {glue:text}`newborn_share_real:.1%` of their codes are newborn-only, real
# adults {glue:text}`adult_share_real:.2%`. Without prompts the model gives newborns
# {glue:text}`newborn_share_none:.1%` and adults {glue:text}`adult_share_none:.2%`; with the
# default prompts newborns get {glue:text}`newborn_share_both_add:.1%` and adults
# {glue:text}`adult_share_both_add:.2%`: the two groups separate. That is what the violation
# rates could not show: the no-prompt model stays within the rules by writing almost no
# newborn codes for anyone, and the prompted model writes them for the right patients, though
# still fewer than real newborns have.
#
# ## Encoder, decoder or both: what each path carries
#
# Generated cohorts mix everything together. Two sharper instruments read the model directly,
# without sampling noise:
#
# - **First-code mass**: after `<patient> <visit>`, the probability the model puts on the
#   female-only codes, for the training patients' ages with every sex set to female, then to
#   male. A model that ignores sex gives the same mass to both.
# - **Prompt information** (`course_lib.evaluation.conditioning.prompt_information`): on real
#   test patients, the mean log-likelihood of their true first code under their own
#   demographics minus under swapped ones (sex flipped, or age moved to another band), in nats.
#   Zero for a model that ignores the prompts.

# %%
from course_lib.evaluation.conditioning import prompt_information

code_ids = torch.tensor(default_run.vocabulary.code_ids)
female_only = torch.tensor(
    [default_run.vocabulary.id_to_code(int(i)) in icd9.mce_rules()["female"] for i in code_ids]
)
real_test = default_run.run.split(cohort, "test")
train_ages = [p.age for p in real_train]


@torch.no_grad()
def female_mass(run, sex: str) -> float:
    """Mean first-code probability of the female-only codes, training ages, one sex for all."""
    device = run.model.device
    sexes_ = [sex] * len(train_ages)
    x_num_, x_cat_ = demographics_tensors(train_ages, sexes_, run.normalizer, device)
    prefix = torch.tensor([[BOS_ID, VISIT_START_ID]] * len(train_ages), device=device)
    logits = run.model.eval()(decoder_input_ids=prefix, x_num=x_num_, x_cat=x_cat_).logits[:, -1]
    probabilities = logits[:, code_ids.to(device)].softmax(dim=-1)
    return float(probabilities[:, female_only.to(device)].sum(dim=-1).mean())


paths = {}
for label, run in runs.items():
    information = prompt_information(run.model, run.vocabulary, run.normalizer, real_test)
    paths[label] = {
        "female-only mass, F prompt": female_mass(run, "F"),
        "female-only mass, M prompt": female_mass(run, "M"),
        "sex information (nats)": information["prompt_information_sex_nats"],
        "age information (nats)": information["prompt_information_age_nats"],
    }
paths = pd.DataFrame(paths).T
paths["F / M mass"] = paths["female-only mass, F prompt"] / paths["female-only mass, M prompt"]
real_female_first = np.mean(
    [p.visits[0].codes[0] in icd9.mce_rules()["female"] for p in real_train if p.sex == "F"]
)
display(paths.style.format("{:.4f}").format("{:.1f}", subset=["F / M mass"]))
print(f"real women: {real_female_first:.2%} of first codes are female-only; real men: 0%")

# %%
for label in VARIANTS:
    key = label.replace(" + ", "_")
    glue(f"mass_ratio_{key}", float(paths.loc[label, "F / M mass"]))
    glue(f"sex_info_{key}", float(paths.loc[label, "sex information (nats)"]))
    glue(f"age_info_{key}", float(paths.loc[label, "age information (nats)"]))
glue("real_female_first", float(real_female_first))
check_true(
    "no prompts: exactly no prompt information and the same mass for both sexes",
    abs(paths.loc["none", "sex information (nats)"]) < 1e-6
    and abs(paths.loc["none", "F / M mass"] - 1) < 1e-4,
    f"sex information {paths.loc['none', 'sex information (nats)']:.2g}, "
    f"F / M {paths.loc['none', 'F / M mass']:.4f}",
)
check_above(
    "the default model puts much more female-only mass under a female prompt (F / M > 2)",
    float(paths.loc["both + add", "F / M mass"]),
    2.0,
)
strongest_sex = glue("strongest_sex_path", str(paths["sex information (nats)"].idxmax()))
strongest_age = glue("strongest_age_path", str(paths["age information (nats)"].idxmax()))
print(f"most sex information: {strongest_sex}; most age information: {strongest_age}")
check_true(
    "the default (both + add) carries the most sex and the most age information",
    strongest_sex == strongest_age == "both + add",
    f"sex: {strongest_sex}, age: {strongest_age}",
)

# %% [markdown]
# Why does the encoder path carry so little? Flip only the sex input and measure how far the
# encoder's output moves, relative to its length, in the trained encoder-prompt model:


# %%
@torch.no_grad()
def encoder_flip_change(model) -> float:
    """Mean relative change of the encoder's output when only the sex input is flipped."""
    ages_, sexes_ = [p.age for p in real_test], [p.sex for p in real_test]
    x_num_, x_cat_ = demographics_tensors(ages_, sexes_, default_run.normalizer, model.device)
    mask = torch.full((len(sexes_), 1), MASK_ID, device=model.device)
    own, _ = model.eval().encode(mask, None, x_num_, x_cat_)
    flipped, _ = model.encode(mask, None, x_num_, 1 - x_cat_)
    return float(((own - flipped).norm(dim=-1) / own.norm(dim=-1)).mean())


encoder_change = glue("encoder_change", encoder_flip_change(runs["encoder"].model))
check_below("encoder prompts: a sex flip moves the encoder output < 5%", encoder_change, 0.05)
check_true(
    "encoder prompts: no measurable demographic information in the first code (< 0.01 nats)",
    abs(paths.loc["encoder", "sex information (nats)"]) < 0.01
    and abs(paths.loc["encoder", "age information (nats)"]) < 0.01,
    f"sex {paths.loc['encoder', 'sex information (nats)']:.2g}, "
    f"age {paths.loc['encoder', 'age information (nats)']:.2g} nats",
)
without_vector = ["encoder", "decoder", "both"]
most_without = paths.loc[without_vector, ["age information (nats)", "sex information (nats)"]]
glue("info_without_add", float(most_without.abs().max().max()))
check_true(
    "without the decoder vector no path brings 0.05 nats of age or of sex into the first code",
    bool((most_without.abs() < 0.05).all().all()),
    ", ".join(
        f"{k}: age {paths.loc[k, 'age information (nats)']:.3f} "
        f"sex {paths.loc[k, 'sex information (nats)']:.3f}"
        for k in without_vector
    ),
)
check_above(
    "with the decoder vector the first code carries more age than sex information",
    float(paths.loc["both + add", "age information (nats)"]),
    float(paths.loc["both + add", "sex information (nats)"]),
)
without_add = paths.loc[["encoder", "decoder", "both"], "sex information (nats)"].abs().max()
glue("sex_info_without_add", float(without_add))
check_above(
    "the decoder vector brings more than twice the sex information of any path without it",
    float(paths.loc["both + add", "sex information (nats)"]),
    2 * float(without_add),
)


# %% [markdown]
# Why has the encoder not passed its prompts on? Look inside its first layer. BART normalises
# after each sublayer (post-LN): `LayerNorm(x + attention(x))`, then the same with the
# feed-forward block. Compare the size of what each sublayer writes with the size of its input,
# and how far a sex flip moves each, in the encoder-only run and in the default:


# %%
@torch.no_grad()
def encoder_first_layer(model) -> dict[str, float]:
    """Norms of the first encoder layer's input and sublayer outputs, and their relative move
    when only the sex input is flipped (test patients, every position together)."""
    layer, seen = model.eval().bart.encoder.layers[0], {}
    hooks = [
        model.bart.encoder.layernorm_embedding.register_forward_hook(
            lambda m, i, o: seen.__setitem__("input", o)
        ),
        layer.self_attn.register_forward_hook(lambda m, i, o: seen.__setitem__("attention", o[0])),
        layer.fc2.register_forward_hook(lambda m, i, o: seen.__setitem__("feed-forward", o)),
    ]
    ages_, sexes_ = [p.age for p in real_test], [p.sex for p in real_test]
    x_num_, x_cat_ = demographics_tensors(ages_, sexes_, default_run.normalizer, model.device)
    mask = torch.full((len(sexes_), 1), MASK_ID, device=model.device)
    model.encode(mask, None, x_num_, x_cat_)
    own = dict(seen)
    model.encode(mask, None, x_num_, 1 - x_cat_)
    for hook in hooks:
        hook.remove()
    size = {k: v.flatten(1).norm(dim=1) for k, v in own.items()}
    row = {f"{k} size": float(size[k].mean()) for k in own}
    for k in own:
        moved = (own[k] - seen[k]).flatten(1).norm(dim=1) / size[k]
        row[f"{k} moved by flip"] = float(moved.mean())
    return row


first_layer = pd.DataFrame(
    {label: encoder_first_layer(runs[label].model) for label in ("encoder", "both + add")}
).T
display(first_layer.round(4))
inside = first_layer.loc["encoder"]
attention_ratio = glue("enc_attention_ratio", inside["attention size"] / inside["input size"])
glue("enc_input_moved", inside["input moved by flip"])
glue("enc_attention_moved", inside["attention moved by flip"])
glue("enc_ffn_ratio", inside["feed-forward size"] / inside["input size"])
glue("enc_ffn_moved", inside["feed-forward moved by flip"])
glue(
    "default_attention_ratio",
    first_layer.loc["both + add", "attention size"] / first_layer.loc["both + add", "input size"],
)
glue("default_attention_moved", first_layer.loc["both + add", "attention moved by flip"])
check_true(
    "encoder prompts: the first layer's attention writes > 5x the size of its input, and a sex "
    "flip that moves the input > 10% moves the feed-forward output < 1%",
    attention_ratio > 5
    and inside["feed-forward moved by flip"] < 0.01
    and inside["input moved by flip"] > 0.1,
    f"{attention_ratio:.1f}x; the flip moves the input {inside['input moved by flip']:.3f}, "
    f"the attention {inside['attention moved by flip']:.4f}, "
    f"the feed-forward {inside['feed-forward moved by flip']:.5f}",
)

# %% [markdown]
# What each path carries, measured on the first code of the test patients:
#
# - **Encoder prompts**: {glue:text}`age_info_encoder:.3f` nats of age and
#   {glue:text}`sex_info_encoder:.3f` of sex. Flipping the sex moves the encoder's output by
#   {glue:text}`encoder_change:.2%` of its length: in this budget the one-layer encoder has not
#   learned to pass the prompts on, and the decoder, which reads the encoder only through
#   cross-attention, has nothing to read. The table shows how: a sex flip moves the layer's
#   input by {glue:text}`enc_input_moved:.0%`, but its attention writes vectors
#   {glue:text}`enc_attention_ratio:.1f` times the size of that input that a flip moves by only
#   {glue:text}`enc_attention_moved:.1%`, and the feed-forward block adds vectors
#   {glue:text}`enc_ffn_ratio:.0f` times the input's size that it moves by
#   {glue:text}`enc_ffn_moved:.2%`. Normalised after each addition, the patient's
#   own part of the residual shrinks to a rounding error: every patient gets nearly the same
#   encoder output. In the default run the same attention output is
#   {glue:text}`default_attention_ratio:.1f` times the input's size and a flip moves it by
#   {glue:text}`default_attention_moved:.0%`.
# - **Prepended decoder prompts** reach every token through self-attention, and still carry
#   only {glue:text}`age_info_decoder:.3f` nats of age and {glue:text}`sex_info_decoder:.3f` of
#   sex; prompts on both sides {glue:text}`age_info_both:.3f` and
#   {glue:text}`sex_info_both:.3f`. Under this budget, with the validity loss pushing the
#   forbidden mass down for everyone, these models learned the cheaper lesson: stay away from
#   demographic-specific codes for every patient (none of them gives its newborns more than
#   {glue:text}`newborn_share_no_vector_max:.1%` newborn-only codes, in the table above).
# - **The decoder vector**, added at every position, brings both in:
#   {glue:text}`age_info_both_add:.3f` nats of age and {glue:text}`sex_info_both_add:.3f` of sex
#   (at most {glue:text}`info_without_add:.3f` on any path without it), and a female-only
#   first-code mass {glue:text}`mass_ratio_both_add:.1f` times
#   larger under a female prompt than under a male one (real women:
#   {glue:text}`real_female_first:.1%` of first codes are female-only; real men: none).
#
# With the decoder vector the first code carries more age than sex information (checked above),
# which matches how much each pays in the loss: newborn codes are a large share of a newborn's
# codes, while female-only and male-only codes are only about 2-3% of all code occurrences.
# The demographics needed the path no token can ignore. The violation rates rank these paths
# poorly, because the validity loss keeps even the blind model within the rules; the first
# code shows which model knows whom it writes for.
#
# ## Summary
#
# - A prompt encoder is a few lines: $x W + b$ per numeric feature, an embedding per
#   categorical one, a shared projection to `d_model`; the prompts are prepended to the token
#   embeddings. `course_lib.model.ConditionalPrompt` computes exactly that.
# - The demographics can enter the encoder (read through cross-attention), the decoder
#   (prepended, read by self-attention) or both, and the default recipe also adds a
#   demographic vector at every decoder position; each path is a small share of the parameters.
# - With the validity loss on in every run, violations stay rare with or without prompts: the
#   no-prompt model avoids demographic-specific codes for everyone (its newborns get
#   {glue:text}`newborn_share_none:.1%` newborn-only codes), while the default (both + decoder
#   vector) writes them for the right patients ({glue:text}`newborn_share_both_add:.1%` of
#   its newborns' codes, real newborns {glue:text}`newborn_share_real:.1%`), with a few
#   spilling over to young children, and carries the most age and sex information into the
#   first code; without the decoder vector no path carries any.
# - The encoder-only run passes nothing on: its first layer writes vectors many times larger
#   than its input and nearly the same for every patient, and normalising after each sublayer
#   turns the prompts into a rounding error.
# - First-code mass and prompt information read what a model learned without sampling noise;
#   violation rates of generated cohorts, with patient-clustered standard errors, are the
#   end-to-end test.
#
# ## Exercises
#
# 1. **An age-band prompt.** Write `class AgeBandPrompt(ConditionalPrompt)` whose constructor
#    adds `band_edges` (in normalised-age units, e.g. `normalizer.normalize(np.array([1, 18,
#    65]))`) and whose `forward` returns `ConditionalPrompt`'s prompts followed by one more: the
#    embedding of the patient's age band (band $b$ holds $[e_{b-1}, e_b)$, use
#    `torch.bucketize(..., right=True)`), plus a bias, through the same `proj`. The check also
#    swaps it into a `PromptBart` with encoder prompts and runs a training step's forward.

# %%
from course_lib.exercises.lesson04 import check_age_band_prompt, check_sex_specific_share
from course_lib.model import ConditionalPrompt


# TODO: write your answer in place of the stub's raise.
class AgeBandPrompt(ConditionalPrompt):
    """ConditionalPrompt's prompts plus one for the age band of x_num[:, 0]."""

    def __init__(self, n_num, cat_cardinalities, hidden, d_model, band_edges):
        super().__init__(n_num, cat_cardinalities, hidden, d_model)
        raise NotImplementedError("TODO: keep band_edges, add the band embedding and bias")

    def forward(self, x_num, x_cat):
        raise NotImplementedError("TODO: append the band prompt to the other prompts")


age_band_done = check_age_band_prompt(AgeBandPrompt)

# %% [markdown]
# 2. **Sex-specific codes by sex.** Write `sex_specific_share(cohort)` returning a DataFrame
#    with rows `F`, `M` and columns `female_only`, `male_only`: the share of that sex's code
#    occurrences whose code the MCE restricts to women (rule `female`) or to men (`male`). Apply
#    it to every cohort in `cohorts`: which variant comes closest to the real diagonal?


# %%
# TODO: write your answer in place of the stub's raise.
def sex_specific_share(cohort):
    """Rows F/M, columns female_only/male_only: shares of each sex's code occurrences."""
    raise NotImplementedError("TODO: replace this line with your code")


sex_share_done = check_sex_specific_share(sex_specific_share)

# %% [markdown]
# 3. **Longer training.** Rerun the lesson with `COURSE_PRESET=small` or on a GPU (the `base`
#    preset; each recipe has a variant for it): does the gap between encoder and decoder
#    prompts shrink, and do the violations of the default fall further?
