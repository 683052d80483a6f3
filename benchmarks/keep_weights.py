"""Best-validation weights or last weights? One main-job training, both weights scored.

The trainer keeps the epoch with the best validation LM loss (``keep: best``, the default) or
the final step's weights (``keep: last``). This trains the main job's recipe once on the
shipped sample (per-epoch checkpoints on, so the final weights are in ``checkpoints/last``),
then generates the test split's patients from each set of weights with several generation
seeds and prints the mean and standard deviation of the fidelity and validity metrics, and
each set's prompt information.

    python -m benchmarks.keep_weights [--seeds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from course_lib.config import TrainConfig
from course_lib.evaluation.conditioning import prompt_information
from course_lib.evaluation.suite import evaluate_cohorts
from course_lib.generation import generate_like
from course_lib.mimic import load_mimic
from course_lib.pipeline import default_callbacks, default_outcome_prompts
from course_lib.runs import Run
from course_lib.training import train

METRICS = ("js_divergence", "top100_overlap", "unigram_r2", "coverage", "detection_auc")
RATES = ("sex_violation_rate", "age_violation_rate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data_samples/mimic_sample")
    parser.add_argument("--seeds", type=int, default=3, help="generation seeds per weights")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cohort = load_mimic(args.data)
    with tempfile.TemporaryDirectory(prefix="keep-weights-") as work:
        config = TrainConfig(
            out=str(Path(work) / "run"),
            progress=False,
            outcome_prompts=default_outcome_prompts(cohort),
            cpu_threads=args.threads,
        )
        started = time.perf_counter()
        result = train(config, cohort, callbacks=default_callbacks(config))
        print(
            f"main-job recipe: {result.steps} steps in {time.perf_counter() - started:.0f} s, "
            f"best validation LM at epoch {result.best_epoch} of {len(result.history)}"
        )
        run = Run.load(result.run_dir)
        model, vocabulary, normalizer, _ = run.parts()
        last = copy.deepcopy(model)
        state = torch.load(result.run_dir / "checkpoints" / "last" / "model.pt")
        last.load_state_dict(state)
        splits = run.splits(cohort)
        rows = {}
        for name, weights in (("best", model.eval()), ("last", last.eval())):
            scores = []
            for seed in range(args.seeds):
                synthetic = generate_like(
                    weights,
                    vocabulary,
                    normalizer,
                    splits["test"],
                    seed=seed,
                    visit_gaps=run.visit_gaps(),
                )
                metrics = evaluate_cohorts(
                    synthetic,
                    splits["test"],
                    train=splits["train"],
                    reference=splits["val"],
                    seed=seed,
                ).metrics
                scores.append({key: metrics[key] for key in METRICS + RATES})
            table = pd.DataFrame(scores)
            rows[name] = {f"{k} mean": table[k].mean() for k in table} | {
                f"{k} sd": table[k].std(ddof=1) for k in table
            }
            info = prompt_information(weights, vocabulary, normalizer, splits["test"])
            rows[name]["prompt_information_nats"] = info["prompt_information_nats"]
    print(pd.DataFrame(rows).round(4).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
