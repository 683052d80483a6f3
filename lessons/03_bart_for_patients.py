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
# # 03 · BART for patient records
#
# **Objectives.** After this lesson you can say what the encoder and the decoder of a BART
# model see when it writes a patient; build the course's *unconditional* baseline with
# `course_lib` and count its parameters; train it and read its loss curve against two simple
# yardsticks (a uniform guess and code frequencies); decode the patients it samples; and measure
# why an unconditional model cannot be medically valid: it writes the same kind of record for a
# newborn girl and an 80-year-old man.
#
# **Prerequisites.** {doc}`01_patient_records` (the cohort, the {term}`MCE` rules),
# {doc}`02_visits_to_tokens` (the vocabulary, batches, {term}`teacher forcing`).
#
# **Estimated time.** 45 minutes.

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

ctx = setup_lesson(seed=0, name="03_bart_for_patients")

# %% [markdown]
# ## What the encoder sees, what the decoder writes
#
# BART {cite}`lewis2020bart` is a transformer *encoder-decoder*. The encoder reads its input
# in both directions at once; the decoder writes a sequence left to right, one token at a time,
# and at every step looks at the encoder's output through *cross-attention*. PromptEHR
# {cite}`wang2022promptehr` turned it into a generator of patient records, and so does this
# course, with one simplification of the training task: the encoder sees the patient's
# {term}`prompt` vectors (none in this lesson) and a single `<mask>` token, and the decoder
# writes the whole patient, `<patient> <visit> codes </visit> ... </patient>`. Whatever the
# decoder knows about *who* the patient is, it can only learn through the encoder.
#
# We load the cohort and split it by patient with the same seed that training uses, then
# collate two patients into a batch.

# %%
from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset, split_cohort
from course_lib.mimic import load_mimic
from course_lib.tokens import Vocabulary

cohort = load_mimic(ctx.data_dir)
train_cohort, val_cohort, test_cohort = split_cohort(cohort, seed=0)
vocabulary = Vocabulary.build(train_cohort)
normalizer = AgeNormalizer.fit(train_cohort)
max_length = ctx.preset.max_sequence_length
train_set = PatientDataset(train_cohort, vocabulary, normalizer, max_length)
val_set = PatientDataset(val_cohort, vocabulary, normalizer, max_length)
batch = PatientCollator()([train_set[0], train_set[1]])
print({key: list(value.shape) for key, value in batch.items()})

# %% [markdown]
# The two tensors the model reads for each patient: the encoder's `input_ids` (one column) and
# the decoder's `decoder_input_ids`, scored against `labels`, the same tokens shifted by one.
# Here they are as tokens for the first patient (padding removed):

# %%
from course_lib.dataset import IGNORE_INDEX
from course_lib.tokens import PAD_ID


def as_tokens(ids) -> str:
    """Token strings of a row of ids, without padding (``<pad>`` or the labels' -100)."""
    return " ".join(vocabulary.id_to_token(i) for i in ids if i not in (PAD_ID, IGNORE_INDEX))


for key in ("input_ids", "decoder_input_ids", "labels"):
    print(f"{key:>17}: {as_tokens(batch[key][0].tolist())}")

# %% [markdown]
# ## The unconditional baseline
#
# `course_lib.model.build_model` builds a `PromptBart` from a `BartConfig` in the shape of the
# lesson's preset (random weights, nothing downloaded). Its `prompt_location` says where the
# demographic prompts go; `"none"` gives the baseline of this lesson: a plain BART that is
# handed the patient's age and sex and never looks at them.

# %%
import pandas as pd
import torch
from IPython.display import display

from course_lib.model import build_model

model = build_model(vocabulary, ctx.preset, prompt_location="none")
parameter_counts = pd.Series(model.parameter_counts(), name="parameters")
display(parameter_counts.to_frame())

# %% [markdown]
# The prompt encoders are empty (`0`), as asked. The `age_head` and `sex_head` exist in every
# `PromptBart`; they read the decoder's last state and are the subject of lesson 05. Here their
# losses get weight 0, so they do not train the model. How much of the BART part is the table
# of code embeddings (shared by encoder, decoder and the output layer)?

# %%
embedding_parameters = len(vocabulary) * ctx.preset.d_model
embedding_share = glue("embedding_share", embedding_parameters / parameter_counts["bart"])
glue("vocabulary_size", len(vocabulary))
glue("bart_parameters", int(parameter_counts["bart"]))
print(f"{len(vocabulary):,} tokens x d_model {ctx.preset.d_model} = {embedding_parameters:,}")
print(f"share of BART's parameters: {embedding_share:.1%}")

# %% [markdown]
# With {glue:text}`vocabulary_size:,` tokens, the embedding table is
# {glue:text}`embedding_share:.0%` of the {glue:text}`bart_parameters:,` BART parameters of
# this preset: a small model spends much of its size on knowing the codes.
#
# One forward pass with teacher forcing gives logits for every position, `[batch, tgt, vocab]`,
# and the language-model (LM) loss, the mean cross-entropy over the labels. An untrained model
# predicts almost uniformly, so its loss is close to $\ln V$, the cross-entropy of a uniform guess
# over $V$ tokens:

# %%
import math

MODEL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "labels", "x_num", "x_cat")
inputs = {key: batch[key] for key in MODEL_INPUTS}
model.eval()
with torch.no_grad():
    output = model(**inputs)
initial_lm = glue("initial_lm", output.loss_terms["lm"].item())
uniform_ce = glue("uniform_ce", math.log(len(vocabulary)))
print("logits", list(output.logits.shape))
print(f"LM loss of the untrained model {initial_lm:.3f}; ln V = {uniform_ce:.3f}")

# %% [markdown]
# Now the point of this lesson in three lines. Give the same two patients other demographics
# (both women, both newborns) and compare the logits:

# %%
newborn_girls = {
    "x_num": torch.full_like(batch["x_num"], normalizer.normalize(0.0)),  # age 0
    "x_cat": torch.zeros_like(batch["x_cat"]),  # F
}
with torch.no_grad():
    other = model(**(inputs | newborn_girls))
same_logits = glue("same_logits", torch.equal(output.logits, other.logits))
print("identical logits:", same_logits)

# %% [markdown]
# The logits are identical to the last bit: with `prompt_location="none"` nothing about the
# patient reaches the network. Whatever this model learns, it learns *one* distribution of
# records for everybody.
#
# ## Training the baseline
#
# `course_lib.training.train` runs the whole loop (lesson 06 opens it up): it splits the cohort
# by patient exactly as above, builds the vocabulary and the age normaliser on the training
# split, trains with AdamW and a warm-up then linear decay, and keeps the model with the lowest
# validation LM loss. We switch the auxiliary losses off (`loss_weights` 0) and leave out the
# validity loss of lesson 04, so the baseline is a pure language model.
#
# The run is a named *recipe*, `baseline_none` (`course_lib.recipes`): on a CPU the `tiny`
# preset trains for a fixed, small number of optimizer steps; on a GPU the preset's own epochs
# apply. `ctx.train_or_load` loads the reference run stored with the course when it matches the
# recipe and the code, and trains it otherwise (`COURSE_RETRAIN=1` forces that). Lesson 04
# reuses this run, so the two lessons compare like with like.

# %%
baseline = ctx.train_or_load("baseline_none")  # the recipe: course_lib.recipes.RECIPES
print("loss weights:", baseline.config.loss_weights, "extra losses:", baseline.config.extra_losses)
model, run_vocabulary = baseline.model, baseline.vocabulary
run_config, run_dir = baseline.config, baseline.run.path
assert run_vocabulary.tokens == vocabulary.tokens, "the run's vocabulary should be ours"

# %% [markdown]
# ## The loss curve
#
# The run folder logs the training terms every few steps (`logs/train.jsonl`) and the
# validation terms at the end of each epoch (`logs/epochs.jsonl`). Two yardsticks frame the
# curve: the uniform guess $\ln V$, where training starts, and a *unigram* model that predicts
# every token with its frequency among the training labels, whatever came before. Its
# cross-entropy on the validation labels (with add-one smoothing for tokens never seen in
# training) takes four lines:

# %%
from collections import Counter

import numpy as np

label_counts = Counter(token for ids in train_set.sequences for token in ids[1:])
n_labels = sum(label_counts.values())
val_labels = [token for ids in val_set.sequences for token in ids[1:]]
unigram_probability = np.array(
    [(label_counts[token] + 1) / (n_labels + len(vocabulary)) for token in val_labels]
)
unigram_ce = glue("unigram_ce", float(-np.log(unigram_probability).mean()))
print(f"unigram cross-entropy on the validation labels: {unigram_ce:.3f} nats")

# %%
import matplotlib.pyplot as plt

from course_lib.runs import Run

run = baseline.run  # the run folder's one reader (course_lib.runs.Run): logs, splits, model
train_log = run.log("train")
epoch_log = run.log("epochs")
train_log["lm"] = train_log["terms.lm.raw"]
best_val_lm = glue("best_val_lm", float(epoch_log["val_lm"].min()))
steps_trained = glue("steps_trained", int(train_log["step"].max()))
epochs_trained = glue("epochs_trained", len(epoch_log))
train_seconds = glue("train_seconds", float(epoch_log["elapsed_s"].iloc[-1]))
print(f"{steps_trained} steps, {epochs_trained} epochs, {train_seconds:.0f} s of training")
display(epoch_log[["epoch", "step", "val_lm", "best", "elapsed_s"]])

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(7, 3.6))
ax.plot(train_log["step"], train_log["lm"], color="#6fa8dc", label="training LM loss (batch)")
ax.plot(epoch_log["step"], epoch_log["val_lm"], "o-", color="#cc0000", label="validation LM loss")
ax.axhline(uniform_ce, color="grey", linestyle=":", label=f"uniform guess, ln V = {uniform_ce:.2f}")
ax.axhline(unigram_ce, color="black", linestyle="--", label=f"unigram model = {unigram_ce:.2f}")
ax.set_xlabel("optimizer step")
ax.set_ylabel("cross-entropy (nats per token)")
ax.set_title(f"Unconditional baseline, preset {run_config.preset}")
ax.legend(fontsize=8)
plt.show()

# %%
gain_over_unigram = glue("gain_over_unigram", unigram_ce - best_val_lm)
unigram_crossed = train_log.loc[train_log["lm"] < unigram_ce, "step"]
first_below = glue(
    "first_below_unigram", int(unigram_crossed.min()) if len(unigram_crossed) else -1
)
glue("beats_unigram", "below" if gain_over_unigram > 0 else "above")
print(f"best validation LM {best_val_lm:.3f}; unigram - best = {gain_over_unigram:.3f} nats")

# %% [markdown]
# The loss falls from about $\ln V$ = {glue:text}`uniform_ce:.2f` and, after
# {glue:text}`steps_trained` steps ({glue:text}`train_seconds:.0f` s here), the best validation
# LM loss is {glue:text}`best_val_lm:.3f` nats per token, {glue:text}`beats_unigram` the
# unigram model's {glue:text}`unigram_ce:.3f` (a gap of {glue:text}`gain_over_unigram:.3f`
# nats; the training loss first dropped below that line at step
# {glue:text}`first_below_unigram`). What a unigram model cannot know, and the baseline
# does, is the *grammar* of a record: `<visit>` follows `<patient>`, a visit closes after a few
# codes, and codes that belong together follow each other. Exercise 1 asks how much of that a
# model that only sees the previous token gets.
#
# ## Sampled patients
#
# `course_lib.generation.generate_patients` samples one patient per (age, sex) with the
# cached `model.generate()` of `transformers` (lesson 08 explains the sampler and its
# processors). We ask for three very different patients and print their visits as dotted
# codes with their descriptions, flagging any code the MCE forbids for that patient.

# %%
from course_lib import icd9
from course_lib.generation import generate_patients


def show_patient(patient) -> None:
    print(f"patient {patient.subject_id}: {patient.sex}, age {patient.age:.0f}")
    for number, visit in enumerate(patient.visits, start=1):
        print(f"  visit {number}")
        for code in visit.codes:
            rule = icd9.check_code(code, visit.age, patient.sex)
            flag = f"   <- breaks the MCE '{rule}' rule" if rule else ""
            print(f"    {icd9.to_dotted(code):>7}  {icd9.describe(code)}{flag}")


examples = generate_patients(
    model, vocabulary, normalizer, ages=[0.0, 30.0, 80.0], sexes=["F", "F", "M"], seed=0
)
for patient in examples:
    show_patient(patient)
glue("example_codes", sum(len(patient.codes) for patient in examples))
glue(
    "example_flags",
    sum(
        icd9.check_code(code, visit.age, patient.sex) is not None
        for patient in examples
        for visit in patient.visits
        for code in visit.codes
    ),
)

# %% [markdown]
# The records have the right shape: visits of a few codes, each opened and closed. Whether
# their codes belong together is a question for the coherence metrics of lesson 09 (a small
# model after a short run is not there yet). The point here is that the three patients were
# drawn from one and the same distribution: {glue:text}`example_flags` of their
# {glue:text}`example_codes` codes break an MCE rule for the patient they were written for. A
# newborn code in an adult, or a pregnancy code in a man, is this model doing exactly what it was
# trained to do.
#
# ## It cannot know who the patient is
#
# To measure this we generate one patient for each patient of the **test split**, with that
# patient's age and sex, and count MCE violations with
# `course_lib.evaluation.validity.validity_metrics` (lesson 09 details the metric): the share
# of code occurrences that break an age rule (newborn, pediatric, maternity, adult) or a sex
# rule. The real test patients are the reference.

# %%
from course_lib.evaluation.validity import rule_violations, validity_metrics
from course_lib.generation import cohort_demographics

assert run.split(cohort, "test").patients == test_cohort.patients  # the run's own split
test_demographics = cohort_demographics(test_cohort)
generated = generate_patients(
    model,
    vocabulary,
    normalizer,
    ages=test_demographics["age"].tolist(),
    sexes=test_demographics["sex"].tolist(),
    seed=1,
)
validity = pd.DataFrame(
    {"real test patients": validity_metrics(test_cohort), "baseline": validity_metrics(generated)}
).T
rate_columns = [
    "age_violation_rate",
    "sex_violation_rate",
    "age_violation_patient_rate",
    "sex_violation_patient_rate",
]
display(validity[rate_columns].style.format("{:.2%}"))

# %%
baseline_age = glue("baseline_age_violations", validity.loc["baseline", "age_violation_rate"])
baseline_sex = glue("baseline_sex_violations", validity.loc["baseline", "sex_violation_rate"])
real_age = glue("real_age_violations", validity.loc["real test patients", "age_violation_rate"])
real_sex = glue("real_sex_violations", validity.loc["real test patients", "sex_violation_rate"])
patients_with_violation = glue(
    "baseline_patients_with_violation",
    float(
        validity.loc["baseline", ["age_violation_patient_rate", "sex_violation_patient_rate"]].max()
    ),
)
glue("n_test_patients", len(test_cohort))
by_rule = rule_violations(generated).groupby(["family", "rule"]).size().rename("occurrences")
display(by_rule.to_frame())

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(6, 3))
families = ["age_violation_rate", "sex_violation_rate"]
positions = np.arange(len(families))
for offset, (row, colour) in zip(
    (-0.2, 0.2), (("real test patients", "#93c47d"), ("baseline", "#e06666")), strict=True
):
    values = validity.loc[row, families].to_numpy(dtype=float)
    ax.bar(positions + offset, 100 * values, width=0.4, color=colour, label=row)
    for x, value in zip(positions + offset, values, strict=True):
        ax.text(x, 100 * value, f"{value:.1%}", ha="center", va="bottom", fontsize=8)
ax.set_xticks(positions, ["age rules", "sex rules"])
ax.set_ylabel("code occurrences breaking\nan MCE rule (%)")
ax.set_title("Medical validity for the test split's demographics")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The real test patients break no rule ({glue:text}`real_age_violations:.1%` and
# {glue:text}`real_sex_violations:.1%`): the simulator, like a hospital, never records a
# delivery for a man. The baseline's patients break an age rule in
# {glue:text}`baseline_age_violations:.1%` of their codes and a sex rule in
# {glue:text}`baseline_sex_violations:.1%`; up to {glue:text}`baseline_patients_with_violation:.0%`
# of the {glue:text}`n_test_patients` generated patients carry at least one such code. These
# rates are not a training failure that more steps would fix: they follow from how often
# restricted codes occur and how many patients they do not fit (exercise 2 computes the rate a
# patient-blind generator must have, to compare with these). Lesson 04 gives the model the
# demographics.
#
# ## Summary
#
# - In the course's task, BART's encoder sees the prompts and one `<mask>`; the decoder writes
#   the whole patient with teacher forcing and reads the encoder through cross-attention.
# - `build_model(vocabulary, preset, prompt_location="none")` is the unconditional baseline:
#   its logits do not change with `x_num` and `x_cat`. In this preset the code embeddings are
#   {glue:text}`embedding_share:.0%` of BART's parameters.
# - Training starts at the uniform guess $\ln V$ and goes below the unigram model: the model
#   learns the grammar of records and which codes follow which.
# - It cannot learn *whose* record it writes: for the test split's demographics its patients
#   break the MCE age and sex rules at about the rate their codes' frequencies predict.
#
# ## Exercises
#
# 1. **A bigram baseline.** Write `bigram_cross_entropy(train_sequences, eval_sequences,
#    vocab_size, alpha=1.0)`: the mean $-\ln p(b \mid a)$ over every label $b$ of the evaluation
#    sequences (`ids[1:]`, each predicted from the token $a$ before it), with
#    $p(b \mid a) = (n_{ab} + \alpha) / (n_a + \alpha V)$ counted on the training sequences. Then
#    compute it for `train_set.sequences` and `val_set.sequences` and add it to the loss plot:
#    where does it fall between the unigram line and the baseline?

# %%
from course_lib.exercises.lesson03 import (
    check_bigram_cross_entropy,
    check_expected_violation_rates,
)


# TODO: write your answer in place of the stub's raise.
def bigram_cross_entropy(
    train_sequences, eval_sequences, vocab_size: int, alpha: float = 1.0
) -> float:
    """Mean -ln p(next | previous) over every label of eval_sequences."""
    raise NotImplementedError("TODO: replace this line with your code")


bigram_done = check_bigram_cross_entropy(bigram_cross_entropy)

# %% [markdown]
# 2. **The violations a blind generator must make.** Write `expected_violation_rates(cohort)`
#    returning `{"age": ..., "sex": ...}`: the expected rates of a generator that draws each code
#    from the cohort's code occurrences independently of the patient, the patient being drawn
#    from the cohort's patients (every visit at `patient.age`). A rate is the share of
#    (occurrence, patient) pairs whose code breaks a rule of that family for that patient. Use
#    `icd9.check_code` and `icd9.AGE_RULES`. Apply it to `train_cohort` and compare with the
#    baseline's measured rates above.


# %%
# TODO: write your answer in place of the stub's raise.
def expected_violation_rates(cohort) -> dict[str, float]:
    """Expected {"age": rate, "sex": rate} of a generator blind to the patient."""
    raise NotImplementedError("TODO: replace this line with your code")


expected_rates_done = check_expected_violation_rates(expected_violation_rates)

# %% [markdown]
# 3. **More training does not help.** Set `max_steps = None` (the preset's epochs), rename the
#    run (`"baseline_none_long"`) and rerun the lesson. The validation loss improves; do the
#    violation rates?
