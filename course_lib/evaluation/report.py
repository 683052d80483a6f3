"""``python -m course_lib evaluate``: score a synthetic cohort against real data (lesson 09).

Reads folders in the MIMIC-III layout (:mod:`course_lib.evaluation.folders` loads and checks
them), runs :func:`course_lib.evaluation.evaluate_cohorts` and writes a report folder::

    REPORT/report.json    flat metrics (<key>, <key>_floor, <key>_ci = [low, high]), goals,
                          alarms, notes; NaN -> null
    REPORT/report.md      tables: metric, value, interval, floor, ratio, goal; alarms; notes
    REPORT/figures/*.png  the figures of :mod:`course_lib.evaluation.plots`

With ``--run RUN`` (the trained run that generated the cohort) the model's own
log-likelihood adds ``mia_likelihood_auc`` and ``perplexity`` (beside ``unigram_perplexity``),
scored on at most ``--likelihood-patients`` patients per side.

Every number is read against its **floor**, the same metric for a second real sample, and
with its bootstrap **interval** (:mod:`course_lib.evaluation.uncertainty`): a value whose
interval contains the floor is as good as real data.

Writing is all or nothing per run: every figure is drawn in memory first, so a failure while
computing or drawing leaves a previous report untouched; ``report.json`` is removed first and
written last (:mod:`course_lib.files`), so it only ever sits next to the ``report.md`` and
figures of its own run (other files in REPORT are never touched).
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from course_lib.cli import (
    UsageError,
    add_cohort_arguments,
    check_input_folder,
    check_output_path,
    unknown_codes_arg,
)
from course_lib.cohort import Cohort
from course_lib.evaluation.folders import (
    LIKELIHOOD_PATIENTS,
    SIMULATOR_OUTCOME_COLUMNS,
    EvaluationInputError,
    FolderEvaluation,
    LikelihoodInputs,
    evaluate_folders,
    is_simulated_cohort,
    likelihood_inputs,
    load_folder,
)
from course_lib.evaluation.report_format import (
    FAMILIES,
    GOALS,
    HEADLINE_KEYS,
    MODEL_HEADLINE_KEYS,
    format_report_table,
    goal_results,
    report_json,
    report_markdown,
)
from course_lib.files import atomic_write_bytes, atomic_write_text

__all__ = [
    "FAMILIES",
    "GOALS",
    "HEADLINE_KEYS",
    "MODEL_HEADLINE_KEYS",
    "SIMULATOR_OUTCOME_COLUMNS",
    "EvaluationInputError",
    "FolderEvaluation",
    "LikelihoodInputs",
    "evaluate_folders",
    "format_report_table",
    "goal_results",
    "is_simulated_cohort",
    "likelihood_inputs",
    "load_folder",
    "save_figure",
    "write_report",
]

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
FIGURES_DIR = "figures"

# ------------------------------------------------------------------------------ writing


FIGURE_FILES = (
    "frequency_rank.png",
    "top_codes.png",
    "per_patient_histograms.png",
    "cooccurrence_heatmaps.png",
    "validity.png",
)


def figure_png(fig: Figure, *, dpi: int = 120) -> bytes:
    """``fig`` rendered as PNG bytes (matplotlib's Agg renderer; no backend is switched)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically (:func:`course_lib.files.atomic_write_bytes`):
    a reader never sees half a PNG and a failed save keeps the previous file."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_figure writes PNG files: expected a .png path, got {path}")
    atomic_write_bytes(path, figure_png(fig, dpi=dpi))
    return path


def _draw_figures(
    evaluation: Mapping[str, float], real: Cohort, synthetic: Cohort, reference: Cohort | None
) -> dict[str, bytes]:
    """Every figure of the report as PNG bytes, drawn before anything is written."""
    from course_lib.evaluation import plots

    makers = {
        "frequency_rank.png": lambda: plots.frequency_rank(real, synthetic, reference=reference),
        "top_codes.png": lambda: plots.top_codes_side_by_side(real, synthetic),
        "per_patient_histograms.png": lambda: plots.per_patient_histograms(real, synthetic),
        "cooccurrence_heatmaps.png": lambda: plots.cooccurrence_heatmaps(real, synthetic),
        "validity.png": lambda: plots.validity_bars(evaluation),
    }
    return {f"{FIGURES_DIR}/{name}": figure_png(make()) for name, make in makers.items()}


def write_report(
    evaluation: Mapping[str, float],
    out_dir: str | Path,
    real: Cohort | None,
    synthetic: Cohort | None,
    *,
    notes: Sequence[str] = (),
    reference: Cohort | None = None,
    figures: bool = True,
) -> Path:
    """Write report.json, report.md and (with ``figures`` and both cohorts) the figures into
    ``out_dir``; return ``out_dir``.

    ``notes`` are added to those the evaluation carries. Figures are drawn in memory before
    anything is written; figure files of an earlier run that this run does not draw are
    removed so that the folder never mixes runs (module docstring).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EvaluationInputError(f"report folder {out_dir}: exists and is not a folder")
    all_notes = list(dict.fromkeys([*getattr(evaluation, "notes", []), *notes]))
    if reference is None:
        reference = getattr(evaluation, "reference", None)
    draw = figures and real is not None and synthetic is not None
    if figures and not draw:
        all_notes.append("No figures: the real and synthetic cohorts were not given.")
    pictures = _draw_figures(evaluation, real, synthetic, reference) if draw else {}
    markdown = report_markdown(evaluation, all_notes, list(pictures))
    payload = report_json(evaluation, all_notes, list(pictures))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_JSON).unlink(missing_ok=True)  # no stale json beside new files
    for name in FIGURE_FILES:
        relative = f"{FIGURES_DIR}/{name}"
        if relative in pictures:
            atomic_write_bytes(out_dir / relative, pictures[relative])
        else:
            (out_dir / relative).unlink(missing_ok=True)
    atomic_write_text(out_dir / REPORT_MD, markdown)
    atomic_write_text(out_dir / REPORT_JSON, payload)
    return out_dir


# ------------------------------------------------------------------------------ CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The ``evaluate`` flags."""
    add_cohort_arguments(parser, flag="--real", help_text="real test cohort (MIMIC-III layout)")
    add_cohort_arguments(parser, flag="--synthetic", help_text="synthetic cohort (same layout)")
    folder = {"type": Path, "metavar": "DIR"}
    parser.add_argument("--out", **folder, required=True, help="report folder (created)")
    parser.add_argument(
        "--train", **folder, help="real training split the generator saw (privacy, TRTR)"
    )
    parser.add_argument(
        "--reference",
        **folder,
        help="second real sample for the floors (held-out split or second simulator draw), "
        "disjoint from --real and --train; default: half of --real",
    )
    parser.add_argument(
        "--run",
        **folder,
        help="the trained run folder behind the synthetic cohort: adds mia_likelihood_auc "
        "and perplexity (the model's own log-likelihood of its training patients, from "
        "--train or the run's data folder, and of the real test patients)",
    )
    parser.add_argument(
        "--likelihood-patients",
        type=int,
        default=LIKELIHOOD_PATIENTS,
        metavar="N",
        help=f"with --run: patients scored per side, a seeded sample (default {LIKELIHOOD_PATIENTS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of splits, samples and fits")
    parser.add_argument("--no-figures", action="store_true", help="write report.json/md only")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report")


def _print_summary(evaluation: FolderEvaluation, out_dir: Path, figures: bool) -> None:
    print(format_report_table(evaluation))
    print()
    print(f"report: {out_dir / REPORT_MD} and {out_dir / REPORT_JSON}")
    if figures:
        print(f"figures: {out_dir / FIGURES_DIR}/")


def _check_arguments(args: argparse.Namespace) -> None:
    """Every path and number checked before any work (UsageError: exit code 2)."""
    for flag in ("--real", "--synthetic", "--train", "--reference", "--run"):
        value = getattr(args, flag[2:])
        if value is not None:
            what = "a run folder written by train" if flag == "--run" else None
            check_input_folder(value, flag, what)
    for flag, low in (("--seed", 0), ("--likelihood-patients", 1)):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value < low:
            raise UsageError(f"{flag} {value}: expected an integer >= {low}")
    out = check_output_path(args.out, "--out", allow_nonempty=True)
    earlier = [name for name in (REPORT_JSON, REPORT_MD) if (out / name).is_file()]
    if earlier and not args.overwrite:
        raise UsageError(
            f"--out {out}: holds the report of an earlier run ({', '.join(earlier)}); "
            "pass --overwrite to replace it, or choose another folder"
        )


def run_cli(args: argparse.Namespace) -> int:
    """Evaluate, write the report, print the headline table. Errors reach ``cli.main``:
    bad arguments are a UsageError, bad data an EvaluationInputError (one line each)."""
    _check_arguments(args)
    run = None
    if args.run is not None:
        from course_lib.runs import Run

        run = Run.load(args.run)
    evaluation = evaluate_folders(
        args.real,
        args.synthetic,
        train_dir=args.train,
        reference_dir=args.reference,
        seed=args.seed,
        unknown_codes=unknown_codes_arg(args),
        run=run,
        likelihood_patients=args.likelihood_patients,
    )
    out_dir = write_report(
        evaluation, args.out, evaluation.real, evaluation.synthetic, figures=not args.no_figures
    )
    _print_summary(evaluation, out_dir, not args.no_figures)
    return 0
