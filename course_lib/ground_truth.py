"""The simulator's ground truth for conditioning: how codes depend on age and sex (issue 11).

:mod:`course_lib.simulate` draws patients; this module computes, exactly, the distribution
of the first code of the first visit given age and sex, the reference of
:mod:`course_lib.evaluation.conditioning`. The onset of every chronic cluster (in
``CLUSTERS`` order, each seeing the earlier ones through ``PROGRESSION``), then the first
visit's acute episodes, pick the visit's driver; its principal diagnosis (or one background
code) is the first code. Summing over every set of chronic clusters is cheap (a few thousand
sets with non-zero probability), vectorised over the patients of one sex. Later codes
depend on the whole history and have no such closed form.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import expit

from course_lib import icd9
from course_lib.simulate import (
    AGE_BANDS,
    CLUSTERS,
    LATER_ONSET,
    MAX_AGE,
    PRINCIPAL_FROM_CHRONIC,
    PROGRESSION,
    _age_band,
    background_landscape,
)


def odds_array(name: str, ages: np.ndarray, sex: str, active, first: bool) -> np.ndarray:
    """:func:`course_lib.simulate._odds` for many ages at once (the same formula; a test holds them equal)."""
    spec = CLUSTERS[name]
    low, high = spec["ages"]
    years = ages.astype(int)
    inside = (low <= years) & (years <= high) & (spec.get("sex", sex) == sex)
    if name == "neonatal":
        return np.where(inside, 1.0 if first else 0.0, 0.0)
    p = spec["rate"] * 2 * expit(spec["age_slope"] * (ages - spec["age_mid"]))
    p = p * (spec.get("male_odds", 1.0) if sex == "M" else 1.0)
    for other in active:
        p = p * PROGRESSION.get(other, {}).get(name, 1.0)
    if spec["chronic"] and not first:
        p = p * LATER_ONSET
    return np.where(inside, np.minimum(p, 0.95), 0.0)


def _first_driver_weights(ages: np.ndarray, sex: str) -> dict[str | None, np.ndarray]:
    """P(the first visit's driver cluster = name | age) per patient; key None: no driver."""
    chronic_names = [name for name, spec in CLUSTERS.items() if spec["chronic"]]
    acute_names = [name for name, spec in CLUSTERS.items() if not spec["chronic"]]
    weights: dict[str | None, np.ndarray] = {
        name: np.zeros(len(ages)) for name in [*CLUSTERS, None]
    }

    def descend(k: int, active: list[str], prob: np.ndarray) -> None:
        if k < len(chronic_names):
            q = odds_array(chronic_names[k], ages, sex, active, first=True)
            if np.any(prob * q > 0):
                descend(k + 1, [*active, chronic_names[k]], prob * q)
            descend(k + 1, active, prob * (1.0 - q))
            return
        no_episode = prob.copy()
        for name in acute_names:
            q = odds_array(name, ages, sex, active, first=True)
            weights[name] += no_episode * q
            no_episode = no_episode * (1.0 - q)
        share = PRINCIPAL_FROM_CHRONIC if active else 0.0
        for name in active:
            weights[name] += no_episode * share / len(active)
        weights[None] += no_episode * (1.0 - share)

    descend(0, [], np.ones(len(ages)))
    return weights


@lru_cache(maxsize=64)
def _background_distribution(band: int, sex: str) -> dict[str, float]:
    codes, cdfs = background_landscape()
    cdf = cdfs[band * 2 + (sex == "M")]
    probabilities = np.diff(cdf, prepend=0.0) / cdf[-1]
    return {code: float(p) for code, p in zip(codes, probabilities, strict=True) if p > 0}


@lru_cache(maxsize=512)
def _principal_distribution(name: str | None, band: int, sex: str) -> dict[str, float]:
    """The first code's distribution when cluster ``name`` drives the visit (None: background).

    A chronic cluster without ``principal`` uses the variant of its first group drawn at
    onset, which at the first visit is a :func:`_pick` from the same options at the same age.
    """
    if name is None:
        return _background_distribution(band, sex)
    spec = CLUSTERS[name]
    options = spec.get("principal") or spec["groups"][0][1]
    valid = {c: w for c, w in options.items() if icd9.check_code(c, AGE_BANDS[band], sex) is None}
    if not valid:  # _pick gives None: one background code instead
        return _background_distribution(band, sex)
    total = sum(valid.values())
    return {code: weight / total for code, weight in valid.items()}


def _check_demographics(ages, sexes) -> tuple[np.ndarray, np.ndarray]:
    ages, sexes = np.asarray(ages, dtype=float), np.asarray(sexes, dtype=object)
    if ages.shape != sexes.shape or ages.ndim != 1:
        raise ValueError(
            f"ages and sexes must be two lists of one length, got {ages.shape}, {sexes.shape}"
        )
    if not np.all((ages >= 0) & (ages <= MAX_AGE)):
        raise ValueError(f"ages must lie in [0, {MAX_AGE}] years")
    bad = sorted(set(sexes.tolist()) - {"F", "M"})
    if bad:
        raise ValueError(f"sexes must be 'F' or 'M', got {bad}")
    return ages, sexes


def first_code_distributions(ages, sexes) -> list[dict[str, float]]:
    """Exact P(first code of the first visit = c | age, sex), one dict per patient.

    The ground truth of the conditioning metrics (:mod:`course_lib.evaluation.conditioning`):
    exact because the first code depends only on the first visit's driver, whose
    probability sums over the sets of chronic clusters. Later codes depend on the whole
    history and have no such closed form.
    """
    ages, sexes = _check_demographics(ages, sexes)
    out: list[dict[str, float]] = [{} for _ in ages]
    for sex in ("F", "M"):
        rows = np.flatnonzero(sexes == sex)
        if rows.size == 0:
            continue
        weights = _first_driver_weights(ages[rows], sex)
        for position, row in enumerate(rows):
            band = _age_band(ages[row])
            mixture: dict[str, float] = {}
            for name, weight in weights.items():
                w = float(weight[position])
                if w > 0:
                    for code, p in _principal_distribution(name, band, sex).items():
                        mixture[code] = mixture.get(code, 0.0) + w * p
            out[row] = mixture
    return out


def first_code_probabilities(ages, sexes, codes) -> np.ndarray:
    """Exact P(first code = ``codes[i]`` | ``ages[i]``, ``sexes[i]``) (see above)."""
    ages, sexes = _check_demographics(ages, sexes)
    if len(codes) != len(ages):
        raise ValueError(f"codes ({len(codes)}) and ages ({len(ages)}) differ in length")
    out = np.zeros(len(ages))
    for sex in ("F", "M"):
        rows = np.flatnonzero(sexes == sex)
        if rows.size == 0:
            continue
        weights = _first_driver_weights(ages[rows], sex)
        for position, row in enumerate(rows):
            band = _age_band(ages[row])
            out[row] = sum(
                float(weight[position])
                * _principal_distribution(name, band, sex).get(codes[row], 0.0)
                for name, weight in weights.items()
            )
    return out
