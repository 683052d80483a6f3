"""Counts, long-tail quantiles, top codes and validity of a cohort; one overview figure (lesson 01).

The same summary describes the simulated ground truth, a MIMIC-III extract and a generated
cohort, so the numbers that reveal mode collapse (distinct codes, top-code share, codes per
patient) and invalid output (MCE violations, repeated codes) can be read side by side.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from course_lib import icd9
from course_lib.cohort import Cohort

QUANTILES = (0, 25, 50, 75, 90, 99, 100)
QUANTILE_NAMES = ("min", "p25", "p50", "p75", "p90", "p99", "max")
OVERVIEW_FILE = "cohort_overview.png"


def _quantiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {name: float("nan") for name in QUANTILE_NAMES}
    points = np.percentile(np.asarray(values, dtype=float), QUANTILES)
    return {name: float(value) for name, value in zip(QUANTILE_NAMES, points, strict=True)}


def summarize(cohort: Cohort, top: int = 20) -> dict:
    """Plain-data summary of ``cohort`` (JSON-serialisable).

    Codes per patient count every code of every visit (repeats across visits kept); a code's
    share is the share of patients with it at least once. MCE violations count (visit, code)
    pairs that break an age/sex rule at that visit's age; unknown codes are not in ICD-9-CM v32.
    """
    patients = cohort.patients
    n_patients = len(patients)
    patient_counts: Counter[str] = Counter()
    violations: Counter[str] = Counter()
    repeated = unknown = 0
    table = icd9.code_table()
    for patient in patients:
        patient_counts.update(patient.code_set)
        for visit in patient.visits:
            repeated += len(visit.codes) - len(set(visit.codes))
            for code in visit.codes:
                if code not in table:
                    unknown += 1
                elif (rule := icd9.check_code(code, visit.age, patient.sex)) is not None:
                    violations[rule] += 1
    visits_per_patient = [len(p.visits) for p in patients]
    codes_per_visit = [len(v.codes) for p in patients for v in p.visits]
    top_codes = [
        {
            "code": code,
            "dotted": icd9.to_dotted(code),
            "description": icd9.describe(code),
            "patients": count,
            "share": count / n_patients,
        }
        for code, count in sorted(patient_counts.items(), key=lambda item: (-item[1], item[0]))[
            :top
        ]
    ]
    sexes = Counter(p.sex for p in patients)
    summary = {
        "patients": n_patients,
        "visits": sum(visits_per_patient),
        "codes": sum(codes_per_visit),
        "distinct_codes": len(patient_counts),
        "sex": {"F": sexes.get("F", 0), "M": sexes.get("M", 0)},
        "age_at_first_visit": _quantiles([p.age for p in patients]),
        "visits_per_patient": _quantiles(visits_per_patient),
        "codes_per_visit": _quantiles(codes_per_visit),
        "codes_per_patient": _quantiles([len(p.codes) for p in patients]),
        "distinct_codes_per_patient": _quantiles([len(p.code_set) for p in patients]),
        "top_codes": top_codes,
        "top_code_share": top_codes[0]["share"] if top_codes else 0.0,
        "mce_violations": sum(violations.values()),
        "mce_violations_by_rule": dict(sorted(violations.items())),
        "repeated_codes_in_visit": repeated,
        "unknown_codes": unknown,
        "outcomes": _outcome_summary(cohort),
    }
    return summary


def _outcome_summary(cohort: Cohort) -> dict | None:
    """Prevalences of the outcome labels (the columns present), or None without outcomes."""
    outcomes = cohort.outcomes
    if outcomes is None:
        return None
    result: dict[str, object] = {"rows": len(outcomes)}
    for column in ("LVEF_REDUCED", "EVENT_OBSERVED"):
        if column in outcomes:
            result[column] = float(outcomes[column].mean())
    if {"EVENT_DAYS", "EVENT_OBSERVED"} <= set(outcomes.columns):
        from course_lib.simulate import HORIZONS_DAYS

        observed = outcomes["EVENT_OBSERVED"] == 1
        for days in HORIZONS_DAYS:
            result[f"EVENT_WITHIN_{days}D"] = float(
                (observed & (outcomes["EVENT_DAYS"] <= days)).mean()
            )
    if "RISK_CATEGORY" in outcomes:
        shares = outcomes["RISK_CATEGORY"].value_counts(normalize=True).sort_index()
        result["RISK_CATEGORY"] = {int(k): float(v) for k, v in shares.items()}
    return result


def _format_quantiles(name: str, values: dict[str, float]) -> str:
    cells = "  ".join(f"{key} {value:g}" for key, value in values.items())
    return f"  {name:<28}{cells}"


def format_summary(summary: dict) -> str:
    """The summary as a few aligned lines of text, for a terminal or a lesson's output cell."""
    lines = [
        f"patients {summary['patients']:,}  visits {summary['visits']:,}  codes {summary['codes']:,}"
        f"  distinct codes {summary['distinct_codes']:,}",
        f"sex F {summary['sex']['F']:,}  M {summary['sex']['M']:,}",
        "quantiles:",
    ]
    for key in (
        "age_at_first_visit",
        "visits_per_patient",
        "codes_per_visit",
        "codes_per_patient",
        "distinct_codes_per_patient",
    ):
        rounded = {k: round(v, 1) for k, v in summary[key].items()}
        lines.append(_format_quantiles(key.replace("_", " "), rounded))
    rules = ", ".join(f"{k} {v}" for k, v in summary["mce_violations_by_rule"].items())
    lines.append(
        f"MCE age/sex violations {summary['mce_violations']}"
        + (f" ({rules})" if rules else "")
        + f"  repeated codes in a visit {summary['repeated_codes_in_visit']}"
        + f"  unknown codes {summary['unknown_codes']}"
    )
    lines.append(f"top codes (share of patients; the top one: {summary['top_code_share']:.1%}):")
    for rank, entry in enumerate(summary["top_codes"], start=1):
        lines.append(
            f"  {rank:>2}. {entry['dotted']:<7} {entry['share']:6.1%}  {entry['description']}"
        )
    outcomes = summary.get("outcomes")
    if outcomes:
        cells = []
        for key, value in outcomes.items():
            if key == "RISK_CATEGORY":
                cells.append("RISK_CATEGORY " + " ".join(f"{k}:{v:.0%}" for k, v in value.items()))
            elif key != "rows":
                cells.append(f"{key} {value:.1%}")
        lines.append("outcomes: " + "  ".join(cells))
    return "\n".join(lines)


def plot_cohort_overview(cohort: Cohort, path: str | Path) -> Path:
    """Save one PNG: age at first visit by sex, and the code-frequency rank plot (log-log).

    A straight-ish falling line on the right panel is the long (Zipf-like) tail; a collapsed
    generator shows a short cliff instead. The file is written to a temporary name, then renamed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = Counter(code for patient in cohort for code in patient.code_set)
    frequencies = np.sort(np.fromiter(counts.values(), dtype=float))[::-1]
    figure, (age_axis, rank_axis) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.arange(0, 95, 5)
    ages_by_sex = {sex: [p.age for p in cohort if p.sex == sex] for sex in ("F", "M")}
    age_axis.hist(
        list(ages_by_sex.values()),
        bins=bins,
        color=["tab:red", "tab:blue"],
        label=[f"{sex} ({len(ages):,})" for sex, ages in ages_by_sex.items()],
    )
    age_axis.set(xlabel="age at first visit (years)", ylabel="patients", title="Age and sex")
    age_axis.legend()
    if len(frequencies):
        ranks = np.arange(1, len(frequencies) + 1)
        rank_axis.loglog(ranks, frequencies / max(len(cohort), 1), color="tab:green")
    rank_axis.set(
        xlabel="code rank",
        ylabel="share of patients with the code",
        title=f"Code frequency long tail ({len(frequencies):,} distinct codes)",
    )
    figure.tight_layout()
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        figure.savefig(temporary, format="png", dpi=110)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        plt.close(figure)
        Path(temporary).unlink(missing_ok=True)
    return path


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse reports anything else, exit code 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from course_lib.cli import add_cohort_arguments

    add_cohort_arguments(parser)
    parser.add_argument(
        "--plots", type=Path, metavar="DIR", help=f"folder for {OVERVIEW_FILE} (optional)"
    )
    parser.add_argument("--top", type=_positive_int, default=20, help="how many top codes to list")


def run_cli(args: argparse.Namespace) -> int:
    """Print the loader's notes (rows skipped and why, the age mapping), then the summary.

    ``--plots`` is checked before the cohort is read, so a bad path costs no loading.
    """
    from course_lib.cli import check_output_path, load_cohort_arg

    if args.plots is not None:
        check_output_path(args.plots, "--plots", allow_nonempty=True)
    cohort = load_cohort_arg(args)
    print(format_summary(summarize(cohort, top=args.top)))
    if args.plots is not None:
        print(f"saved {plot_cohort_overview(cohort, args.plots / OVERVIEW_FILE)}")
    return 0
