"""Does the inverse-CDF draw change what a trained model writes? Both draws, several seeds.

``generate_patients`` draws each token with ``InverseCdfSampler`` (greedy decoding takes the
token it leaves); ``generate(do_sample=True)`` draws with ``torch.multinomial``. Both get the
same model, processors and demographics (the run's test split, with its outcome prompts when
the model has them). For each draw this prints the mean and standard deviation over
``--seeds`` generation seeds of JS divergence, top-100 overlap, coverage and unigram R^2
against the real test patients, and of patients/s.

    python -m course_lib pipeline --data data_samples/mimic_sample --out runs/main   # a run
    python -m benchmarks.sampler_fidelity --run runs/main/run [--seeds 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation.coherence import coherence_metrics
from course_lib.evaluation.diversity import diversity_metrics
from course_lib.generation import (
    build_processors,
    demographics_tensors,
    generate_patients,
    prompt_labels,
)
from course_lib.mimic import load_mimic
from course_lib.outcome_prompts import model_outcome_classes, requested_labels
from course_lib.runs import Run
from course_lib.tokens import BOS_ID, EOS_ID, PAD_ID

METRICS = ("js_divergence", "top100_overlap", "coverage", "unigram_r2")


def multinomial_cohort(model, vocabulary, normalizer, test: Cohort, outcomes, seed: int):
    """What ``generate_patients`` writes (one batch, visits at the prompt age), each token
    drawn by ``generate(do_sample=True)`` instead."""
    ages, sexes = [p.age for p in test], [p.sex for p in test]
    labels = requested_labels(outcomes, model_outcome_classes(model.config), len(ages))
    x_num, x_cat = demographics_tensors(ages, sexes, normalizer, model.device, labels)
    torch.manual_seed(seed)
    ids = model.generate(
        x_num=x_num,
        x_cat=x_cat,
        do_sample=True,
        top_k=0,  # generate's default top-k 50 off: the untouched softmax
        logits_processor=build_processors(vocabulary, ages, sexes),
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
    )
    return Cohort(
        [
            Patient(i, sex, age, [Visit(codes, age) for codes in vocabulary.decode(row) if codes])
            for i, (row, age, sex) in enumerate(zip(ids.tolist(), ages, sexes, strict=True), 1)
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/main/run", help="a trained run folder")
    parser.add_argument("--data", default="data_samples/mimic_sample", help="its cohort")
    parser.add_argument("--seeds", type=int, default=8, help="generation seeds per draw")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error(f"--seeds must be >= 2 (a standard deviation), got {args.seeds}")
    torch.set_num_threads(args.threads)
    run = Run.load(args.run)
    model, vocabulary, normalizer, _ = run.parts()
    test = run.splits(load_mimic(args.data))["test"]
    outcomes = prompt_labels(model, test)
    ages, sexes = [p.age for p in test], [p.sex for p in test]
    rows = []
    for seed in range(args.seeds):
        for draw in ("inverse CDF", "multinomial"):
            started = time.perf_counter()
            if draw == "inverse CDF":
                synthetic = generate_patients(
                    model, vocabulary, normalizer, ages, sexes, seed=seed, outcomes=outcomes
                )
            else:
                synthetic = multinomial_cohort(model, vocabulary, normalizer, test, outcomes, seed)
            seconds = time.perf_counter() - started
            metrics = coherence_metrics(synthetic, test) | diversity_metrics(synthetic, test)
            rows.append(
                {"draw": draw, "patients/s": len(test) / seconds}
                | {key: metrics[key] for key in METRICS}
            )
    table = pd.DataFrame(rows).groupby("draw").agg(["mean", "std"])
    print(f"{args.run}: {len(test)} test patients, {args.seeds} seeds per draw")
    print(table.round(4).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
