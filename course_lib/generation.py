"""Generating synthetic patients with ``model.generate()`` (lesson 08).

:func:`generate_patients` samples one patient per (age, sex) in batches with the KV-cached
``model.generate``, the processors of :mod:`course_lib.processors` and their inverse-CDF
sampler, and turns the ids back into a :class:`~course_lib.cohort.Cohort`.
:func:`naive_generate` is the cache-free loop it replaced, kept for lesson 08 and the benchmarks.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm  # plain text bars: no widget dependency in notebooks
from transformers import LogitsProcessorList

from course_lib.cohort import Cohort, Patient, Visit, cohort_visit_gaps  # noqa: F401 (re-exported)
from course_lib.outcome_prompts import (
    cohort_prompt_labels,
    labels_table,
    model_outcome_classes,
    requested_labels,
)
from course_lib.processors import (  # noqa: F401 (re-exported)
    DUPLICATE_SCOPES,
    InverseCdfSampler,
    NoRepeatCodeProcessor,
    PatientGrammarProcessor,
    ValidityProcessor,
    build_processors,
    sampling_processors,
)
from course_lib.prompts import GuidanceLogitsProcessor  # noqa: F401 (re-exported)
from course_lib.runs import Run
from course_lib.tokens import (
    BOS_ID,
    EOS_ID,
    MASK_ID,
    PAD_ID,
    Vocabulary,
)

SEX_ORDER = ("F", "M")  # x_cat index -> sex; matches course_lib.dataset.SEX_TO_INDEX


def demographics_tensors(
    ages: Sequence[float], sexes: Sequence[str], normalizer, device="cpu", labels=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_num [n, 1]`` (normalised age) and ``x_cat [n, 1 + k]`` (sex index, then the
    ``[n, k]`` outcome prompt ``labels`` when given: see :func:`requested_labels`)."""
    unknown = sorted(set(sexes) - set(SEX_ORDER))
    if unknown:
        raise ValueError(f"sex must be one of {SEX_ORDER}, got {unknown}")
    x_num = torch.tensor(
        [[normalizer.normalize(a)] for a in ages], dtype=torch.float32, device=device
    )
    x_cat = torch.tensor([[SEX_ORDER.index(s)] for s in sexes], dtype=torch.long, device=device)
    if labels is not None and np.shape(labels)[1] > 0:
        extra = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=device)
        x_cat = torch.cat([x_cat, extra], dim=1)
    return x_num, x_cat


def prompt_labels(model, cohort: Cohort) -> pd.DataFrame | None:
    """``cohort``'s labels of the model's outcome prompts (None for an age/sex-only model):
    the ``outcomes`` argument that asks :func:`generate_patients` for patients like these."""
    classes = model_outcome_classes(model.config)
    if not classes:
        return None
    subject_ids = [p.subject_id for p in cohort]
    return labels_table(subject_ids, cohort_prompt_labels(cohort, classes, subject_ids), classes)


def check_visit_gaps(visit_gaps) -> np.ndarray:
    """``visit_gaps`` as a 1-d float array of finite years >= 0 (ValueError, one line, if not)."""
    try:
        gaps = np.asarray(visit_gaps, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"visit_gaps must be numbers of years, got {type(visit_gaps).__name__}"
        ) from None
    if gaps.ndim != 1:
        raise ValueError(f"visit_gaps must be a 1-d array of years, got shape {gaps.shape}")
    bad = np.flatnonzero(~(np.isfinite(gaps) & (gaps >= 0)))
    if bad.size:
        first = int(bad[0])
        raise ValueError(
            f"visit_gaps[{first}] is {float(gaps[first])!r}; expected a finite number of years >= 0"
        )
    return gaps


def _visit_ages(age: float, n_visits: int, gaps: np.ndarray | None, rng, subject_id: int):
    """The prompt age, then the age plus the cumulative gaps drawn for each later visit."""
    if gaps is None or n_visits < 2:
        return [float(age)] * n_visits
    if gaps.size == 0:
        raise ValueError(
            f"visit_gaps is empty but generated patient {subject_id} has {n_visits} visits; "
            "expected at least one gap in years (cohort_visit_gaps of the training split)"
        )
    drawn = rng.choice(gaps, size=n_visits - 1, replace=True)
    return [float(age)] + [float(age + offset) for offset in np.cumsum(drawn)]


@torch.no_grad()
def sample_sequences(
    model,
    x_num: torch.Tensor,
    x_cat: torch.Tensor,
    processors: LogitsProcessorList,
    *,
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    guidance: float | None = None,
) -> torch.Tensor:
    """Token ids ``[batch, 1 + steps]`` from ``model.generate``: ``processors`` first, then
    :func:`sampling_processors` draws each token (greedy decoding picks the one it leaves).
    Every row stops at ``</patient>``; the batch runs until its longest record ends."""
    return model.generate(
        x_num=x_num,
        x_cat=x_cat,
        guidance_scale=guidance,
        do_sample=False,
        max_new_tokens=max_new_tokens or model.config.max_sequence_length - 1,
        logits_processor=LogitsProcessorList(
            [*processors, *sampling_processors(temperature, top_k, top_p)]
        ),
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
    )


def generate_patients(
    model,
    vocabulary: Vocabulary,
    normalizer,
    ages: Sequence[float],
    sexes: Sequence[str],
    *,
    batch_size: int = 256,
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    no_duplicates: str = "visit",
    validity: bool = False,
    guidance: float | None = None,
    seed: int = 0,
    first_subject_id: int = 1,
    progress: bool = False,
    outcomes=None,
    visit_gaps=None,
) -> Cohort:
    """Sample one patient per (age, sex) with the KV-cached ``model.generate``, in batches
    (:func:`sample_sequences`: the patient grammar, the duplicate ban, ``validity``'s mask).

    The model writes no time. ``visit_gaps`` (years, e.g. :func:`cohort_visit_gaps` of the
    training split; ``Run.visit_gaps()``) gives each later visit of a patient a gap drawn from
    it with replacement, so visit ages are the prompt age plus the cumulative gaps; the draws
    use their own ``numpy`` generator seeded with ``seed``, so the tokens are those sampled
    without gaps. None: every visit carries the prompt age (as does the validity mask).
    A model trained with outcome prompts needs ``outcomes`` (a DataFrame or mapping with one
    label per patient for each of ``model.config.outcome_prompts``): the patients are written
    *for* those labels, and the cohort's ``outcomes`` table holds them (requested labels).
    ``guidance`` is the classifier-free guidance scale (:class:`GuidanceLogitsProcessor`;
    None or 1: none); the model must have been trained with ``condition_dropout > 0``.
    """
    if len(ages) != len(sexes):
        raise ValueError(f"ages ({len(ages)}) and sexes ({len(sexes)}) differ in length")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    classes = model_outcome_classes(model.config)
    labels = requested_labels(outcomes, classes, len(ages))
    gaps = None if visit_gaps is None else check_visit_gaps(visit_gaps)
    gap_rng = np.random.default_rng(seed)  # apart from torch's: the tokens do not change
    model.eval()
    torch.manual_seed(seed)
    patients: list[Patient] = []
    starts = range(0, len(ages), batch_size)
    for start in tqdm(starts, desc="generating", disable=not progress, unit="batch"):
        batch_ages = list(ages[start : start + batch_size])
        batch_sexes = list(sexes[start : start + batch_size])
        x_num, x_cat = demographics_tensors(
            batch_ages, batch_sexes, normalizer, model.device, labels[start : start + batch_size]
        )
        sequences = sample_sequences(
            model,
            x_num,
            x_cat,
            build_processors(
                vocabulary, batch_ages, batch_sexes, no_duplicates=no_duplicates, validity=validity
            ),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            guidance=guidance,
        )
        for offset, ids in enumerate(sequences.tolist()):
            age, sex = batch_ages[offset], batch_sexes[offset]
            subject_id = first_subject_id + start + offset
            visit_codes = [codes for codes in vocabulary.decode(ids) if codes]
            visit_ages = _visit_ages(age, len(visit_codes), gaps, gap_rng, subject_id)
            visits = [
                Visit(codes=codes, age=visit_age)
                for codes, visit_age in zip(visit_codes, visit_ages, strict=True)
            ]
            patients.append(Patient(subject_id=subject_id, sex=sex, age=float(age), visits=visits))
    if not classes:
        return Cohort(patients)
    return Cohort(patients, labels_table([p.subject_id for p in patients], labels, classes))


def generate_like(model, vocabulary: Vocabulary, normalizer, cohort: Cohort, **options) -> Cohort:
    """One synthetic patient per patient of ``cohort``, with its age and sex (and, for a model
    with outcome prompts, its labels: the synthetic ``outcomes`` hold them).

    The one place that turns a real cohort into prompts, so the pipeline, the recipes' stored
    samples and the lessons ask the same thing; ``options`` go to :func:`generate_patients`.
    """
    return generate_patients(
        model,
        vocabulary,
        normalizer,
        [p.age for p in cohort],
        [p.sex for p in cohort],
        outcomes=prompt_labels(model, cohort),
        **options,
    )


@torch.no_grad()
def naive_generate(
    model, x_num: torch.Tensor, x_cat: torch.Tensor, max_new_tokens: int, processors=None
) -> torch.Tensor:
    """A manual sampling loop without any cache: every step re-runs the whole model
    (encoder and decoder) on the whole sequence so far, as the original project's loop did,
    and draws with ``torch.multinomial`` (as ``generate(do_sample=True)`` does). When
    ``processors`` end with an :class:`InverseCdfSampler` it has drawn the token already, and
    the loop takes the one it left (as :func:`sample_sequences` does).

    Kept for lesson 08 and the benchmarks; :func:`generate_patients` is what to use.
    """
    drawn_by_processor = bool(processors) and isinstance(processors[-1], InverseCdfSampler)
    model.eval()
    device = model.device
    x_num, x_cat = x_num.to(device), x_cat.to(device)
    encoder_input = torch.full((x_num.shape[0], 1), MASK_ID, dtype=torch.long, device=device)
    sequences = torch.full((x_num.shape[0], 1), BOS_ID, dtype=torch.long, device=device)
    finished = torch.zeros(x_num.shape[0], dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        logits = model(
            input_ids=encoder_input,
            decoder_input_ids=sequences,
            x_num=x_num,
            x_cat=x_cat,
            use_cache=False,
        ).logits[:, -1]
        if processors is not None:
            logits = processors(sequences, logits)
        if drawn_by_processor:
            next_tokens = logits.argmax(dim=-1)
        else:
            next_tokens = torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(1)
        next_tokens = next_tokens.masked_fill(finished, PAD_ID)
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
        finished |= next_tokens.eq(EOS_ID)
        if finished.all():
            break
    return sequences


def sample_demographics(
    reference: pd.DataFrame, n: int, seed: int = 0
) -> tuple[list[float], list[str]]:
    """Draw ``n`` (age, sex) pairs with replacement from a table with ``age`` and ``sex`` columns."""
    rows = sample_rows(reference, n, seed)
    return rows["age"].astype(float).tolist(), rows["sex"].astype(str).tolist()


def sample_rows(reference: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` whole rows drawn with replacement (age, sex and any outcome labels together)."""
    rng = np.random.default_rng(seed)
    return reference.iloc[rng.integers(0, len(reference), size=n)].reset_index(drop=True)


def cohort_demographics(cohort: Cohort, outcome_prompts: Sequence[str] = ()) -> pd.DataFrame:
    """``age``/``sex`` of every patient (age at the first visit), then the class of each
    ``outcome_prompts`` column of ``cohort.outcomes``."""
    table = pd.DataFrame({"age": [p.age for p in cohort], "sex": [p.sex for p in cohort]})
    labels = cohort_prompt_labels(cohort, outcome_prompts, [p.subject_id for p in cohort])
    for j, column in enumerate(outcome_prompts):
        table[column] = labels[:, j]
    return table


# --- command line -----------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    from course_lib.cli import add_cohort_arguments

    parser.add_argument("--run", required=True, type=Path, help="run folder written by `train`")
    parser.add_argument("--patients", required=True, type=int, help="number of patients")
    parser.add_argument("--out", required=True, type=Path, help="output folder (MIMIC-III layout)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the cohort files in a non-empty --out"
    )
    add_cohort_arguments(
        parser,
        flag="--demographics-from",
        required=False,
        help_text="copy age/sex (and the outcome prompts' labels, from its OUTCOMES.csv) from "
        "this cohort (MIMIC-III layout) instead of the training distribution",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--no-duplicates", choices=DUPLICATE_SCOPES, default="visit")
    parser.add_argument("--validity", action="store_true", help="mask codes invalid for age/sex")
    parser.add_argument("--no-progress", action="store_true")


def _check_generate_args(args: argparse.Namespace) -> None:
    """Every argument and path checked before the run is loaded (UsageError, exit code 2)."""
    from course_lib.cli import UsageError, check_input_folder, check_output_path

    for flag, value, low in (
        ("--patients", args.patients, 1),
        ("--batch-size", args.batch_size, 1),
    ):
        if value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    if not args.temperature > 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    check_output_path(args.out, "--out", overwrite=args.overwrite)
    if args.demographics_from is not None:
        check_input_folder(args.demographics_from, "--demographics-from")


def run_cli(args: argparse.Namespace) -> int:
    """Errors are left to :func:`course_lib.cli.main` (one line): 2 for a bad argument or
    output path, 1 for a damaged run folder or bad demographics data."""
    from course_lib.cli import load_cohort_arg
    from course_lib.mimic import write_mimic
    from course_lib.runs import RunError

    _check_generate_args(args)
    run = Run.load(args.run)
    model, vocabulary, normalizer, _ = run.parts()
    visit_gaps = run.visit_gaps()
    if visit_gaps is None:
        print(
            f"note: {args.run} has no train_visit_gaps.csv (a run from before visit gaps): "
            "every visit of a generated patient is at its prompt age"
        )
    columns = list(model_outcome_classes(model.config))
    if args.demographics_from is not None:
        cohort = load_cohort_arg(args, flag="--demographics-from")
        reference = cohort_demographics(cohort, columns)
        source = f"cohort {args.demographics_from}"
    else:
        table = args.run / "train_demographics.csv"
        if not table.exists():
            raise RunError(f"{table} is missing: pass --demographics-from DIR")
        reference = pd.read_csv(table)
        source = "the training split"
        absent = [column for column in columns if column not in reference.columns]
        if absent:
            raise RunError(f"{table} has no column {absent[0]} (an outcome prompt of the model)")
    if args.demographics_from is None or args.patients != len(reference):
        reference = sample_rows(reference, args.patients, args.seed)
    ages, sexes = reference["age"].astype(float).tolist(), reference["sex"].tolist()
    started = time.perf_counter()
    cohort = generate_patients(
        model,
        vocabulary,
        normalizer,
        ages,
        sexes,
        batch_size=args.batch_size,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        no_duplicates=args.no_duplicates,
        validity=args.validity,
        seed=args.seed,
        progress=not args.no_progress,
        outcomes=reference[columns] if columns else None,
        visit_gaps=visit_gaps,
    )
    elapsed = time.perf_counter() - started
    write_mimic(cohort, args.out)
    print(
        f"generated {len(cohort)} patients (demographics from {source}) in {elapsed:.1f} s "
        f"({len(cohort) / elapsed:.1f} patients/s) -> {args.out}"
    )
    return 0
