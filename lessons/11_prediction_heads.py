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
# # 11 · Prediction heads
#
# **Objectives.** After this lesson you can turn a trained generator into a feature extractor;
# train small prediction heads on its frozen hidden states; tell a trained head from a
# random-init one (and make the library tell you); save, list and reload versions of a head;
# judge a head's probabilities with a calibration error and a reliability diagram; and decide
# whether training the heads jointly beats training them one by one.
#
# **Prerequisites.** Lessons 03-05 (PromptBart, its conditional prompts and the auxiliary heads
# on the decoder's end-of-patient state) and lesson 09 (every metric next to a reference value).
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

ctx = setup_lesson(seed=0, name="11_prediction_heads")

# %% [markdown]
# ## Four heads, one of them trained
#
# The original project's notes had a second pipeline next to the generator: small *prediction
# heads* on a language model's hidden states, each `Hidden -> Linear(256) -> ReLU ->
# Dropout(0.1) -> Linear(k)`. A binary head (reduced left-ventricular ejection fraction, about
# 71% accuracy in the notes), a multi-horizon risk head, a 3-class risk-category head and a
# confidence head. Only the binary head had labels; the other three were random-init, and
# nothing in the code or the saved files said so.
#
# This lesson rebuilds that pipeline on our simulated cohort, whose `OUTCOMES.csv` gives every
# head a label, and makes the untrained case impossible to miss.
#
# ## A frozen generator as a feature extractor
#
# First we need a trained PromptBart. The lesson trains its own small run (or loads it, when a
# previous execution finished it). On a CPU we stop after one pass over the sample cohort's
# training patients (`max_steps` below); on a GPU the preset's full budget runs. Small models gain
# nothing from several CPU threads, so the run uses one.

# %%
heads_generator = ctx.train_or_load("heads_generator")  # course_lib/recipes.py
model, normalizer = heads_generator.model, heads_generator.normalizer
vocabulary, run_config = heads_generator.vocabulary, heads_generator.config
run_dir = heads_generator.run.path
generator_steps = glue("generator_steps", int(heads_generator.steps["step"].max()))
print(f"d_model {model.config.d_model}, {sum(p.numel() for p in model.parameters()):,} parameters")
print(f"trained for {generator_steps} optimiser steps")

# %% [markdown]
# The features are the decoder's final hidden state at the end-of-patient position, the same
# state the auxiliary age and sex heads read in lesson 05: with the whole patient teacher-forced
# into the decoder it has attended to every visit. `cached_features` runs the frozen model once
# over the cohort (evaluation mode, no gradients) and stores the result under a key made from the
# model's weights and the patients, so a changed run can never reuse stale features. The second
# call reads the file.

# %%
import time

from course_lib.heads import cached_features
from course_lib.mimic import load_mimic

cohort = load_mimic(ctx.data_dir, unknown_codes="skip")
feature_cache = ctx.runs_dir / "features"
timings = {}
for attempt in ("first call", "second call"):
    started = time.perf_counter()
    feature_set = cached_features(
        model, cohort, normalizer, feature_cache, max_length=run_config.max_length
    )
    timings[attempt] = time.perf_counter() - started
    print(
        f"{attempt}: {'read from cache' if feature_set.from_cache else 'extracted'} "
        f"in {timings[attempt]:.2f} s"
    )
features = feature_set.features  # [patients, d_model], float32 on the CPU
print(f"features: {tuple(features.shape)} ({feature_set.kind})")

# %% [markdown]
# ## Outcomes and a split the generator respects
#
# `OUTCOMES.csv` holds one row per patient: `LVEF_REDUCED` (0/1), the days to an adverse event
# or to censoring with `EVENT_OBSERVED`, and `RISK_CATEGORY` (low, medium, high).
# `build_targets` turns them into one target per head; the horizon head's targets respect
# censoring (a patient censored before a horizon has no target for it). The split reuses the
# generator run's own `splits.json`, so the heads' test patients are patients the generator never
# trained on either.

# %%
import pandas as pd
from IPython.display import display

from course_lib.heads import build_targets, patient_split, read_outcomes

outcomes = read_outcomes(ctx.data_dir)
targets = build_targets(outcomes, feature_set.subject_ids)
split = patient_split(feature_set.subject_ids, run_dir=run_dir)
print(f"split from {split.source}: {split.sizes()}")
glue("n_test", len(split.test))
display(outcomes.drop(columns="SUBJECT_ID").describe().loc[["count", "mean"]].round(3))
binary_prevalence = glue("binary_prevalence", float(targets.binary.nanmean()))

# %% [markdown]
# {glue:text}`binary_prevalence:.1%` of the patients have a reduced ejection fraction, the binary
# head's outcome.
#
# ## An untrained head, and how the library tells
#
# A head is a small MLP. Built and never trained, it still returns numbers that look like
# probabilities. The library's heads carry a `trained` flag, a buffer saved with the weights that
# only a finished training sets; `predict` warns with `UntrainedHeadWarning` while it is False.

# %%
import warnings

import numpy as np
import torch

from course_lib.heads import UntrainedHeadWarning, make_head

torch.manual_seed(ctx.seed)  # the random init must not depend on whether the run was cached
untrained_binary = make_head("binary", feature_set.input_size)
print("trained flag:", untrained_binary.trained)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    probabilities = untrained_binary.predict(features[:5]).squeeze(-1)
print("probabilities:", probabilities.numpy().round(3))
for warning in caught:
    print(f"{warning.category.__name__}: {warning.message}")

# %% [markdown]
# How bad are those numbers? `evaluate_head` scores a head on the test patients next to its
# trivial baseline (here the training prevalence as a constant probability: AUROC 0.5).

# %%
from course_lib.heads import evaluate_head

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UntrainedHeadWarning)  # we know: that is the point
    untrained_metrics, untrained_curves = evaluate_head(
        "binary", untrained_binary, features, targets, split.test, split.train
    )
untrained_auroc = glue("untrained_auroc", untrained_metrics["auroc"])
untrained_ece = glue("untrained_ece", untrained_metrics["ece"])
glue("untrained_vs_chance", "above" if untrained_auroc > 0.5 else "below")
print(f"untrained binary head: AUROC {untrained_auroc:.3f}, ECE {untrained_ece:.3f}")

# %% [markdown]
# The random-init head reaches an AUROC of {glue:text}`untrained_auroc:.3f`,
# {glue:text}`untrained_vs_chance` the 0.5 of chance, and a calibration error of
# {glue:text}`untrained_ece:.3f`. Is that luck? Twenty random heads, one per seed:

# %%
random_aurocs = []
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UntrainedHeadWarning)
    for seed in range(20):
        torch.manual_seed(seed)
        random_head = make_head("binary", feature_set.input_size)
        metrics, _ = evaluate_head(
            "binary", random_head, features, targets, split.test, split.train
        )
        random_aurocs.append(metrics["auroc"])
random_aurocs = np.array(random_aurocs)
glue("random_auroc_min", float(random_aurocs.min()))
glue("random_auroc_max", float(random_aurocs.max()))
glue("random_auroc_mean", float(random_aurocs.mean()))
print(f"20 random heads: test AUROC {random_aurocs.min():.3f} to {random_aurocs.max():.3f}")

# %% [markdown]
# Their test AUROC ranges from {glue:text}`random_auroc_min:.3f` to
# {glue:text}`random_auroc_max:.3f` (mean {glue:text}`random_auroc_mean:.3f`). A random head
# projects features that do carry signal onto a random direction, so it ranks patients by
# accident, better or worse than chance depending on the seed: numbers that a report could quote
# as a result. The metrics alone cannot tell such a head from a weak trained one; the flag can.
# In the notes' project three heads like this one shipped next to a trained one.
#
# ## A linear probe first
#
# Before training the MLP heads, a check that the frozen features carry the signal at all: a
# logistic regression (a *linear probe*) on the standardised training features, scored on the
# test patients.

# %%
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

labelled = ~np.isnan(targets.binary.numpy())
train_rows = split.train[labelled[split.train]]
test_rows = split.test[labelled[split.test]]
probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
probe.fit(features[train_rows].numpy(), targets.binary[train_rows].numpy())
probe_auroc = glue(
    "probe_auroc",
    float(
        roc_auc_score(
            targets.binary[test_rows].numpy(),
            probe.predict_proba(features[test_rows].numpy())[:, 1],
        )
    ),
)
print(f"linear probe, binary outcome: test AUROC {probe_auroc:.3f}")

# %% [markdown]
# ## The four heads, one by one
#
# `train_heads` trains each head alone on the frozen features (AdamW, early stopping on the
# validation loss, the best epoch's weights restored), marks it trained, and evaluates it on the
# test split next to its trivial baseline. The risk head's cross-entropy weighs its classes by
# their inverse frequency; the confidence head learns "is the binary head right on this
# patient?", from held-out predictions of binary heads fitted on other folds.

# %%
from course_lib.heads import HEAD_NAMES, FitConfig, train_heads

fit_config = FitConfig(seed=0)
started = time.perf_counter()
separate = train_heads(features, targets, split, HEAD_NAMES, joint=False, config=fit_config)
print(f"trained {len(separate.heads)} heads in {time.perf_counter() - started:.1f} s")


def metrics_table(result) -> pd.DataFrame:
    """One row per head: test metrics and the trivial baseline's."""
    rows = {}
    for name, metrics in result.metrics.items():
        baseline = metrics["baseline"]
        rows[name] = {
            "AUROC": metrics["auroc"],
            "macro-F1": metrics.get("macro_f1", np.nan),
            "baseline macro-F1": baseline.get("macro_f1", np.nan),
            "ECE": metrics["ece"],
            "baseline ECE": baseline["ece"],
        }
    table = pd.DataFrame(rows).T.astype(float).round(3)
    table["trained"] = [result.heads[name].trained for name in table.index]
    return table


separate_table = metrics_table(separate)
display(separate_table)

# %%
binary_metrics = separate.metrics["binary"]
binary_auroc = glue("binary_auroc", binary_metrics["auroc"])
binary_accuracy = glue("binary_accuracy", binary_metrics["accuracy"])
binary_majority = glue("binary_majority", binary_metrics["baseline"]["accuracy"])
beats_baseline = [name for name in HEAD_NAMES if separate.metrics[name]["auroc"] > 0.5]
glue("n_beat_baseline", len(beats_baseline))
glue("probe_vs_head", "above" if probe_auroc > binary_auroc else "below")
glue(
    "head_vs_random",
    "above the best of" if binary_auroc > random_aurocs.max() else "within the range of",
)
print(f"heads above AUROC 0.5: {beats_baseline}")

# %% [markdown]
# The binary head reaches a test AUROC of {glue:text}`binary_auroc:.3f` and an accuracy of
# {glue:text}`binary_accuracy:.3f`, against {glue:text}`binary_majority:.3f` for always
# predicting the majority class; the linear probe ({glue:text}`probe_auroc:.3f`) is
# {glue:text}`probe_vs_head` the MLP head, and the head's AUROC is {glue:text}`head_vs_random`
# the twenty random heads. {glue:text}`n_beat_baseline` of the four heads rank
# patients better than chance. These are small numbers on purpose: a generator trained for
# {glue:text}`generator_steps` optimiser steps on a small cohort, features it learnt for
# generating codes, not for predicting outcomes, and a test split of
# {glue:text}`n_test` patients. They are not comparable with the notes' 71% accuracy, which was
# a different task on other data.
#
# ## Calibration
#
# A head's probabilities are calibrated ({term}`calibration`) when, among the patients given 0.3,
# about 30% have the outcome. The expected calibration error (ECE) bins the predicted probabilities into 10 equal
# bins and averages the gap between the mean prediction and the observed frequency in each bin,
# weighted by the bin's size. In a few lines:

# %%
from course_lib.heads import expected_calibration_error

binary_probabilities, binary_outcomes = (
    np.asarray(values, dtype=np.float64) for values in separate.curves["binary"]["binary"]
)
bins = np.minimum((binary_probabilities * 10).astype(int), 9)
ece_by_hand = sum(
    (bins == b).mean()
    * abs(binary_outcomes[bins == b].mean() - binary_probabilities[bins == b].mean())
    for b in range(10)
    if (bins == b).any()
)
library_ece = expected_calibration_error(binary_probabilities, binary_outcomes)
print(f"ECE by hand {ece_by_hand:.6f}, course_lib {library_ece:.6f}")
assert abs(ece_by_hand - library_ece) < 1e-9

# %% [markdown]
# The reliability diagram draws the same bins: the mean prediction against the observed
# frequency, with the diagonal as perfect calibration. Below, the trained binary head, the
# untrained one, and the risk head's top-label confidence.

# %% tags=["remove-input"]
from course_lib.heads.metrics import reliability_diagram

reliability_diagram(
    {
        "binary (trained)": separate.curves["binary"]["binary"],
        "binary (untrained)": untrained_curves["binary"],
        "risk, top label (trained)": separate.curves["risk"]["top-label"],
    },
    "Reliability on the test patients",
)

# %%
risk_ece = glue("risk_ece", separate.metrics["risk"]["ece"])
binary_ece = glue("binary_ece", separate.metrics["binary"]["ece"])
binary_baseline_ece = glue("binary_baseline_ece", separate.metrics["binary"]["baseline"]["ece"])
ece_vs_baseline = glue("ece_vs_baseline", "above" if binary_ece > binary_baseline_ece else "below")
untrained_spread = glue("untrained_spread", float(np.ptp(untrained_curves["binary"][0])))
print(
    f"binary head ECE {binary_ece:.3f} ({ece_vs_baseline} the baseline's {binary_baseline_ece:.3f})"
)
print(f"untrained head: every test probability within a range of {untrained_spread:.3f}")

# %% [markdown]
# The trained binary head's ECE is {glue:text}`binary_ece:.3f`, {glue:text}`ece_vs_baseline`
# the constant-prevalence baseline's {glue:text}`binary_baseline_ece:.3f`. The untrained head is
# a single point: its test probabilities all lie within a range of
# {glue:text}`untrained_spread:.3f`, so they fall into one bin, and its ECE
# ({glue:text}`untrained_ece:.3f`) is no alarm by itself. A constant
# prediction equal to the prevalence is almost perfectly calibrated and useless for ranking: ECE
# and AUROC answer different questions, and a head is judged on both. With a test split this
# small each bin holds few patients, so the points scatter around the diagonal; exercise 1 fits a
# temperature, the usual one-parameter fix for over- or under-confident probabilities.
#
# ## Versions: save, list, load
#
# Each head is saved as a version folder `<head>_YYYYMMDD_HHMMSS/` holding `weights.safetensors`,
# `config.json` (with the `trained` flag), `metrics.json` and a generated `README.md`. Writing
# goes to a hidden temporary folder that is renamed into place, so "the latest version" is never
# a half-written one. The lesson's heads folder starts empty each time it runs.

# %%
import shutil

from course_lib.heads import save_head

heads_dir = ctx.runs_dir / "heads"
shutil.rmtree(heads_dir, ignore_errors=True)
for name in HEAD_NAMES:
    save_head(
        separate.heads[name],
        heads_dir,
        name,
        config={
            "feature_kind": feature_set.kind,
            "d_model": model.config.d_model,
            "training_mode": "separate",
        },
        metrics=separate.metrics[name],
    )
# the notes' mistake, on purpose: a random-init horizon head saved next to the trained one
save_head(make_head("horizon", feature_set.input_size), heads_dir, "horizon")
print(sorted(path.name for path in heads_dir.iterdir()))

# %% [markdown]
# `python -m course_lib heads list --heads-dir ...` lists every version with its state and
# flags the untrained ones. Here it runs in the notebook's own process:

# %%
from course_lib.cli import main as course_lib_cli

exit_status = course_lib_cli(["heads", "list", "--heads-dir", str(heads_dir)])

# %% [markdown]
# Loading without a version name takes the latest one; a name picks that version. The random-init
# horizon head is the latest horizon version, and loading it says so at once.

# %%
from course_lib.heads import list_heads, load_head

latest_horizon = load_head(heads_dir, "horizon")
print(f"latest horizon version {latest_horizon.version}: trained={latest_horizon.head.trained}")
trained_horizon_version = next(
    row.version for row in list_heads(heads_dir) if row.head == "horizon" and row.trained
)
named_horizon = load_head(heads_dir, "horizon", trained_horizon_version)
print(f"named version {named_horizon.version}: trained={named_horizon.head.trained}")
print((named_horizon.path / "README.md").read_text().splitlines()[0])

# %% [markdown]
# A head only fits the features it was trained on. Loading it for features of another width,
# e.g. the `concat` features (decoder end state and encoder mean, twice `d_model`), is a clear
# error before any tensor is touched:

# %%
from course_lib.heads import HeadInputSizeError, feature_size

try:
    load_head(heads_dir, "binary", expected_input_size=feature_size(model, "concat"))
except HeadInputSizeError as error:
    print(f"HeadInputSizeError: {error}")

# %% [markdown]
# ## Jointly or one by one?
#
# Joint training gives all heads one shared trunk (`Linear(256) -> ReLU -> Dropout`; each head
# keeps its own output layer) and combines their losses with uncertainty weighting
# {cite}`kendall2018multitask`, the strategy of lesson 07. We train the binary, horizon and risk
# heads jointly; the confidence head stays out, since its target is whether the binary head is
# right and it should not shape the head it judges. The comparison uses the same features,
# split and optimiser settings.

# %%
joint_names = ["binary", "horizon", "risk"]
started = time.perf_counter()
joint = train_heads(
    features, targets, split, joint_names, joint=True, weighting="uncertainty", config=fit_config
)
print(f"trained {len(joint.heads)} heads jointly in {time.perf_counter() - started:.1f} s")
comparison = pd.DataFrame(
    {
        "one by one": [separate.metrics[name]["auroc"] for name in joint_names],
        "jointly": [joint.metrics[name]["auroc"] for name in joint_names],
    },
    index=joint_names,
)
display(comparison.round(3))

# %% tags=["remove-input"]
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3.2))
positions = np.arange(len(joint_names))
width = 0.38
for offset, (column, aurocs) in zip((-width / 2, width / 2), comparison.items(), strict=True):
    bars = ax.bar(positions + offset, aurocs, width, label=column)
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
ax.axhline(0.5, color="grey", linestyle="--", label="trivial baseline (0.5)")
ax.set_xticks(positions, ["binary head", "horizon head\n(mean over horizons)", "risk head"])
ax.set_ylabel("test AUROC")
ax.set_ylim(0.4, max(0.8, float(comparison.to_numpy().max()) + 0.12))
ax.legend(fontsize=8, loc="upper left", ncol=3)
ax.set_title("Heads trained one by one and jointly")
plt.show()

# %%
auroc_change = comparison["jointly"] - comparison["one by one"]
mean_change = glue("mean_joint_change", float(auroc_change.mean()))
glue("mean_joint_change_size", abs(mean_change))
glue("joint_direction", "higher" if mean_change > 0 else "lower")
glue("n_joint_better", int((auroc_change > 0).sum()))
glue("n_joint_heads", len(joint_names))
for name in joint_names:
    glue(f"joint_change_{name}", float(auroc_change[name]))
print(auroc_change.round(3).to_dict())

# %% [markdown]
# How large must a difference be to be real, with {glue:text}`n_test` test patients? A paired
# bootstrap over the test patients resamples them
# with replacement and recomputes both binary heads' AUROC on each resample; the spread of the
# difference is its standard error.

# %%
rng = np.random.default_rng(0)
separate_probabilities, test_outcomes = separate.curves["binary"]["binary"]
joint_probabilities, _ = joint.curves["binary"]["binary"]
bootstrap_differences = []
for _ in range(200):
    resample = rng.integers(0, len(test_outcomes), len(test_outcomes))
    if len(np.unique(test_outcomes[resample])) == 2:
        bootstrap_differences.append(
            roc_auc_score(test_outcomes[resample], joint_probabilities[resample])
            - roc_auc_score(test_outcomes[resample], separate_probabilities[resample])
        )
binary_change_se = glue("binary_change_se", float(np.std(bootstrap_differences)))
clear_changes = [name for name in joint_names if abs(auroc_change[name]) > 2 * binary_change_se]
glue("n_clear_changes", len(clear_changes))
glue("clear_changes", ", ".join(clear_changes) if clear_changes else "none")
print(
    f"binary head: joint - separate AUROC {auroc_change['binary']:+.3f} +- {binary_change_se:.3f}"
)
print(f"changes larger than two of these standard errors: {clear_changes or 'none'}")

# %% [markdown]
# Jointly, the mean test AUROC is {glue:text}`joint_direction` than one by one by
# {glue:text}`mean_joint_change_size:.3f` ({glue:text}`n_joint_better` of {glue:text}`n_joint_heads` heads gain; binary
# {glue:text}`joint_change_binary:+.3f`, horizon {glue:text}`joint_change_horizon:+.3f`, risk
# {glue:text}`joint_change_risk:+.3f`). The bootstrap gives the binary head's difference a
# standard error of {glue:text}`binary_change_se:.3f`; taking that as the yardstick for every
# head, the changes larger than two standard errors are: {glue:text}`clear_changes`. The rest is
# within what another draw of test patients could give. What joint training buys for certain is
# one trunk instead of three, and what it costs is that the heads' losses must be balanced (the
# same problem as the generator's auxiliary losses in lesson 07). Each jointly trained head is
# saved with its own copy of the shared trunk, in the same format as a head trained alone.
#
# ## Summary
#
# - Prediction heads are small MLPs on frozen hidden states of the generator: the features are
#   extracted once and cached under a key of the weights and the patients.
# - A random-init head returns plausible-looking probabilities. The `trained` flag (saved with the
#   weights and in `config.json`), `UntrainedHeadWarning` and `heads list` make it visible.
# - Every metric sits next to its trivial baseline; calibration (ECE, reliability diagram) is
#   judged separately from ranking (AUROC).
# - Versions are folders `<head>_YYYYMMDD_HHMMSS/`, written atomically; `load_head` takes the
#   latest or a named one and refuses features of the wrong width.
# - Joint training shares one trunk and balances the heads' losses; on this data it is
#   {glue:text}`joint_direction` in mean test AUROC by {glue:text}`mean_joint_change_size:.3f`.
#
# ## Exercises
#
# 1. **Temperature scaling.** Write `fit_temperature(logits, outcomes) -> float` that finds the
#    temperature $T > 0$ minimising the binary cross-entropy of `sigmoid(logits / T)` on held-out
#    data {cite}`guo2017calibration`. Fit it on the binary head's validation logits and compare
#    the test ECE before and after. The check uses over- and under-confident logits whose best
#    temperature it knows.

# %%
from course_lib.exercises.lesson11 import check_cumulative_risk, check_temperature_scaling


# TODO: write your answer in place of the stub's raise.
def fit_temperature(logits, outcomes) -> float:
    """The temperature T that minimises the NLL of sigmoid(logits / T)."""
    raise NotImplementedError("TODO: replace this line with your code")


temperature_done = check_temperature_scaling(fit_temperature)

# %% [markdown]
# 2. **A survival output for the horizon head.** The horizon head predicts each horizon
#    separately, so nothing stops it from giving a patient a higher risk within 30 days than
#    within 365. Write `cumulative_risk(hazard_logits)`, mapping `[batch, horizons]` logits of
#    discrete-time *hazards* (the probability of the event in each interval, given none before)
#    to the cumulative risk by each horizon, $1 - \prod_{j \le k} (1 - \sigma(\ell_j))$, which can
#    only grow with the horizon. The check tests the values, the monotonicity and the gradient.


# %%
# TODO: write your answer in place of the stub's raise.
def cumulative_risk(hazard_logits):
    """Cumulative risk by each horizon from per-interval hazard logits."""
    raise NotImplementedError("TODO: replace this line with your code")


cumulative_risk_done = check_cumulative_risk(cumulative_risk)

# %% [markdown]
# 3. **Temporal split.** Retrain the heads with `temporal_split(cohort, feature_set.subject_ids)`
#    (fit on the earliest patients, test on the latest). Which heads hold up?
