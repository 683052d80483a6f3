"""The report's tables: headline metrics, families, goals, and the Markdown and JSON texts
(lesson 09). :mod:`course_lib.evaluation.report` writes them; kept apart so that each module
stays short."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

from course_lib.evaluation.suite import PRIVACY_KEYS, SEQUENCE_KEYS, UTILITY_KEYS
from course_lib.evaluation.uncertainty import LEVEL

# The headline metrics, in report order.
# Headline keys that need the trained model: the likelihood ones (evaluate --run, pipeline)
# and the conditioning ones (pipeline only: they generate all-female and all-male cohorts).
LIKELIHOOD_HEADLINE = (
    "mia_likelihood_auc",
    "perplexity",
    "unigram_perplexity",
)
CONDITIONING_HEADLINE = (
    "age_violation_rate_all_female",
    "age_violation_rate_all_male",
    "sex_violation_rate_all_female",
    "sex_violation_rate_all_male",
    "prompt_information_nats",
    "prompt_information_true_nats",
    "prompt_discrimination_nats",
    "prompt_discrimination_true_nats",
)
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
    *CONDITIONING_HEADLINE,
    "duplicate_rate",
    "unique_codes",
    "coverage",
    "top_code_share",
    "exact_copy_rate",
    "dcr_holdout_share",
    "mia_accuracy",
    "mia_likelihood_auc",
    "attribute_inference_f1",
    "perplexity",
    "unigram_perplexity",
    "tstr_auroc",
    "tstr_oracle_auroc",
    "trtr_auroc",
    "augmentation_auroc",
)
MODEL_HEADLINE_KEYS = (*LIKELIHOOD_HEADLINE, *CONDITIONING_HEADLINE)  # need the model
CONDITIONING_KEYS = (
    "prompt_information_nats",
    "prompt_information_true_nats",
    "prompt_information_ratio",
    "prompt_information_sex_nats",
    "prompt_information_sex_true_nats",
    "prompt_information_age_nats",
    "prompt_information_age_true_nats",
    "prompt_discrimination_nats",
    "prompt_discrimination_true_nats",
    "sex_violation_rate_all_female",
    "sex_violation_rate_all_male",
    "age_violation_rate_all_female",
    "age_violation_rate_all_male",
    "female_code_share_female_prompt",
    "female_code_share_male_prompt",
    "female_code_share_real_female",
    "female_code_share_real_male",
    "newborn_code_share_newborns",
    "newborn_code_share_adults",
    "newborn_code_share_real_newborns",
    "newborn_code_share_real_adults",
    "group_r2_mean",
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
    "Likelihood": ("perplexity", "unigram_perplexity", "perplexity_train"),
    "Conditioning": CONDITIONING_KEYS,
    "Utility": UTILITY_KEYS,
}


# ------------------------------------------------------------------------------ goals


@dataclass(frozen=True)
class Goal:
    """A target from the course's issue: ``met(value, floor)`` is None when it cannot be
    judged (a NaN value, or a relative goal without a floor). A goal against the floor is
    linear, ``sign * (value - (scale * floor + offset)) >= 0``; ``relative`` holds
    ``(sign, scale, offset)`` so a miss can be set against the noise of both numbers."""

    text: str
    met: Callable[[float, float], bool | None]
    relative: tuple[float, float, float] | None = None


def _absolute(text: str, test: Callable[[float], bool]) -> Goal:
    return Goal(text, lambda value, floor: None if math.isnan(value) else bool(test(value)))


def _against_floor(text: str, sign: float, scale: float, offset: float = 0.0) -> Goal:
    """A goal stated against the real-vs-real floor: not judged without a floor."""

    def met(value: float, floor: float) -> bool | None:
        if math.isnan(value) or math.isnan(floor):
            return None
        return bool(sign * (value - (scale * floor + offset)) >= 0)

    return Goal(text, met, (sign, scale, offset))


# Issue 11's targets for a converged model, each against the floor where one exists (a goal
# that a second real sample would fail is no goal); validity goals are absolute because
# real patients break no rule (floor 0).
GOALS: dict[str, Goal] = {
    "detection_auc": _against_floor("<= floor + 0.1", -1.0, 1.0, 0.1),
    "js_divergence": _against_floor("<= 1.15x floor", -1.0, 1.15),
    "unigram_r2": _against_floor(">= 0.95x floor", 1.0, 0.95),
    "top100_overlap": _against_floor(">= 0.9x floor", 1.0, 0.9),
    "coverage": _against_floor(">= 0.9x floor", 1.0, 0.9),
    "age_violation_rate": _absolute("<= 1%", lambda value: value <= 0.01),
    "sex_violation_rate": _absolute("<= 0.5%", lambda value: value <= 0.005),
    "duplicate_rate": _absolute("0%", lambda value: value == 0.0),
}
for _sex in ("female", "male"):  # the same ages, every patient made one sex (issue 11)
    GOALS[f"age_violation_rate_all_{_sex}"] = GOALS["age_violation_rate"]
    GOALS[f"sex_violation_rate_all_{_sex}"] = GOALS["sex_violation_rate"]

NOISE_SE = 2.0  # a miss within this many standard errors of the difference is not a FAIL


def floor_meets_goal(key: str, evaluation: Mapping[str, float]) -> bool | None:
    """Whether the floor itself (a second real sample) meets ``key``'s goal."""
    floor = float(evaluation.get(f"{key}_floor", math.nan))
    if key not in GOALS or math.isnan(floor):
        return None
    return GOALS[key].met(floor, floor)


def goal_results(evaluation: Mapping[str, float]) -> dict[str, bool | None]:
    """``metric -> met`` for every goal whose metric the evaluation has."""
    return {
        key: goal.met(float(evaluation[key]), float(evaluation.get(f"{key}_floor", math.nan)))
        for key, goal in GOALS.items()
        if key in evaluation
    }


def _standard_error(evaluation: Mapping[str, float], key: str) -> float:
    """The bootstrap interval's half-width in standard errors (NaN without an interval)."""
    interval = getattr(evaluation, "intervals", {}).get(key)
    if interval is None:
        return math.nan
    return (float(interval[1]) - float(interval[0])) / (2 * NormalDist().inv_cdf(0.5 + LEVEL / 2))


def miss_within_noise(key: str, evaluation: Mapping[str, float]) -> bool | None:
    """For a goal against the floor that the value misses: is the miss within ``NOISE_SE``
    standard errors of ``value - (scale * floor + offset)``?

    The value and the floor are each one draw of a few hundred patients (200 in the main
    job), and a second real sample of that size can miss the floor's own goal by as much
    (``benchmarks/floor_noise.py`` measures how much). Such a miss says nothing about the
    generator, so it is shown as "within noise", not as a FAIL. The standard errors come
    from the bootstrap intervals. None when the goal is met, absolute, or lacks an interval.
    """
    goal = GOALS.get(key)
    value = float(evaluation.get(key, math.nan))
    floor = float(evaluation.get(f"{key}_floor", math.nan))
    if goal is None or goal.relative is None or goal.met(value, floor) is not False:
        return None
    sign, scale, _ = goal.relative
    se = math.hypot(
        _standard_error(evaluation, key), scale * _standard_error(evaluation, f"{key}_floor")
    )
    if math.isnan(se):
        return None
    offset = goal.relative[2]
    shortfall = -sign * (value - (scale * floor + offset))
    return bool(shortfall <= NOISE_SE * se)


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


def _status(met: bool | None, floor_met: bool | None = None, noise: bool | None = None) -> str:
    """pass/FAIL; a goal the floor itself misses is reported, never failed; a miss of a
    floor goal within the noise of the two samples is "within noise" (:func:`miss_within_noise`)."""
    if met is None:
        return "n/a"
    if floor_met is False:
        return "(floor misses it too)" if not met else "pass"
    if met:
        return "pass"
    return "within noise" if noise else "FAIL"


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
                _status(
                    results[key],
                    floor_meets_goal(key, evaluation),
                    miss_within_noise(key, evaluation),
                )
                if goal
                else "",
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
        key: {
            "goal": GOALS[key].text,
            "met": met,
            "floor_met": floor_meets_goal(key, evaluation),
            "within_noise": miss_within_noise(key, evaluation),
        }
        for key, met in goal_results(evaluation).items()
    }
    payload["alarms"] = list(getattr(evaluation, "alarms", []))
    payload["notes"] = list(notes)
    payload["figures"] = list(figures)
    return json.dumps(payload, indent=2, allow_nan=False) + "\n"
