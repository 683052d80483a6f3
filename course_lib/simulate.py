"""The seeded synthetic cohort simulator: the ground truth of the whole course (lesson 01).

Real MIMIC-III cannot ship with a course, so every lesson trains and evaluates on patients
from this simulator, whose rules are known. It draws, per patient, an age at the first visit
(newborns, children, many elderly adults; capped at 90 as MIMIC does) and a sex; comorbidity
clusters (:data:`CLUSTERS`) whose onset depends on age, sex and the clusters already present
(:data:`PROGRESSION`: diabetes -> CKD, CAD -> CHF...); a long-tailed number of visits, weeks to
years apart; and per visit a principal diagnosis, the clusters' codes and a Zipf-like background
of over 11,000 real ICD-9-CM codes. Every code is checked with :func:`icd9.check_code` at the age
of its own visit, so the ground truth has no MCE age/sex violation by construction.

Identifiers: ``SUBJECT_ID = seed * 10_000_000 + i + 1`` (patient ``i``, from 0), so cohorts of
different seeds never share a subject; ``HADM_ID = SUBJECT_ID * 100 + visit number`` (from 1).
Admissions fall in MIMIC's shifted years (2100-2250); a patient aged 90 (the cap) at the first
visit gets a date of birth 300 years earlier, as MIMIC does, and every age above 90 reads as 90,
as :func:`course_lib.mimic.load_mimic` reads it back.
The background code ranking is fixed (:data:`LANDSCAPE_SEED`), not drawn from ``seed``: two
seeds give two independent samples of one population, the real-vs-real floor of lesson 09.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import accumulate

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import norm

from course_lib import icd9
from course_lib.cohort import Cohort, Patient, Visit

HORIZONS_DAYS = (30, 90, 180, 365)
MAX_AGE = 90.0
SUBJECT_ID_STRIDE = 10_000_000
MAX_SEED = 999_999
MAX_VISITS = 30
LANDSCAPE_SEED = 20_150_101
DAYS_PER_YEAR = 365.25

# Each cluster: onset model + code groups. Onset probability = rate * 2 * sigmoid(age_slope * (age
# - age_mid)) (= rate at age_mid) within ``ages``, times ``male_odds`` for men and PROGRESSION
# boosts; capped at 0.95. A group is
# (probability per visit, {alternative codes: weight}); a chronic patient keeps the alternative
# drawn at onset, a "ladder" group (alternatives ordered by severity) may move one step up per
# visit. The principal diagnosis of a visit the cluster drives comes from ``principal`` (default:
# the first group). Chronic clusters persist; acute ones are episodes drawn per visit.
# fmt: off
CLUSTERS: dict[str, dict] = {
    "metabolic": dict(chronic=True, rate=0.15, ages=(25, 124), age_mid=55, age_slope=0.07,
        male_odds=1.2, principal={"25080": 2, "25002": 1, "25012": 1, "25060": 1},
        groups=[(0.75, {"4019": 5, "4011": 1, "40390": 2, "4010": 1, "40290": 1}),
                (0.5, {"25000": 6, "25002": 2, "25001": 1}),
                (0.55, {"2724": 5, "2720": 2, "2722": 1}),
                (0.15, {"27800": 2, "27801": 1}), (0.2, {"V5867": 1})]),
    "cad": dict(chronic=True, rate=0.055, ages=(30, 124), age_mid=65, age_slope=0.08, male_odds=1.7,
        principal={"41401": 3, "41071": 3, "41041": 1, "4111": 1},
        groups=[(0.85, {"41401": 5, "41400": 1}), (0.3, {"V4582": 2, "V4581": 1}), (0.2, {"412": 1}),
                (0.1, {"4111": 1})]),
    "chf": dict(chronic=True, rate=0.05, ages=(20, 124), age_mid=72, age_slope=0.08,
        principal={"4280": 2, "42833": 1, "42823": 1, "42843": 1},
        groups=[(0.85, {"4280": 1}), (0.45, {"42832": 2, "42822": 2, "42830": 1}),
                (0.2, {"4241": 2, "4240": 1}), (0.15, {"4254": 1})]),
    "af": dict(chronic=True, rate=0.05, ages=(20, 124), age_mid=75, age_slope=0.09, male_odds=1.2,
        groups=[(0.9, {"42731": 1}), (0.4, {"V5861": 1}), (0.1, {"42732": 1})]),
    "ckd": dict(chronic=True, rate=0.04, ages=(20, 124), age_mid=70, age_slope=0.06,
        principal={"5849": 3, "40391": 1, "5859": 1},
        groups=[(0.8, {"5852": 2, "5853": 3, "5854": 2, "5855": 1, "5856": 1}, "ladder"),
                (0.45, {"40390": 3, "40391": 1}), (0.3, {"28521": 1}), (0.15, {"V4511": 1})]),
    "copd": dict(chronic=True, rate=0.06, ages=(35, 124), age_mid=65, age_slope=0.06,
        male_odds=1.2, principal={"49121": 3, "49122": 1, "496": 2},
        groups=[(0.8, {"496": 3, "49121": 1, "4928": 1}), (0.4, {"3051": 2, "V1582": 3}),
                (0.15, {"5180": 1}), (0.15, {"4168": 1})]),
    "stroke": dict(chronic=True, rate=0.03, ages=(30, 124), age_mid=72, age_slope=0.07,
        principal={"43491": 4, "431": 2, "4329": 1, "43411": 1},
        groups=[(0.6, {"43491": 3, "43411": 1, "4359": 1}), (0.3, {"34290": 1}),
                (0.2, {"7843": 1}), (0.2, {"3310": 2, "2948": 1})]),
    "psych": dict(chronic=True, rate=0.12, ages=(15, 124), age_mid=45, age_slope=-0.03,
        male_odds=0.7, principal={"29620": 2, "29630": 1, "2967": 1, "29570": 1},
        groups=[(0.75, {"311": 5, "29620": 1, "29630": 1, "29680": 1}),
                (0.4, {"30000": 2, "30981": 1}), (0.1, {"29570": 1})]),
    "substance": dict(chronic=True, rate=0.07, ages=(15, 124), age_mid=40, age_slope=-0.04,
        male_odds=2.0, principal={"29181": 3, "30301": 2, "2910": 1, "96509": 1},
        groups=[(0.7, {"30500": 2, "30390": 3, "30391": 1}), (0.5, {"3051": 1}),
                (0.25, {"30400": 2, "30590": 1, "30560": 1}), (0.25, {"29181": 1})]),
    "liver": dict(chronic=True, rate=0.015, ages=(25, 124), age_mid=55, age_slope=0.02,
        male_odds=1.5, principal={"5722": 1, "4560": 1, "5715": 1},
        groups=[(0.8, {"5715": 3, "5712": 2}), (0.4, {"5723": 1}), (0.3, {"4561": 1}),
                (0.3, {"78959": 1})]),
    "oncology": dict(chronic=True, rate=0.06, ages=(25, 124), age_mid=62, age_slope=0.06,
        groups=[(0.9, {"1629": 3, "1749": 2, "185": 2, "1539": 1, "1570": 1, "1890": 1,
                       "1830": 1, "20280": 1, "20410": 1, "1991": 1}),
                (0.4, {"1970": 2, "1983": 2, "1977": 1, "1985": 1}), (0.3, {"2859": 1}),
                (0.2, {"V5811": 1})]),
    "male_gu": dict(chronic=True, rate=0.12, ages=(40, 124), age_mid=68, age_slope=0.08, sex="M",
        principal={"60001": 2, "5990": 1, "6089": 1},
        groups=[(0.85, {"60000": 3, "60001": 2}), (0.2, {"5990": 1}), (0.1, {"V1046": 1})]),
    "female_gyn": dict(chronic=True, rate=0.12, ages=(15, 70), age_mid=40, age_slope=0.0, sex="F",
        principal={"2189": 2, "6202": 2, "6140": 1},
        groups=[(0.8, {"2189": 2, "6202": 2, "6262": 1, "6268": 1, "6256": 1})]),
    "pediatric": dict(chronic=True, rate=0.5, ages=(1, 17), age_mid=8, age_slope=0.0,
        principal={"49392": 3, "46611": 2, "34590": 1, "486": 1},
        groups=[(0.6, {"49390": 3, "49392": 1}), (0.25, {"34590": 1, "78039": 1}),
                (0.2, {"7455": 1, "7454": 1, "74769": 1}), (0.2, {"78060": 1})]),
    "neonatal": dict(chronic=False, rate=1.0, ages=(0, 0), age_mid=0, age_slope=0.0,
        groups=[(1.0, {"V3000": 5, "V3001": 4, "V3101": 1, "V3100": 1}),
                (0.5, {"V053": 1}), (0.35, {"7742": 2, "7746": 1}), (0.3, {"V290": 1}),
                (0.2, {"76519": 1, "76518": 1, "76517": 1}), (0.2, {"76527": 1, "76528": 2}),
                (0.15, {"7706": 1}), (0.1, {"77081": 1}), (0.1, {"7756": 1})]),
    "pregnancy": dict(chronic=False, rate=0.4, ages=(14, 46), age_mid=30, age_slope=-0.05,
        sex="F", principal={"650": 4, "64421": 1, "65421": 2, "64511": 1, "66411": 1},
        groups=[(0.95, {"V270": 20, "V271": 1}), (0.3, {"66401": 2, "66411": 1, "66481": 1}),
                (0.2, {"64891": 1, "64881": 1}), (0.2, {"65971": 1}), (0.15, {"66331": 1})]),
    "sepsis": dict(chronic=False, rate=0.07, ages=(0, 124), age_mid=60, age_slope=0.04,
        principal={"0389": 5, "03842": 1, "03811": 1, "0380": 1},
        groups=[(0.8, {"99591": 2, "99592": 3}), (0.55, {"5849": 1}), (0.35, {"78552": 1}),
                (0.3, {"2762": 1}), (0.3, {"5990": 1}), (0.25, {"51881": 1})]),
    "pneumonia": dict(chronic=False, rate=0.08, ages=(0, 124), age_mid=60, age_slope=0.04,
        principal={"486": 5, "5070": 2, "4820": 1, "51881": 1, "4829": 1},
        groups=[(0.35, {"51881": 3, "51882": 1}), (0.3, {"5119": 1}), (0.25, {"27651": 1}),
                (0.2, {"5180": 1})]),
    "gi_bleed": dict(chronic=False, rate=0.04, ages=(15, 124), age_mid=60, age_slope=0.03,
        principal={"5789": 4, "53100": 1, "53140": 1, "5780": 1, "5781": 1},
        groups=[(0.6, {"2851": 1}), (0.3, {"53081": 1})]),
    "trauma": dict(chronic=False, rate=0.06, ages=(1, 124), age_mid=40, age_slope=0.0,
        male_odds=1.8, principal={"8500": 2, "80501": 1, "8600": 1, "82009": 2, "8052": 1,
                                  "8072": 1, "8054": 1},
        groups=[(0.9, {"E8889": 4, "E8147": 1, "E8120": 2, "E8160": 1, "E9600": 1}),
                (0.2, {"8054": 1, "8072": 1}), (0.15, {"30500": 1})]),
}
# active cluster -> {cluster whose onset (chronic) or episode (acute) it makes likelier: odds}
PROGRESSION: dict[str, dict[str, float]] = {
    "metabolic": {"ckd": 4.0, "cad": 2.0, "stroke": 1.5, "chf": 1.3},
    "cad": {"chf": 4.0, "af": 1.3},
    "chf": {"af": 2.0, "ckd": 1.5, "pneumonia": 1.3},
    "af": {"stroke": 2.0, "chf": 1.5, "gi_bleed": 1.5},
    "ckd": {"sepsis": 1.8, "chf": 1.3},
    "copd": {"pneumonia": 3.0, "chf": 1.3},
    "substance": {"liver": 5.0, "psych": 1.8, "trauma": 2.5, "gi_bleed": 1.5},
    "psych": {"substance": 1.8},
    "liver": {"gi_bleed": 4.0, "sepsis": 1.5},
    "oncology": {"sepsis": 2.0, "pneumonia": 1.5},
    "stroke": {"pneumonia": 1.8},
}
LATER_ONSET = 0.2  # a chronic cluster's onset odds at a later visit, relative to the first
PRINCIPAL_FROM_CHRONIC = 0.55  # visits without an acute episode: share driven by a chronic cluster
BACKGROUND_ZIPF = (1.05, 25.0)  # Zipf-Mandelbrot exponent and offset of the background ranking
CHAPTER_WEIGHTS = {"390-459": 3, "240-279": 3, "780-799": 3, "460-519": 2, "520-579": 2,
                   "580-629": 2, "280-289": 2, "800-999": 1.5, "001-139": 1.5, "V": 1.5,
                   "740-759": 0.3, "760-779": 0.0, "630-679": 0.0, "E": 0.0}
AGE_BANDS = (0, 1, 12, 15, 18, 56)  # MCE age rules are constant within each band
# fmt: on


def _check_clusters() -> None:
    table = icd9.code_table()
    for name, spec in CLUSTERS.items():
        codes = [c for g in spec["groups"] for c in g[1]] + list(spec.get("principal", {}))
        unknown = [c for c in codes if c not in table]
        if unknown:
            raise ValueError(f"cluster {name!r} lists codes not in ICD-9-CM v32: {unknown}")


def _age_band(age: float) -> int:
    return int(np.searchsorted(AGE_BANDS, int(age), side="right")) - 1


@lru_cache(maxsize=1)
def background_landscape() -> tuple[np.ndarray, np.ndarray]:
    """The fixed background: (codes [n], cumulative weights [n_bands * 2, n]) per (age band, sex).

    Codes of clusters, maternity, newborn and E codes are left out (they come only from clusters);
    the ranking is a chapter-weighted random order drawn once with LANDSCAPE_SEED.
    """
    _check_clusters()
    cluster_codes = {c for s in CLUSTERS.values() for g in s["groups"] for c in g[1]}
    cluster_codes |= {c for s in CLUSTERS.values() for c in s.get("principal", {})}
    table = icd9.code_table()
    pool = sorted(
        code
        for code, info in table.items()
        if code not in cluster_codes
        and CHAPTER_WEIGHTS.get(info.chapter, 1.0) > 0
        and not {"newborn", "maternity"} & set(icd9.rules_for(code))
    )
    chapter_weight = np.array([CHAPTER_WEIGHTS.get(table[c].chapter, 1.0) for c in pool])
    rng = np.random.default_rng(LANDSCAPE_SEED)
    order = np.argsort(-(rng.random(len(pool)) ** (1.0 / chapter_weight)), kind="stable")
    codes = np.array(pool, dtype=object)[order]
    exponent, offset = BACKGROUND_ZIPF
    zipf = 1.0 / (np.arange(1, len(codes) + 1) + offset) ** exponent
    cdfs = np.empty((len(AGE_BANDS) * 2, len(codes)))
    for band, low in enumerate(AGE_BANDS):
        for s, sex in enumerate(("F", "M")):
            valid = np.array([icd9.check_code(c, low, sex) is None for c in codes])
            cdfs[band * 2 + s] = np.cumsum(zipf * valid)
    return codes, cdfs


def _draw_background(
    rng: np.random.Generator, n: int, age: float, sex: str, taken: dict[str, None]
) -> None:
    """Add ``n`` new background codes valid at ``age``/``sex`` to ``taken`` (an ordered set)."""
    codes, cdfs = background_landscape()
    cdf = cdfs[_age_band(age) * 2 + (sex == "M")]
    target = len(taken) + n
    for _ in range(10):
        for idx in np.searchsorted(cdf, rng.random(2 * n + 2) * cdf[-1], side="right"):
            if len(taken) >= target:
                return
            taken.setdefault(codes[idx], None)


def _pick(rng: np.random.Generator, weights: dict[str, float], age: float, sex: str) -> str | None:
    """One code from ``weights``, among those valid at ``age``/``sex`` (None when none is)."""
    valid = [c for c in weights if icd9.check_code(c, age, sex) is None]
    if not valid:
        return None
    cumulative = list(accumulate(weights[c] for c in valid))
    return valid[bisect_right(cumulative, rng.random() * cumulative[-1])]


def _odds(name: str, age: float, sex: str, active, first: bool) -> float:
    """Probability of the onset (chronic) or episode (acute) of cluster ``name`` at this visit."""
    spec = CLUSTERS[name]
    low, high = spec["ages"]
    if not low <= int(age) <= high or spec.get("sex", sex) != sex:
        return 0.0
    p = spec["rate"] * 2 * expit(spec["age_slope"] * (age - spec["age_mid"]))
    p *= spec.get("male_odds", 1.0) if sex == "M" else 1.0
    for other in active:
        p *= PROGRESSION.get(other, {}).get(name, 1.0)
    if name == "neonatal":  # every newborn's birth admission, and only that one
        return 1.0 if first else 0.0
    if spec["chronic"] and not first:
        p *= LATER_ONSET
    return min(p, 0.95)


def _visit_codes(
    rng: np.random.Generator, chronic: dict, episodes: list[str], age: float, sex: str, target: int
) -> list[str]:
    """Codes of one visit, principal first, no repeats, each valid at ``age``/``sex``."""
    codes: dict[str, None] = {}
    driver = episodes[0] if episodes else None
    if driver is None and chronic and rng.random() < PRINCIPAL_FROM_CHRONIC:
        driver = list(chronic)[rng.integers(len(chronic))]
    if driver is not None:
        spec = CLUSTERS[driver]
        options = spec.get("principal") or spec["groups"][0][1]
        if driver in chronic and "principal" not in spec:
            options = {chronic[driver][0][1]: 1.0}
        principal = _pick(rng, options, age, sex)
        if principal is not None:
            codes[principal] = None
    if not codes:
        _draw_background(rng, 1, age, sex, codes)
    for name in episodes:
        groups = CLUSTERS[name]["groups"]
        if name == driver and "principal" not in CLUSTERS[name]:
            groups = groups[1:]  # group 0 gave the principal
        for p, options, *_ in groups:
            if rng.random() < p and (code := _pick(rng, options, age, sex)) is not None:
                codes.setdefault(code, None)
    for variants in chronic.values():
        for p, code in variants:
            if rng.random() < p and icd9.check_code(code, age, sex) is None:
                codes.setdefault(code, None)
    if len(codes) < target:
        _draw_background(rng, target - len(codes), age, sex, codes)
    return list(codes)


def _onset(rng: np.random.Generator, name: str, age: float, sex: str) -> list[tuple[float, str]]:
    """A chronic patient's persistent alternatives: [(probability per visit, code)] per group."""
    variants = []
    for p, options, *_ in CLUSTERS[name]["groups"]:
        code = _pick(rng, options, age, sex) or next(iter(options))
        variants.append((p, code))
    return variants


def _worsen(rng: np.random.Generator, chronic: dict) -> None:
    for name, variants in chronic.items():
        for g, (p, options, *flags) in enumerate(CLUSTERS[name]["groups"]):
            ladder = list(options)
            if flags and ladder.index(variants[g][1]) + 1 < len(ladder) and rng.random() < 0.25:
                variants[g] = (p, ladder[ladder.index(variants[g][1]) + 1])


@lru_cache(maxsize=32)
def _visit_count_cdf(exponent: float) -> list[float]:
    """CDF of a power law over 1..MAX_VISITS visits (the last entry left out: bisect gives 0-29)."""
    weights = np.arange(1, MAX_VISITS + 1, dtype=float) ** -exponent
    return (np.cumsum(weights) / weights.sum())[:-1].tolist()


def _age_years(dob: datetime, when: datetime) -> float:
    """Age as :func:`course_lib.mimic.load_mimic` reads it back: over 90 (or shifted) -> 90."""
    return min((when - dob) / timedelta(days=1) / DAYS_PER_YEAR, MAX_AGE)


def _simulate_patient(rng: np.random.Generator, subject_id: int, age: float, sex: str) -> Patient:
    first_admit = datetime(2100, 1, 1) + timedelta(
        days=int(rng.integers(0, 60 * 365)), minutes=int(rng.integers(0, 1440))
    )
    shift_years = 300.0 if age >= MAX_AGE else age  # MIMIC's shift of the very old
    birth = first_admit - timedelta(days=shift_years * DAYS_PER_YEAR)
    dob = datetime.combine(min(birth, first_admit).date(), datetime.min.time())
    age = _age_years(dob, first_admit)
    chronic: dict[str, list] = {}
    for name, spec in CLUSTERS.items():
        if spec["chronic"] and rng.random() < _odds(name, age, sex, chronic, first=True):
            chronic[name] = _onset(rng, name, age, sex)
    exponent = 4.0 if age < 1 else max(2.2, 3.0 - 0.2 * len(chronic))
    n_visits = 1 + bisect_right(_visit_count_cdf(exponent), rng.random())
    visits, admit = [], first_admit
    for number in range(1, n_visits + 1):
        if number > 1:
            gap_days = min(1095.0, 3.0 + rng.lognormal(np.log(150.0), 1.3))
            admit += timedelta(minutes=int(gap_days * 1440))
        visit_age = _age_years(dob, admit)
        if number > 1:
            _worsen(rng, chronic)
            for name, spec in CLUSTERS.items():
                if (
                    spec["chronic"]
                    and name not in chronic
                    and rng.random() < _odds(name, visit_age, sex, chronic, first=False)
                ):
                    chronic[name] = _onset(rng, name, visit_age, sex)
        episodes = [
            name
            for name, spec in CLUSTERS.items()
            if not spec["chronic"]
            and rng.random() < _odds(name, visit_age, sex, chronic, first=number == 1)
        ]
        target = 2 + int(rng.negative_binomial(1.3, 1.3 / (1.3 + 2.5 + 0.5 * len(chronic))))
        codes = _visit_codes(rng, chronic, episodes, visit_age, sex, min(target, 40))
        visits.append(Visit(codes, visit_age, admit, subject_id * 100 + number))
    return Patient(subject_id, sex, visits[0].age, visits, dob)


def _draw_demographics(rng: np.random.Generator, n_patients: int) -> tuple[np.ndarray, np.ndarray]:
    """Ages at the first visit (10% newborns, 5% children, adults skewed old) and sexes."""
    group = rng.choice(3, size=n_patients, p=[0.10, 0.05, 0.85])
    adult_age = 18.0 + 80.0 * rng.beta(2.6, 1.7, size=n_patients)
    child_age = rng.uniform(1.0, 18.0, size=n_patients)
    ages = np.where(group == 0, 0.0, np.where(group == 1, child_age, adult_age))
    male = rng.random(n_patients) < np.where(group == 2, 0.56, 0.52)
    return np.minimum(ages, MAX_AGE), np.where(male, "M", "F")


def simulate_cohort(n_patients: int, seed: int) -> Cohort:
    """``n_patients`` synthetic patients with outcomes; the same seed gives the same cohort."""
    if not isinstance(n_patients, int | np.integer) or not 1 <= n_patients < SUBJECT_ID_STRIDE:
        raise ValueError(
            f"n_patients must be an integer in [1, {SUBJECT_ID_STRIDE - 1}], got {n_patients!r}"
        )
    if not isinstance(seed, int | np.integer) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    background_landscape()
    rng = np.random.default_rng(seed)
    ages, sexes = _draw_demographics(rng, n_patients)
    patients = [
        _simulate_patient(rng, seed * SUBJECT_ID_STRIDE + i + 1, float(ages[i]), str(sexes[i]))
        for i in range(n_patients)
    ]
    note = f"course_lib.simulate: simulate_cohort(n_patients={n_patients}, seed={seed})"
    return Cohort(patients, simulate_outcomes(patients, seed), [note])


# ----------------------------------------------------------------------------- outcomes
# The outcome model reads only codes and demographics, so it labels any patients, real or generated.
# fmt: off
FEATURES: dict[str, tuple[str, ...]] = {  # feature -> dotless code prefixes
    "chf": ("428", "4254", "39891"), "mi": ("410", "412"), "cad": ("414", "4111", "V4581", "V4582"),
    "af": ("42731", "42732"), "ckd": ("585", "403", "V4511"), "diabetes": ("250",),
    "sepsis": ("038", "99591", "99592", "78552"), "resp_failure": ("51881", "51882", "51884"),
    "metastasis": ("196", "197", "198"), "liver": ("5712", "5715", "5723", "456"),
    "cancer": tuple(str(c) for c in range(140, 209)),
}
LVEF_WEIGHTS = {"intercept": -1.6, "chf": 2.6, "mi": 1.0, "cad": 0.6, "af": 0.5, "ckd": 0.3,
                "diabetes": 0.2, "age": 0.025, "male": 0.4}
EVENT_WEIGHTS = {"intercept": -1.75, "sepsis": 0.9, "resp_failure": 0.6, "chf": 0.7, "ckd": 0.5,
                 "metastasis": 1.2, "cancer": 0.4, "liver": 0.8, "age": 0.02, "visits": 0.35,
                 "newborn": -1.5}
EVENT_SHAPE = 0.8  # Weibull shape < 1: events cluster soon after discharge
RISK_NOISE, RISK_CUTS = 0.6, (-1.15, 0.05)  # noisy 1-year log-odds -> low / medium / high
# fmt: on


def _outcome_features(patients: list[Patient]) -> pd.DataFrame:
    rows = []
    for patient in patients:
        codes = patient.code_set
        row = {
            name: float(any(c.startswith(prefixes) for c in codes))
            for name, prefixes in FEATURES.items()
        }
        last_age = patient.visits[-1].age if patient.visits else patient.age
        row |= {
            "SUBJECT_ID": patient.subject_id,
            "age": last_age - 65.0,
            "male": float(patient.sex == "M"),
            "newborn": float(patient.age < 1),
            "visits": float(np.log(max(len(patient.visits), 1))),
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=["SUBJECT_ID", *FEATURES, "age", "male", "newborn", "visits"])


def _linear(features: pd.DataFrame, weights: dict[str, float]) -> np.ndarray:
    total = np.full(len(features), weights["intercept"])
    for name, weight in weights.items():
        if name != "intercept":
            total += weight * features[name].to_numpy(dtype=float)
    return total


def _outcome_scores(patients: list[Patient]) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """SUBJECT_IDs, LVEF log-odds and the one-year cumulative event hazard, one per patient."""
    features = _outcome_features(patients)
    year_hazard = np.exp(np.minimum(_linear(features, EVENT_WEIGHTS), 3.0))
    return features["SUBJECT_ID"].astype("int64"), _linear(features, LVEF_WEIGHTS), year_hazard


def outcome_probabilities(patients: list[Patient]) -> pd.DataFrame:
    """The noise-free ground truth: P(LVEF_REDUCED), P(event within each horizon), P(risk class)."""
    subject_ids, lvef_log_odds, year_hazard = _outcome_scores(patients)
    out = pd.DataFrame({"SUBJECT_ID": subject_ids, "P_LVEF_REDUCED": expit(lvef_log_odds)})
    for days in HORIZONS_DAYS:
        out[f"P_EVENT_{days}D"] = 1.0 - np.exp(-year_hazard * (days / 365.0) ** EVENT_SHAPE)
    year_log_odds = np.log(np.expm1(year_hazard))  # logit of P(event within 365 days)
    low, high = (norm.cdf((cut - year_log_odds) / RISK_NOISE) for cut in RISK_CUTS)
    out["P_RISK_LOW"], out["P_RISK_MEDIUM"], out["P_RISK_HIGH"] = low, high - low, 1.0 - high
    return out


def simulate_outcomes(patients: list[Patient], seed: int) -> pd.DataFrame:
    """Outcome labels drawn from the model of :func:`outcome_probabilities`: one row per patient.

    The event time is Weibull, censoring uniform over 30-1095 days after the last admission;
    EVENT_DAYS is rounded to 0.01 day so the CSV text is stable.
    """
    subject_ids, lvef_log_odds, year_hazard = _outcome_scores(patients)
    rng = np.random.default_rng([seed, 1])  # a stream of its own: labels do not shift the codes
    n = len(subject_ids)
    lvef = rng.random(n) < expit(lvef_log_odds)
    event_days = 365.0 * (rng.exponential(size=n) / year_hazard) ** (1.0 / EVENT_SHAPE)
    censor_days = rng.uniform(30.0, 1095.0, size=n)
    risk_log_odds = np.log(np.expm1(year_hazard)) + rng.normal(0.0, RISK_NOISE, size=n)
    return pd.DataFrame(
        {
            "SUBJECT_ID": subject_ids,
            "LVEF_REDUCED": lvef.astype("int64"),
            "EVENT_DAYS": np.maximum(np.round(np.minimum(event_days, censor_days), 2), 0.01),
            "EVENT_OBSERVED": (event_days <= censor_days).astype("int64"),
            "RISK_CATEGORY": np.searchsorted(RISK_CUTS, risk_log_odds).astype("int64"),
        }
    )


# ----------------------------------------------------------------------------- CLI
