"""Which recipe makes PromptBart learn conditioning? Every candidate on one simulated cohort.

Each candidate trains on the same split of the same simulated cohort under the same budget
(steps and/or minutes), keeps its weights at the end of the schedule (``--keep best``: the best
validation-LM weights instead), generates one patient per test
patient WITHOUT rule-constrained decoding, and is scored: sex and age violations (test
demographics), prompt information against the simulator's truth, and JS divergence, unigram
R^2, top-100 overlap and coverage each over its real-vs-real floor (the validation split,
subsampled to the test size), training seconds and generated patients/s.

    python -m benchmarks.conditioning                      # the issue's 20,000-patient draw
    python -m benchmarks.conditioning --patients 2000 --minutes 2 --candidates base validity

Why the last weights: on the 20,000-patient draw the validation LM loss was lowest about half
way through a 2,000-step schedule while everything generated kept improving to the end of the
decay (issue 11's notes give the figures, from a one-off diagnostic that scored the candidate
every 1,000 steps; compare ``--keep best`` with ``--keep last`` to see it here).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from transformers import get_scheduler

from course_lib.cohort import Cohort
from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset, split_cohort
from course_lib.evaluation.coherence import coherence_metrics
from course_lib.evaluation.conditioning import prompt_information
from course_lib.evaluation.diversity import diversity_metrics
from course_lib.evaluation.floor import subsample
from course_lib.evaluation.validity import validity_metrics
from course_lib.generation import generate_patients
from course_lib.model import build_model
from course_lib.presets import get_preset
from course_lib.simulate import simulate_cohort
from course_lib.tokens import Vocabulary

AUX = {"age": 0.001, "sex": 0.001}


@dataclass(frozen=True)
class Candidate:
    """One recipe: model options, loss weights and extra terms, guidance at generation."""

    model: Mapping = field(default_factory=dict)
    weights: Mapping = field(default_factory=lambda: dict(AUX))
    extra: tuple[str, ...] = ()
    guidance: float | None = None


def _validity(weight: float) -> dict:
    return {"weights": AUX | {"validity": weight}, "extra": ("validity",)}


VALIDITY_WEIGHT = 10.0  # the default before validity_add_100 won (issue 11's notes)
CANDIDATES: dict[str, Candidate] = {
    "base": Candidate(),
    "aux_heads_strong": Candidate(weights={"age": 1.0, "sex": 1.0}),
    "prompt_add": Candidate(model={"decoder_prompt_add": True}),
    "validity": Candidate(**_validity(VALIDITY_WEIGHT)),
    "validity_add": Candidate(model={"decoder_prompt_add": True}, **_validity(VALIDITY_WEIGHT)),
    "validity_add_100": Candidate(model={"decoder_prompt_add": True}, **_validity(100.0)),
    "validity_add_cfg": Candidate(
        model={"decoder_prompt_add": True, "condition_dropout": 0.1},
        guidance=1.5,
        **_validity(VALIDITY_WEIGHT),
    ),
}
MODEL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "labels", "x_num", "x_cat")


def _validation_lm(model, dataset: PatientDataset, batch_size: int, extra) -> float:
    model.eval()
    total, tokens = 0.0, 0
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, collate_fn=PatientCollator()
    )
    with torch.no_grad():
        for batch in loader:
            out = model(
                **{k: batch[k] for k in MODEL_INPUTS}, extra_losses=extra, packed_logits=True
            )
            n = int(batch["labels"].ne(-100).sum())
            total, tokens = total + out.loss_terms["lm"].item() * n, tokens + n
    model.train()
    return total / tokens


def train_candidate(candidate: Candidate, splits, vocabulary, normalizer, args) -> tuple:
    """The trainer's recipe (AdamW, linear warmup/decay, clip 1) under a steps/minutes budget;
    returns the model (``--keep``), the training seconds and the steps taken."""
    preset = get_preset(args.preset)
    torch.manual_seed(args.seed)
    model = build_model(
        vocabulary, preset, normalizer=normalizer, loss_weights=candidate.weights, **candidate.model
    )
    train_set = PatientDataset(splits[0], vocabulary, normalizer, preset.max_sequence_length)
    val_set = PatientDataset(splits[1], vocabulary, normalizer, preset.max_sequence_length)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=preset.learning_rate,
    )
    scheduler = get_scheduler(
        "linear", optimizer, round(0.05 * args.steps), num_training_steps=args.steps
    )
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=preset.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
        collate_fn=PatientCollator(),
    )
    best, best_state, step, started = math.inf, None, 0, time.perf_counter()
    model.train()
    while step < args.steps and time.perf_counter() - started < 60 * args.minutes:
        for batch in loader:
            out = model(
                **{k: batch[k] for k in MODEL_INPUTS},
                extra_losses=candidate.extra,
                packed_logits=True,
            )
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step(), scheduler.step(), optimizer.zero_grad()
            step += 1
            over_time = time.perf_counter() - started >= 60 * args.minutes
            if args.keep == "best" and (
                step % args.eval_every == 0 or step >= args.steps or over_time
            ):
                val_lm = _validation_lm(model, val_set, 2 * preset.batch_size, candidate.extra)
                if val_lm < best:
                    best, best_state = val_lm, copy.deepcopy(model.state_dict())
            if step >= args.steps or over_time:
                break
    seconds = time.perf_counter() - started
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), seconds, step


def _ratio(value: float, floor: float) -> float:
    return value / floor if floor and math.isfinite(floor) else math.nan


def score(model, candidate: Candidate, splits, vocabulary, normalizer, seconds, args) -> dict:
    train, val, test = splits
    ages, sexes = [p.age for p in test], [p.sex for p in test]
    started = time.perf_counter()
    synthetic = generate_patients(
        model, vocabulary, normalizer, ages, sexes, guidance=candidate.guidance, seed=args.seed
    )
    per_second = len(synthetic) / (time.perf_counter() - started)
    reference = subsample(val, min(len(val), len(test)), args.seed)
    metrics = {**coherence_metrics(synthetic, test), **diversity_metrics(synthetic, test)}
    floor = {**coherence_metrics(reference, test), **diversity_metrics(reference, test)}
    rates = validity_metrics(synthetic)
    info = prompt_information(model, vocabulary, normalizer, test, simulated=True)
    return {
        "sex_viol_%": 100 * rates["sex_violation_rate"],
        "age_viol_%": 100 * rates["age_violation_rate"],
        "info_nats": info["prompt_information_nats"],
        "true_nats": info["prompt_information_true_nats"],
        "info/true": info["prompt_information_ratio"],
        "discr/true": info["prompt_discrimination_nats"] / info["prompt_discrimination_true_nats"],
        "JS/floor": _ratio(metrics["js_divergence"], floor["js_divergence"]),
        "R2/floor": _ratio(metrics["unigram_r2"], floor["unigram_r2"]),
        "top100/floor": _ratio(metrics["top100_overlap"], floor["top100_overlap"]),
        "coverage/floor": _ratio(metrics["coverage"], floor["coverage"]),
        "train_s": seconds,
        "patients/s": per_second,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000, help="simulated cohort size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps per candidate")
    parser.add_argument("--minutes", type=float, default=20.0, help="training time per candidate")
    parser.add_argument(
        "--keep", choices=("last", "best"), default="last", help="weights to score (docstring)"
    )
    parser.add_argument(
        "--eval-every", type=int, default=50, help="steps between validations (--keep best)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES)
    )
    args = parser.parse_args(argv)
    if args.patients < 100:
        parser.error(f"--patients must be >= 100, got {args.patients}")
    torch.set_num_threads(args.threads)
    cohort: Cohort = simulate_cohort(args.patients, seed=args.seed)
    splits = split_cohort(cohort, seed=args.seed)
    vocabulary, normalizer = Vocabulary.build(splits[0]), AgeNormalizer.fit(splits[0])
    print(
        f"{args.patients:,} simulated patients (seed {args.seed}), preset {args.preset}, "
        f"budget {args.steps} steps or {args.minutes} min per candidate, {args.keep} weights, "
        "no validity masking"
    )
    rows = {}
    for name in args.candidates:
        candidate = CANDIDATES[name]
        model, seconds, steps = train_candidate(candidate, splits, vocabulary, normalizer, args)
        rows[name] = score(model, candidate, splits, vocabulary, normalizer, seconds, args)
        print(f"{name}: {steps} steps, " + ", ".join(f"{k} {v:.3g}" for k, v in rows[name].items()))
    import pandas as pd

    print(pd.DataFrame(rows).T.round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
