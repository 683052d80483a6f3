"""The course's main job end to end: train -> generate -> evaluate -> report (lesson 09).

``python -m course_lib pipeline --data data_samples/mimic_sample --out runs/main`` trains
the ``tiny`` preset on the training split, generates one synthetic patient for each patient
of the test split (same age and sex; the gaps between its visits drawn from the training
split's, ``train_visit_gaps.csv`` of the run), and evaluates them against the test split, with the
validation split (disjoint, same size) as the real-vs-real floor and the training split for
the privacy attacks.

When the cohort has outcome labels, the model is trained with ``LVEF_REDUCED`` (the outcome
evaluated) as a further prompt (``--outcome-prompts``; ``''`` turns it off), and each synthetic
patient is generated for its test patient's label: ``tstr_auroc`` then trains on those
requested labels, the figure a user without an outcome oracle can compute.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from course_lib.cli import (
    UsageError,
    add_cohort_arguments,
    check_input_folder,
    check_output_path,
    format_notes,
    unknown_codes_arg,
)
from course_lib.cohort import Cohort
from course_lib.evaluation.conditioning import conditioning_metrics
from course_lib.evaluation.folders import likelihood_inputs
from course_lib.evaluation.report import format_report_table, is_simulated_cohort, write_report
from course_lib.evaluation.suite import evaluate_cohorts
from course_lib.evaluation.utility import DEFAULT_OUTCOME
from course_lib.generation import generate_like
from course_lib.mimic import DEFAULT_UNKNOWN_CODES, load_mimic, write_mimic
from course_lib.presets import get_preset
from course_lib.runs import Run
from course_lib.sample_check import default_callbacks
from course_lib.simulate import simulate_outcomes
from course_lib.training import TrainConfig, train

PARTS = ("run", "synthetic", "report")  # what the pipeline writes in --out


def split_from_run(cohort: Cohort, run_dir: Path) -> dict[str, Cohort]:
    """The train/val/test cohorts exactly as the run split them."""
    return Run(Path(run_dir)).splits(cohort)


def run_pipeline(
    data: str | Path,
    out: str | Path,
    *,
    preset: str = "tiny",
    max_steps: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    validity: bool = False,
    guidance: float | None = None,
    generation_seeds: int = 3,
    progress: bool = True,
    unknown_codes: str = DEFAULT_UNKNOWN_CODES,
    outcome_prompts: Sequence[str] | None = None,
) -> dict:
    """Train, generate and evaluate; returns the flat metrics (also in ``out/report``).

    ``outcome_prompts``: outcome columns given as prompts; None: ``LVEF_REDUCED`` when the
    cohort has it, else none; ``[]``: none."""
    out = Path(out)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    cohort = load_mimic(data, unknown_codes=unknown_codes)
    if cohort.notes:
        print(format_notes(cohort.notes), flush=True)
    if outcome_prompts is None:
        outcome_prompts = default_outcome_prompts(cohort)
    config = TrainConfig(
        data=str(data),
        out=str(out / "run"),
        preset=preset,
        max_steps=max_steps,
        epochs=epochs,
        seed=seed,
        progress=progress,
        unknown_codes=unknown_codes,
        outcome_prompts=list(outcome_prompts),
    )
    print(f"[1/3] training preset {preset!r} on {len(cohort):,} patients -> {config.out}")
    result = train(config, cohort, overwrite=True, callbacks=default_callbacks(config))
    timings["train_s"] = time.perf_counter() - started

    run = Run.load(result.run_dir)
    splits = run.splits(cohort)
    test = splits["test"]
    model, vocabulary, normalizer, _ = run.parts()
    asked = f" and {', '.join(outcome_prompts)} labels" if outcome_prompts else ""
    print(f"[2/3] generating {len(test):,} patients with the test split's ages, sexes{asked}")
    step_started = time.perf_counter()
    # the gaps between visits: drawn from the training split's (the model writes no time)
    generate_options = {"validity": validity, "guidance": guidance, "visit_gaps": run.visit_gaps()}
    synthetic = generate_like(
        model, vocabulary, normalizer, test, seed=seed, progress=progress, **generate_options
    )
    write_mimic(synthetic, out / "synthetic")
    timings["generate_s"] = time.perf_counter() - step_started

    print("[3/3] evaluating against the test split; floor = the validation split")
    step_started = time.perf_counter()
    labeler = None
    notes = [
        f"real = test split ({len(test)} patients), floor reference = validation split "
        f"({len(splits['val'])}), privacy against the training split ({len(splits['train'])})",
        f"model: preset {preset}, {result.steps} steps, best validation LM loss "
        f"{result.best_val_lm:.4f} (epoch {result.best_epoch}), stopped: {result.stopped}",
        outcome_prompts_note(outcome_prompts),
    ]
    if is_simulated_cohort(cohort):

        def labeler(patients):
            return simulate_outcomes(patients, seed)

        notes.append(
            "synthetic patients also labelled by the simulator's ground-truth outcome model "
            "(tstr_oracle_auroc, an upper bound)"
        )
    likelihoods = likelihood_inputs(run, test, splits["val"], train_cohort=cohort, seed=seed)
    evaluation = evaluate_cohorts(
        synthetic,
        test,
        train=splits["train"],
        reference=splits["val"],
        outcome_labeler=labeler,
        seed=seed,
        log_likelihoods=likelihoods,
    )
    evaluation.metrics.update(likelihoods.metrics)
    evaluation.intervals.update(likelihoods.intervals)
    notes.extend(likelihoods.notes)
    evaluation.metrics.update(
        conditioning_metrics(
            model,
            vocabulary,
            normalizer,
            test,
            synthetic,
            reference=splits["val"],
            simulated=is_simulated_cohort(cohort),
            seed=seed,
            **generate_options,
        )
    )
    spread = generation_spread(run, test, seed, generation_seeds, generate_options)
    evaluation.metrics.update(spread)
    if spread:
        notes.append(
            f"generation spread: standard deviation over {generation_seeds} generation seeds "
            "(the same model) in the *_seed_sd keys"
        )
    timings["evaluate_s"] = time.perf_counter() - step_started
    timings["total_s"] = time.perf_counter() - started
    notes.append(
        "wall time: "
        + ", ".join(f"{name[:-2]} {seconds:.0f} s" for name, seconds in timings.items())
    )
    report_dir = write_report(evaluation, out / "report", test, synthetic, notes=notes)
    print(format_report_table(evaluation))
    for note in notes:
        print(f"note: {note}")
    print(f"report: {report_dir / 'report.md'}; figures: {report_dir / 'figures'}")
    return dict(evaluation)


def default_outcome_prompts(cohort: Cohort) -> list[str]:
    """``[LVEF_REDUCED]`` (the outcome the utility metrics evaluate) when the cohort has it."""
    has_outcome = cohort.outcomes is not None and DEFAULT_OUTCOME in cohort.outcomes.columns
    return [DEFAULT_OUTCOME] if has_outcome else []


def outcome_prompts_note(outcome_prompts: Sequence[str]) -> str:
    if not outcome_prompts:
        return "outcome prompts: none (no requested labels: tstr_auroc is not computed)"
    return (
        f"outcome prompts: {', '.join(outcome_prompts)} (each synthetic patient generated for "
        "its test patient's label: tstr_auroc)"
    )


SPREAD_KEYS = ("js_divergence", "unigram_r2", "sex_violation_rate", "age_violation_rate")


def generation_spread(
    run: Run, test: Cohort, seed: int, seeds: int, generate_options: dict
) -> dict[str, float]:
    """``<key>_seed_sd``: how much a metric moves when only the generation seed changes.

    The bootstrap intervals say how much the real sample limits a figure; this says how much
    one draw of synthetic patients does. Cheap metrics only (no floors, no bootstrap).
    """
    if seeds < 2:
        return {}
    values: dict[str, list[float]] = {key: [] for key in SPREAD_KEYS}
    model, vocabulary, normalizer, _ = run.parts()
    for offset in range(seeds):
        synthetic = generate_like(
            model, vocabulary, normalizer, test, seed=seed + 1000 + offset, **generate_options
        )
        metrics = evaluate_cohorts(synthetic, test, seed=seed, n_resamples=0)
        for key in SPREAD_KEYS:
            values[key].append(float(metrics[key]))
    return {f"{key}_seed_sd": float(np.std(found, ddof=1)) for key, found in values.items()}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_cohort_arguments(parser, help_text="cohort in the MIMIC-III layout")
    parser.add_argument(
        "--out", required=True, type=Path, help="folder for run, synthetic data and report"
    )
    parser.add_argument("--preset", default="tiny", help="model preset (tiny, small, base)")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="training steps (default: preset's epochs)"
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validity", action="store_true", help="rule-constrained decoding")
    parser.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale (needs a run trained with --condition-dropout)",
    )
    parser.add_argument(
        "--outcome-prompts",
        default=None,
        help="comma-separated outcome columns given as prompts (default: LVEF_REDUCED when "
        "the cohort has it; '' for none)",
    )
    parser.add_argument("--no-progress", action="store_true")


def run_cli(args: argparse.Namespace) -> int:
    """Bad arguments are a :class:`~course_lib.cli.UsageError` (exit code 2), before any work."""
    check_input_folder(args.data, "--data")
    # the run, the synthetic cohort and the report are replaced in place when re-run
    check_output_path(args.out, "--out", allow_nonempty=True)
    for part in PARTS:
        check_output_path(args.out / part, "--out", allow_nonempty=True)
    try:
        get_preset(args.preset)
    except ValueError as error:
        raise UsageError(f"--preset: {error}") from None
    for flag, value in (("--max-steps", args.max_steps), ("--epochs", args.epochs)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    prompts = None
    if args.outcome_prompts is not None:
        prompts = [name.strip() for name in args.outcome_prompts.split(",") if name.strip()]
    run_pipeline(
        args.data,
        args.out,
        preset=args.preset,
        max_steps=args.max_steps,
        epochs=args.epochs,
        seed=args.seed,
        validity=args.validity,
        guidance=args.guidance,
        progress=not args.no_progress,
        unknown_codes=unknown_codes_arg(args),
        outcome_prompts=prompts,
    )
    return 0
