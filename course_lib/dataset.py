"""Patient-level splits, age normalisation, the PyTorch dataset and the batch collator (lesson 02).

Splits are by patient (``subject_id``): every visit of a patient lands in the same split, so
no test patient's history leaks into training.

Age normalisation: ``z = (age - mean) / std`` with the mean and (population) standard
deviation of the TRAINING patients' ages; validation, test and generated prompts reuse them.

Truncation policy (``max_length`` counts every token, ``<patient>`` and ``</patient>`` too):
a patient whose sequence is longer keeps its earliest WHOLE visits that fit and ends with
``</patient>``; a visit is never cut in the middle, except when even the first visit does not
fit: then its first codes are kept and it is closed with ``</visit> </patient>``. The dataset
counts the patients it truncated (``truncated_count``, ``truncated_subject_ids``).

Objectives of the collator (the encoder input differs, the decoder target is always the
whole patient):

* ``"generate"`` (the course's main task): the encoder sees a single ``<mask>`` token; the
  model's prompts carry the demographics, so the patient is generated from age and sex alone.
* ``"infill"`` (PromptEHR-style): the encoder sees the patient with ONE span of codes, inside
  one visit, replaced by a single ``<mask>``; span length ~ Poisson(``mask_span_lambda``),
  clipped to [1, codes in that visit].

Missing outcome values: categorical outcomes (``lvef_reduced``, ``event_observed``,
``risk_category``) become ``-100`` (the ``ignore_index`` of ``cross_entropy``) and
``event_days`` becomes ``NaN``; heads must skip them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from course_lib.cohort import Cohort, Patient
from course_lib.outcome_prompts import cohort_prompt_labels
from course_lib.tokens import (
    BOS_ID,
    EOS_ID,
    MASK_ID,
    PAD_ID,
    VISIT_END_ID,
    VISIT_START_ID,
    Vocabulary,
)

SEX_TO_INDEX: dict[str, int] = {"F": 0, "M": 1}
INDEX_TO_SEX: dict[int, str] = {index: sex for sex, index in SEX_TO_INDEX.items()}
IGNORE_INDEX = -100

# outcome column in Cohort.outcomes -> (batch key, dtype)
OUTCOME_COLUMNS: dict[str, tuple[str, torch.dtype]] = {
    "LVEF_REDUCED": ("lvef_reduced", torch.long),
    "EVENT_DAYS": ("event_days", torch.float32),
    "EVENT_OBSERVED": ("event_observed", torch.long),
    "RISK_CATEGORY": ("risk_category", torch.long),
}
# the smallest sequence that holds one code: <patient> <visit> code </visit> </patient>
MIN_MAX_LENGTH = 5


# ------------------------------------------------------------------------------ splits
def split_cohort(
    cohort: Cohort, *, seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> tuple[Cohort, Cohort, Cohort]:
    """Train, validation and test cohorts, split by patient.

    The sorted subject ids are shuffled with ``numpy.random.default_rng(seed)``, so the split
    depends on the seed and the set of ids only (not on the cohort's order). Sizes are
    ``fractions * n`` rounded by largest remainder, so they always add up to ``n``.
    Outcome rows follow their patients.
    """
    fractions = [float(f) for f in fractions]
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1):
        raise ValueError(
            f"fractions must be three non-negative numbers that sum to 1, got {fractions}"
        )
    subject_ids = np.array(sorted({patient.subject_id for patient in cohort}), dtype=np.int64)
    n = len(subject_ids)
    exact = np.array(fractions) * n
    sizes = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - sizes), kind="stable")[: n - sizes.sum()]:
        sizes[index] += 1
    shuffled = np.random.default_rng(seed).permutation(subject_ids)
    cut_train, cut_val = sizes[0], sizes[0] + sizes[1]
    parts = (shuffled[:cut_train], shuffled[cut_train:cut_val], shuffled[cut_val:])
    return tuple(cohort.subset(part.tolist()) for part in parts)  # type: ignore[return-value]


# --------------------------------------------------------------------- normalisation
@dataclass(frozen=True)
class AgeNormalizer:
    """``z = (age - mean) / std`` with training statistics.

    Works on floats, numpy arrays and tensors alike. A constant-age training set gets
    ``std = 1`` so that ``normalize`` never divides by zero.
    """

    mean: float
    std: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(
                f"AgeNormalizer needs a finite mean and a positive std, got {self.mean}, {self.std}"
            )

    @classmethod
    def fit(cls, cohort: Cohort) -> AgeNormalizer:
        """Statistics of the patients' ages (age at first visit); pass the training split."""
        ages = np.array([patient.age for patient in cohort], dtype=np.float64)
        if ages.size == 0:
            raise ValueError("cannot fit an AgeNormalizer on an empty cohort")
        if not np.isfinite(ages).all():
            raise ValueError("cannot fit an AgeNormalizer: some patient ages are not finite")
        std = float(ages.std())
        return cls(float(ages.mean()), std if std > 1e-8 else 1.0)

    def normalize(self, age):
        return (age - self.mean) / self.std

    def denormalize(self, z):
        return z * self.std + self.mean

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: dict) -> AgeNormalizer:
        try:
            return cls(float(data["mean"]), float(data["std"]))
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"AgeNormalizer.from_dict expected {{'mean': float, 'std': float}}, got {data!r}"
            ) from error


# --------------------------------------------------------------------------- dataset
def truncate_visit_chunks(visit_chunks: list[list[int]], max_length: int) -> tuple[list[int], bool]:
    """Join encoded visits (each ``[<visit>, ..., </visit>]``) into one patient sequence of
    at most ``max_length`` tokens by the module's truncation policy; also says whether it cut."""
    if max_length < MIN_MAX_LENGTH:
        raise ValueError(f"max_length must be >= {MIN_MAX_LENGTH}, got {max_length}")
    ids = [BOS_ID]
    budget = max_length - 2  # room left for visits between <patient> and </patient>
    for index, chunk in enumerate(visit_chunks):
        if len(chunk) <= budget:
            ids += chunk
            budget -= len(chunk)
            continue
        if index == 0:
            # even the first visit is too long: keep its first tokens, then close it
            inner = chunk[1:-1][: budget - 2]
            ids += [VISIT_START_ID, *inner, VISIT_END_ID]
        ids.append(EOS_ID)
        return ids, True
    ids.append(EOS_ID)
    return ids, False


class PatientDataset(Dataset):
    """One item per patient, encoded once at construction.

    Item: ``input_ids`` LongTensor [L] (``<patient>`` ... ``</patient>``, L <= max_length),
    ``x_num`` float [1] (normalised age), ``x_cat`` long [1 + k] (sex index, F=0, M=1, then
    the class of each of the k ``outcome_prompts`` columns, :mod:`course_lib.outcome_prompts`;
    a mapping column -> class count also checks the labels against it), ``subject_id`` int,
    and one entry per outcome column the cohort has.
    """

    def __init__(
        self,
        cohort: Cohort,
        vocab: Vocabulary,
        normalizer: AgeNormalizer,
        max_length: int,
        outcome_prompts: Sequence[str] | Mapping[str, int] = (),
    ) -> None:
        if max_length < MIN_MAX_LENGTH:
            raise ValueError(f"max_length must be >= {MIN_MAX_LENGTH}, got {max_length}")
        self.vocab = vocab
        self.normalizer = normalizer
        self.max_length = max_length
        self.subject_ids: list[int] = []
        self.sequences: list[list[int]] = []
        self.x_num: list[float] = []
        self.x_cat: list[list[int]] = []  # one row per patient: [sex, *outcome classes]
        self.truncated_subject_ids: list[int] = []
        unknown_before = vocab.unknown_count
        for patient in cohort:
            self._add(patient)
        self.unknown_count = vocab.unknown_count - unknown_before
        self.outcomes = self._outcome_columns(cohort.outcomes)
        labels = cohort_prompt_labels(cohort, outcome_prompts, self.subject_ids)
        self.x_cat = [[sex, *row] for sex, row in zip(self.x_cat, labels.tolist(), strict=True)]
        # column -> class count: as given, else this cohort's largest label + 1 (the
        # training split's fixes the size of each prompt's embedding table)
        counts = labels.max(axis=0) + 1 if len(labels) else [1] * labels.shape[1]
        self.outcome_classes: dict[str, int] = (
            dict(outcome_prompts)
            if isinstance(outcome_prompts, Mapping)
            else {c: int(k) for c, k in zip(outcome_prompts, counts, strict=True)}
        )

    def _add(self, patient: Patient) -> None:
        if patient.sex not in SEX_TO_INDEX:
            raise ValueError(
                f"patient {patient.subject_id}: sex must be one of {sorted(SEX_TO_INDEX)}, "
                f"got {patient.sex!r}"
            )
        chunks = [self.vocab.encode_visit(visit.codes) for visit in patient.visits]
        ids, truncated = truncate_visit_chunks(chunks, self.max_length)
        if truncated:
            self.truncated_subject_ids.append(patient.subject_id)
        self.subject_ids.append(patient.subject_id)
        self.sequences.append(ids)
        self.x_num.append(float(self.normalizer.normalize(patient.age)))
        self.x_cat.append(SEX_TO_INDEX[patient.sex])

    def _outcome_columns(self, outcomes: pd.DataFrame | None) -> dict[str, torch.Tensor]:
        """Batch key -> tensor [N] in dataset order, for the outcome columns present."""
        if outcomes is None:
            return {}
        if "SUBJECT_ID" not in outcomes.columns:
            raise ValueError(
                f"cohort outcomes table needs a SUBJECT_ID column; has {list(outcomes.columns)}"
            )
        if outcomes["SUBJECT_ID"].duplicated().any():
            repeated = outcomes.loc[outcomes["SUBJECT_ID"].duplicated(), "SUBJECT_ID"].tolist()
            raise ValueError(f"cohort outcomes table repeats SUBJECT_ID {repeated[:5]}")
        table = outcomes.set_index("SUBJECT_ID")
        missing = [sid for sid in self.subject_ids if sid not in table.index]
        if missing:
            raise ValueError(f"cohort outcomes table has no row for SUBJECT_ID {missing[:5]}")
        columns: dict[str, torch.Tensor] = {}
        for column, (key, dtype) in OUTCOME_COLUMNS.items():
            if column not in table.columns:
                continue
            try:
                values = pd.to_numeric(table.loc[self.subject_ids, column], errors="raise")
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"cohort outcomes column {column} must be numeric (class index or days): {error}"
                ) from None
            values = values.to_numpy(dtype=np.float64, na_value=np.nan)
            if dtype == torch.long:
                values = np.where(np.isnan(values), IGNORE_INDEX, values)
            columns[key] = torch.tensor(values, dtype=dtype)
        return columns

    @property
    def truncated_count(self) -> int:
        return len(self.truncated_subject_ids)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict:
        item = {
            "input_ids": torch.tensor(self.sequences[index], dtype=torch.long),
            "x_num": torch.tensor([self.x_num[index]], dtype=torch.float32),
            "x_cat": torch.tensor(self.x_cat[index], dtype=torch.long),
            "subject_id": self.subject_ids[index],
        }
        for key, values in self.outcomes.items():
            item[key] = values[index]
        return item


# -------------------------------------------------------------------------- collator
def visit_code_spans(ids: Sequence[int]) -> list[tuple[int, int]]:
    """``(start, end)`` positions of each visit's inner tokens (between ``<visit>`` and
    ``</visit>``, end exclusive), for visits with at least one inner token."""
    spans = []
    start = None
    for position, token_id in enumerate(ids):
        if token_id == VISIT_START_ID:
            start = position + 1
        elif token_id == VISIT_END_ID and start is not None:
            if position > start:
                spans.append((start, position))
            start = None
    return spans


class PatientCollator:
    """Pads a list of :class:`PatientDataset` items into a batch of tensors.

    Keys: ``input_ids``/``attention_mask`` [B, S] (encoder), ``decoder_input_ids``/
    ``decoder_attention_mask`` [B, T] (``ids[:-1]``, starting with ``<patient>``), ``labels``
    [B, T] (``ids[1:]``, ``-100`` at padding), ``x_num`` float [B, 1], ``x_cat`` long [B, n_cat],
    ``subject_ids`` long [B], and the outcome tensors [B] present in the items.

    Randomness (infill spans) comes from a ``numpy`` Generator seeded with ``seed``: in the
    main process (``num_workers=0``) the same seed and the same batches give the same spans.
    In a DataLoader worker the collator is a copy, so it reseeds from ``(seed,
    torch.initial_seed())``; the DataLoader derives that from its own generator each epoch,
    so workers draw different spans, epochs differ, and a seeded DataLoader with a fixed
    ``num_workers`` stays reproducible.
    """

    def __init__(
        self,
        pad_id: int = PAD_ID,
        objective: str = "generate",
        mask_span_lambda: float = 3.0,
        seed: int = 0,
    ) -> None:
        if objective not in ("generate", "infill"):
            raise ValueError(f"objective must be 'generate' or 'infill', got {objective!r}")
        if mask_span_lambda <= 0:
            raise ValueError(f"mask_span_lambda must be > 0, got {mask_span_lambda}")
        self.pad_id = pad_id
        self.objective = objective
        self.mask_span_lambda = mask_span_lambda
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._worker_seed: int | None = None

    def _generator(self) -> np.random.Generator:
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self._worker_seed != torch.initial_seed():
            self._worker_seed = torch.initial_seed()
            self.rng = np.random.default_rng([self.seed, self._worker_seed % 2**63])
        return self.rng

    def mask_one_span(self, ids: Sequence[int], rng: np.random.Generator) -> list[int]:
        """``ids`` with one span of codes inside one visit replaced by a single ``<mask>``.
        A patient without codes gets ``<mask>`` just before ``</patient>``."""
        ids = list(ids)
        spans = visit_code_spans(ids)
        if not spans:
            end = ids.index(EOS_ID) if EOS_ID in ids else len(ids)
            return ids[:end] + [MASK_ID] + ids[end:]
        start, end = spans[rng.integers(len(spans))]
        length = int(np.clip(rng.poisson(self.mask_span_lambda), 1, end - start))
        first = start + int(rng.integers(end - start - length + 1))
        return ids[:first] + [MASK_ID] + ids[first + length :]

    def _pad(self, rows: list[list[int]], value: int) -> torch.Tensor:
        width = max(len(row) for row in rows)
        return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        sequences = [item["input_ids"].tolist() for item in items]
        if any(len(ids) < 2 for ids in sequences):
            raise ValueError("every patient sequence needs at least <patient> and </patient>")
        if self.objective == "generate":
            encoder_rows = [[MASK_ID] for _ in sequences]
        else:
            rng = self._generator()
            encoder_rows = [self.mask_one_span(ids, rng) for ids in sequences]
        decoder_rows = [ids[:-1] for ids in sequences]
        label_rows = [ids[1:] for ids in sequences]
        batch = {
            "input_ids": self._pad(encoder_rows, self.pad_id),
            "attention_mask": self._pad([[1] * len(row) for row in encoder_rows], 0),
            "decoder_input_ids": self._pad(decoder_rows, self.pad_id),
            "decoder_attention_mask": self._pad([[1] * len(row) for row in decoder_rows], 0),
            "labels": self._pad(label_rows, IGNORE_INDEX),
            "x_num": torch.stack([item["x_num"] for item in items]).float().view(-1, 1),
            "x_cat": torch.stack([item["x_cat"] for item in items]).long().view(len(items), -1),
            "subject_ids": torch.tensor([item["subject_id"] for item in items], dtype=torch.long),
        }
        for key, dtype in OUTCOME_COLUMNS.values():
            if key in items[0]:
                batch[key] = torch.stack([torch.as_tensor(item[key]) for item in items]).to(dtype)
        return batch


# ------------------------------------------------------------------------ dataloaders
@dataclass
class DataLoaders:
    """The three loaders plus the datasets behind them (for truncation/unknown counts)."""

    train: DataLoader
    val: DataLoader
    test: DataLoader

    @property
    def datasets(self) -> tuple[PatientDataset, PatientDataset, PatientDataset]:
        return (self.train.dataset, self.val.dataset, self.test.dataset)  # type: ignore[return-value]


def make_dataloaders(
    train: Cohort,
    val: Cohort,
    test: Cohort,
    vocab: Vocabulary,
    normalizer: AgeNormalizer,
    *,
    batch_size: int,
    max_length: int,
    objective: str = "generate",
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoaders:
    """Loaders for the three splits; only ``train`` is shuffled (by a generator seeded with
    ``seed``). Each split has its own collator seed, so their masks do not coincide."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    loaders = []
    for offset, cohort in enumerate((train, val, test)):
        dataset = PatientDataset(cohort, vocab, normalizer, max_length)
        generator = torch.Generator().manual_seed(seed) if offset == 0 else None
        loaders.append(
            DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=offset == 0,
                generator=generator,
                collate_fn=PatientCollator(objective=objective, seed=seed + offset),
                num_workers=num_workers,
            )
        )
    return DataLoaders(*loaders)


# --------------------------------------------------------------- resumable batch order
class ResumableBatches:
    """Micro-batches of one process for one epoch, startable at any position (lesson 03).

    The order is ``DistributedSampler``'s: a permutation seeded by ``seed + epoch``, padded to
    a multiple of the number of processes, each process taking every ``world``-th index. So it
    depends only on ``(seed, epoch)``, and a resumed run skips the batches it has done without
    drawing a random number. With ``lengths``, windows of ``GROUP_BATCHES`` batches are sorted
    by length and the batches shuffled again: far less padding, still a function of the seed.
    """

    GROUP_BATCHES = 16

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        rank: int,
        world: int,
        shuffle: bool,
        lengths: Sequence[int] | None = None,
    ):
        self.dataset = dataset
        self.batch_size = batch_size
        self.lengths = lengths
        self.sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )

    def batch_indices(self, epoch: int) -> list[list[int]]:
        self.sampler.set_epoch(epoch)
        indices = list(self.sampler)
        if self.lengths is not None:
            window = self.batch_size * self.GROUP_BATCHES
            indices = [
                index
                for start in range(0, len(indices), window)
                for index in sorted(indices[start : start + window], key=self.lengths.__getitem__)
            ]
        size = self.batch_size
        batches = [indices[i : i + size] for i in range(0, len(indices), size)]
        if self.lengths is not None:
            generator = torch.Generator().manual_seed(self.sampler.seed + epoch)
            order = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in order]
        return batches

    def __len__(self) -> int:
        return math.ceil(self.sampler.num_samples / self.batch_size)

    def loader(self, epoch: int, start: int, collator, num_workers: int) -> DataLoader:
        """The batches of ``epoch`` from position ``start`` on."""
        # Its own generator: a DataLoader otherwise draws its workers' base seed from the
        # global RNG when iterated, so a resumed run would shift every later dropout mask.
        return DataLoader(
            self.dataset,
            batch_sampler=self.batch_indices(epoch)[start:],
            collate_fn=collator,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(self.sampler.seed + epoch),
        )
