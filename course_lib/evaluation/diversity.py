"""Diversity and mode-collapse alarms (lesson 09).

The notes' failure was a generator that wrote one stereotypical ICU record: 31 unique codes,
every patient exactly two ICD-9 chapters, the top code in 12.5% of patients. Validity was
excellent (a record with two harmless codes breaks no rule), so only diversity metrics see it.

Formulas (``S`` synthetic, ``R`` real; a patient's codes are its distinct codes over all
visits; chapters as :func:`course_lib.icd9.chapter_of` names them, tokens that are not ICD-9
codes skipped)::

    unique_codes          = |codes(S)|
    coverage              = |codes(S) & codes(R)| / |codes(R)|
    top_code_share        = max_code #patients carrying the code / #patients
    codes_per_patient     = |codes(patient)|                 (mean, std, distribution)
    chapters_per_patient  = |chapters(codes(patient))|       (mean, std, distribution)
    chapters_per_patient_mode_share = share of patients with the most common chapter count
    *_wasserstein         = scipy.stats.wasserstein_distance(S distribution, R distribution)

``unique_codes`` and ``coverage`` grow with the sample size: compare them only with the floor
of a real sample of the synthetic sample's size.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
from scipy.stats import wasserstein_distance

from course_lib import icd9
from course_lib.cohort import Cohort, Patient
from course_lib.evaluation.uncertainty import remembered


@functools.cache
def _chapter(code: str) -> str | None:
    """The code's chapter, None for a token that is not an ICD-9 code (cached: the bootstrap
    asks for the same codes many times)."""
    try:
        return icd9.chapter_of(code)
    except ValueError:
        return None


def patient_chapters(patient: Patient) -> set[str]:
    """Distinct ICD-9 chapters of a patient's codes (non-code tokens skipped)."""
    chapters = {_chapter(code) for code in patient.code_set}
    chapters.discard(None)
    return chapters


def patient_distributions(cohort: Cohort) -> pd.DataFrame:
    """One row per patient: ``SUBJECT_ID``, ``visits``, ``codes`` (distinct) and ``chapters``
    (distinct): the raw distributions behind the means, for plots."""
    return pd.DataFrame(
        {
            "SUBJECT_ID": [p.subject_id for p in cohort],
            "visits": [len(p.visits) for p in cohort],
            "codes": [len(p.code_set) for p in cohort],
            "chapters": [len(patient_chapters(p)) for p in cohort],
        }
    )


def top_code_share(cohort: Cohort) -> tuple[str | None, float]:
    """The code carried by most patients and the share of patients carrying it."""
    if len(cohort) == 0:
        raise ValueError("top_code_share needs a non-empty cohort")
    carriers = Counter(code for patient in cohort for code in patient.code_set)
    if not carriers:
        return None, 0.0
    code, count = min(carriers.items(), key=lambda item: (-item[1], item[0]))
    return code, count / len(cohort)


def unique_codes(cohort: Cohort) -> set[str]:
    return {code for patient in cohort for code in patient.code_set}


def diversity_metrics(synthetic: Cohort, real: Cohort) -> dict[str, float]:
    """The module docstring's metrics, plus ``*_real`` values the alarms fall back on."""
    if len(synthetic) == 0 or len(real) == 0:
        raise ValueError("diversity_metrics needs two non-empty cohorts")
    syn_codes = unique_codes(synthetic)
    real_codes = remembered(real, "unique_codes", unique_codes)
    syn_table = patient_distributions(synthetic)
    real_table = remembered(real, "patient_distributions", patient_distributions)
    metrics = {
        "unique_codes": float(len(syn_codes)),
        "coverage": len(syn_codes & real_codes) / len(real_codes) if real_codes else math.nan,
        "top_code_share": top_code_share(synthetic)[1],
    }
    for measure in ("codes", "chapters"):
        syn_values = syn_table[measure].to_numpy(dtype=float)
        real_values = real_table[measure].to_numpy(dtype=float)
        metrics[f"{measure}_per_patient_mean"] = float(syn_values.mean())
        metrics[f"{measure}_per_patient_std"] = float(syn_values.std())
        metrics[f"{measure}_per_patient_wasserstein"] = float(
            wasserstein_distance(syn_values, real_values)
        )
    metrics["chapters_per_patient_mode_share"] = mode_share(syn_table["chapters"])
    metrics["unique_codes_real"] = float(len(real_codes))
    metrics["top_code_share_real"] = remembered(real, "top_code_share", top_code_share)[1]
    metrics["chapters_per_patient_std_real"] = float(real_table["chapters"].std(ddof=0))
    metrics["chapters_per_patient_mode_share_real"] = mode_share(real_table["chapters"])
    return metrics


def mode_share(values: pd.Series) -> float:
    """Share of the values equal to the most common one (1.0: every patient alike)."""
    return float(values.value_counts(normalize=True).iloc[0]) if len(values) else math.nan


@dataclass(frozen=True)
class AlarmThresholds:
    """When diversity counts as collapsed, relative to a real reference value.

    The reference is ``<key>_floor`` (a real sample of the synthetic sample's size) when the
    metrics have it, else ``<key>_real`` (the real cohort, whatever its size), else the
    absolute fallback. Defaults: fewer than 40% of the real sample's unique codes (the notes'
    31 codes are far below, and so is lesson 10's collapsed run with 281 codes where a real
    sample of that size has about 1,000; a healthy generator loses part of the rare tail, not
    60% of the codes); a top code carried by more than twice as many patients as the real top
    code; a spread of chapters per patient below a quarter of the real spread (the notes'
    "every patient exactly 2 categories" is a spread of 0); and, when the metrics have
    ``chapters_per_patient_mode_share``, one chapter count shared by more than twice the real
    share of patients (lesson 10's "every patient about 2 chapters", whose spread is not 0).
    """

    unique_codes_ratio: float = 0.4
    top_code_share_ratio: float = 2.0
    chapters_std_ratio: float = 0.25
    chapters_mode_share_ratio: float = 2.0
    min_unique_codes: float = 100.0
    max_top_code_share: float = 0.5
    min_chapters_std: float = 0.1
    max_chapters_mode_share: float = 0.6


def _reference(metrics: Mapping[str, float], key: str) -> float | None:
    for suffix in ("_floor", "_real"):
        value = metrics.get(key + suffix)
        if value is not None and math.isfinite(value):
            return float(value)
    return None


def mode_collapse_alarms(
    metrics: Mapping[str, float], thresholds: AlarmThresholds | None = None
) -> list[str]:
    """Human-readable alarms (empty when diversity looks healthy).

    ``metrics`` needs ``unique_codes``, ``top_code_share`` and ``chapters_per_patient_std``
    (``chapters_per_patient_mode_share`` is optional); reference values are looked up as
    :class:`AlarmThresholds` explains.
    """
    thresholds = thresholds or AlarmThresholds()
    for key in ("unique_codes", "top_code_share", "chapters_per_patient_std"):
        if key not in metrics:
            raise ValueError(f"mode_collapse_alarms: metrics lack {key!r}")

    def limit(key: str, ratio: float, absolute: float) -> float:
        reference = _reference(metrics, key)
        return ratio * reference if reference is not None else absolute

    alarms = []
    unique = metrics["unique_codes"]
    low = limit("unique_codes", thresholds.unique_codes_ratio, thresholds.min_unique_codes)
    if unique < low:
        alarms.append(f"unique_codes: {unique:.0f} codes < {low:.1f} (collapsed vocabulary)")
    share = metrics["top_code_share"]
    high = limit("top_code_share", thresholds.top_code_share_ratio, thresholds.max_top_code_share)
    if share > high:
        alarms.append(f"top_code_share: {share:.1%} of patients > {high:.1%} (one dominant code)")
    spread = metrics["chapters_per_patient_std"]
    low = limit(
        "chapters_per_patient_std", thresholds.chapters_std_ratio, thresholds.min_chapters_std
    )
    if spread < low:
        alarms.append(f"chapters_per_patient_std: {spread:.3f} < {low:.3f} (every patient alike)")
    mode = metrics.get("chapters_per_patient_mode_share")
    if mode is not None and math.isfinite(mode):
        high = min(
            limit(
                "chapters_per_patient_mode_share",
                thresholds.chapters_mode_share_ratio,
                thresholds.max_chapters_mode_share,
            ),
            1.0,
        )
        if mode > high:
            alarms.append(
                f"chapters_per_patient_mode_share: {mode:.1%} of patients have the same number "
                f"of chapters > {high:.1%} (every patient alike)"
            )
    return alarms


def distributions_for_plots(synthetic: Cohort, real: Cohort) -> pd.DataFrame:
    """Long table (``cohort``, ``measure``, ``value``) of both cohorts' per-patient counts."""
    frames = []
    for name, cohort in (("synthetic", synthetic), ("real", real)):
        table = patient_distributions(cohort).drop(columns="SUBJECT_ID")
        long = table.melt(var_name="measure", value_name="value")
        long.insert(0, "cohort", name)
        frames.append(long)
    return pd.concat(frames, ignore_index=True)
