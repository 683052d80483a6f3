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
# # 06 · Loss functions
#
# **Objectives.** After this lesson you can compute each of PromptBart's losses by hand on a
# few tensors: the language-modelling (LM) cross-entropy, the age head's mean squared error,
# the sex head's cross-entropy, the co-occurrence, diversity and validity losses; check each
# against `course_lib.losses`; add them into the weighted total and check that total on a real
# model; read a loss breakdown: which share of the total each term is, in a table and in a
# chart; and read `course_lib`'s training loop, from its registry of loss terms to a live run
# whose logged terms you watch fall.
#
# **Prerequisites.** {doc}`05_multitask_heads` (the heads and their terms); `log_softmax` and
# `torch.gather`.
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

ctx = setup_lesson(seed=0, name="06_loss_functions")

# %% [markdown]
# ## The LM loss: cross-entropy over the scored tokens
#
# A small example first: two patients, five target positions, a vocabulary of 12 tokens of
# which ids 7 to 11 are codes (ids 0 to 6 are the special tokens). The second patient is
# shorter: its last two labels are `-100`, the padding that no loss may score.

# %%
import torch

from course_lib import losses

torch.manual_seed(0)
vocab_size = 12
code_mask = torch.arange(vocab_size) >= 7  # [vocab] True for code tokens
logits = torch.randn(2, 5, vocab_size)  # [batch, seq, vocab]
labels = torch.tensor([[7, 8, 4, 9, 2], [3, 10, 11, -100, -100]])  # [batch, seq]

scored = labels != -100
log_probs = logits.log_softmax(dim=-1)  # [batch, seq, vocab]
label_log_probs = log_probs[scored].gather(1, labels[scored].unsqueeze(1))  # [n_scored, 1]
lm_by_hand = -label_log_probs.mean()
print(f"LM by hand {lm_by_hand:.6f}, course_lib {losses.lm_loss(logits, labels):.6f}")
assert torch.allclose(lm_by_hand, losses.lm_loss(logits, labels))

# %% [markdown]
# Every scored token counts once, whichever patient it belongs to; padding counts not at all.
# A model that knows nothing predicts every token with probability `1 / vocab`, and scores
# `log(vocab)`: the yardstick for a random-initialised model below.
#
# ## The heads' losses: MSE for age, cross-entropy for sex
#
# The age head predicts the *normalised* age (a z-score of the training ages, lesson 02), so a
# constant prediction of the mean scores about 1 whatever the cohort; in years the loss would be
# in the hundreds and swamp the LM loss under any small weight. The sex head predicts two logits.

# %%
age_pred = torch.tensor([0.3, -1.2, 0.8, 0.0])  # [batch] head outputs
age_target = torch.tensor([0.5, -0.9, 1.6, -0.4])  # [batch] z-scored ages
sex_logits = torch.tensor([[2.0, -1.0], [0.1, 0.3], [-0.5, 0.5], [0.0, 0.0]])  # [batch, 2]
sex_target = torch.tensor([0, 1, 0, 1])  # F = 0, M = 1

age_by_hand = ((age_pred - age_target) ** 2).mean()
sex_by_hand = -sex_logits.log_softmax(dim=-1).gather(1, sex_target.unsqueeze(1)).mean()
assert torch.allclose(age_by_hand, losses.age_loss(age_pred, age_target))
assert torch.allclose(sex_by_hand, losses.sex_loss(sex_logits, sex_target))
print(f"age MSE {age_by_hand:.6f}, sex CE {sex_by_hand:.6f}")

# %% [markdown]
# The last patient's logits are equal, a coin flip: its cross-entropy is log 2 = 0.693, the
# chance level of the sex loss.
#
# ## The co-occurrence loss
#
# The original project's notes added a co-occurrence term: a penalty for predicting codes that
# real patients never hold together with the codes the patient already has. `course_lib`
# defines it precisely. Count, on the training patients, how many patients hold each pair of
# codes; at target position `t` the codes already in the patient, `S_t`, *support* a code `c`
# when some `s` in `S_t` co-occurs with `c` in at least `threshold` patients. The loss is the
# probability mass put on unsupported codes, averaged over the positions that have at least one
# code before them. Toy counts from five toy patients:

# %%
toy_patients = [  # token ids: <patient>=1 <visit>=3 codes </visit>=4 </patient>=2
    [1, 3, 7, 8, 4, 2],
    [1, 3, 7, 8, 4, 3, 9, 4, 2],
    [1, 3, 7, 9, 4, 2],
    [1, 3, 10, 11, 4, 2],
    [1, 3, 10, 11, 8, 4, 2],
]
toy_counts = losses.build_cooccurrence_counts(toy_patients, vocab_size, code_mask)
print(toy_counts[7:, 7:])  # rows and columns: codes 7..11

# %% [markdown]
# Codes 7 and 8 are held together by two patients, 10 and 11 by two, 7 and 10 by none. With
# `threshold = 2` the loss, written as a loop over patients and positions:


# %%
def cooccurrence_by_hand(logits, labels, counts, threshold, code_mask) -> torch.Tensor:
    unsupported_masses = []
    for patient_logits, patient_labels in zip(logits, labels, strict=True):
        seen_codes = []  # S_t: the codes before position t
        for position_logits, label in zip(patient_logits, patient_labels.tolist(), strict=True):
            if label == -100:
                continue
            if seen_codes:
                supported = counts[seen_codes].max(dim=0).values >= threshold  # [vocab]
                unsupported = code_mask & ~supported
                unsupported_masses.append(position_logits.softmax(dim=-1)[unsupported].sum())
            if code_mask[label]:
                seen_codes.append(label)
    return torch.stack(unsupported_masses).mean()


cooc_by_hand = cooccurrence_by_hand(logits, labels, toy_counts, 2, code_mask)
cooc_library = losses.cooccurrence_loss(logits, labels, toy_counts, 2, code_mask)
print(f"co-occurrence by hand {cooc_by_hand:.6f}, course_lib {cooc_library:.6f}")
assert torch.allclose(cooc_by_hand, cooc_library)

# %% [markdown]
# It lies between 0 and 1. `course_lib` computes the same thing without Python loops (a
# cumulative sum over positions of the thresholded count rows), which matters for a real
# vocabulary of thousands of codes. Note what minimises it: putting all the probability on a
# few codes that co-occur with everything, the most common ones. A loss that rewards
# "safe" codes is a push towards {term}`mode collapse`.
#
# ## The diversity loss
#
# The diversity loss looks at the batch as a whole: average the predicted distributions over
# the codes at every scored position, `qbar`, and take its negative entropy
# `sum_c qbar_c log qbar_c`. It is 0 when every position predicts the same single code and
# `-log(n_codes)` when the batch spreads its mass evenly; minimising it spreads mass *between*
# positions while each position may stay confident.

# %%
code_probs = logits[scored][:, code_mask].softmax(dim=-1)  # [n_scored, n_codes]
mean_code_probs = code_probs.mean(dim=0)  # qbar, [n_codes]
diversity_by_hand = (mean_code_probs * mean_code_probs.log()).sum()
assert torch.allclose(diversity_by_hand, losses.diversity_loss(logits, labels, code_mask))

collapsed_logits = torch.zeros_like(logits)
collapsed_logits[..., 7] = 20.0  # every position is sure of code 7
collapsed = losses.diversity_loss(collapsed_logits, labels, code_mask)
n_codes = int(code_mask.sum())
print(
    f"diversity {diversity_by_hand:.4f}; collapsed {collapsed:.4f}; floor -log(5) = {-torch.log(torch.tensor(5.0)):.4f}"
)

# %% [markdown]
# Every hand computation matches `course_lib` (the `assert`s would stop the lesson otherwise).
#
# ## The weighted total on a real model
#
# The total is `lm + w_age * age + w_sex * sex (+ w_cooc * cooc)`. The notes checked it on a
# random-initialised model and a batch of 8 patients: LM 7.514641, age 1.760908, sex 0.748391,
# weights 0.005, total 7.527187, "recomputed by hand to within 1e-5". The arithmetic first:

# %%
notes_total = 7.514641 + 0.005 * 1.760908 + 0.005 * 0.748391
print(f"{notes_total:.6f}")
assert abs(notes_total - 7.527187) < 1e-5

# %% [markdown]
# Now the same check on our model: a random-initialised PromptBart of the lesson's preset, on
# the first 8 patients of the training split, dropout off so that the forward pass is
# deterministic.

# %%
from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset, split_cohort
from course_lib.mimic import load_mimic
from course_lib.model import build_model
from course_lib.tokens import Vocabulary

cohort = load_mimic(ctx.data_dir)
train_cohort, _, _ = split_cohort(cohort, seed=0)
vocabulary = Vocabulary.build(train_cohort)
train_set = PatientDataset(
    train_cohort, vocabulary, AgeNormalizer.fit(train_cohort), ctx.preset.max_sequence_length
)
batch = PatientCollator()([train_set[i] for i in range(8)])
inputs = {k: batch[k] for k in ("input_ids", "decoder_input_ids", "labels", "x_num", "x_cat")}

loss_weights = {"age": 0.005, "sex": 0.005}
model = build_model(vocabulary, ctx.preset, loss_weights=loss_weights).eval()
with torch.no_grad():
    output = model(**inputs)
terms = {name: float(value) for name, value in output.loss_terms.items()}
total_by_hand = terms["lm"] + 0.005 * terms["age"] + 0.005 * terms["sex"]
difference = abs(total_by_hand - float(output.loss))
print({name: round(value, 6) for name, value in terms.items()})
print(
    f"total: model {float(output.loss):.6f}, by hand {total_by_hand:.6f}, |diff| {difference:.1e}"
)
assert difference < 1e-5

# %%
import math

glue("l06_lm", terms["lm"])
glue("l06_age", terms["age"])
glue("l06_sex", terms["sex"])
glue("l06_total", float(output.loss))
glue("l06_difference", difference)
glue("l06_log_vocab", math.log(len(vocabulary)))
glue("l06_vocab_size", len(vocabulary))
glue("l06_notes_vocab", round(math.exp(7.514641)))
mean_squared_z = glue("l06_mean_sq_z", float((batch["x_num"] ** 2).mean()))

# %% [markdown]
# Ours: LM {glue:text}`l06_lm:.6f`, age {glue:text}`l06_age:.6f`, sex {glue:text}`l06_sex:.6f`,
# total {glue:text}`l06_total:.6f`; the model's total and the one by hand differ by
# {glue:text}`l06_difference:.1e`, within the notes' 1e-5. The numbers differ from the notes'
# because the model, the vocabulary and the patients differ: a random-initialised LM loss
# sits near `log(vocab)`, {glue:text}`l06_log_vocab:.3f` for our {glue:text}`l06_vocab_size:,`
# tokens (the notes' 7.514641 is `log` of about {glue:text}`l06_notes_vocab:,`). The age term is
# the squared error of an untrained head whose outputs are near 0, so it is close to the batch's
# mean squared age z-score, {glue:text}`l06_mean_sq_z:.3f` for these 8 patients; the sex term is
# near log 2 = 0.693.
#
# ## Adding the co-occurrence and diversity terms
#
# `PromptBart` computes the extra terms when asked (`extra_losses`; each needs a weight, 0 is
# allowed, so that a forgotten weight is an error rather than a silent 0). The co-occurrence loss needs
# the pair counts of the TRAINING patients (counting validation or test patients would leak
# them into training), set once on the model:

# %%
cooccurrence_counts = losses.build_cooccurrence_counts(
    train_set.sequences, len(vocabulary), model.code_mask()
)
model.set_cooccurrence_counts(cooccurrence_counts)
with torch.no_grad():
    output = model(
        **inputs, extra_losses=("cooc", "diversity"), loss_weights={"cooc": 0.05, "diversity": 0.0}
    )
terms = {name: float(value) for name, value in output.loss_terms.items()}
print({name: round(value, 4) for name, value in terms.items()})
pairs = glue("l06_cooc_pairs", int((cooccurrence_counts >= 5).sum()) // 2)
print(f"{pairs:,} code pairs co-occur in at least 5 training patients")

# %% [markdown]
# At random initialisation the model spreads its mass over every code, most of them
# unsupported by the few codes a patient has, so the co-occurrence term is close to 1; the
# diversity term is close to its floor `-log(n_codes)` (the trainer adds `log(n_codes)` to it so
# that it is a non-negative divergence, see `course_lib.training`).
#
# ## The loss breakdown
#
# `losses.loss_breakdown(raw, weights)` says, for each term, its raw value, its weight, the
# weighted value and its share of the total. For our random-initialised model with the notes'
# last configuration (age and sex 0.005, co-occurrence 0.05):

# %%
from IPython.display import display

notes_weights = {"age": 0.005, "sex": 0.005, "cooc": 0.05}
ours = losses.loss_breakdown({t: terms[t] for t in ("lm", "age", "sex", "cooc")}, notes_weights)
display(ours.style.format({"raw": "{:.4f}", "weighted": "{:.5f}", "share_pct": "{:.2f}"}))

# %% [markdown]
# And for the notes' epoch 30 of that run: LM 0.4763, age 0.21, sex 0.000, co-occurrence 3.665.
# `loss_breakdown` reproduces their shares:

# %%
notes_epoch30 = {"lm": 0.4763, "age": 0.21, "sex": 0.0, "cooc": 3.665}
notes = losses.loss_breakdown(notes_epoch30, notes_weights)
display(notes.style.format({"raw": "{:.4f}", "weighted": "{:.5f}", "share_pct": "{:.2f}"}))
for term, share in notes["share_pct"].items():
    glue(f"l06_notes_{term}_pct", float(share))
    glue(f"l06_ours_{term}_pct", float(ours.loc[term, "share_pct"]))
assert [round(s, 2) for s in notes["share_pct"]] == [72.10, 0.16, 0.00, 27.74]

# %% tags=["remove-input"]
import matplotlib.pyplot as plt

term_colours = {"lm": "#3d85c6", "age": "#e69138", "sex": "#6aa84f", "cooc": "#cc0000"}
rows = {"our model,\nrandom init": ours, "the notes,\nepoch 30": notes}
fig, ax = plt.subplots(figsize=(7.5, 2.6))
for position, frame in enumerate(rows.values()):
    left, small = 0.0, []
    for term, share in frame["share_pct"].items():
        ax.barh(
            position,
            share,
            left=left,
            color=term_colours[term],
            label=term if position == 0 else None,
        )
        if share >= 3:
            ax.text(
                left + share / 2, position, f"{share:.1f}%", ha="center", va="center", color="white"
            )
        else:
            small.append(f"{term} {share:.2f}%")
        left += share
    ax.text(101, position, "\n".join(small), va="center", fontsize=8)  # slivers too thin to see
ax.set_yticks(range(len(rows)), list(rows))
ax.set_xlim(0, 100)
ax.set_xlabel("share of the weighted total (%)")
ax.legend(ncol=4, loc="upper center", bbox_to_anchor=(0.5, 1.3), frameon=False)
ax.invert_yaxis()
plt.show()

# %% [markdown]
# In the notes' run the LM term is {glue:text}`l06_notes_lm_pct:.2f`% of the total and the
# co-occurrence term {glue:text}`l06_notes_cooc_pct:.2f`%, while age is
# {glue:text}`l06_notes_age_pct:.2f`% and sex {glue:text}`l06_notes_sex_pct:.2f`%: the sex
# loss had vanished (lesson 05) and the age term is invisible at weight 0.005. More than a
# quarter of what the optimiser minimised was the co-occurrence term, which stayed flat at about
# 3.66 while the generator collapsed onto 31 codes. On our random-initialised model the
# co-occurrence term is {glue:text}`l06_ours_cooc_pct:.2f`% of the total.
#
# Two readings of the same chart. First, a term's *share* says how much of the objective it is,
# not how much it moves the weights: that is the gradient's job (lesson 05 compared gradient
# norms, lesson 07 balances them). Second, our co-occurrence loss is a probability mass in
# [0, 1], so at weight 0.05 it can never weigh more than 0.05; the notes' 3.665 cannot be the
# same quantity, and their definition is not in the notes. The course keeps a bounded
# definition so that its weight means something.

# %% [markdown]
# ## The training loop on one screen
#
# Lesson 03 trained its baseline with `course_lib.training.train` and promised that this lesson
# opens the loop up. The losses above are what that loop minimises; here is where it finds them,
# how it runs, and a short run of it that we watch.
#
# ### One registry of loss terms
#
# Every term the model can compute is declared once, in `losses.LOSS_TERMS`: its name, what it
# is a mean over (`per`: the scored tokens or the patients) and whether a run has to ask for it
# (`optional`, listed in the config's `extra_losses`). The trainer logs the terms in this order,
# and when it averages a validation term over many batches it weighs each batch by the term's
# `per`, so a token mean stays a token mean.

# %%
import dataclasses

import pandas as pd

from course_lib.config import TrainConfig

registry = pd.DataFrame([dataclasses.asdict(term) for term in losses.LOSS_TERMS.values()])
display(registry.set_index("name"))
defaults = TrainConfig()
print(f"core terms {losses.CORE_TERMS}, optional terms {losses.OPTIONAL_TERMS}")
print(f"a default TrainConfig adds {defaults.extra_losses} with weights {defaults.loss_weights}")
glue("l06_core_terms", ", ".join(losses.CORE_TERMS))
glue("l06_optional_terms", ", ".join(losses.OPTIONAL_TERMS))
glue("l06_default_validity_weight", defaults.loss_weights["validity_log"])
glue("l06_default_aux_weight", defaults.loss_weights["age"])

# %% [markdown]
# The core terms, {glue:text}`l06_core_terms`, are the ones this lesson computed first; the
# optional ones, {glue:text}`l06_optional_terms`, cost a little more and come only when asked.
# The `validity_log` row is the term the course's default configuration adds, at weight
# {glue:text}`l06_default_validity_weight` (the age and sex heads get
# {glue:text}`l06_default_aux_weight` each); it is a variant of the `validity` term, built
# next.
#
# ### The validity term
#
# The MCE rules (Medicare Code Edits) say which codes an age or a sex excludes: a newborn code in
# an adult, a pregnancy code in a man. For each patient the model turns them into a `forbidden`
# mask over the vocabulary (`PromptBart.forbidden_codes`). With `q_t` the probability mass the
# model puts on the forbidden codes at position `t`, the validity term is the *unlikelihood*
# `-mean_t log(1 - q_t)` over the scored positions: 0 when no mass goes to a forbidden code,
# without bound as `q_t -> 1`. Unlike the LM loss, which only raises the probability of the code
# that came next, it pushes down the codes that must never come. By hand on the toy logits, with
# codes 10 and 11 forbidden to the first patient and code 8 to the second:

# %%
forbidden = torch.zeros(2, vocab_size, dtype=torch.bool)  # [batch, vocab]
forbidden[0, [10, 11]] = True
forbidden[1, 8] = True
forbidden_mass = (logits.softmax(dim=-1) * forbidden.unsqueeze(1)).sum(dim=-1)  # q_t, [batch, seq]
validity_by_hand = -torch.log1p(-forbidden_mass[scored]).mean()
validity_library = losses.validity_loss(logits, labels, forbidden)
print(f"validity by hand {validity_by_hand:.6f}, course_lib {validity_library:.6f}")
assert torch.allclose(validity_by_hand, validity_library)

# %% [markdown]
# `course_lib` computes the same number as `logsumexp(all logits) - logsumexp(allowed logits)`,
# which stays finite when `q_t` rounds to 1 in floating point.
#
# For small `q_t`, `-log(1 - q_t)` is about `q_t`, and so is its gradient on a forbidden
# logit: the pull fades as the model learns. The optional `validity_log` term penalises the
# log of the mass instead, `mean_t max(0, log q_t - log f)` with a floor `f` of
# {glue:text}`l06_validity_floor`: its gradient stays near 1 until the mass reaches the floor.
# By hand on the same logits, then the two gradients on the forbidden logits:

# %%
from course_lib.claims import check_above

floor = glue("l06_validity_floor", losses.VALIDITY_LOG_FLOOR)
log_by_hand = torch.relu(torch.log(forbidden_mass[scored]) - math.log(floor)).mean()
log_library = losses.validity_log_loss(logits, labels, forbidden)
print(f"validity_log by hand {log_by_hand:.6f}, course_lib {log_library:.6f}")
assert torch.allclose(log_by_hand, log_library, atol=1e-6)


def forbidden_pull(logits_, forbidden_) -> dict[str, float]:
    """Each validity term's mean gradient on patient 0's forbidden logits (scored positions)."""
    pull = {}
    for name, loss in losses.VALIDITY_LOSSES.items():
        leaf = logits_.detach().clone().requires_grad_(True)
        loss(leaf, torch.zeros(leaf.shape[:2], dtype=torch.long), forbidden_).backward()
        pull[name] = float(leaf.grad[0][:, forbidden_[0]].sum(dim=-1).mean())
    return pull


toy = forbidden_pull(logits[:, :1], forbidden)  # the first position of each patient
q_toy = glue("l06_q_toy", float(forbidden_mass[0, 0]))
small_q = 1e-3  # one position, two tokens, the second forbidden with mass 0.001
tiny = forbidden_pull(
    torch.tensor([[[0.0, math.log(small_q / (1 - small_q))]]]), torch.tensor([[False, True]])
)
for label, pull in ((f"q = {q_toy:.3f}", toy), (f"q = {small_q}", tiny)):
    print(f"{label}: " + ", ".join(f"{k} pulls {v:.5f}" for k, v in pull.items()))
glue("l06_pull_ratio_toy", toy["validity_log"] / toy["validity"])
glue("l06_pull_ratio_small", tiny["validity_log"] / tiny["validity"])
check_above(
    "at q = 0.001 the log hinge pulls > 100x harder than the unlikelihood",
    tiny["validity_log"] / tiny["validity"],
    100,
)

# %% [markdown]
# At the first patient's first position (forbidden mass {glue:text}`l06_q_toy:.3f`) the log
# hinge pulls {glue:text}`l06_pull_ratio_toy:.1f` times harder; at a mass of 0.001,
# {glue:text}`l06_pull_ratio_small:.0f` times.
# `python -m benchmarks.conditioning --candidates validity_add_100 validity_log_add` trains
# both on 20,000 simulated patients.
#
# ### `train()`, top to bottom
#
# `inspect.getsource` prints the function as it is in the installed library, so this page cannot
# drift from the code it describes:

# %%
import inspect

from course_lib import training

train_source = inspect.getsource(training.train)
print(train_source)
glue("l06_train_lines", len(train_source.splitlines()))

# %% [markdown]
# All of it is {glue:text}`l06_train_lines` lines. Read it in six parts:
#
# - **Setup** (`setup`, in `course_lib.train_setup`): the split, the vocabulary and the age
#   normaliser from the training patients, the model, the loss weighting (lesson 07), AdamW and
#   the warm-up schedule, the batch order; when resuming, every one of them restored from the
#   checkpoint. `RunWriter` owns the run folder: it locks it against a second writer and, when
#   `overwrite=True` replaces an old run, writes beside it and swaps the new run in only when
#   training finishes, so a crash keeps the old run whole.
# - **Step** (`_train_step`): one optimizer step, shown below.
# - **Log** (`_log_step`): on step 1, the last step and every `log_every` steps, one line of
#   `logs/train.jsonl` with every term's raw value, weight, weighted value and share of the
#   total: the breakdown of the previous section, for every logged step.
# - **Checkpoint** (`_save_checkpoint`, `course_lib.checkpoint`): the model, optimiser, schedule
#   and weighting states, every random generator and the loop's position, so that `resume=True`
#   continues bit for bit as if the run had never stopped.
# - **End of epoch** (`_end_epoch`): the validation terms, the best model so far (lowest
#   validation LM loss; `keep="last"` keeps the final step's weights instead) and one line of
#   `logs/epochs.jsonl`; `_stop_reason` then ends the run at the last step or when early
#   stopping's patience runs out, and `max_minutes` ends it when its time is spent.
# - **Callbacks**: functions that get the model at the end of each epoch and return fields for
#   its epoch record. `course_lib.sample_check.SampleCheck` generates a few patients and raises
#   the mode-collapse alarms of lesson 10.
#
# The step is where this lesson's losses enter:

# %%
print(inspect.getsource(training._train_step))

# %% [markdown]
# The model returns every raw term (`output.loss_terms`); the weighting turns them into the
# total (`static` is the weighted sum of this lesson; lesson 07's strategies move the weights);
# the total's gradient is accumulated over `accumulation` micro-batches, clipped, checked for NaN
# (the error names the term that went bad) and applied by AdamW before the schedule moves the
# learning rate.
#
# ### A short live run
#
# A few seconds of training with the course's default losses: the `narrow` budget (one layer of
# width 64 on each side), a log line at every step and the sample check as a callback. Each
# run writes a `Run` folder; `Run.load` reads it back, so nothing here parses a file by hand.

# %%
import time

from course_lib.recipes import Recipe
from course_lib.runs import Run
from course_lib.sample_check import SampleCheck

live_recipe = Recipe(
    "loop_live",
    "06_loss_functions",
    "narrow",
    {"max_steps": 30, "log_every": 1, "sample_every_epoch": 8, "sample_max_new_tokens": 32},
)
live_config = live_recipe.train_config(out=ctx.run_dir("loop_live"))
started = time.perf_counter()
live_result = training.train(live_config, cohort, overwrite=True, callbacks=[SampleCheck()])
glue("l06_live_seconds", time.perf_counter() - started)
live_run = Run.load(live_result.run_dir)
steps = live_run.log("train").set_index("step")
epoch_record = live_run.log("epochs").iloc[-1]
print(f"{live_result.steps} steps, stopped: {live_result.stopped}")
print(f"sample check at the end of epoch {epoch_record['epoch']}: alarms {epoch_record['alarms']}")
display(steps.filter(regex=r"^total$|\.raw$").head().round(4))

# %% tags=["remove-input"]
live_terms = ["total", *(term for term in losses.LOSS_TERMS if f"terms.{term}.raw" in steps)]
fig, axes = plt.subplots(1, len(live_terms), figsize=(2.3 * len(live_terms), 2.4), sharex=True)
for ax, term in zip(axes, live_terms, strict=True):
    column = "total" if term == "total" else f"terms.{term}.raw"
    ax.plot(steps.index, steps[column], marker=".", color=term_colours.get(term, "#444444"))
    weight = "" if term == "total" else f" (x {steps[f'terms.{term}.weight'].iloc[0]:g})"
    ax.set_title(term + weight, fontsize=10)
    ax.set_xlabel("step")
fig.tight_layout()
plt.show()

# %% [markdown]
# Every panel is one column of the run's step log. Is the fall real, or the noise of one batch
# to the next? Compare the first steps with the last ten, and take as the noise the spread of
# those last ten steps around their mean:

# %%
from course_lib.claims import check_below

first, last = steps.head(3), steps.tail(10)
fall = {}
for term in live_terms:
    column = "total" if term == "total" else f"terms.{term}.raw"
    fall[term] = {
        "first 3 steps": first[column].mean(),
        "last 10 steps": last[column].mean(),
        "step-to-step noise": last[column].std(),
    }
fall = pd.DataFrame(fall).T
fall["fall / noise"] = (fall["first 3 steps"] - fall["last 10 steps"]) / fall["step-to-step noise"]
display(fall.round(4))
n_live = glue("l06_live_steps", int(live_result.steps))
validity_term = glue("l06_validity_term", live_config.extra_losses[0])  # the default's
for term in ("lm", validity_term):
    check_below(
        f"the {term} loss falls over {n_live} steps, beyond its step-to-step noise",
        fall.loc[term, "last 10 steps"],
        fall.loc[term, "first 3 steps"],
        noise=fall.loc[term, "step-to-step noise"],
    )
beyond = [term for term in live_terms if fall.loc[term, "fall / noise"] > 2]
within = [term for term in live_terms if term not in beyond]
glue("l06_beyond_noise", ", ".join(beyond))
glue("l06_within_noise", ", ".join(within) if within else "none")
glue("l06_lm_first", fall.loc["lm", "first 3 steps"])
glue("l06_lm_last", fall.loc["lm", "last 10 steps"])
glue("l06_validity_first", fall.loc[validity_term, "first 3 steps"])
glue("l06_validity_last", fall.loc[validity_term, "last 10 steps"])
glue("l06_live_log_vocab", math.log(len(live_run.vocabulary)))
last_step = steps.iloc[-1]
glue("l06_last_lm_share", last_step["terms.lm.share"])
glue("l06_last_validity_share", last_step[f"terms.{validity_term}.share"])
glue("l06_last_heads_share", last_step["terms.age.share"] + last_step["terms.sex.share"])

# %% [markdown]
# In {glue:text}`l06_live_steps` steps ({glue:text}`l06_live_seconds:.1f` s here) the LM loss
# goes from {glue:text}`l06_lm_first:.3f` on the first steps (the uniform guess is
# {glue:text}`l06_live_log_vocab:.3f`) to {glue:text}`l06_lm_last:.3f` on the last ten, and the
# validity term ({glue:text}`l06_validity_term`) from {glue:text}`l06_validity_first:.4f` to
# {glue:text}`l06_validity_last:.4f`.
# The terms that fall by more than twice their noise: {glue:text}`l06_beyond_noise`; within
# twice their noise: {glue:text}`l06_within_noise`. At the last step the LM term is
# {glue:text}`l06_last_lm_share:.1f`% of the weighted total, the validity term
# {glue:text}`l06_last_validity_share:.1f`% and the two heads together
# {glue:text}`l06_last_heads_share:.2f`%: the total follows the LM term.

# %% [markdown]
# ## Summary
#
# - The LM loss is the mean negative log-probability of the scored tokens (padding `-100`
#   excluded); a random model scores about `log(vocab)`.
# - The age head's MSE is on z-scored ages (about 1 for a constant guess), the sex head's
#   cross-entropy is log 2 at chance.
# - The co-occurrence loss is the mass on codes that the patient's codes never co-occur with in
#   training; the diversity loss is the negative entropy of the batch's mean code distribution.
# - The weighted total of our model matches the sum by hand to {glue:text}`l06_difference:.1e`,
#   and `loss_breakdown` turns any set of terms and weights into shares: it reproduces the
#   notes' 72.10 / 0.16 / 0.00 / 27.74%.
# - Every term is declared once in `losses.LOSS_TERMS` (name, mean over tokens or patients,
#   optional or not). Two validity terms act on the mass `q_t` on the codes the MCE rules
#   forbid for the patient: the unlikelihood `-log(1 - q_t)`, whose pull fades with `q_t`,
#   and the default `validity_log`, `max(0, log q_t - log f)` with `f` =
#   {glue:text}`l06_validity_floor`, whose pull does not.
# - `train()` is {glue:text}`l06_train_lines` lines: setup, then a loop of named steps (train
#   step, log, checkpoint, end of epoch with its callbacks) that writes a `Run` folder; in a
#   {glue:text}`l06_live_steps`-step live run the LM and validity terms fall beyond their
#   step-to-step noise.
#
# ## Exercises
#
# 1. **Label smoothing.** Write `smoothed_lm_loss(logits, labels, smoothing)`: the target puts
#    `1 - smoothing` on the label and spreads `smoothing` uniformly over the whole vocabulary
#    (the label included), averaged over the scored positions only. With `smoothing = 0` it must
#    equal `losses.lm_loss`.

# %%
from course_lib.exercises.lesson06 import check_pmi_matrix, check_smoothed_lm_loss


# TODO: write your answer in place of the stub's raise.
def smoothed_lm_loss(logits, labels, smoothing: float):
    """Label-smoothed LM cross-entropy (a 0-dim tensor), padding ignored."""
    raise NotImplementedError("TODO: replace this line with your code")


smoothed_lm_loss_done = check_smoothed_lm_loss(smoothed_lm_loss)

# %% [markdown]
# 2. **Mutual information instead of counts.** A count threshold favours frequent codes. The
#    notes' remedies include replacing it with mutual information. Write
#    `pmi_matrix(cooccurrence_counts, code_counts, n_patients)` returning
#    `log(n_ij * N / (n_i * n_j))` (natural log) for every pair, and `-inf` where `n_ij = 0`.
#    Then `losses.cooccurrence_loss(logits, labels, (pmi > 0).int(), threshold=1)` is a
#    co-occurrence loss in which "supported" means "together more often than chance".


# %%
# TODO: write your answer in place of the stub's raise.
def pmi_matrix(cooccurrence_counts, code_counts, n_patients: int):
    """Pointwise mutual information of every code pair."""
    raise NotImplementedError("TODO: replace this line with your code")


pmi_matrix_done = check_pmi_matrix(pmi_matrix)

# %% [markdown]
# 3. **Shares are not gradients.** With the random-initialised model above, compute the norm of
#    the gradient of each weighted term on `model.last_shared_layer()` and compare their ratios
#    with the shares of the breakdown. Which term's share understates its pull?
