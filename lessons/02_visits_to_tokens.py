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
# # 02 · From visits to tokens
#
# **Objectives.** After this lesson you can turn a patient into the sequence of integer ids a
# transformer reads, and back; you know what each special token is for, why the vocabulary is
# built from the training split only, and what becomes of codes it has never seen; you can read
# every tensor of a training batch (the decoder's shifted inputs and labels, the `-100` padding,
# the demographics `x_num` and `x_cat`) for the two training objectives; and you know what the
# truncation policy does to long patients.
#
# **Prerequisites.** {doc}`01_patient_records`; PyTorch tensors and `DataLoader`s.
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

ctx = setup_lesson(seed=0, name="02_visits_to_tokens")

# %% [markdown]
# ## Splits first
#
# A language model learns from sequences of tokens. Before we make any token we split the
# cohort of lesson 01 into training, validation and test patients. The split is by *patient*:
# all the visits of a patient land in the same split, so no test patient's history leaks into
# training.

# %%
from course_lib.dataset import split_cohort
from course_lib.mimic import load_mimic

cohort = load_mimic(ctx.data_dir)
train, val, test = split_cohort(cohort, seed=0)
for split_name, split in {"train": train, "val": val, "test": test}.items():
    glue(f"n_{split_name}", len(split))
    print(f"{split_name}: {len(split):,} patients")
shared = {p.subject_id for p in train} & (
    {p.subject_id for p in val} | {p.subject_id for p in test}
)
print("patients in two splits:", len(shared))

# %% [markdown]
# ## The vocabulary
#
# The vocabulary maps every token to an integer id. Its core is one token per diagnosis code,
# and which codes get one is decided by the **training** split alone: a deployed model meets new
# patients whose codes it may never have seen, and the test split must show what that costs.
# The idea fits in three lines: count the codes of the training patients, sort them (most
# frequent first, ties by code), and put a few special tokens in front.

# %%
from collections import Counter

from course_lib.tokens import SPECIAL_TOKENS, Vocabulary

train_code_counts = Counter(code for patient in train for code in patient.codes)
codes_by_frequency = sorted(train_code_counts, key=lambda code: (-train_code_counts[code], code))
tokens_by_hand = [*SPECIAL_TOKENS, *codes_by_frequency]

vocab = Vocabulary.build(train)
print(vocab)
print("our tokens == Vocabulary.build's:", tokens_by_hand == vocab.tokens)
vocab_size = glue("vocab_size", vocab.size)
n_vocab_codes = glue("n_vocab_codes", len(vocab.codes))
n_special = glue("n_special", len(SPECIAL_TOKENS))

# %% [markdown]
# The vocabulary has {glue:text}`vocab_size:,` tokens: {glue:text}`n_special` special tokens
# and the {glue:text}`n_vocab_codes:,` distinct codes of the {glue:text}`n_train:,` training
# patients. `course_lib.tokens.Vocabulary` builds the same list and adds what a training loop needs:
# fast lookups in both directions, the code ids as one contiguous range (so "every code" is one
# slice of the model's output), saving and loading. The first ids after the special tokens are
# the most frequent codes:

# %%
import pandas as pd
from IPython.display import display

from course_lib import icd9

first_codes = vocab.codes[:8]
display(
    pd.DataFrame(
        {
            "id": [vocab.code_to_id(code) for code in first_codes],
            "token": first_codes,
            "dotted": [icd9.to_dotted(code) for code in first_codes],
            "count in train": [vocab.code_counts[code] for code in first_codes],
            "description": [icd9.describe(code) for code in first_codes],
        }
    ).set_index("id")
)

# %% [markdown]
# ## Special tokens
#
# A patient is not a flat bag of codes: it has visits, and the model must learn where a visit
# and the patient end. The special tokens mark that structure, and have the same ids in every
# vocabulary:

# %%
from course_lib import tokens

special_roles = {
    tokens.PAD_TOKEN: "fills a batch row up to the longest patient; never a target",
    tokens.BOS_TOKEN: "starts every patient: the decoder's first input",
    tokens.EOS_TOKEN: "ends the patient: generating it stops generation",
    tokens.VISIT_START_TOKEN: "opens a visit",
    tokens.VISIT_END_TOKEN: "closes a visit",
    tokens.MASK_TOKEN: "stands for hidden tokens in the encoder's input",
    tokens.UNK_TOKEN: "a code that is not in the vocabulary",
}
display(
    pd.DataFrame(
        [(vocab.token_to_id(token), token, role) for token, role in special_roles.items()],
        columns=["id", "token", "role"],
    ).set_index("id")
)

# %% [markdown]
# The original project's vocabulary also had a token per ICD-9 chapter. `course_lib` can add
# them (`chapter_tokens=True`): one chapter token before each run of codes of the same chapter,
# so the model first picks a chapter, then a code inside it. They are off by default; the
# failure analyses of later lessons come back to them.

# %%
vocab_with_chapters = Vocabulary.build(train, chapter_tokens=True)
example_visit = ["4019", "4280", "25000", "2724", "5849"]
print(vocab_with_chapters)
print(
    " ".join(
        vocab_with_chapters.id_to_token(token_id)
        for token_id in vocab_with_chapters.encode_visit(example_visit)
    )
)

# %% [markdown]
# ## Encoding and decoding a patient
#
# A patient becomes one sequence: `<patient>`, then each visit as `<visit>` codes `</visit>`,
# then `</patient>`. Here is a patient with three visits, encoded in a few lines and then by
# `Vocabulary.encode_patient`:

# %%
from course_lib.tokens import BOS_ID, EOS_ID, VISIT_END_ID, VISIT_START_ID

patient = next(p for p in train if len(p.visits) == 3 and len(p.codes) <= 8)
ids_by_hand = [BOS_ID]
for visit in patient.visits:
    ids_by_hand += [VISIT_START_ID, *(vocab.code_to_id(code) for code in visit.codes), VISIT_END_ID]
ids_by_hand.append(EOS_ID)

patient_ids = vocab.encode_patient(patient)
print("our ids == encode_patient's:", ids_by_hand == patient_ids)
display(
    pd.DataFrame(
        {
            "id": patient_ids,
            "token": [vocab.id_to_token(token_id) for token_id in patient_ids],
            "description": [
                icd9.describe(vocab.id_to_code(token_id)) if vocab.is_code_id(token_id) else ""
                for token_id in patient_ids
            ],
        }
    )
)

# %% [markdown]
# Frequent codes have small ids: the ids themselves carry no meaning for the model, which
# learns an embedding vector per id. Decoding reads the ids back into visits:

# %%
decoded = vocab.decode(patient_ids)
print(decoded)
print("round trip:", decoded == [visit.codes for visit in patient.visits])

# %% [markdown]
# Over every training patient the round trip is exact: the encoding loses nothing but the
# dates, which the course does not model (ages come in through the prompt).

# %%
exact_round_trips = sum(
    vocab.decode(vocab.encode_patient(p)) == [visit.codes for visit in p.visits] for p in train
)
print(f"exact round trips: {exact_round_trips:,} of {len(train):,} training patients")
assert exact_round_trips == len(train)

# %% [markdown]
# `decode` is also what reads a *generated* sequence, so it is tolerant: it stops at the first
# `</patient>`, skips stray tokens and drops empty visits. A generator's output need not be
# well formed; the decoded patient always is.

# %%
generated_like = [BOS_ID, 11, VISIT_START_ID, 12, 13, VISIT_END_ID, VISIT_END_ID,
                  VISIT_START_ID, VISIT_END_ID, VISIT_START_ID, 14, EOS_ID, 15, 16]  # fmt: skip
print([vocab.id_to_token(token_id) for token_id in generated_like])
print(vocab.decode(generated_like))

# %% [markdown]
# ## Batches
#
# `course_lib.dataset.PatientDataset` encodes every patient once and adds the demographics the
# prompts need: `x_num`, the age at the first visit normalised with the *training* mean and
# standard deviation, and `x_cat`, the sex as a category index (F = 0, M = 1). Patients longer
# than the preset's `max_sequence_length` are truncated (see below).

# %%
from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset

normalizer = AgeNormalizer.fit(train)
max_length = glue("max_length", ctx.preset.max_sequence_length)
train_set = PatientDataset(train, vocab, normalizer, max_length)
print(f"age normalisation: mean {normalizer.mean:.2f} y, std {normalizer.std:.2f} y")
print(f"max_length {max_length} tokens (preset {ctx.preset.name})")
item = train_set[0]
print({key: value for key, value in item.items() if key != "input_ids"})
print("x_num by hand:", round((train.patients[0].age - normalizer.mean) / normalizer.std, 6))

# %% [markdown]
# PromptEHR-style models are encoder-decoder transformers, so a batch holds an encoder input and
# a decoder input. `PatientCollator` pads a list of items into tensors. Its default objective,
# `"generate"`, is the course's main task: the encoder sees a single `<mask>` and the decoder
# writes the whole patient from the demographics alone.

# %%
batch_items = [train_set[index] for index in range(4)]
generate_batch = PatientCollator(objective="generate")(batch_items)
display(
    pd.DataFrame(
        [(key, tuple(value.shape), str(value.dtype)) for key, value in generate_batch.items()],
        columns=["key", "shape", "dtype"],
    ).set_index("key")
)

# %% [markdown]
# The decoder is trained with {term}`teacher forcing`: at every position it reads the true
# tokens so far and predicts the next one. So `decoder_input_ids` is the patient without its
# last token and `labels` the patient without its first; padded positions get the label
# `-100`. The rows of the shortest patient of the batch show it:

# %%
shortest = int(generate_batch["decoder_attention_mask"].sum(dim=1).argmin())
ids = batch_items[shortest]["input_ids"].tolist()
print("patient ids        ", ids)
print("decoder_input_ids  ", generate_batch["decoder_input_ids"][shortest].tolist())
print("labels             ", generate_batch["labels"][shortest].tolist())
row_length = len(ids) - 1
assert generate_batch["decoder_input_ids"][shortest, :row_length].tolist() == ids[:-1]
assert generate_batch["labels"][shortest, :row_length].tolist() == ids[1:]
assert (generate_batch["labels"][shortest, row_length:] == -100).all()

# %% [markdown]
# Why `-100` and not the `<pad>` id? `torch.nn.functional.cross_entropy` skips every target
# equal to its `ignore_index`, which is `-100` by default: padding adds nothing to the loss and
# nothing to the gradient. With random logits, the loss over the batch equals the loss over
# the real positions alone:

# %%
import torch
import torch.nn.functional as F

labels = generate_batch["labels"]  # [batch, target_length]
logits = torch.randn(*labels.shape, vocab.size)  # what a model would output
loss_with_padding = F.cross_entropy(logits.reshape(-1, vocab.size), labels.reshape(-1))
real = labels != -100
loss_real_positions = F.cross_entropy(logits[real], labels[real])
print(f"mean over all positions: {loss_with_padding.item():.5f}")
print(f"mean over real positions: {loss_real_positions.item():.5f}")
assert torch.isclose(loss_with_padding, loss_real_positions)
print(f"padded positions: {int((~real).sum())} of {real.numel()}")

# %% [markdown]
# The second objective, `"infill"`, is PromptEHR's {cite}`wang2022promptehr`: the encoder sees
# the patient with one span of codes inside one visit replaced by a single `<mask>`, and the
# decoder still writes the whole patient. The span's length is drawn from a Poisson
# distribution with mean 3 (`mask_span_lambda`), clipped to at least one code and at most the
# codes of the visit.

# %%
infill_collator = PatientCollator(objective="infill", mask_span_lambda=3.0, seed=0)
infill_batch = infill_collator(batch_items)
longest = int(infill_batch["attention_mask"].sum(dim=1).argmax())
encoder_row = infill_batch["input_ids"][longest][infill_batch["attention_mask"][longest] == 1]
print("patient:      ", [vocab.id_to_token(i) for i in batch_items[longest]["input_ids"].tolist()])
print("encoder input:", [vocab.id_to_token(i) for i in encoder_row.tolist()])

# %% [markdown]
# How long are the masked spans? Drawing one span in each training patient shows the Poisson
# shape, squeezed by short visits: a span cannot be longer than its visit.

# %%
import numpy as np

span_rng = np.random.default_rng(0)
span_lengths = np.array(
    [
        len(sequence) - len(infill_collator.mask_one_span(sequence, span_rng)) + 1
        for sequence in train_set.sequences
    ]
)
mean_span = glue("mean_span", float(span_lengths.mean()))
print(f"mean masked span: {mean_span:.2f} codes (Poisson mean 3.0 before clipping)")

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
from scipy.stats import poisson

lengths = np.arange(0, 13)
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.bar(
    lengths,
    [np.mean(span_lengths == n) for n in lengths],
    color="#6fa8dc",
    label="masked spans (training patients)",
)
ax.plot(lengths, poisson.pmf(lengths, 3.0), "o--", color="black", label="Poisson(3)")
ax.set_xlabel("codes in the masked span")
ax.set_ylabel("share")
ax.set_xticks(lengths)
ax.legend()
plt.show()

# %% [markdown]
# Zero-length draws become one code, and long draws are cut to the visit, so the spans average
# {glue:text}`mean_span:.2f` codes rather than 3.
#
# ## Truncation
#
# The model has a fixed maximum length ({glue:text}`max_length` tokens for this preset), and
# attention costs grow with its square. Patients longer than that are cut by a simple policy:
# keep the earliest *whole* visits that fit, then `</patient>`. A visit is never cut in the
# middle, unless even the first visit alone is too long. Keeping the start keeps the first visit,
# whose age is the age in the prompt.

# %%
from course_lib.presets import PRESETS

full_lengths = np.array([len(vocab.encode_patient(p)) for p in train])
truncated_share = glue("truncated_share", train_set.truncated_count / len(train_set))
print(f"truncated patients: {train_set.truncated_count} of {len(train_set):,}")
print("by hand:", int((full_lengths > max_length).sum()))
assert train_set.truncated_count == int((full_lengths > max_length).sum())
lost_tokens = glue(
    "lost_tokens", float(np.maximum(full_lengths - max_length, 0).sum() / full_lengths.sum())
)
median_length = glue("median_length", float(np.median(full_lengths)))

print("share truncated at each preset's max_sequence_length:")
for preset in PRESETS.values():
    share = np.mean(full_lengths > preset.max_sequence_length)
    print(f"  {preset.name:<6} {preset.max_sequence_length:>4} tokens: {share:.2%}")

# %% tags=["remove-input"]
fig, ax = plt.subplots(figsize=(6.5, 3.2))
ax.hist(full_lengths, bins=np.arange(0, full_lengths.max() + 5, 4), color="#93c47d")
ax.axvline(max_length, color="tab:red", linestyle="--")
ax.text(max_length * 1.02, ax.get_ylim()[1] * 0.3, f"max_length {max_length}", color="tab:red")
ax.set_yscale("log")
ax.set_xlabel("tokens per training patient, before truncation")
ax.set_ylabel("patients (log scale)")
plt.show()

# %% [markdown]
# The median patient needs {glue:text}`median_length:.0f` tokens; the tail of patients with
# many visits is long. At {glue:text}`max_length` tokens,
# {glue:text}`truncated_share:.1%` of the training patients are truncated, and they lose
# {glue:text}`lost_tokens:.1%` of all training tokens. Here is what truncation keeps of the
# longest patient:

# %%
longest_index = int(full_lengths.argmax())
longest_patient = train.patients[longest_index]
kept_visits = vocab.decode(train_set.sequences[longest_index])
print(
    f"patient {longest_patient.subject_id}: {len(longest_patient.visits)} visits, "
    f"{full_lengths[longest_index]} tokens -> {len(kept_visits)} visits, "
    f"{len(train_set.sequences[longest_index])} tokens"
)
first_visits = [visit.codes for visit in longest_patient.visits[: len(kept_visits)]]
print("kept visits are the first ones:", kept_visits == first_visits)
assert kept_visits == first_visits

# %% [markdown]
# ## The unknown token
#
# The vocabulary knows only training codes. The long tail of lesson 01 means that validation
# and test patients bring codes no training patient had; they are encoded as `<unk>`.

# %%
test_code_counts = Counter(code for patient in test for code in patient.codes)
unknown_codes = {code: n for code, n in test_code_counts.items() if code not in vocab}
n_unknown_codes = glue("n_unknown_codes", len(unknown_codes))
unknown_rows = glue("unknown_rows", sum(unknown_codes.values()))
unknown_row_share = glue("unknown_row_share", unknown_rows / sum(test_code_counts.values()))
unknown_patient_share = glue(
    "unknown_patient_share",
    float(np.mean([any(code in unknown_codes for code in p.code_set) for p in test])),
)
print(f"distinct test codes missing from the vocabulary: {n_unknown_codes:,}")
print(f"test diagnosis rows encoded as <unk>: {unknown_rows:,} ({unknown_row_share:.1%})")
print(f"test patients with at least one <unk>: {unknown_patient_share:.1%}")

vocab.reset_unknown_count()
test_set = PatientDataset(test, vocab, normalizer, max_length)
print("PatientDataset counted:", test_set.unknown_count, "<unk> tokens")
assert test_set.unknown_count == unknown_rows

# %% [markdown]
# {glue:text}`n_unknown_codes` distinct test codes are missing from the vocabulary; they make
# {glue:text}`unknown_row_share:.1%` of the test diagnosis rows and touch
# {glue:text}`unknown_patient_share:.1%` of the test patients. A model cannot write a code it
# has no token for, so these rows also bound how closely generated code frequencies can match
# the test split. The round trip fails for those patients: `decode` gives back `"<unk>"`
# (or drops it, with `keep_unknown=False`).
#
# Raising `min_count` shrinks the vocabulary (fewer, better-trained embeddings) and turns more
# rare codes into `<unk>`. The validation split measures the trade-off:

# %%
val_code_counts = Counter(code for patient in val for code in patient.codes)
min_count_table = pd.DataFrame(
    [
        (
            min_count,
            (candidate := Vocabulary.build(train, min_count=min_count)).size,
            sum(n for code, n in val_code_counts.items() if code not in candidate)
            / sum(val_code_counts.values()),
        )
        for min_count in (1, 2, 3, 5, 10)
    ],
    columns=["min_count", "vocabulary size", "validation rows as <unk>"],
).set_index("min_count")
display(
    min_count_table.assign(
        **{"validation rows as <unk>": lambda t: t["validation rows as <unk>"].map("{:.1%}".format)}
    )
)

# %% [markdown]
# The course's training configuration keeps `min_count=1` by default (`min_code_count`): the
# vocabulary is small enough for every training code, and the evaluation lessons count how many
# distinct codes a generator uses, so no code should be hidden behind `<unk>`.
#
# ## Summary
#
# - Split by patient first, then build the vocabulary from the training split only:
#   the special tokens, optional chapter tokens, then one token per code, most frequent first.
# - A patient is `<patient> (<visit> codes </visit>)... </patient>`; the round trip is exact
#   for codes the vocabulary knows, and `decode` tolerates malformed generated sequences.
# - A batch holds the encoder input (`<mask>` for `"generate"`, the patient with one masked
#   span for `"infill"`), the decoder input and the labels shifted by one, `-100` at padding,
#   and the demographics `x_num` (normalised age) and `x_cat` (sex index).
# - Long patients keep their earliest whole visits; the share truncated depends on the preset's
#   `max_sequence_length`.
# - Test codes that the training split never saw become `<unk>`.
#
# ## Exercises
#
# 1. **Visit lengths.** Write `visit_lengths(ids, vocab)` that returns the number of codes in
#    each visit of an encoded patient, e.g. `[3, 1]` for
#    `<patient> <visit> a b c </visit> <visit> d </visit> </patient>`. Count `<unk>` as a
#    code, do not count chapter tokens, and stop at `</patient>` (a batch row is padded after
#    it). Accept a list or a 1-D tensor. The evaluation lessons use such counts to compare the
#    visit sizes of generated and real patients.

# %%
from course_lib.exercises.lesson02 import check_keep_latest_visits, check_visit_lengths


# TODO: write your answer in place of the stub's raise.
def visit_lengths(ids, vocab) -> list[int]:
    """Codes per visit of an encoded patient, in visit order."""
    raise NotImplementedError("TODO: replace this line with your code")


visit_lengths_done = check_visit_lengths(visit_lengths)

# %% [markdown]
# 2. **Keep the latest visits.** A prediction head that forecasts a patient's next event cares
#    about the *recent* visits more than the first ones. Write
#    `keep_latest_visits(visit_chunks, max_length)` with the same interface as
#    `course_lib.dataset.truncate_visit_chunks`: `visit_chunks` is a list of encoded visits
#    (each `[<visit>, ..., </visit>]`), the result is `(ids, truncated)` with
#    `ids = [<patient>, ..., </patient>]` of at most `max_length` tokens. Keep the latest
#    *whole* visits that fit, in their original order. If even the last visit is too long, keep
#    its first codes (the principal diagnosis comes first) and close it with `</visit>`.
#    Raise `ValueError` when `max_length` is below 5, too short for one code.


# %%
# TODO: write your answer in place of the stub's raise.
def keep_latest_visits(visit_chunks: list[list[int]], max_length: int) -> tuple[list[int], bool]:
    """(ids, truncated): the latest whole visits that fit in max_length tokens."""
    raise NotImplementedError("TODO: replace this line with your code")


keep_latest_visits_done = check_keep_latest_visits(keep_latest_visits)

# %% [markdown]
# 3. **Chapter tokens cost length.** Encode the training patients with `vocab_with_chapters`:
#    how much longer is the median patient, and what share is truncated at this preset's
#    `max_length`? Is a chapter token per run of codes worth its tokens?
