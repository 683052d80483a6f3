"""``python -m course_lib evaluate``: score a synthetic cohort against real data (lesson 09).

Reads folders in the MIMIC-III layout (:mod:`course_lib.evaluation.folders` loads and checks
them), runs :func:`course_lib.evaluation.evaluate_cohorts` and writes a report folder::

    REPORT/report.json    flat metrics (<key>, <key>_floor, <key>_ci = [low, high]), goals,
                          alarms, notes; NaN -> null
    REPORT/report.md      tables: metric, value, interval, floor, ratio, goal; alarms; notes
    REPORT/figures/*.png  the figures of :mod:`course_lib.evaluation.plots`

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
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from course_lib.cohort import Cohort
from course_lib.evaluation.folders import (
    SIMULATOR_OUTCOME_COLUMNS,
    EvaluationInputError,
    FolderEvaluation,
    evaluate_folders,
    is_simulated_cohort,
    load_folder,
)
from course_lib.evaluation.suite import PRIVACY_KEYS, SEQUENCE_KEYS, UTILITY_KEYS
from course_lib.files import atomic_write_bytes, atomic_write_text

__all__ = [
    "SIMULATOR_OUTCOME_COLUMNS",
    "EvaluationInputError",
    "FolderEvaluation",
    "evaluate_folders",
    "format_report_table",
    "is_simulated_cohort",
    "load_folder",
    "save_figure",
    "write_report",
]

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
FIGURES_DIR = "figures"

# The headline metrics, in report order.
HEADLINE_KEYS = (
    "detection_auc",
    "alpha_precision",
    "beta_recall",
    "authenticity",
    "js_divergence",
    "top100_overlap",
    "cooccurrence_score",
    "unigram_r2",
    "pair_r2",
    "sequential_r2",
    "jaccard",
    "visits_per_patient_wasserstein",
    "codes_per_visit_wasserstein",
    "days_between_visits_wasserstein",
    "age_violation_rate",
    "sex_violation_rate",
    "duplicate_rate",
    "unique_codes",
    "coverage",
    "top_code_share",
    "exact_copy_rate",
    "dcr_holdout_share",
    "mia_accuracy",
    "attribute_inference_f1",
    "tstr_oracle_auroc",
    "trtr_auroc",
    "augmentation_auroc",
)
FAMILIES: dict[str, tuple[str, ...]] = {
    "Fidelity": ("detection_auc", "alpha_precision", "beta_recall", "authenticity"),
    "Coherence": (
        "js_divergence",
        "js_distance",
        "top100_overlap",
        "cooccurrence_score",
        "npmi",
        "unigram_r2",
        "pair_r2",
        "sequential_r2",
        "jaccard",
    ),
    "Sequence": SEQUENCE_KEYS,
    "Validity": (
        "age_violation_rate",
        "age_violation_patient_rate",
        "sex_violation_rate",
        "sex_violation_patient_rate",
        "unknown_code_rate",
        "duplicate_rate",
        "cross_visit_repeat_rate",
    ),
    "Diversity": (
        "unique_codes",
        "coverage",
        "top_code_share",
        "codes_per_patient_mean",
        "codes_per_patient_std",
        "codes_per_patient_wasserstein",
        "chapters_per_patient_mean",
        "chapters_per_patient_std",
        "chapters_per_patient_wasserstein",
        "chapters_per_patient_mode_share",
        "unique_codes_real",
        "top_code_share_real",
        "chapters_per_patient_std_real",
        "chapters_per_patient_mode_share_real",
    ),
    "Privacy": PRIVACY_KEYS,
    "Utility": UTILITY_KEYS,
}


# ------------------------------------------------------------------------------ goals


@dataclass(frozen=True)
class Goal:
    """A target from the course's issue: ``met(value, floor)`` is None when it cannot be
    judged (a NaN value, or a relative goal without a floor)."""

    text: str
    met: Callable[[float, float], bool | None]


def _absolute(test: Callable[[float], bool]) -> Callable[[float, float], bool | None]:
    return lambda value, floor: None if math.isnan(value) else bool(test(value))


def _js_goal(value: float, floor: float) -> bool | None:
    if math.isnan(value) or math.isnan(floor):
        return None
    return value <= 1.5 * floor


GOALS: dict[str, Goal] = {
    "detection_auc": Goal("<= 0.6", _absolute(lambda value: value <= 0.6)),
    "js_divergence": Goal("<= 1.5x floor", _js_goal),
    "top100_overlap": Goal(">= 0.85", _absolute(lambda value: value >= 0.85)),
    "age_violation_rate": Goal("< 0.5%", _absolute(lambda value: value < 0.005)),
    "sex_violation_rate": Goal("< 0.1%", _absolute(lambda value: value < 0.001)),
    "duplicate_rate": Goal("0%", _absolute(lambda value: value == 0.0)),
    "coverage": Goal(">= 70%", _absolute(lambda value: value >= 0.70)),
}


def goal_results(evaluation: Mapping[str, float]) -> dict[str, bool | None]:
    """``metric -> met`` for every goal whose metric the evaluation has."""
    return {
        key: goal.met(float(evaluation[key]), float(evaluation.get(f"{key}_floor", math.nan)))
        for key, goal in GOALS.items()
        if key in evaluation
    }


# ------------------------------------------------------------------------------ formatting


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) >= 1:
        return f"{int(value)}"
    return f"{value:.4g}"


def _ratio(value: float, floor: float) -> float:
    if math.isnan(value) or math.isnan(floor) or floor == 0:
        return math.nan
    return value / floor


def _status(met: bool | None) -> str:
    return "n/a" if met is None else ("pass" if met else "FAIL")


def _interval(evaluation: Mapping[str, float], key: str) -> str:
    interval = getattr(evaluation, "intervals", {}).get(key)
    if interval is None or any(math.isnan(bound) for bound in interval):
        return "n/a"
    return f"[{_number(interval[0])}, {_number(interval[1])}]"


COLUMNS = ["metric", "value", "interval", "floor", "ratio", "goal", "status"]


def _rows(evaluation: Mapping[str, float], keys: Sequence[str]) -> list[list[str]]:
    results = goal_results(evaluation)
    rows = []
    for key in keys:
        if key not in evaluation:
            continue
        value = float(evaluation[key])
        floor = float(evaluation.get(f"{key}_floor", math.nan))
        goal = GOALS.get(key)
        rows.append(
            [
                key,
                _number(value),
                _interval(evaluation, key),
                _number(floor),
                _number(_ratio(value, floor)),
                goal.text if goal else "",
                _status(results[key]) if goal else "",
            ]
        )
    return rows


def format_report_table(evaluation: Mapping[str, float], *, all_metrics: bool = False) -> str:
    """The headline metrics (all of them with ``all_metrics``) as a plain-text table for the
    console: value, bootstrap interval, floor, value/floor and the issue's goals with
    pass/FAIL, then the alarms."""
    keys = list(evaluation) if all_metrics else list(HEADLINE_KEYS)
    keys = [key for key in keys if not key.endswith("_floor")]
    rows = [COLUMNS, *_rows(evaluation, keys)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    alarms = list(getattr(evaluation, "alarms", []))
    lines.append("")
    lines.append("alarms: " + ("none" if not alarms else ""))
    lines.extend(f"  ! {alarm}" for alarm in alarms)
    return "\n".join(lines)


def _markdown_table(rows: list[list[str]], columns: Sequence[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines.extend("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)
    return lines


def _markdown_families(evaluation: Mapping[str, float]) -> list[str]:
    lines: list[str] = []
    listed: set[str] = set()
    families = dict(FAMILIES)
    families["Other"] = tuple(
        key
        for key in evaluation
        if not key.endswith("_floor") and not any(key in keys for keys in FAMILIES.values())
    )
    for family, keys in families.items():
        rows = _rows(evaluation, [key for key in keys if key not in listed])
        listed.update(keys)
        if rows:
            lines += [f"### {family}", "", *_markdown_table([r[:5] for r in rows], COLUMNS[:5])]
            lines.append("")
    return lines


def report_markdown(
    evaluation: Mapping[str, float], notes: Sequence[str], figures: Sequence[str]
) -> str:
    """``report.md``: headline table with goals, alarms, every metric by family, figures, notes."""
    n_patients = getattr(evaluation, "n_patients", 0)
    lines = [
        "# Synthetic cohort evaluation",
        "",
        f"Synthetic and reference samples: {n_patients} patients each for size-dependent "
        "metrics. **interval** = bootstrap interval of the value (notes say how); **floor** = "
        "the same metric for a second real sample (what a perfect generator scores); "
        "**ratio** = value / floor (about 1 for a perfect generator; n/a where the floor is 0 "
        "or missing).",
        "",
        "## Headline metrics",
        "",
        *_markdown_table(_rows(evaluation, HEADLINE_KEYS), COLUMNS),
        "",
        "## Alarms",
        "",
    ]
    alarms = list(getattr(evaluation, "alarms", []))
    lines.extend([f"- {alarm}" for alarm in alarms] or ["None."])
    lines += ["", "## All metrics", "", *_markdown_families(evaluation)]
    if figures:
        lines += ["## Figures", ""]
        lines.extend(f"![{Path(name).stem}]({name})" for name in figures)
        lines.append("")
    lines += ["## Notes", ""]
    lines.extend([f"- {note}" for note in notes] or ["None."])
    return "\n".join(lines) + "\n"


def _json_value(value: float) -> float | None:
    return value if math.isfinite(value) else None


def report_json(
    evaluation: Mapping[str, float], notes: Sequence[str], figures: Sequence[str]
) -> str:
    """``report.json``: flat ``<key>``/``<key>_floor`` numbers (NaN -> null), ``<key>_ci``
    ([low, high] or null), ``n_patients``, ``goals`` (metric -> {goal, met}), ``alarms``,
    ``notes``, ``figures`` (relative paths)."""
    payload: dict[str, object] = {
        key: _json_value(float(value)) for key, value in evaluation.items()
    }
    for key, (low, high) in getattr(evaluation, "intervals", {}).items():
        bounds = [_json_value(float(low)), _json_value(float(high))]
        payload[f"{key}_ci"] = None if None in bounds else bounds
    payload["n_patients"] = int(getattr(evaluation, "n_patients", 0))
    payload["goals"] = {
        key: {"goal": GOALS[key].text, "met": met} for key, met in goal_results(evaluation).items()
    }
    payload["alarms"] = list(getattr(evaluation, "alarms", []))
    payload["notes"] = list(notes)
    payload["figures"] = list(figures)
    return json.dumps(payload, indent=2, allow_nan=False) + "\n"


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


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The ``evaluate`` flags."""
    folder = {"type": Path, "metavar": "DIR"}
    parser.add_argument("--real", **folder, required=True, help="real test cohort (MIMIC-III)")
    parser.add_argument("--synthetic", **folder, required=True, help="synthetic cohort")
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
    parser.add_argument("--seed", type=_seed, default=0, help="seed of splits, samples and fits")
    parser.add_argument("--no-figures", action="store_true", help="write report.json/md only")


def _print_summary(evaluation: FolderEvaluation, out_dir: Path, figures: bool) -> None:
    print(format_report_table(evaluation))
    print()
    print(f"report: {out_dir / REPORT_MD} and {out_dir / REPORT_JSON}")
    if figures:
        print(f"figures: {out_dir / FIGURES_DIR}/")


def run_cli(args: argparse.Namespace) -> int:
    """Evaluate, write the report, print the headline table; bad input exits with one line."""
    try:
        evaluation = evaluate_folders(
            args.real,
            args.synthetic,
            train_dir=args.train,
            reference_dir=args.reference,
            seed=args.seed,
        )
        out_dir = write_report(
            evaluation,
            args.out,
            evaluation.real,
            evaluation.synthetic,
            figures=not args.no_figures,
        )
    except EvaluationInputError as error:
        raise SystemExit(f"course_lib evaluate: error: {error}") from None
    _print_summary(evaluation, out_dir, not args.no_figures)
    return 0
