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
# # 10 · Diagnosing failures
#
# **Objectives.** After this lesson you can reproduce the two failures of the original
# project's notes, a sex loss that vanishes from the total and a {term}`mode collapse` under a
# co-occurrence loss; catch both from the training logs, with alarms, before anyone reads a
# generated record; apply the remedies the notes list and measure them, before and after; and
# trace records that end too early to the order of the training batches.
#
# **Prerequisites.** {doc}`07_balancing_losses`; the lessons on generation and evaluation.
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

ctx = setup_lesson(seed=0, name="10_diagnosing_failures")

# %% [markdown]
# ## What the notes saw
#
# With weights 0.005 (age), 0.005 (sex) and 0.05 for a co-occurrence loss, the notes' run
# looked healthy by its total loss. Underneath, the sex loss fell from 0.167 to 0.000 by
# epoch 14 and its share of the total to 0.00%: the sex is trivially predictable from
# sex-specific codes, so the term stopped teaching anything. And the generator collapsed: 31
# unique codes out of 6,985, every patient exactly two ICD-9 chapters, one stereotypical ICU
# record. Its validity was excellent, because a record with two harmless codes breaks no rule.
#
# We reproduce both with our own runs. On a CPU (the `tiny` preset) the runs are short: a
# narrow model (one layer of width 64 on each side) trained for a few hundred steps on 30% of
# the sample cohort, so each epoch is short and the per-epoch logs have several points. To see
# the failures within that budget we weigh the sex loss 1.0 and the co-occurrence loss 5.0,
# far more than the notes did. With another preset (a GPU, or `COURSE_PRESET`) the same cells
# train the preset's model for the preset's epochs on the usual 80/10/10 split.

# %%
import numpy as np
import pandas as pd

from course_lib.dataset import split_cohort
from course_lib.mimic import load_mimic
from course_lib.recipes import get_recipe

# The lesson's three runs are recipes of course_lib/recipes.py (budget `narrow` on a CPU,
# with the trainer's per-epoch collapse check); `ctx.train_or_load(name)` loads or trains one.
split_fractions = get_recipe("failing", preset=ctx.preset.name).split_fractions
cpu_budget = ctx.preset.name == "tiny"
n_generated = 200 if cpu_budget else 1000
max_new_tokens = 40 if cpu_budget else None

cohort = load_mimic(ctx.data_dir)
train_split, val_split, test_split = split_cohort(cohort, seed=0, fractions=split_fractions)
print(f"train {len(train_split)}, validation {len(val_split)}, test {len(test_split)} patients")


# %% [markdown]
# ## The failing run
#
# Age weight 0.01, sex weight 1.0, and the co-occurrence loss of lesson 06 (the probability
# mass put on codes that never co-occur, in at least 5 training patients, with a code the
# patient already has) at weight 5.0. The failure runs also draw their batches grouped by
# length (`group_by_length`), the trainer's order when these failures were first reproduced;
# the last section of this lesson shows what that order alone does to a model.

# %%
failing = ctx.train_or_load("failing")
assert failing.config.loss_weights == {"age": 0.01, "sex": 1.0, "cooc": 5.0}
assert failing.config.group_by_length
failing_steps = failing["steps"]
print(f"{int(failing_steps['step'].max())} steps, {len(failing['epochs'])} epochs")

# %% [markdown]
# ### Failure 1: the sex loss vanishes
#
# Every logged step of `logs/train.jsonl` holds each term's raw value, weight and share of
# the total (`100 * |w L| / sum |w L|`). The shares, per step:

# %% tags=["remove-input"]
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
for term in failing["config"].terms:
    axes[0].plot(failing_steps["step"], failing_steps[f"terms.{term}.share"], label=term)
    axes[1].plot(failing_steps["step"], failing_steps[f"terms.{term}.raw"], label=term)
axes[0].set_yscale("log")
axes[0].set_ylim(1e-4, 150)
axes[0].set_ylabel("share of the total (%, log scale)")
axes[1].set_yscale("log")
axes[1].set_ylabel("raw loss (log scale)")
for ax in axes:
    ax.set_xlabel("step")
axes[0].legend(fontsize=8)
fig.suptitle("The failing run: each term's share of the total and raw value", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# A vanishing term is easy to catch from this log: find the first step after which its share
# stays below a small threshold, 0.1% here. Single steps are noisy (a batch of patients the head
# gets wrong makes a spike), so we follow the running median of five logged steps.


# %%
def vanished_from(steps: pd.DataFrame, term: str, threshold_percent: float = 0.1) -> int | None:
    """First logged step from which the running median (5 logged steps) of ``term``'s share
    stays below the threshold, or None."""
    median_share = steps[f"terms.{term}.share"].rolling(5, min_periods=1).median()
    above = steps.loc[median_share >= threshold_percent, "step"]
    later = steps.loc[steps["step"] > (above.max() if len(above) else 0), "step"]
    return int(later.min()) if len(later) else None


sex_vanished_at = vanished_from(failing_steps, "sex")
sex_share_first = glue("sex_share_first", float(failing_steps["terms.sex.share"].iloc[0]))
sex_share_peak = glue("sex_share_peak", float(failing_steps["terms.sex.share"].max()))
sex_share_last = glue("sex_share_last", float(failing_steps["terms.sex.share"].iloc[-1]))
sex_raw_last = glue("sex_raw_last", float(failing_steps["terms.sex.raw"].iloc[-1]))
glue(
    "sex_vanished",
    f"stays below 0.1% of the total from step {sex_vanished_at} on (running median)"
    if sex_vanished_at is not None
    else "does not fall below 0.1% of the total for good in this run",
)
print(f"sex share: first {sex_share_first:.3f}%, peak {sex_share_peak:.3f}%, ", end="")
print(f"last {sex_share_last:.5f}%")
print("running median of the sex share below 0.1% for good from step:", sex_vanished_at)

# %% [markdown]
# The sex term starts at {glue:text}`sex_share_first:.2f`% of the total and peaks at
# {glue:text}`sex_share_peak:.2f`%; then its raw loss collapses (last value
# {glue:text}`sex_raw_last:.4f`, against log 2 = 0.693 for a guess) and its share
# {glue:text}`sex_vanished`, ending at {glue:text}`sex_share_last:.4f`%. As in the notes, the
# sex is easy to predict, here even more so because the decoder's {term}`prompt` tells it the
# sex. After that the term adds no gradient worth having: any further push only makes the
# decoder's last state more sex-revealing.
#
# ### Failure 2: mode collapse
#
# At the end of each epoch the trainer samples a few patients for the demographics of
# validation patients and compares them with those patients' real records, cut to the same
# number of tokens (`logs/epochs.jsonl`): unique codes, the top code's share of patients,
# codes per patient, and an alarm when the sample has fewer than half the real unique codes or
# a top code more than twice as common as the real one.


# %% tags=["remove-input"]
def plot_epochs(runs: dict[str, dict], title: str) -> None:
    """Per-epoch sample checks of the trainer (logs/epochs.jsonl), real patients dashed."""
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.1))
    for label, run in runs.items():
        epochs = run["epochs"]
        for ax, column in zip(
            axes,
            ["sampled_unique_codes", "sampled_codes_per_patient", "sampled_top_code_share"],
            strict=True,
        ):
            ax.plot(epochs["epoch"], epochs[column], marker="o", label=label)
    real = next(iter(runs.values()))["epochs"]
    axes[0].plot(real["epoch"], real["real_unique_codes"], "k--", label="real patients")
    axes[2].plot(real["epoch"], real["real_top_code_share"], "k--", label="real patients")
    for ax, name in zip(
        axes, ["unique codes in the sample", "codes per patient", "top code's share"], strict=True
    ):
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.show()


plot_epochs({"failing": failing}, "The failing run's sample check at every epoch")

# %%
epoch_table = failing["epochs"][
    ["epoch", "sampled_unique_codes", "real_unique_codes", "sampled_codes_per_patient"]
].set_index("epoch")
epoch_table["alarms"] = failing["epochs"]["alarms"].map(len).to_numpy()
first_epoch_cpp = glue("first_epoch_cpp", float(epoch_table["sampled_codes_per_patient"].iloc[0]))
glue("later_epochs_cpp", float(epoch_table["sampled_codes_per_patient"].iloc[1:].mean()))
glue("epochs_with_alarms", int(epoch_table["alarms"].gt(0).sum()))
glue("n_epochs", len(epoch_table))
epoch_table.round(2)

# %% [markdown]
# After its first epoch ({glue:text}`first_epoch_cpp:.1f` codes per patient) the failing run's
# samples hold {glue:text}`later_epochs_cpp:.1f` codes per patient on average. The trainer
# samples freely, without the grammar of lesson 08, and the co-occurrence loss has found the
# cheapest way to put no mass on unsupported codes: put it on tokens that are not codes at
# all, which end or break the record. The trainer's alarm fired in
# {glue:text}`epochs_with_alarms` of {glue:text}`n_epochs` epochs: a sample of a few patients
# per epoch is a cheap, noisy alarm, so read it as a trend.
#
# A larger final sample tells more. Each model writes {glue:text}`n_generated` patients for
# the demographics of validation patients; `course_lib.evaluation.diversity` measures them
# against those real patients (same size, so unique codes compare fairly) and
# `mode_collapse_alarms` raises its alarms. Validity and coherence (JS divergence against the
# test split) complete the picture.

# %%
from course_lib import icd9
from course_lib.claims import check_above, check_below, check_true
from course_lib.evaluation import mode_collapse_alarms
from course_lib.evaluation.coherence import code_frequencies, js_divergence, top_k_overlap
from course_lib.evaluation.diversity import (
    diversity_metrics,
    patient_distributions,
    top_code_share,
)
from course_lib.evaluation.floor import subsample
from course_lib.evaluation.validity import validity_metrics
from course_lib.generation import generate_like

prompt_patients = subsample(val_split, min(n_generated, len(val_split)), seed=0)
glue("n_generated", len(prompt_patients))
test_frequencies = code_frequencies(test_split)


def generate(run: dict, **options):
    return generate_like(
        run["model"],
        run["vocabulary"],
        run["normalizer"],
        prompt_patients,
        max_new_tokens=max_new_tokens,
        seed=0,
        **options,
    )


def evaluate(patients) -> dict:
    diversity = diversity_metrics(patients, prompt_patients)
    validity = validity_metrics(patients)
    frequencies = code_frequencies(patients)
    return {
        "unique_codes": diversity["unique_codes"],
        "codes_per_patient": diversity["codes_per_patient_mean"],
        "chapters_per_patient": diversity["chapters_per_patient_mean"],
        "chapters_mode": float(patient_distributions(patients)["chapters"].mode().iloc[0]),
        "chapters_mode_share": diversity["chapters_per_patient_mode_share"],
        "top_code_share": diversity["top_code_share"],
        "age_violation_rate": validity["age_violation_rate"],
        "sex_violation_rate": validity["sex_violation_rate"],
        "js_divergence": js_divergence(test_frequencies, frequencies),
        "top100_overlap": top_k_overlap(test_frequencies, frequencies, 100),
        "alarms": mode_collapse_alarms(diversity),
    }


failing_sample = generate(failing)
results = {
    "failing": evaluate(failing_sample),
    "real (floor)": evaluate(prompt_patients),
}
for name, result in results.items():
    print(f"{name}: " + ("; ".join(result["alarms"]) or "no alarm"))
failing_top_code, failing_top_share = top_code_share(failing_sample)
glue("failing_top_code", f"{icd9.to_dotted(failing_top_code)} ({icd9.describe(failing_top_code)})")
print("failing run's top code:", failing_top_code, icd9.describe(failing_top_code))
failing_result, real_result = results["failing"], results["real (floor)"]
glue("failing_chapters_mode", int(failing_result["chapters_mode"]))
glue("failing_mode_share", float(failing_result["chapters_mode_share"]))
glue("real_mode_share", float(real_result["chapters_mode_share"]))
glue("real_chapters_mode", int(real_result["chapters_mode"]))
glue("unique_ratio", float(failing_result["unique_codes"] / real_result["unique_codes"]))
check_below(
    "the failing run writes fewer than half the real unique codes",
    failing_result["unique_codes"],
    0.5 * real_result["unique_codes"],
)
check_above(
    "more of its patients share one chapter count than real patients do",
    failing_result["chapters_mode_share"],
    real_result["chapters_mode_share"],
)
check_true(
    "mode_collapse_alarms fires on the failing run, not on the real patients",
    bool(failing_result["alarms"]) and not real_result["alarms"],
    f"{len(failing_result['alarms'])} alarm(s) vs {len(real_result['alarms'])}",
)

# %% [markdown]
# This is the notes' signature, measured: the failing run writes
# {glue:text}`failing_unique:.0f` unique codes where the real patients with the same prompts
# have {glue:text}`real_unique:.0f` ({glue:text}`unique_ratio:.0%` of the real vocabulary), and
# {glue:text}`failing_mode_share:.0%` of its patients have exactly
# {glue:text}`failing_chapters_mode` chapter(s), where the most common count among real patients
# ({glue:text}`real_chapters_mode`) covers {glue:text}`real_mode_share:.0%`: one template,
# stamped on most patients. The alarm lines printed above are what `mode_collapse_alarms`
# says about it.
#
# ## Remedies
#
# The notes list remedies; we apply four of them and measure each against the failing run.
#
# 1. **Schedule the sex loss off** once it has converged: `ScheduledWeighting` with
#    `OffBelowThreshold` (weight 1.0 until the epoch-mean sex loss stays below 0.05 for an
#    epoch, then 0 for good). In the same run we **drop the co-occurrence loss**.
# 2. **Add a diversity loss** and keep the co-occurrence loss: the negative entropy of the
#    batch's mean code distribution (lesson 06), weight 2.0.
# 3. **The validity loss instead of a sex loss** (issue 11): no sex head, the unlikelihood of
#    the codes the MCE rules forbid for the patient at weight 10, co-occurrence loss kept.
# 4. **Rule-based validity instead of a sex loss**: mask the codes the MCE rules forbid for the
#    patient's age and sex at generation time (`generate_patients(validity=True)`), no training.

# %%
scheduled = ctx.train_or_load("sex_scheduled_no_cooc")
with_diversity = ctx.train_or_load("cooc_plus_diversity")
validity_instead = ctx.train_or_load("validity_instead")
results["sex scheduled, no cooc"] = evaluate(generate(scheduled))
results["cooc + diversity"] = evaluate(generate(with_diversity))
results["validity loss, no sex, cooc"] = evaluate(generate(validity_instead))
results["failing + validity rules"] = evaluate(generate(failing, validity=True))
results["sex scheduled, no cooc + validity rules"] = evaluate(generate(scheduled, validity=True))

# %% tags=["remove-input"]
plot_epochs(
    {
        "failing": failing,
        "sex scheduled, no cooc": scheduled,
        "cooc + diversity": with_diversity,
        "validity loss, no sex": validity_instead,
    },
    "Sample checks at every epoch, before and after the remedies",
)

# %%
scheduled_steps = scheduled["steps"]
off_steps = scheduled_steps.loc[scheduled_steps["terms.sex.weight"].eq(0), "step"]
glue(
    "schedule_outcome",
    f"switched the sex loss off at step {int(off_steps.min())}"
    if len(off_steps)
    else "never switched the sex loss off: its epoch mean never stayed below 0.05",
)
sex_shares = pd.DataFrame(
    {
        "failing": failing_steps.set_index("step")["terms.sex.share"],
        "sex scheduled": scheduled_steps.set_index("step")["terms.sex.share"],
    }
)
sex_shares.iloc[:: max(1, len(sex_shares) // 8)].round(4)

# %% [markdown]
# The schedule {glue:text}`schedule_outcome`. Switching the term off does not make the
# head forget: it only stops the term from pushing the shared layers once it has nothing left
# to teach, and the log now says so explicitly (a weight of 0) instead of a share that has
# quietly become 0.
#
# ## Before and after

# %%
before_after = pd.DataFrame(results).T
alarm_counts = before_after.pop("alarms").map(len)
before_after["collapse alarms"] = alarm_counts
before_after = before_after.astype(float)
before_after.round(4)

# %% tags=["remove-input"]
fig, axes = plt.subplots(1, 4, figsize=(11, 3.4), sharey=True)
order = list(before_after.index)[::-1]
for ax, column, title in zip(
    axes,
    ["unique_codes", "codes_per_patient", "sex_violation_rate", "js_divergence"],
    ["unique codes", "codes per patient", "sex violation rate", "JS divergence to test"],
    strict=True,
):
    values = before_after.loc[order, column]
    colours = ["#7f7f7f" if name.startswith("real") else "#ff7f0e" for name in order]
    ax.barh(order, values, color=colours)
    ax.set_title(title, fontsize=9)
fig.suptitle(f"Before and after the remedies ({len(prompt_patients)} patients each)", fontsize=10)
fig.tight_layout()
plt.show()

# %%
row = before_after.loc
glue("failing_unique", float(row["failing", "unique_codes"]))
glue("real_unique", float(row["real (floor)", "unique_codes"]))
glue("no_cooc_unique", float(row["sex scheduled, no cooc", "unique_codes"]))
glue("diversity_unique", float(row["cooc + diversity", "unique_codes"]))
glue("failing_cpp", float(row["failing", "codes_per_patient"]))
glue("no_cooc_cpp", float(row["sex scheduled, no cooc", "codes_per_patient"]))
glue("diversity_cpp", float(row["cooc + diversity", "codes_per_patient"]))
glue("real_cpp", float(row["real (floor)", "codes_per_patient"]))
glue("failing_alarms", int(row["failing", "collapse alarms"]))
glue("failing_js", float(row["failing", "js_divergence"]))
glue("no_cooc_js", float(row["sex scheduled, no cooc", "js_divergence"]))
glue("diversity_js", float(row["cooc + diversity", "js_divergence"]))
glue("without_sex_violations", float(row["sex scheduled, no cooc", "sex_violation_rate"]))
rules = "sex scheduled, no cooc + validity rules"
glue("with_rules_sex_violations", float(row[rules, "sex_violation_rate"]))
glue("with_rules_age_violations", float(row[rules, "age_violation_rate"]))
glue("failing_sex_violations", float(row["failing", "sex_violation_rate"]))
real_cpp = row["real (floor)", "codes_per_patient"]
real_share = row["real (floor)", "top_code_share"]


def collapse_verdict(variant: str) -> str:
    """Words for a variant's top-code share and record length against the real patients."""
    share, cpp = row[variant, "top_code_share"], row[variant, "codes_per_patient"]
    dominant = "keeps a dominant code" if share > 2 * real_share else "has no dominant code"
    if cpp > 1.25 * real_cpp:
        length = "longer records than the real ones"
    elif cpp < 0.8 * real_cpp:
        length = "shorter records than the real ones"
    else:
        length = "records about as long as the real ones"
    return f"{dominant} (top code in {share:.1%} of patients) and writes {length}"


glue("failing_verdict", collapse_verdict("failing"))
glue("dropping_verdict", collapse_verdict("sex scheduled, no cooc"))
glue("diversity_verdict", collapse_verdict("cooc + diversity"))
validity_row = "validity loss, no sex, cooc"
glue("validity_loss_verdict", collapse_verdict(validity_row))
glue("validity_loss_unique", float(row[validity_row, "unique_codes"]))
glue("validity_loss_sex", float(row[validity_row, "sex_violation_rate"]))
glue("validity_loss_age", float(row[validity_row, "age_violation_rate"]))
glue("validity_loss_alarms", int(row[validity_row, "collapse alarms"]))
glue(
    "validity_loss_collapse",
    "still collapses: the co-occurrence loss, not the sex loss, causes the collapse"
    if row[validity_row, "unique_codes"] < 0.5 * row["real (floor)", "unique_codes"]
    else "does not collapse",
)
glue("failing_sex_violations_rate", float(row["failing", "sex_violation_rate"]))
failing_share = row["failing", "top_code_share"]
failing_mode_share = row["failing", "chapters_mode_share"]
glue(
    "collapse_shape",
    (
        f"one dominant code (in {failing_share:.0%} of patients)"
        if failing_share > 2 * real_share
        else f"no dominant code (the top code is in {failing_share:.0%} of patients)"
    )
    + (
        f" and, as in the notes, one template: {failing_mode_share:.0%} of patients have exactly "
        f"{int(row['failing', 'chapters_mode'])} chapter(s)"
        if failing_mode_share > row["real (floor)", "chapters_mode_share"]
        else " and no fixed number of chapters"
    ),
)
failing_invalid = row["failing", "age_violation_rate"] + row["failing", "sex_violation_rate"]
real_invalid = row["real (floor)", "age_violation_rate"] + row["real (floor)", "sex_violation_rate"]
glue(
    "collapse_validity",
    "validity stays as clean as the real records'"
    if failing_invalid <= real_invalid
    else f"validity is not perfect either ({row['failing', 'age_violation_rate']:.1%} age and "
    f"{row['failing', 'sex_violation_rate']:.1%} sex violations in the failing run)",
)
check_true(
    "the removed-cooc remedy writes more unique codes than the failing run",
    row["sex scheduled, no cooc", "unique_codes"] > row["failing", "unique_codes"],
    f"{row['sex scheduled, no cooc', 'unique_codes']:.0f} vs {row['failing', 'unique_codes']:.0f}",
)
glue("failing_top_share", float(row["failing", "top_code_share"]))
glue("real_top_share", float(real_share))
glue("failing_age_violations", float(row["failing", "age_violation_rate"]))
glue("floor_js", float(row["real (floor)", "js_divergence"]))
glue(
    "js_sees_collapse",
    "is above"
    if row["failing", "js_divergence"] > row["real (floor)", "js_divergence"]
    else "is not even above",
)


# %% [markdown]
# On {glue:text}`n_generated` patients per variant, generated with the grammar and the
# duplicate rule of lesson 08 (so the tokens the failing model had escaped to are forbidden):
#
# - **The failing run** {glue:text}`failing_verdict`: {glue:text}`failing_cpp:.1f` codes per
#   patient and {glue:text}`failing_unique:.0f` unique codes, against {glue:text}`real_cpp:.1f`
#   and {glue:text}`real_unique:.0f` for the real patients with the same prompts (real top code
#   share {glue:text}`real_top_share:.1%`). Its top code is {glue:text}`failing_top_code`.
#   `mode_collapse_alarms` raises {glue:text}`failing_alarms` alarm(s). Its JS divergence,
#   {glue:text}`failing_js:.3f`, {glue:text}`js_sees_collapse` the real floor
#   ({glue:text}`floor_js:.3f`): a pooled code-frequency distance does not see one code
#   crowding the patients.
# - **Dropping the co-occurrence loss** (with the sex loss scheduled off): the model
#   {glue:text}`dropping_verdict` ({glue:text}`no_cooc_cpp:.1f` codes per patient,
#   {glue:text}`no_cooc_unique:.0f` unique codes, JS divergence {glue:text}`no_cooc_js:.3f`).
# - **A diversity loss on top of the co-occurrence loss**: the model
#   {glue:text}`diversity_verdict` ({glue:text}`diversity_cpp:.1f` codes per patient,
#   {glue:text}`diversity_unique:.0f` unique codes, JS divergence {glue:text}`diversity_js:.3f`).
#   The two losses pull in opposite directions and their balance is one more weight to tune;
#   dropping the loss that causes the collapse is simpler.
# - **The validity loss instead of a sex loss**, co-occurrence loss kept: the model
#   {glue:text}`validity_loss_collapse` ({glue:text}`validity_loss_unique:.0f` unique codes,
#   {glue:text}`validity_loss_alarms` alarm(s)); it {glue:text}`validity_loss_verdict`, with
#   sex and age violation rates {glue:text}`validity_loss_sex:.4f` and
#   {glue:text}`validity_loss_age:.4f` (failing run: {glue:text}`failing_sex_violations_rate:.4f`
#   and {glue:text}`failing_age_violations:.4f`).
# - **Rule-based validity** needs no sex loss at all: the masked generator's sex violation
#   rate is {glue:text}`with_rules_sex_violations:.4f` (age:
#   {glue:text}`with_rules_age_violations:.4f`) against {glue:text}`without_sex_violations:.4f`
#   for the same model (sex loss scheduled off) without the rules. The rules guarantee what a
#   sex head could only encourage; they do nothing for diversity.
#
# Where our runs differ from the notes: our sex loss vanishes within a few hundred steps
# because the prompt hands the decoder the answer; our collapse shows first as broken, short
# samples and, once the grammar forbids that escape, as {glue:text}`collapse_shape`; and
# {glue:text}`collapse_validity`: a model this small and this briefly trained writes some
# invalid codes whatever its losses. In both failures the total loss keeps falling: the share
# of each term and the diversity metrics are what catch them.
#
# ## Records that end too early: the batch order
#
# The third failure is quieter: the generator simply writes too few visits. Until recently
# the trainer grouped its batches by length (windows of {glue:text}`eor_group_batches`
# batches sorted by record length, which saves padding). Two runs of
# lesson 08's generator recipe show what that did: the same cohort, split, steps and seed,
# one with random batches (`generator`, the default now) and one with length-grouped batches
# (`grouped_batches`, `TrainConfig.group_by_length=True`). Each stored one generated patient
# per test patient.

# %%
from course_lib.dataset import ResumableBatches
from course_lib.evaluation.likelihood import end_of_record_by_visit, end_of_record_probabilities

glue("eor_group_batches", ResumableBatches.GROUP_BATCHES)

order_runs = {
    "random batches": ctx.train_or_load("generator"),
    "length-grouped batches": ctx.train_or_load("grouped_batches"),
}
random_run = order_runs["random batches"]
order_test = random_run.run.split(cohort, "test")
order_train = random_run.run.split(cohort, "train")
glue("eor_n_train", len(order_train))


def visits_per_patient(patients) -> tuple[float, float]:
    """Mean visits per patient and its standard error."""
    counts = np.array([len(p.visits) for p in patients], dtype=float)
    return float(counts.mean()), float(counts.std(ddof=1) / np.sqrt(len(counts)))


visits = {name: visits_per_patient(run.generated()) for name, run in order_runs.items()}
visits["real (test split)"] = visits_per_patient(order_test)
visits["real (training split)"] = visits_per_patient(order_train)
glue("eor_visits_random", visits["random batches"][0])
glue("eor_visits_grouped", visits["length-grouped batches"][0])
glue("eor_visits_real_test", visits["real (test split)"][0])
glue("eor_visits_real_train", visits["real (training split)"][0])
check_below(
    "length-grouped batches write fewer visits per patient than random batches",
    visits["length-grouped batches"][0],
    visits["random batches"][0],
    noise=float(np.hypot(visits["length-grouped batches"][1], visits["random batches"][1])),
)
for name, (mean, se) in visits.items():
    print(f"{name}: {mean:.2f} visits per patient (se {se:.2f})")

# %% [markdown]
# The length-grouped model writes {glue:text}`eor_visits_grouped:.2f` visits per patient,
# the random-batch one {glue:text}`eor_visits_random:.2f`; the real patients of the test split
# have {glue:text}`eor_visits_real_test:.2f` (the training split
# {glue:text}`eor_visits_real_train:.2f`: a few very long records make the mean noisy).
#
# To see where the records end, read the model rather than its samples. Under teacher forcing
# (the real record as the decoder's input, as in training), the position right after each
# `</visit>` is where the model decides between `</patient>` and another `<visit>`;
# `end_of_record_probabilities` returns, for every such boundary, the model's probability of
# `</patient>` (`p_end`), of `<visit>` (`p_visit`) and whether the real record ends there.
# The generation grammar of lesson 08 allows only those two tokens after a visit, so the
# sampler ends the record with `p_end / (p_end + p_visit)`. We read the training split: the
# rate the model should have learned is that of the records it trained on, and its
# {glue:text}`eor_n_train:,` patients give tight error bars.

# %%
by_visit = {}
for name, run in order_runs.items():
    boundaries = end_of_record_probabilities(
        run.model,
        run.vocabulary,
        run.normalizer,
        run.run.split(cohort, "train"),
        max_length=run.config.max_length,
    )
    by_visit[name] = end_of_record_by_visit(boundaries, last=4)
real_by_visit = by_visit["random batches"][["n", "real", "real_se"]]
columns = ["p_end", "p_visit", "p_sampler", "p_sampler_se"]
pd.concat(
    {"real": real_by_visit} | {name: table[columns] for name, table in by_visit.items()}, axis=1
).round(3)

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(6.5, 3.4))
labels = list(real_by_visit.index)
x = np.arange(len(labels))
ax.errorbar(
    x - 0.15,
    real_by_visit["real"],
    yerr=real_by_visit["real_se"],
    fmt="ks",
    capsize=3,
    label="real records end here",
)
for shift, (name, table) in zip((0.0, 0.15), by_visit.items(), strict=True):
    ax.errorbar(
        x + shift,
        table["p_sampler"],
        yerr=table["p_sampler_se"],
        fmt="o",
        capsize=3,
        label=f"{name}: p(end) when sampling",
    )
ax.set_xticks(x, labels)
ax.set_xlabel("after visit")
ax.set_ylabel("probability the record ends")
ax.set_ylim(0, 1)
ax.legend(fontsize=8, loc="lower left")
ax.set_title("Where records end: the two models vs the training records (± 1 se)", fontsize=10)
fig.tight_layout()
plt.show()

# %%
first = "1"
real_first, real_first_se = (float(real_by_visit.loc[first, c]) for c in ("real", "real_se"))
grouped_first = by_visit["length-grouped batches"].loc[first]
random_first = by_visit["random batches"].loc[first]
glue("eor_real_first", real_first)
glue("eor_grouped_first", float(grouped_first["p_sampler"]))
glue("eor_random_first", float(random_first["p_sampler"]))
glue("eor_grouped_raw_first", float(grouped_first["p_end"]))
glue("eor_random_raw_first", float(random_first["p_end"]))
glue("eor_grouped_visit_first", float(grouped_first["p_visit"]))
glue("eor_random_visit_first", float(random_first["p_visit"]))
glue("eor_real_late", float(real_by_visit["real"].iloc[-1]))
glue("eor_late_label", labels[-1])
glue("eor_grouped_forbidden", float(1 - grouped_first["p_end"] - grouped_first["p_visit"]))
best_val = {name: float(run.epochs["val_lm"].min()) for name, run in order_runs.items()}
glue("eor_val_random", best_val["random batches"])
glue("eor_val_grouped", best_val["length-grouped batches"])
print("best validation LM loss: " + ", ".join(f"{k} {v:.3f}" for k, v in best_val.items()))
check_above(
    "after the first visit, the length-grouped model ends records more often than real ones end",
    float(grouped_first["p_sampler"]),
    real_first,
    noise=float(np.hypot(grouped_first["p_sampler_se"], real_first_se)),
)
check_below(
    "random batches bring that end rate closer to the real one (distance to the real rate)",
    abs(float(random_first["p_sampler"]) - real_first),
    abs(float(grouped_first["p_sampler"]) - real_first),
    noise=float(np.hypot(grouped_first["p_sampler_se"], random_first["p_sampler_se"])),
)
real_fall = real_first - float(real_by_visit["real"].iloc[-1])
for name, table in by_visit.items():
    check_below(
        f"{name}: the end rate falls less from visit 1 to {labels[-1]} than the real rate does",
        float(table["p_sampler"].iloc[0] - table["p_sampler"].iloc[-1]),
        real_fall,
        noise=float(np.hypot(real_first_se, real_by_visit["real_se"].iloc[-1])),
    )

# %% [markdown]
# After the first visit, {glue:text}`eor_real_first:.0%` of the training records end. The
# length-grouped model, sampling under the grammar, ends {glue:text}`eor_grouped_first:.0%` of
# them there, the random-batch model {glue:text}`eor_random_first:.0%`. The raw probabilities
# tell how: `</patient>` gets {glue:text}`eor_grouped_raw_first:.2f` from the length-grouped
# model and {glue:text}`eor_random_raw_first:.2f` from the random-batch one, but the
# length-grouped model gives `<visit>` only {glue:text}`eor_grouped_visit_first:.2f` (random
# batches: {glue:text}`eor_random_visit_first:.2f`) and puts
# {glue:text}`eor_grouped_forbidden:.2f` on tokens the grammar forbids after a visit; the
# sampler, choosing between the two allowed tokens, mostly ends. Neither model has learned in
# this short run that a long record is less likely to end (after visit
# {glue:text}`eor_late_label`, {glue:text}`eor_real_late:.0%` of real records end): their end
# rates barely move with the visit index. The length-grouped model's best validation LM loss
# is also worse, {glue:text}`eor_val_grouped:.3f` against {glue:text}`eor_val_random:.3f`
# (one run each).

# %% [markdown]
# Why does the batch order matter? Every logged step of `logs/train.jsonl`
# holds the gradient norm before clipping:

# %%
grad_clip = glue("eor_grad_clip", float(random_run.config.grad_clip))
for name, run in order_runs.items():
    norms = run.steps["grad_norm"].dropna()
    key = "grouped" if name.startswith("length") else "random"
    glue(f"eor_clipped_{key}", int(norms.gt(grad_clip).sum()))
    glue(f"eor_logged_{key}", len(norms))
    glue(f"eor_max_norm_{key}", float(norms.max()))
    print(
        f"{name}: {int(norms.gt(grad_clip).sum())} of {len(norms)} logged steps clipped "
        f"(norm above {grad_clip:g}); norms {norms.min():.2f} to {norms.max():.2f}"
    )

# %% [markdown]
# **Why.** A length-grouped batch holds one kind of record: a batch of one-visit patients ends
# every record after its first visit, a batch of long ones almost never does. Successive
# batches pull the end-of-record logit in opposite directions, and gradient clipping (max norm
# {glue:text}`eor_grad_clip:g`) caps the large gradients of the long-record batches that would
# pull it back, so the many short-record batches win. In the length-grouped run
# {glue:text}`eor_clipped_grouped` of {glue:text}`eor_logged_grouped` logged steps were clipped
# (norms up to {glue:text}`eor_max_norm_grouped:.1f`), against
# {glue:text}`eor_clipped_random` of {glue:text}`eor_logged_random` with random batches (up to
# {glue:text}`eor_max_norm_random:.1f`). Both runs balance each batch's loss by its token count
# (`balance_by_tokens`, always on in the trainer), so that balancing alone does not fix it:
# the batches still disagree.
#
# **Remedy.** Random batches mix short and long records in every batch, so each step sees the
# real end rate. They are the default (`TrainConfig.group_by_length=False`); the
# `--group-by-length` flag brings the old order back at this cost. Its old gain, less padding,
# is gone too: the trainer projects only the real positions onto the vocabulary
# (`packed_logits`), so padding costs little. A generator whose records are too short is worth this diagnosis before any loss is
# changed: compare the sampler's end probability after each visit with the real end rate.
#
# ## Summary
#
# - Log every term's raw value, weight and share at every step, and sample a few patients at
#   every epoch: both failures of the notes are visible in those two logs long before the end.
# - A vanishing term shows as a share that falls to ~0% and stays there: switch it off on
#   purpose (`OffBelowThreshold`) or drop it, and say so in the log.
# - A co-occurrence loss is cheapest to satisfy by writing fewer codes: unique codes collapse
#   (here to {glue:text}`unique_ratio:.0%` of the real vocabulary) and one chapter count takes
#   over ({glue:text}`failing_mode_share:.0%` of patients). Drop the loss (or balance it with a
#   diversity loss) and watch the diversity metrics against the real-vs-real floor.
# - Validity comes from the validity loss or from rules at generation time, not from a sex
#   head; neither repairs diversity.
# - Records that end too early show in the model itself: its end-of-record probability after
#   each visit (`end_of_record_probabilities`) against the real end rate. Length-grouped batches
#   taught it to end after the first visit; random batches (the default) fix it.
#
# ## Exercises
#
# 1. **A vanishing-term alarm.** Write `vanishing_term_alarms(step_records,
#    threshold_percent=0.1, patience_epochs=2)` over the records of `logs/train.jsonl` (a list
#    of dicts, as `json.loads` reads them). Return a list of `(term, epoch)` pairs: a term
#    whose mean share over an epoch's logged steps stays below `threshold_percent` for
#    `patience_epochs` consecutive epochs, reported once, at the epoch the streak reaches
#    `patience_epochs`. A term whose weight is 0 throughout an epoch was switched off on
#    purpose: no alarm, and the streak restarts. Then run it on this lesson's failing run.

# %%
from course_lib.exercises.lesson10 import check_vanishing_term_alarms


# TODO: write your answer in place of the stub's raise.
def vanishing_term_alarms(
    step_records, threshold_percent: float = 0.1, patience_epochs: int = 2
) -> list[tuple[str, int]]:
    """(term, epoch) for each loss term whose share stayed below the threshold."""
    raise NotImplementedError("TODO: replace this line with your code")


vanishing_term_alarms_done = check_vanishing_term_alarms(vanishing_term_alarms)

# %% [markdown]
# 2. **The notes' weights.** Train the failing run with the notes' weights, 0.005/0.005 and
#    co-occurrence 0.05. Does either failure appear within the CPU budget? With the GPU preset?
# 3. **A softer collapse alarm.** `AlarmThresholds` sets when `mode_collapse_alarms` fires.
#    Which thresholds would have fired on the failing run's *codes per patient*, and what
#    would such an alarm have said about the real patients (compute it on the floor)?
