"""``python -m course_lib evaluate``: score a synthetic cohort against real data (lesson 09).

Reads folders in the MIMIC-III layout, runs :func:`course_lib.evaluation.evaluate_cohorts`
and writes a report folder::

    REPORT/report.json    flat metrics (<key>, <key>_floor), goals, alarms, notes; NaN -> null
    REPORT/report.md      tables: metric, value, floor, ratio, goal; the alarms; the notes
    REPORT/figures/*.png  the figures of :mod:`course_lib.plots`

Every number is read against its **floor**, the same metric for a second real sample. That
sample is ``--reference`` (a held-out split, or a second simulator draw), or, without it, one
half of ``--real`` split at random with the seed (the other half is then the real test
sample); the report says which.

Writing is all or nothing per run: every file is first rendered into a hidden staging folder
inside REPORT, then renamed into place, ``report.json`` last. A failure while computing or
drawing leaves a previous report untouched; a ``report.json`` is only ever next to the
``report.md`` and figures of its own run (other files in REPORT are never touched).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from course_lib import icd9
from course_lib.cohort import Cohort
from course_lib.evaluation.floor import disjoint_splits
from course_lib.evaluation.suite import PRIVACY_KEYS, Evaluation, evaluate_cohorts
from course_lib.evaluation.utility import DEFAULT_OUTCOME

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
FIGURES_DIR = "figures"
MIMIC_FILES = "PATIENTS.csv, ADMISSIONS.csv and DIAGNOSES_ICD.csv"
# A folder whose diagnosis codes are more than this share unknown to ICD-9-CM v32 is taken to
# use another code system (ICD-10, procedure codes, token ids); below it, the unknown codes
# are dropped and counted (real MIMIC-III holds a few codes retired before v32).
MAX_UNKNOWN_CODE_SHARE = 0.10
# OUTCOMES.csv columns that course_lib.simulate writes: their presence marks simulated data,
# whose ground-truth outcome model can label synthetic patients.
SIMULATOR_OUTCOME_COLUMNS = ("LVEF_REDUCED", "EVENT_DAYS", "EVENT_OBSERVED", "RISK_CATEGORY")

# The headline metrics, in report order.
HEADLINE_KEYS = (
    "js_divergence",
    "top100_overlap",
    "cooccurrence_score",
    "unigram_r2",
    "pair_r2",
    "sequential_r2",
    "jaccard",
    "age_violation_rate",
    "sex_violation_rate",
    "duplicate_rate",
    "unique_codes",
    "coverage",
    "top_code_share",
    "exact_copy_rate",
    "mia_accuracy",
    "tstr_auroc",
    "trtr_auroc",
)
FAMILIES: dict[str, tuple[str, ...]] = {
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
        "unique_codes_real",
        "top_code_share_real",
        "chapters_per_patient_std_real",
    ),
    "Privacy": PRIVACY_KEYS,
    "Utility": ("tstr_auroc", "trtr_auroc"),
}


class EvaluationInputError(ValueError):
    """An input folder the evaluation cannot use; the message names the folder and what was
    expected."""


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


# ------------------------------------------------------------------------------ loading


@dataclass(frozen=True)
class FolderEvaluation(Evaluation):
    """An :class:`Evaluation` that also keeps what the report needs besides the numbers:
    ``notes`` (how the samples were made) and the cohorts compared (``real`` is the real
    test sample, ``reference`` the floor's sample)."""

    notes: list[str] = field(default_factory=list)
    real: Cohort | None = field(default=None, repr=False, compare=False)
    synthetic: Cohort | None = field(default=None, repr=False, compare=False)
    reference: Cohort | None = field(default=None, repr=False, compare=False)


def _diagnosis_codes(directory: Path) -> pd.Series:
    """The non-empty dotless codes of DIAGNOSES_ICD.csv(.gz) (the file is known to exist)."""
    path = directory / "DIAGNOSES_ICD.csv"
    if not path.is_file():
        path = directory / "DIAGNOSES_ICD.csv.gz"
    codes = pd.read_csv(
        path,
        usecols=lambda column: str(column).strip().upper() == "ICD9_CODE",
        dtype=str,
        keep_default_na=False,
    ).iloc[:, 0]
    codes = codes.str.strip().str.upper().str.replace(".", "", regex=False)
    return codes[codes != ""]


def load_folder(directory: str | Path, role: str) -> tuple[Cohort, float]:
    """Load one MIMIC-III folder for the evaluation; return the cohort and the share of its
    diagnosis codes that are not ICD-9-CM v32 (dropped).

    ``role`` (real, synthetic, train, reference) names the folder in every error.
    """
    from course_lib.mimic import MimicFormatError, load_mimic

    directory = Path(directory)
    where = f"{role} folder {directory}"
    if not directory.is_dir():
        raise EvaluationInputError(
            f"{where}: not found (expected a folder in the MIMIC-III layout with {MIMIC_FILES})"
        )
    try:
        cohort = load_mimic(directory, unknown_codes="skip")
    except MimicFormatError as error:
        raise EvaluationInputError(f"{where}: {error}") from error
    codes = _diagnosis_codes(directory)
    unknown = codes[~codes.isin(icd9.code_table().keys())]
    unknown_share = len(unknown) / len(codes) if len(codes) else 0.0
    if unknown_share > MAX_UNKNOWN_CODE_SHARE:
        examples = ", ".join(repr(code) for code in sorted(set(unknown))[:5])
        raise EvaluationInputError(
            f"{where}: {unknown_share:.0%} of the {len(codes)} codes in DIAGNOSES_ICD "
            f"are not ICD-9-CM diagnosis codes (e.g. {examples}); expected dotless ICD-9-CM "
            "codes such as '4019', 'V3000' or 'E8889' (is this ICD-10 or another code system?)"
        )
    if len(cohort) == 0:
        raise EvaluationInputError(
            f"{where}: no patients with diagnoses (expected at least one patient with an "
            "admission and an ICD-9-CM code)"
        )
    return cohort, unknown_share


def _check_against_real(cohort: Cohort, real: Cohort, role: str, directory: Path, real_dir: Path):
    codes = {code for patient in cohort for code in patient.code_set}
    real_codes = {code for patient in real for code in patient.code_set}
    if not codes & real_codes:
        raise EvaluationInputError(
            f"{role} folder {directory}: none of its {len(codes)} distinct codes occurs in the "
            f"real folder {real_dir} (expected the same code system and vocabulary: dotless "
            "ICD-9-CM diagnosis codes of the same population)"
        )
    if role in ("train", "reference"):
        shared = {p.subject_id for p in cohort} & {p.subject_id for p in real}
        if shared:
            raise EvaluationInputError(
                f"{role} folder {directory}: {len(shared)} SUBJECT_IDs also in the real folder "
                f"{real_dir} (e.g. {min(shared)}); expected patients disjoint from the real ones"
            )


def _has_outcome(cohort: Cohort) -> bool:
    return cohort.outcomes is not None and DEFAULT_OUTCOME in cohort.outcomes.columns


def is_simulated_cohort(cohort: Cohort) -> bool:
    """True when the outcomes table has the simulator's columns (its outcome model can label)."""
    outcomes = cohort.outcomes
    return outcomes is not None and set(SIMULATOR_OUTCOME_COLUMNS) <= set(outcomes.columns)


def evaluate_folders(
    real_dir: str | Path,
    synthetic_dir: str | Path,
    *,
    train_dir: str | Path | None = None,
    reference_dir: str | Path | None = None,
    seed: int = 0,
) -> FolderEvaluation:
    """Load the folders, check they fit together, and evaluate with floors.

    Without ``reference_dir`` the real folder is split with ``seed`` into two disjoint halves
    (real test sample, reference). When the real folder's OUTCOMES.csv comes from the course's
    simulator, synthetic patients are labelled by its ground-truth outcome model
    (:func:`course_lib.simulate.simulate_outcomes`) so that TSTR can be computed.
    ``unknown_code_rate`` is the share of the synthetic folder's codes outside ICD-9-CM v32
    (the loader drops them, so the cohort itself would show 0). Raises
    :class:`EvaluationInputError` naming the folder at fault.
    """
    real_dir, synthetic_dir = Path(real_dir), Path(synthetic_dir)
    notes: list[str] = []
    real, _ = load_folder(real_dir, "real")
    synthetic, synthetic_unknown = load_folder(synthetic_dir, "synthetic")
    _check_against_real(synthetic, real, "synthetic", synthetic_dir, real_dir)
    loaded = {"real": real, "synthetic": synthetic}
    train = reference = None
    if train_dir is not None:
        train, _ = load_folder(train_dir, "train")
        _check_against_real(train, real, "train", Path(train_dir), real_dir)
        loaded["train"] = train
    if reference_dir is not None:
        reference, _ = load_folder(reference_dir, "reference")
        _check_against_real(reference, real, "reference", Path(reference_dir), real_dir)
        loaded["reference"] = reference
    for role, cohort in loaded.items():
        notes.extend(f"{role}: {note}" for note in cohort.notes)

    if reference is None:
        if len(real) < 2:
            raise EvaluationInputError(
                f"real folder {real_dir}: {len(real)} patient, too few to split into a real "
                "test half and a reference half (expected at least 2, or pass a reference folder)"
            )
        half = len(real) // 2
        real, reference = disjoint_splits(real, [len(real) - half, half], seed=seed)
        notes.append(
            f"No reference folder: the real folder was split at random (seed {seed}) into two "
            f"disjoint halves, {len(real)} patients as the real test sample and "
            f"{len(reference)} as the reference sample that gives every floor."
        )
    else:
        notes.append(f"Floors: the reference folder {reference_dir} ({len(reference)} patients).")

    labeler = None
    if is_simulated_cohort(real):
        from course_lib.simulate import simulate_outcomes

        def labeler(patients):
            return simulate_outcomes(patients, seed)

        unlabelled = [
            role
            for role, cohort in (
                ("synthetic", synthetic),
                ("train", train),
                ("reference", reference),
            )
            if cohort is not None and not _has_outcome(cohort)
        ]
        if unlabelled:
            notes.append(
                f"Utility: the {' and '.join(unlabelled)} patients carry no {DEFAULT_OUTCOME}; "
                "since the real OUTCOMES.csv comes from the course's simulator, they were "
                "labelled with its ground-truth outcome model, "
                f"course_lib.simulate.simulate_outcomes(patients, seed={seed}). Real MIMIC-III "
                "has no such model."
            )
    elif not _has_outcome(real):
        notes.append(
            f"Utility: the real folder has no OUTCOMES.csv with {DEFAULT_OUTCOME}, so "
            "tstr_auroc and trtr_auroc are null."
        )
    if train is None:
        notes.append(
            "No train folder: privacy metrics and trtr_auroc are null, pair statistics "
            "come from the real test sample."
        )

    evaluation = evaluate_cohorts(
        synthetic, real, train=train, reference=reference, outcome_labeler=labeler, seed=seed
    )
    metrics = dict(evaluation.metrics)
    # load_mimic dropped the synthetic codes outside ICD-9-CM; report their share instead of 0.
    metrics["unknown_code_rate"] = synthetic_unknown
    notes.append(
        f"Synthetic and reference samples were cut to {evaluation.n_patients} patients each "
        f"(seed {seed}) so that size-dependent metrics compare."
    )
    return FolderEvaluation(
        metrics,
        list(evaluation.alarms),
        evaluation.n_patients,
        notes=notes,
        real=real,
        synthetic=synthetic,
        reference=reference,
    )


# ------------------------------------------------------------------------------ formatting


def _number(value: float) -> str:
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
                _number(floor),
                _number(_ratio(value, floor)),
                goal.text if goal else "",
                _status(results[key]) if goal else "",
            ]
        )
    return rows


COLUMNS = ["metric", "value", "floor", "ratio", "goal", "status"]


def format_report_table(evaluation: Mapping[str, float], *, all_metrics: bool = False) -> str:
    """The headline metrics (all of them with ``all_metrics``) as a plain-text table for the
    console: value, floor, value/floor and the issue's goals with pass/FAIL, then the alarms."""
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


def report_markdown(
    evaluation: Mapping[str, float], notes: Sequence[str], figures: Sequence[str]
) -> str:
    """``report.md``: headline table with goals, alarms, every metric by family, figures, notes."""
    n_patients = getattr(evaluation, "n_patients", 0)
    lines = [
        "# Synthetic cohort evaluation",
        "",
        f"Synthetic and reference samples: {n_patients} patients each. **floor** = the same "
        "metric for a second real sample (what a perfect generator scores); **ratio** = "
        "value / floor (about 1 for a perfect generator; n/a where the floor is 0 or missing).",
        "",
        "## Headline metrics",
        "",
        *_markdown_table(_rows(evaluation, HEADLINE_KEYS), COLUMNS),
        "",
        "## Alarms",
        "",
    ]
    alarms = list(getattr(evaluation, "alarms", []))
    if alarms:
        lines.extend(f"- {alarm}" for alarm in alarms)
    else:
        lines.append("None.")
    lines += ["", "## All metrics", ""]
    listed: set[str] = set()
    for family, keys in FAMILIES.items():
        rows = _rows(evaluation, keys)
        listed.update(keys)
        if rows:
            lines += [f"### {family}", "", *_markdown_table([r[:4] for r in rows], COLUMNS[:4]), ""]
    others = [key for key in evaluation if key not in listed and not key.endswith("_floor")]
    if others:
        rows = _rows(evaluation, others)
        lines += ["### Other", "", *_markdown_table([r[:4] for r in rows], COLUMNS[:4]), ""]
    if figures:
        lines += ["## Figures", ""]
        lines.extend(f"![{Path(name).stem}]({name})" for name in figures)
        lines.append("")
    lines += ["## Notes", ""]
    if notes:
        lines.extend(f"- {note}" for note in notes)
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_json(
    evaluation: Mapping[str, float], notes: Sequence[str], figures: Sequence[str]
) -> str:
    """``report.json``: flat ``<key>``/``<key>_floor`` numbers (NaN -> null), ``n_patients``,
    ``goals`` (metric -> {goal, met}), ``alarms``, ``notes``, ``figures`` (relative paths)."""
    payload: dict[str, object] = {
        key: _json_value(float(value)) for key, value in evaluation.items()
    }
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


def _draw_figures(
    evaluation: Mapping[str, float],
    real: Cohort,
    synthetic: Cohort,
    reference: Cohort | None,
    folder: Path,
) -> list[str]:
    from course_lib import plots

    makers = {
        "frequency_rank.png": lambda: plots.frequency_rank(real, synthetic, reference=reference),
        "top_codes.png": lambda: plots.top_codes_side_by_side(real, synthetic),
        "per_patient_histograms.png": lambda: plots.per_patient_histograms(real, synthetic),
        "cooccurrence_heatmaps.png": lambda: plots.cooccurrence_heatmaps(real, synthetic),
        "validity.png": lambda: plots.validity_bars(evaluation),
    }
    written = []
    for name, make in makers.items():
        plots.save_figure(make(), folder / name)
        written.append(f"{FIGURES_DIR}/{name}")
    return written


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o644)


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

    ``notes`` are added to those the evaluation carries (a :class:`FolderEvaluation`).
    Everything is rendered in a staging folder first and renamed into place with
    ``report.json`` last (module docstring); figure files of an earlier run that this run does
    not draw are removed so that the folder never mixes runs.
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
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".report-staging-"))
    try:
        figure_names: list[str] = []
        if draw:
            figure_names = _draw_figures(
                evaluation, real, synthetic, reference, staging / FIGURES_DIR
            )
        _write_text(staging / REPORT_MD, report_markdown(evaluation, all_notes, figure_names))
        _write_text(staging / REPORT_JSON, report_json(evaluation, all_notes, figure_names))
        (out_dir / REPORT_JSON).unlink(missing_ok=True)  # no stale json beside new files
        if figure_names:
            (out_dir / FIGURES_DIR).mkdir(exist_ok=True)
        for name in FIGURE_FILES:
            relative = f"{FIGURES_DIR}/{name}"
            if relative in figure_names:
                os.replace(staging / relative, out_dir / relative)
            else:
                (out_dir / relative).unlink(missing_ok=True)
        os.replace(staging / REPORT_MD, out_dir / REPORT_MD)
        os.replace(staging / REPORT_JSON, out_dir / REPORT_JSON)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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
    parser.add_argument(
        "--real",
        type=Path,
        metavar="DIR",
        required=True,
        help="real test cohort (MIMIC-III layout)",
    )
    parser.add_argument(
        "--synthetic",
        type=Path,
        metavar="DIR",
        required=True,
        help="synthetic cohort (MIMIC-III layout)",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", required=True, help="report folder (created)"
    )
    parser.add_argument(
        "--train",
        type=Path,
        metavar="DIR",
        help="real training split the generator saw (privacy, TRTR)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="DIR",
        help="second real sample for the floors (held-out split or second simulator draw); "
        "default: half of --real",
    )
    parser.add_argument("--seed", type=_seed, default=0, help="seed of splits, samples and fits")
    parser.add_argument("--no-figures", action="store_true", help="write report.json/md only")


def run_cli(args: argparse.Namespace) -> int:
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
    print(format_report_table(evaluation))
    print()
    print(f"report: {out_dir / REPORT_MD} and {out_dir / REPORT_JSON}")
    if not args.no_figures:
        print(f"figures: {out_dir / FIGURES_DIR}/")
    return 0
