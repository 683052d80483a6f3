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
# # 08 · Generating patients
#
# **Objectives.** After this lesson you can sample synthetic patients from a trained model with
# `model.generate()` and say why it is faster than a hand-written token loop; you can draw a
# token from a softmax with one uniform number (inverse transform sampling); you can predict
# what temperature, top-k and top-p sampling do to the diversity of the generated codes; you
# know what `no_repeat_ngram_size=1` wrongly forbids in a patient record and what to use
# instead; and you can constrain decoding with the {term}`MCE` age and sex rules through a
# {term}`logits processor`, measuring what it buys in validity and what it costs in coherence.
#
# **Prerequisites.** The lessons on tokens, the model and training (02-07); what a softmax over
# a vocabulary is.
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

ctx = setup_lesson(seed=0, name="08_generating_patients")

# %% [markdown]
# ## A generator to sample from
#
# Everything in this lesson samples from one model: the course's default recipe (auxiliary
# weights 0.001/0.001, lesson 07) trained on the sample cohort. On a CPU we stop it after 150
# optimiser steps (three epochs of the `tiny` preset; the validation loss stops improving about
# there); elsewhere the preset's own budget applies. It is the recipe `generator` of
# `course_lib.recipes`: `ctx.train_or_load` loads its stored reference run (or trains it once
# when there is none, or the code changed); lesson 09 evaluates the same run. On a CPU we also keep torch to
# one thread: a model this small gains nothing from more, and on a busy machine extra threads
# mostly wait for each other.

# %%
import torch

if ctx.device.type == "cpu":
    torch.set_num_threads(1)

generator = ctx.train_or_load("generator")  # course_lib/recipes.py; lesson 09 loads it too
model, vocabulary, normalizer = generator.model, generator.vocabulary, generator.normalizer
train_config = generator.config
model.to(ctx.device)
print(vocabulary, f"| {model.num_parameters():,} parameters")

# %% [markdown]
# We generate for real demographics: one synthetic patient per patient of the run's **test**
# split, with the same age and sex. The **validation** split, as large and disjoint from it,
# is the {term}`real-vs-real floor`: what a perfect generator would score against the test
# patients.

# %%
from course_lib.mimic import load_mimic

splits = generator.run.splits(load_mimic(ctx.data_dir))
test, val = splits["test"], splits["val"]
test_ages = [patient.age for patient in test]
test_sexes = [patient.sex for patient in test]
n_prompts = glue("n_prompts", len(test))
print(f"{n_prompts} prompts (test split); floor sample: {len(val)} validation patients")

# %% [markdown]
# ## One step by hand
#
# Generation is a loop of one idea: run the decoder on the tokens so far, turn the last
# position's logits into probabilities, draw the next token. Here is one step for the first
# test patient, after `<patient> <visit>`: the distribution over the first code of the first
# visit.

# %%
from course_lib.generation import demographics_tensors
from course_lib.tokens import BOS_ID, MASK_ID, VISIT_START_ID

x_num, x_cat = demographics_tensors(test_ages[:1], test_sexes[:1], normalizer, ctx.device)
with torch.no_grad():
    logits = model(
        input_ids=torch.tensor([[MASK_ID]], device=ctx.device),  # the encoder sees one <mask>
        decoder_input_ids=torch.tensor([[BOS_ID, VISIT_START_ID]], device=ctx.device),
        x_num=x_num,
        x_cat=x_cat,
    ).logits[0, -1]  # [vocab]
first_code_probs = torch.softmax(logits, dim=-1)
top_probs, top_ids = first_code_probs.topk(5)
print(f"prompt: age {test_ages[0]:.0f}, sex {test_sexes[0]}")
for probability, token_id in zip(top_probs.tolist(), top_ids.tolist(), strict=True):
    print(f"  {vocabulary.id_to_token(token_id):>8}  p = {probability:.3f}")

# %% [markdown]
# ## A manual loop against `generate()`
#
# `course_lib.generation.naive_generate` repeats that step in a loop, the way the original
# project's notes did: every step re-runs the encoder and the whole decoder on the whole
# sequence so far. `model.generate()` (Hugging Face's `GenerationMixin`) runs the encoder once
# and keeps each decoder layer's keys and values in a cache, so a step only computes the newest
# position. Both get the same processors (the patient grammar and the duplicate ban of the next
# sections) and sample from the untouched softmax; with the same seed they should draw the same
# tokens.

# %%
import time

import numpy as np

from course_lib.generation import build_processors, naive_generate
from course_lib.tokens import EOS_ID, PAD_ID

n_timed = 32 if ctx.device.type == "cpu" else 256
timed_ages, timed_sexes = test_ages[:n_timed], test_sexes[:n_timed]
x_num, x_cat = demographics_tensors(timed_ages, timed_sexes, normalizer, ctx.device)
max_new_tokens = 64
fits = np.mean([len(vocabulary.encode_patient(p)) <= max_new_tokens + 1 for p in test])
print(f"max_new_tokens {max_new_tokens}: {fits:.1%} of the test patients fit")

torch.manual_seed(1)
started = time.perf_counter()
naive_sequences = naive_generate(
    model, x_num, x_cat, max_new_tokens, build_processors(vocabulary, timed_ages, timed_sexes)
)
naive_seconds = time.perf_counter() - started

torch.manual_seed(1)
started = time.perf_counter()
cached_sequences = model.generate(
    x_num=x_num,
    x_cat=x_cat,
    do_sample=True,
    top_k=0,  # generate's default is top-k 50: turn it off to sample as the loop does
    max_new_tokens=max_new_tokens,
    logits_processor=build_processors(vocabulary, timed_ages, timed_sexes),
    pad_token_id=PAD_ID,
    eos_token_id=EOS_ID,
    decoder_start_token_id=BOS_ID,
)
generate_seconds = time.perf_counter() - started

# %%
width = min(naive_sequences.shape[1], cached_sequences.shape[1])
same_rows = (naive_sequences[:, :width] == cached_sequences[:, :width]).all(dim=1)
same_share = glue("same_share", same_rows.float().mean().item())
naive_rate = glue("naive_rate", n_timed / naive_seconds)
generate_rate = glue("generate_rate", n_timed / generate_seconds)
speedup = glue("speedup", naive_seconds / generate_seconds)
glue("n_timed", n_timed)
print(f"identical sequences: {same_share:.0%} of {n_timed}")
print(f"manual loop: {naive_seconds:.2f} s ({naive_rate:.1f} patients/s)")
print(f"generate():  {generate_seconds:.2f} s ({generate_rate:.1f} patients/s), {speedup:.1f}x")

# %% [markdown]
# The two loops drew the same tokens for {glue:text}`same_share:.0%` of the
# {glue:text}`n_timed` patients (the cache computes the same logits, up to floating-point
# rounding), and `generate()` was {glue:text}`speedup:.1f` times faster:
# {glue:text}`generate_rate:.1f` against {glue:text}`naive_rate:.1f` patients per second on
# this machine. The gap grows with the sequence length, because the manual loop's cost per step
# grows with it, and with the model size. From here on we use
# `course_lib.generation.generate_patients`, which calls `model.generate()` in batches and
# turns the ids back into a `Cohort`; it draws the tokens in another way, the subject of the
# next section.

# %% [markdown]
# ## Drawing a token: one uniform number instead of one per code
#
# `generate(do_sample=True)` draws each token with `torch.multinomial`. On a CPU, PyTorch draws
# one exponential random number $E_i$ per vocabulary entry and keeps the token with the largest
# $p_i / E_i$: {glue:text}`vocab_size` random numbers per patient per step. **Inverse transform
# sampling** needs one. Line the tokens up, add their probabilities into a cumulative
# distribution $F$, draw $u$ uniformly between 0 and 1, and take the first token whose $F$
# exceeds $u$. Each token owns an interval of $[0, 1)$ as wide as its probability, so it is drawn
# with exactly that probability; a masked token (probability 0) owns an empty interval.

# %%
cdf = first_code_probs.double().cumsum(0)
u = torch.rand((), dtype=torch.float64, device=cdf.device) * cdf[-1]
drawn = int(torch.searchsorted(cdf, u, right=True))  # the first position where F > u
glue("vocab_size", len(vocabulary))
print(f"u = {u.item():.3f}: {vocabulary.id_to_token(drawn)} (p = {first_code_probs[drawn]:.3g})")

# %% [markdown]
# `course_lib.processors.InverseCdfSampler` does this for a whole batch as the *last* logits
# processor: it leaves only the drawn token with a finite score, so greedy decoding
# (`do_sample=False`) picks it. `course_lib.generation.sample_sequences`, which
# `generate_patients` calls, appends it after the processors (and after `transformers`' own
# temperature, top-k and top-p warpers when asked for). Three checks: both samplers reproduce
# the model's first-code distribution, the library's draw costs less, and the manual loop given
# the same sampler writes the same tokens as the library.

# %%
from scipy import stats

from course_lib.claims import check_above, check_true
from course_lib.generation import InverseCdfSampler, sample_sequences


def draw_counts(draw, n: int = 20_000, chunk: int = 2_000) -> torch.Tensor:
    torch.manual_seed(2)
    tokens = torch.cat([draw(first_code_probs.expand(chunk, -1)) for _ in range(n // chunk)])
    return torch.bincount(tokens.cpu(), minlength=len(first_code_probs))


def by_multinomial(probs: torch.Tensor) -> torch.Tensor:
    return torch.multinomial(probs, 1).squeeze(1)


def by_inverse_cdf(probs: torch.Tensor) -> torch.Tensor:
    return InverseCdfSampler()(None, probs.log()).argmax(dim=1)


top20 = first_code_probs.topk(20).indices.cpu()  # 20 most likely codes, the rest as one bin
expected = first_code_probs.double().cpu()[top20]
expected = torch.cat([expected, 1 - expected.sum(0, keepdim=True)])
fit_p = {}
for name, draw in (("torch.multinomial", by_multinomial), ("InverseCdfSampler", by_inverse_cdf)):
    counts = draw_counts(draw).double()
    observed = torch.cat([counts[top20], counts.sum(0, keepdim=True) - counts[top20].sum()])
    fit_p[name] = stats.chisquare(observed.numpy(), (expected * observed.sum()).numpy()).pvalue
    print(f"{name}: chi-square p = {fit_p[name]:.3f} against the model's probabilities")
check_true(
    "both samplers fit the model's first-code distribution (chi-square p > 0.001)",
    min(fit_p.values()) > 0.001,
    ", ".join(f"{name} p = {p:.3g}" for name, p in fit_p.items()),
)


def ms_per_draw(draw, rows: int = 256, repeats: int = 20) -> float:
    probs = first_code_probs.expand(rows, -1).contiguous()
    draw(probs)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        draw(probs)
    if probs.is_cuda:
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - started) / repeats


multinomial_ms = glue("multinomial_ms", ms_per_draw(by_multinomial))
inverse_cdf_ms = glue("inverse_cdf_ms", ms_per_draw(by_inverse_cdf))
draw_ratio = glue("draw_ratio", multinomial_ms / inverse_cdf_ms)
print(
    f"one draw for 256 patients: multinomial {multinomial_ms:.2f} ms, inverse CDF {inverse_cdf_ms:.2f} ms"
)
if ctx.device.type == "cpu":
    check_above("on a CPU the inverse-CDF draw is faster", multinomial_ms, inverse_cdf_ms)

torch.manual_seed(1)
library_sequences = sample_sequences(
    model, x_num, x_cat, build_processors(vocabulary, timed_ages, timed_sexes),
    max_new_tokens=max_new_tokens,
)  # fmt: skip
loop_processors = build_processors(vocabulary, timed_ages, timed_sexes)
loop_processors.append(InverseCdfSampler())  # the loop takes the token the sampler left
torch.manual_seed(1)
loop_sequences = naive_generate(model, x_num, x_cat, max_new_tokens, loop_processors)
width = min(library_sequences.shape[1], loop_sequences.shape[1])
same_draw_share = glue(
    "same_draw_share",
    (library_sequences[:, :width] == loop_sequences[:, :width]).all(1).float().mean().item(),
)
print(f"identical sequences with the same sampler: {same_draw_share:.0%} of {n_timed}")

# %% [markdown]
# Neither sampler's 20,000 draws can be told apart from the model's probabilities (the
# chi-square test above). One draw for 256 patients took {glue:text}`multinomial_ms:.2f` ms
# with `torch.multinomial` and {glue:text}`inverse_cdf_ms:.2f` ms by inverse CDF here
# ({glue:text}`draw_ratio:.1f`x), and a generation pays one draw per step for every batch. The two
# samplers use the random numbers differently, so the same seed gives other patients; given the
# same sampler, the manual loop and `sample_sequences` wrote the same tokens for
# {glue:text}`same_draw_share:.0%` of the {glue:text}`n_timed` patients.

# %% [markdown]
# ## Sampling knobs
#
# Three settings reshape the distribution before each draw:
#
# - **temperature** $T$: sample from $\mathrm{softmax}(z / T)$; $T < 1$ sharpens it towards the
#   most likely tokens, $T > 1$ flattens it;
# - **top-k**: keep only the $k$ most likely tokens {cite}`fan2018hierarchical`;
# - **top-p** (nucleus sampling): keep the smallest set of most likely tokens whose
#   probabilities add up to at least $p$ {cite}`holtzman2020nucleus`.
#
# Each is a few lines on the first-code distribution from above; the check compares the kept
# tokens with `transformers`' own warpers, which `generate()` applies.

# %%
from transformers import TopKLogitsWarper, TopPLogitsWarper


def kept_by_top_k(probs: torch.Tensor, k: int) -> set[int]:
    return set(probs.topk(k).indices.tolist())


def kept_by_top_p(probs: torch.Tensor, p: float) -> set[int]:
    sorted_probs, order = probs.sort(descending=True)
    before = sorted_probs.cumsum(0) - sorted_probs  # mass of the tokens ranked above
    return set(order[before < p].tolist())


def kept_by_warper(warper, logits: torch.Tensor) -> set[int]:
    warped = warper(None, logits[None].clone())[0]
    return set(torch.isfinite(warped).nonzero().flatten().tolist())


print(
    "top-k 20 agrees:",
    kept_by_top_k(first_code_probs, 20) == kept_by_warper(TopKLogitsWarper(20), logits),
)
print(
    "top-p 0.9 agrees:",
    kept_by_top_p(first_code_probs, 0.9) == kept_by_warper(TopPLogitsWarper(0.9), logits),
)
for temperature in (0.7, 1.0, 1.3):
    probs = torch.softmax(logits / temperature, dim=-1)
    print(
        f"T={temperature}: top token p={probs.max():.3f}; "
        f"{len(kept_by_top_p(probs, 0.9))} tokens hold 90% of the mass"
    )

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
import numpy as np

fig, ax = plt.subplots(figsize=(7, 3.4))
for temperature, colour in ((0.7, "#3d85c6"), (1.0, "#444444"), (1.3, "#e69138")):
    probs = torch.softmax(logits / temperature, dim=-1).sort(descending=True).values
    probs = probs[probs > 0].cpu().numpy()
    ax.loglog(np.arange(1, len(probs) + 1), probs, color=colour, label=f"T = {temperature}")
ax.axvline(20, color="gray", linestyle=":", linewidth=1)
ax.text(21, ax.get_ylim()[1] * 0.3, "top-k 20", color="gray", fontsize=8)
nucleus = len(kept_by_top_p(first_code_probs, 0.9))
ax.axvline(nucleus, color="gray", linestyle="--", linewidth=1)
ax.text(nucleus * 1.05, ax.get_ylim()[1] * 0.05, "top-p 0.9 (T = 1)", color="gray", fontsize=8)
ax.set_xlabel("token rank")
ax.set_ylabel("probability")
ax.set_title("Next-token distribution after <patient> <visit>, one prompt")
ax.legend()
plt.show()

# %% [markdown]
# What do the knobs do to a whole cohort? We generate the test prompts under five settings and
# measure diversity (unique codes; the {term}`top-code share`, the share of patients carrying
# the most common code) and coherence (the {term}`JS divergence` of the code frequencies from
# the test split's). The grey line is the validation split: a real sample of the same size.

# %%
import pandas as pd
from IPython.display import display

from course_lib.evaluation.coherence import code_frequencies, js_divergence
from course_lib.evaluation.diversity import top_code_share, unique_codes
from course_lib.generation import generate_like

test_frequencies = code_frequencies(test)


def cohort_row(cohort) -> dict[str, float]:
    """Diversity and coherence of one cohort against the test split."""
    return {
        "unique codes": len(unique_codes(cohort)),
        "top-code share": top_code_share(cohort)[1],
        "codes per patient": np.mean([len(p.code_set) for p in cohort]),
        "JS divergence": js_divergence(test_frequencies, code_frequencies(cohort)),
    }


def generate(**settings):
    """One synthetic patient per test patient, with its age and sex (`generate_patients` with
    the test split's demographics; the same seed for every setting)."""
    return generate_like(
        model, vocabulary, normalizer, test, max_new_tokens=max_new_tokens, seed=0, **settings
    )


sampling_settings = {
    "T = 0.7": {"temperature": 0.7},
    "T = 1.0": {},
    "T = 1.3": {"temperature": 1.3},
    "top-k 20": {"top_k": 20},
    "top-p 0.9": {"top_p": 0.9},
}
started = time.perf_counter()
cohorts = {name: generate(**settings) for name, settings in sampling_settings.items()}
sweep_seconds = time.perf_counter() - started
sampling_table = pd.DataFrame(
    {"real (validation)": cohort_row(val)} | {name: cohort_row(c) for name, c in cohorts.items()}
).T
print(f"{len(cohorts)} x {n_prompts} patients in {sweep_seconds:.1f} s")
display(sampling_table.round(3))

# %% tags=["remove-input"]
fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
names = list(sampling_settings)
for ax, column in zip(axes, ["unique codes", "top-code share", "JS divergence"], strict=True):
    ax.bar(names, sampling_table.loc[names, column], color="#ff7f0e")
    ax.axhline(sampling_table.loc["real (validation)", column], color="#7f7f7f", linestyle="--")
    ax.set_title(column + " (dashed: real floor)", fontsize=9)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
fig.suptitle(f"Sampling settings, {n_prompts} generated patients each", fontsize=10)
fig.tight_layout()
plt.show()

# %%
row = sampling_table.loc
glue("unique_cold", int(row["T = 0.7", "unique codes"]))
glue("unique_default", int(row["T = 1.0", "unique codes"]))
glue("unique_hot", int(row["T = 1.3", "unique codes"]))
glue("unique_topk", int(row["top-k 20", "unique codes"]))
glue("unique_real", int(row["real (validation)", "unique codes"]))
glue("share_cold", float(row["T = 0.7", "top-code share"]))
glue("share_default", float(row["T = 1.0", "top-code share"]))
glue("share_real", float(row["real (validation)", "top-code share"]))
glue("js_default", float(row["T = 1.0", "JS divergence"]))
glue("js_topp", float(row["top-p 0.9", "JS divergence"]))
glue("js_real", float(row["real (validation)", "JS divergence"]))
generated_rows = sampling_table.drop(index="real (validation)")
glue("best_js_setting", generated_rows["JS divergence"].idxmin())
glue("fewest_setting", generated_rows["unique codes"].idxmin())
topp_vs_default = glue(
    "topp_vs_default",
    "lower" if row["top-p 0.9", "JS divergence"] < row["T = 1.0", "JS divergence"] else "higher",
)

# %% [markdown]
# Sharpening the distribution trades diversity for typicality. At $T = 0.7$ the
# {glue:text}`n_prompts` patients use {glue:text}`unique_cold` distinct codes and the top code
# reaches {glue:text}`share_cold:.1%` of them; plain sampling ($T = 1$) uses
# {glue:text}`unique_default` codes (top-code share {glue:text}`share_default:.1%`), $T = 1.3$
# {glue:text}`unique_hot`, and the real validation sample {glue:text}`unique_real`
# ({glue:text}`share_real:.1%`). The fewest codes come from **{glue:text}`fewest_setting`**.
# Top-k 20 ({glue:text}`unique_topk` codes) is a blunt cut: a code outside the 20 most likely
# at a step can never be drawn, so the long tail of rare diagnoses disappears. This is the
# first step towards the {term}`mode collapse` of the original project's notes, here caused by
# decoding alone, with no change to the model.
#
# Coherence does not simply follow diversity. The setting closest to the real code frequencies
# in this run is **{glue:text}`best_js_setting`**; top-p 0.9 scores a JS divergence of
# {glue:text}`js_topp:.3f`, {glue:text}`topp_vs_default` than plain sampling's
# {glue:text}`js_default:.3f` (the real floor: {glue:text}`js_real:.3f`). Top-p cuts only the
# least likely tail at each step, where an undertrained model spreads too much mass, and adapts
# the cut to how peaked the distribution is. The rest of the lesson samples with $T = 1$, no
# top-k or top-p, so that what it measures is the model, not the decoding.
#
# ## Duplicates and `no_repeat_ngram_size=1`
#
# A visit lists each diagnosis once; a model that writes `428.0` twice in one visit has made a
# {term}`duplicate code`. The first fix that comes to mind is `generate()`'s
# `no_repeat_ngram_size=1`: never emit a token that is already in the sequence. In a patient
# record that is wrong twice over. Take a real test patient whose second visit repeats a
# diagnosis of the first, stopped after the first code of the second visit, and ask
# `transformers.NoRepeatNGramLogitsProcessor` which next tokens it bans:

# %%
from transformers import NoRepeatNGramLogitsProcessor

from course_lib import icd9
from course_lib.generation import NoRepeatCodeProcessor


def repeats_a_code(patient) -> bool:
    return len(patient.visits) >= 2 and bool(
        set(patient.visits[0].codes) & set(patient.visits[1].codes)
    )


chronic_patient = next(p for p in test if repeats_a_code(p) and len(p.visits[0].codes) <= 6)
patient_ids = vocabulary.encode_patient(chronic_patient)
second_visit = [i for i, token in enumerate(patient_ids) if token == VISIT_START_ID][1]
prefix = torch.tensor([patient_ids[: second_visit + 2]])  # ... <visit> first code
print(" ".join(vocabulary.id_to_token(token) for token in prefix[0].tolist()))

no_scores = torch.zeros(1, len(vocabulary))
banned_by_ngram = NoRepeatNGramLogitsProcessor(1)(prefix, no_scores.clone())[0].isinf()
banned_by_visit = NoRepeatCodeProcessor(vocabulary, "visit")(prefix, no_scores.clone())[0].isinf()
banned = (banned_by_ngram | banned_by_visit).nonzero().flatten().tolist()
display(
    pd.DataFrame(
        {
            "token": [vocabulary.id_to_token(token) for token in banned],
            "description": [
                icd9.describe(vocabulary.id_to_code(t)) if vocabulary.is_code_id(t) else "marker"
                for t in banned
            ],
            "no_repeat_ngram_size=1": banned_by_ngram[banned].tolist(),
            "NoRepeatCodeProcessor": banned_by_visit[banned].tolist(),
        }
    )
)

# %% [markdown]
# `no_repeat_ngram_size=1` bans the structure markers (`<visit>` and `</visit>` were written
# before, so this visit can never be closed and no third visit opened) and every code of the
# first visit, so a chronic disease can never be recorded again. The course's
# `NoRepeatCodeProcessor` bans only the codes already in the *current* visit, which is exactly
# the duplicate criterion. How common are the repeats it keeps? The real test patients'
# {term}`cross-visit repeat rate` (the share of a visit's codes already recorded in an earlier
# visit of the patient) is:

# %%
from course_lib.evaluation.validity import validity_metrics

real_validity = validity_metrics(test)
real_repeat_rate = glue("real_repeat_rate", real_validity["cross_visit_repeat_rate"])
multi_visit_share = glue("multi_visit_share", float(np.mean([len(p.visits) > 1 for p in test])))
print(
    f"cross-visit repeat rate {real_repeat_rate:.1%}; patients with >1 visit {multi_visit_share:.1%}"
)

# %% [markdown]
# Now generate with `no_repeat_ngram_size=1` on top of the course's processors. They compose
# by masking; the `PatientGrammarProcessor` runs after the n-gram ban and lets a finished
# patient write `<pad>` again (the ban forbids a second `<pad>`, and a row where every token
# is masked has no softmax). Then we look at what the ban does to the patients themselves.

# %%
from course_lib.cohort import Cohort, Patient, Visit

x_num, x_cat = demographics_tensors(test_ages, test_sexes, normalizer, ctx.device)
generation_kwargs = dict(
    x_num=x_num, x_cat=x_cat, do_sample=True, top_k=0, max_new_tokens=max_new_tokens,
    pad_token_id=PAD_ID, eos_token_id=EOS_ID, decoder_start_token_id=BOS_ID,
    no_repeat_ngram_size=1,
)  # fmt: skip
torch.manual_seed(0)
processors = build_processors(vocabulary, test_ages, test_sexes)
ngram_sequences = model.generate(**generation_kwargs, logits_processor=processors)
ngram_cohort = Cohort(
    [
        Patient(i, sex, age, [Visit(codes, age) for codes in vocabulary.decode(ids) if codes])
        for i, (ids, age, sex) in enumerate(
            zip(ngram_sequences.tolist(), test_ages, test_sexes, strict=True), start=1
        )
    ]
)

# %% [markdown]
# ## The visit-aware duplicate processor
#
# `generate_patients(..., no_duplicates=...)` chooses the duplicate ban: `"visit"` (the
# default, `NoRepeatCodeProcessor`), `"patient"` or `"none"`. We compare no ban, the visit-aware
# ban and `no_repeat_ngram_size=1` with the real floor:

# %%
from course_lib.evaluation.validity import repeat_counts

no_ban_cohort = generate(no_duplicates="none")
visit_ban_cohort = cohorts["T = 1.0"]  # the default settings: no_duplicates="visit"


def repeat_row(cohort) -> dict[str, float]:
    metrics = validity_metrics(cohort)
    return {
        "duplicate rate": metrics["duplicate_rate"],
        "cross-visit repeat rate": metrics["cross_visit_repeat_rate"],
        "visits per patient": np.mean([len(p.visits) for p in cohort]),
        "codes per patient": np.mean([len(p.codes) for p in cohort]),
        "duplicates": repeat_counts(cohort)[1],
    }


repeat_table = pd.DataFrame(
    {
        "real (validation)": repeat_row(val),
        "no ban": repeat_row(no_ban_cohort),
        "NoRepeatCodeProcessor (visit)": repeat_row(visit_ban_cohort),
        "no_repeat_ngram_size=1": repeat_row(ngram_cohort),
    }
).T
display(repeat_table.round(3))

# %%
glue("dup_none", float(repeat_table.loc["no ban", "duplicate rate"]))
glue("dup_visit", float(repeat_table.loc["NoRepeatCodeProcessor (visit)", "duplicate rate"]))
repeat_visit = glue(
    "repeat_visit",
    float(repeat_table.loc["NoRepeatCodeProcessor (visit)", "cross-visit repeat rate"]),
)
glue("repeat_ngram", float(repeat_table.loc["no_repeat_ngram_size=1", "cross-visit repeat rate"]))
repeat_floor = glue(
    "repeat_floor", float(repeat_table.loc["real (validation)", "cross-visit repeat rate"])
)
if repeat_visit < 0.5 * repeat_floor:
    glue("repeat_comparison", "much less often than")
elif repeat_visit > 2 * repeat_floor:
    glue("repeat_comparison", "much more often than")
else:
    glue("repeat_comparison", "about as often as")
glue("visits_ngram", float(repeat_table.loc["no_repeat_ngram_size=1", "visits per patient"]))
glue("visits_visit", float(repeat_table.loc["NoRepeatCodeProcessor (visit)", "visits per patient"]))
visits_real = glue(
    "visits_real", float(repeat_table.loc["real (validation)", "visits per patient"])
)

# %% [markdown]
# Without a ban the model writes a duplicate in {glue:text}`dup_none:.1%` of its code
# occurrences; the visit-aware processor brings that to {glue:text}`dup_visit:.1%` and leaves
# everything else alone. `no_repeat_ngram_size=1` also removes the duplicates, but its patients
# have {glue:text}`visits_ngram:.2f` visits on average (the visit-aware generator
# {glue:text}`visits_visit:.2f`, real patients {glue:text}`visits_real:.2f`) and a cross-visit
# repeat rate of {glue:text}`repeat_ngram:.1%` (real {glue:text}`repeat_floor:.1%`): once
# `<visit>` has been written it can never be written again, and no diagnosis carries over
# (the gap between the two generators is as small as it is only because this tiny model
# rarely writes a second visit anyway).
# Our tiny generator carries a diagnosis over to a later visit {glue:text}`repeat_comparison`
# real patients do ({glue:text}`repeat_visit:.1%`): a constraint that made repeats impossible
# would hide such a gap rather than close it.
#
# ## Rule-constrained decoding
#
# The {term}`MCE` lists codes that a patient's age or sex rules out: pregnancy codes for men
# and children, perinatal codes after the first year, prostate codes for women. A generator
# learns these rules only approximately. `ValidityProcessor` enforces them at sampling time: for
# each patient in the batch it sets the logits of every forbidden code to $-\infty$, so they
# can never be drawn, and the probability mass moves to the allowed codes. A few lines show the
# mask for three prompts:

# %%
from course_lib.generation import ValidityProcessor

for age, sex in ((0.0, "M"), (30.0, "F"), (70.0, "M")):
    forbidden = [code for code in vocabulary.codes if not icd9.is_valid_for(code, age, sex)]
    mask = ValidityProcessor.invalid_mask(vocabulary, age, sex)
    same = set(forbidden) == {vocabulary.id_to_code(t) for t in mask.nonzero().flatten().tolist()}
    print(
        f"age {age:>4.0f} {sex}: {len(forbidden):4d} of {len(vocabulary.codes)} codes forbidden;"
        f" ValidityProcessor agrees: {same}"
    )

# %%
from course_lib.evaluation.validity import rule_violations

constrained_cohort = generate(validity=True)
unconstrained_cohort = visit_ban_cohort


def validity_row(cohort) -> dict[str, float]:
    metrics = validity_metrics(cohort)
    return {
        "age violations (codes)": metrics["age_violation_rate"],
        "sex violations (codes)": metrics["sex_violation_rate"],
        "patients with a violation": np.mean(
            [
                any(not icd9.is_valid_for(c, v.age, p.sex) for v in p.visits for c in v.codes)
                for p in cohort
            ]
        ),
        "JS divergence": js_divergence(test_frequencies, code_frequencies(cohort)),
        "unique codes": len(unique_codes(cohort)),
    }


validity_table = pd.DataFrame(
    {
        "real (validation)": validity_row(val),
        "unconstrained": validity_row(unconstrained_cohort),
        "ValidityProcessor": validity_row(constrained_cohort),
    }
).T
display(validity_table.round(4))
print("rules broken without the processor:")
print(rule_violations(unconstrained_cohort)["rule"].value_counts().to_string())

# %%
glue("age_free", float(validity_table.loc["unconstrained", "age violations (codes)"]))
glue("sex_free", float(validity_table.loc["unconstrained", "sex violations (codes)"]))
broken_rules = rule_violations(unconstrained_cohort)["rule"].value_counts()
glue(
    "top_rule_text",
    f"the rule broken most often is the MCE's '{broken_rules.index[0]}' rule"
    if len(broken_rules)
    else "no rule is broken at all",
)
glue("patients_free", float(validity_table.loc["unconstrained", "patients with a violation"]))
glue("age_rules", float(validity_table.loc["ValidityProcessor", "age violations (codes)"]))
glue("sex_rules", float(validity_table.loc["ValidityProcessor", "sex violations (codes)"]))
js_free = glue("js_free", float(validity_table.loc["unconstrained", "JS divergence"]))
js_rules = glue("js_rules", float(validity_table.loc["ValidityProcessor", "JS divergence"]))
js_change = glue(
    "js_change", f"{'lower' if js_rules < js_free else 'higher'} by {abs(js_rules - js_free):.3f}"
)

# %% [markdown]
# Unconstrained, {glue:text}`age_free:.2%` of the generated codes break an age rule and
# {glue:text}`sex_free:.2%` a sex rule, and {glue:text}`patients_free:.1%` of the patients carry
# at least one such code; {glue:text}`top_rule_text`.
# With the processor both rates are {glue:text}`age_rules:.2%` and
# {glue:text}`sex_rules:.2%`: by construction, since a masked code has probability zero. The
# JS divergence from the real test codes is {glue:text}`js_rules:.3f` against
# {glue:text}`js_free:.3f` without it ({glue:text}`js_change`): the mask removes only the small
# share of mass the model put on forbidden codes, and sampling redistributes it over the codes
# the model already found likely, so coherence hardly changes.
# Rule-constrained decoding is the "rule-based validity instead of a sex loss" remedy of the
# original project's notes: validity no longer has to be learned through an auxiliary loss
# that fights the language-model loss. It cannot fix what the rules do not cover: a
# plausible-looking but clinically odd combination of codes is still possible, which is what
# the coherence metrics of lesson 09 look for.
#
# ## Summary
#
# - `model.generate()` runs the encoder once and caches the decoder's keys and values; with the
#   same processors and seed it draws the same patients as a manual loop, faster
#   ({glue:text}`speedup:.1f`x here) and more so for longer sequences and larger models.
# - `generate_patients` draws each token by inverse transform sampling (one uniform number per
#   patient, `InverseCdfSampler` as the last processor, greedy decoding picks its token) instead
#   of `torch.multinomial`'s one exponential per code: the same distribution, another random
#   stream, less time on a CPU.
# - Temperature below 1, top-k and, to a lesser degree, top-p trade diversity for typicality:
#   fewer unique codes and a larger top-code share, a decoding-time route to mode collapse.
# - `no_repeat_ngram_size=1` bans visit markers and every earlier code: one visit per patient,
#   no chronic disease carried over (and, with the grammar processor, no legal token once a
#   patient has ended). `NoRepeatCodeProcessor` bans only repeats within the current visit.
# - `ValidityProcessor` masks the codes the MCE forbids for the patient's age and sex:
#   violations drop to zero, and the JS divergence ends {glue:text}`js_change`.
#
# ## Exercises
#
# 1. **No psychiatric codes for children.** Write a `LogitsProcessor` class
#    `ChapterBanProcessor(vocabulary, ages, chapter, max_age)` that masks every code of the
#    ICD-9 chapter `chapter` (e.g. `"290-319"`, mental disorders; use `icd9.chapter_of`) for
#    the sequences whose age is below `max_age`, and leaves everything else untouched.

# %%
from transformers import LogitsProcessor

from course_lib.exercises.lesson08 import check_chapter_ban, check_max_visits


# TODO: write your answer in place of the stub's raise.
class ChapterBanProcessor(LogitsProcessor):
    """Mask every code of chapter for the sequences whose age is below max_age."""

    def __init__(self, vocabulary, ages, chapter: str, max_age: float):
        raise NotImplementedError("TODO: which (row, code id) pairs to ban")

    def __call__(self, input_ids, scores):
        raise NotImplementedError("TODO: mask the banned scores with -inf")


chapter_ban_done = check_chapter_ban(ChapterBanProcessor)

# %% [markdown]
# 2. **At most N visits.** Write `MaxVisitsProcessor(max_visits)`: once a sequence has closed
#    `max_visits` visits, ban `<visit>` so that, with the grammar processor, the next token can
#    only be `</patient>`. Then generate with it and compare the visits per patient with the
#    real distribution: which patients does a cap of 2 visits change?


# %%
# TODO: write your answer in place of the stub's raise.
class MaxVisitsProcessor(LogitsProcessor):
    """Ban <visit> once max_visits visits are closed."""

    def __init__(self, max_visits: int):
        raise NotImplementedError("TODO: check and keep max_visits")

    def __call__(self, input_ids, scores):
        raise NotImplementedError("TODO: ban <visit> in the rows that are full")


max_visits_done = check_max_visits(MaxVisitsProcessor)

# %% [markdown]
# 3. **Temperature and validity.** Does a higher temperature raise the MCE violation rate of the
#    unconstrained generator? Generate at $T = 1.3$ and compare with the table above.
#
# 4. **The Gumbel-max draw.** Adding independent Gumbel noise $g_i = -\log(-\log u_i)$, with
#    $u_i$ uniform, to the logits and taking the argmax draws token $i$ with probability
#    $\mathrm{softmax}(z)_i$. Write `GumbelMaxSampler`, a `LogitsProcessor` that draws this way
#    and, like `InverseCdfSampler`, leaves only the drawn token with a finite score. How many
#    random numbers does it use per patient and step, against the inverse CDF's one?

# %%
from course_lib.exercises.lesson08 import check_gumbel_sampler


# TODO: write your answer in place of the stub's raise.
class GumbelMaxSampler(LogitsProcessor):
    """Draw one token per row by argmax(scores + Gumbel noise); leave only it finite."""

    def __call__(self, input_ids, scores):
        raise NotImplementedError("TODO: draw one token per row by the Gumbel-max trick")


gumbel_sampler_done = check_gumbel_sampler(GumbelMaxSampler)
