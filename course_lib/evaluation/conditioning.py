"""Has the model learned who the patient is? Conditioning metrics (issue 11, lesson 09).

* **Prompt information** (nats): on real test patients, the model's log-likelihood of the
  first code of the first visit under the patient's true demographics minus under swapped
  ones (sex flipped; age moved to another band: ``age + 40`` below 50 years, ``age - 40``
  from 50), averaged over patients. ``prompt_information_true_nats`` is the same average
  computed with the simulator's exact first-code distribution
  (:func:`course_lib.ground_truth.first_code_probabilities`), on the same patients and codes:
  their ratio is the share of the real dependence the model learned. Only the first code
  has an exact ground truth (later codes depend on the whole history), so both figures
  use it. A code that the swapped demographics forbid has true probability 0 there; both
  figures therefore smooth every distribution the same way, ``(1 - eps) p + eps / n_codes``
  with ``eps = 0.01`` over the model's code vocabulary, which caps such a code's log ratio
  at about ``log(p n_codes / eps)`` instead of infinity. Patients whose first code is not
  in the vocabulary are left out of both. ``_sex`` and ``_age`` variants swap one feature.
  Because that cap dominates the true figure, ``prompt_discrimination_nats`` (and its
  ``_true_`` twin) scores the same codes by ``log(2 p / (p + p_swapped))``: at most
  ``log 2`` per code, reached once the swapped probability is small, whatever its tail.
* **Per-group fidelity**: code prevalence (share of patients with the code) R^2 between
  synthetic and real patients within each sex x age group, next to the same R^2 of a second
  real sample (the floor).
* **Demographic-specific mass, as generated**: the share of code occurrences that are
  female-only codes when the test ages are generated all-female, then all-male; and the
  share of newborn codes (the MCE "newborn" list) among newborns' and among adults' codes.
  The real test split's shares come alongside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import r2_score

from course_lib import ground_truth, icd9, simulate
from course_lib.cohort import Cohort
from course_lib.evaluation.validity import validity_metrics
from course_lib.generation import demographics_tensors, generate_patients, prompt_labels
from course_lib.outcome_prompts import model_outcome_classes, requested_labels
from course_lib.tokens import BOS_ID, VISIT_START_ID

SMOOTHING = 0.01
AGE_SHIFT_YEARS = 40.0
# sex x age groups of the per-group fidelity: newborns, children, adults, older adults
GROUP_AGES: tuple[tuple[str, float, float], ...] = (
    ("newborn", 0.0, 1.0),
    ("child", 1.0, 18.0),
    ("adult", 18.0, 56.0),
    ("older", 56.0, math.inf),
)
MIN_GROUP_PATIENTS = 10


def swapped_age(age: float) -> float:
    """Another age band: ``age + 40`` below 50 years, else ``age - 40``."""
    return age + AGE_SHIFT_YEARS if age < 50 else age - AGE_SHIFT_YEARS


def swapped_demographics(
    ages: Sequence[float], sexes: Sequence[str], swap: str
) -> tuple[list[float], list[str]]:
    """``swap`` is ``"sex"``, ``"age"`` or ``"both"``."""
    if swap not in ("sex", "age", "both"):
        raise ValueError(f"swap must be 'sex', 'age' or 'both', got {swap!r}")
    new_ages = [swapped_age(a) if swap != "sex" else float(a) for a in ages]
    new_sexes = [("M" if s == "F" else "F") if swap != "age" else s for s in sexes]
    return new_ages, new_sexes


def smooth(probabilities: np.ndarray, n_codes: int, eps: float = SMOOTHING) -> np.ndarray:
    """``(1 - eps) p + eps / n_codes``: finite logs for codes a distribution forbids."""
    return (1.0 - eps) * np.asarray(probabilities, dtype=float) + eps / n_codes


@torch.no_grad()
def model_first_code_probabilities(
    model, vocabulary, normalizer, ages, sexes, codes, batch_size: int = 256, outcomes=None
) -> np.ndarray:
    """P_model(first code = ``codes[i]`` | demographics), renormalised over code tokens.

    The decoder reads ``<patient> <visit>`` and its next-token distribution is restricted to
    the codes, as the generation grammar restricts it. ``codes`` must be in the vocabulary.
    ``outcomes``: the labels of a model's outcome prompts, as for ``generate_patients``.
    """

    model.eval()
    labels = requested_labels(outcomes, model_outcome_classes(model.config), len(codes))
    code_ids = torch.tensor(vocabulary.code_ids)
    out = np.zeros(len(codes))
    for start in range(0, len(codes), batch_size):
        stop = min(start + batch_size, len(codes))
        x_num, x_cat = demographics_tensors(
            list(ages[start:stop]),
            list(sexes[start:stop]),
            normalizer,
            model.device,
            labels[start:stop],
        )
        decoder_input = torch.tensor([[BOS_ID, VISIT_START_ID]] * (stop - start))
        logits = model(
            decoder_input_ids=decoder_input.to(model.device), x_num=x_num, x_cat=x_cat
        ).logits[:, -1]
        probs = logits.float()[:, code_ids.to(logits.device)].softmax(dim=-1).cpu()
        targets = torch.tensor([vocabulary.code_to_id(c) for c in codes[start:stop]])
        out[start:stop] = probs[torch.arange(stop - start), targets - code_ids[0]].numpy()
    return out


def _first_codes(real: Cohort, vocabulary) -> tuple[list[float], list[str], list[str], Cohort]:
    rows = [
        p for p in real if p.visits and p.visits[0].codes and p.visits[0].codes[0] in vocabulary
    ]
    if not rows:
        raise ValueError("no real patient's first code is in the model's vocabulary")
    ages, sexes = [p.age for p in rows], [p.sex for p in rows]
    return ages, sexes, [p.visits[0].codes[0] for p in rows], Cohort(rows, real.outcomes)


def prompt_information(
    model, vocabulary, normalizer, real: Cohort, *, simulated: bool = False
) -> dict[str, float]:
    """``prompt_information[_sex|_age]_nats`` and, for a simulated cohort, the ``_true_`` ones."""

    ages, sexes, codes, kept = _first_codes(real, vocabulary)
    n_codes = len(vocabulary.code_ids)
    outcomes = prompt_labels(model, kept)  # outcome prompts stay as they are when swapping

    def model_log(a, s):
        p = model_first_code_probabilities(
            model, vocabulary, normalizer, a, s, codes, outcomes=outcomes
        )
        return np.log(smooth(p, n_codes))

    def true_log(a, s):
        ages_in = np.clip(np.asarray(a, dtype=float), 0.0, simulate.MAX_AGE)
        return np.log(smooth(ground_truth.first_code_probabilities(ages_in, s, codes), n_codes))

    def discrimination(own: np.ndarray, swapped: np.ndarray) -> float:
        return float(np.mean(np.log(2.0) + own - np.logaddexp(own, swapped)))

    metrics = {}
    own_model = model_log(ages, sexes)
    own_true = true_log(ages, sexes) if simulated else None
    for swap in ("both", "sex", "age"):
        suffix = "" if swap == "both" else f"_{swap}"
        other = swapped_demographics(ages, sexes, swap)
        swapped_model = model_log(*other)
        metrics[f"prompt_information{suffix}_nats"] = float(np.mean(own_model - swapped_model))
        truth = float(np.mean(own_true - true_log(*other))) if simulated else math.nan
        metrics[f"prompt_information{suffix}_true_nats"] = truth
        if swap == "both":
            metrics["prompt_discrimination_nats"] = discrimination(own_model, swapped_model)
            metrics["prompt_discrimination_true_nats"] = (
                discrimination(own_true, true_log(*other)) if simulated else math.nan
            )
    truth = metrics["prompt_information_true_nats"]
    metrics["prompt_information_ratio"] = (
        metrics["prompt_information_nats"] / truth if truth and math.isfinite(truth) else math.nan
    )
    return metrics


def _group(age: float) -> str:
    return next(name for name, low, high in GROUP_AGES if low <= age < high)


def code_prevalence(cohort: Cohort) -> dict[str, float]:
    """Share of the cohort's patients that have each code at least once."""
    counts: dict[str, int] = {}
    for patient in cohort:
        for code in patient.code_set:
            counts[code] = counts.get(code, 0) + 1
    return {code: n / len(cohort) for code, n in counts.items()} if len(cohort) else {}


def prevalence_r2(synthetic: Cohort, real: Cohort) -> float:
    """R^2 of synthetic against real code prevalence, over the codes the real patients have."""
    real_prev, syn_prev = code_prevalence(real), code_prevalence(synthetic)
    if len(real_prev) < 2 or not len(synthetic):
        return math.nan
    codes = sorted(real_prev)
    return float(r2_score([real_prev[c] for c in codes], [syn_prev.get(c, 0.0) for c in codes]))


def _by_group(cohort: Cohort) -> dict[str, Cohort]:
    groups: dict[str, list] = {}
    for patient in cohort:
        groups.setdefault(f"{patient.sex}_{_group(patient.age)}", []).append(patient)
    return {key: Cohort(patients) for key, patients in groups.items()}


def group_fidelity(
    synthetic: Cohort, real: Cohort, reference: Cohort | None = None
) -> dict[str, float]:
    """``group_r2_<sex>_<group>`` (and ``_floor`` from ``reference``) for groups with at least
    :data:`MIN_GROUP_PATIENTS` real patients, plus their mean ``group_r2_mean``."""
    real_groups, syn_groups = _by_group(real), _by_group(synthetic)
    ref_groups = _by_group(reference) if reference is not None else {}
    metrics, floors = {}, {}
    for key in sorted(real_groups):
        if len(real_groups[key]) < MIN_GROUP_PATIENTS:
            continue
        metrics[f"group_r2_{key}"] = prevalence_r2(
            syn_groups.get(key, Cohort([])), real_groups[key]
        )
        floors[f"group_r2_{key}_floor"] = (
            prevalence_r2(ref_groups[key], real_groups[key]) if key in ref_groups else math.nan
        )
    values = [v for v in metrics.values() if math.isfinite(v)]
    floor_values = [v for v in floors.values() if math.isfinite(v)]
    summary = {
        "group_r2_mean": float(np.mean(values)) if values else math.nan,
        "group_r2_mean_floor": float(np.mean(floor_values)) if floor_values else math.nan,
    }
    return summary | metrics | floors


def _share(cohort: Cohort, rule: str, keep=lambda patient: True) -> float:
    listed = icd9.mce_rules()[rule]
    codes = [code for patient in cohort if keep(patient) for code in patient.codes]
    return sum(code in listed for code in codes) / len(codes) if codes else math.nan


def demographic_mass(
    synthetic: Cohort, synthetic_female: Cohort, synthetic_male: Cohort, real: Cohort
) -> dict[str, float]:
    """Female-only code shares under female and male prompts, newborn-code shares."""
    is_newborn, is_adult = (lambda p: p.age < 1), (lambda p: p.age >= 18)
    metrics = {
        "female_code_share_female_prompt": _share(synthetic_female, "female"),
        "female_code_share_male_prompt": _share(synthetic_male, "female"),
        "female_code_share_real_female": _share(real, "female", lambda p: p.sex == "F"),
        "female_code_share_real_male": _share(real, "female", lambda p: p.sex == "M"),
        "newborn_code_share_newborns": _share(synthetic, "newborn", is_newborn),
        "newborn_code_share_adults": _share(synthetic, "newborn", is_adult),
        "newborn_code_share_real_newborns": _share(real, "newborn", is_newborn),
        "newborn_code_share_real_adults": _share(real, "newborn", is_adult),
    }
    for label, cohort in (("all_female", synthetic_female), ("all_male", synthetic_male)):
        rates = validity_metrics(cohort)
        metrics[f"sex_violation_rate_{label}"] = rates["sex_violation_rate"]
        metrics[f"age_violation_rate_{label}"] = rates["age_violation_rate"]
    return metrics


def conditioning_metrics(
    model,
    vocabulary,
    normalizer,
    real: Cohort,
    synthetic: Cohort,
    *,
    reference: Cohort | None = None,
    simulated: bool = False,
    seed: int = 0,
    **generate_options,
) -> dict[str, float]:
    """Every conditioning metric in one flat dict.

    ``real``: the real test split; ``synthetic``: patients generated with its demographics;
    ``reference``: a second real sample for the per-group floor; ``simulated``: ``real``
    comes from :mod:`course_lib.simulate`, so the true prompt information exists. The
    all-female and all-male cohorts (the test ages, every sex set to one value) are
    generated here with ``generate_options`` (those of :func:`generate_patients`: pass the
    same ``validity``/``guidance`` as for ``synthetic``).
    """

    ages = [p.age for p in real]
    outcomes = prompt_labels(model, real)  # a model with outcome prompts keeps real's labels
    one_sex = {
        sex: generate_patients(
            model,
            vocabulary,
            normalizer,
            ages,
            [sex] * len(ages),
            seed=seed,
            outcomes=outcomes,
            **generate_options,
        )
        for sex in ("F", "M")
    }
    return (
        prompt_information(model, vocabulary, normalizer, real, simulated=simulated)
        | group_fidelity(synthetic, real, reference)
        | demographic_mass(synthetic, one_sex["F"], one_sex["M"], real)
    )
