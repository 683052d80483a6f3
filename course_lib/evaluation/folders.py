"""Loading and checking the folders ``python -m course_lib evaluate`` compares (lesson 09).

Each folder is in the MIMIC-III layout. Before any metric is computed the folders are checked
to fit together: same code system, a reference and a training split disjoint from the real
test sample and from each other, and a synthetic folder that is not simply the real data or
the training split again (an evaluation of a copy would print reassuring floors). Every error
is an :class:`EvaluationInputError` naming the folder and what was expected.

Without ``--reference`` the real folder is split at random into two disjoint halves (real test
sample, reference for the floors); the notes say which.

With a trained run, :func:`likelihood_inputs` scores patients with the model's own
log-likelihood (``mia_likelihood_auc``, ``perplexity`` beside ``unigram_perplexity``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from course_lib import icd9
from course_lib.cohort import Cohort
from course_lib.evaluation.floor import disjoint_splits
from course_lib.evaluation.likelihood import patient_log_likelihoods, perplexity, unigram_perplexity
from course_lib.evaluation.privacy import visit_signature
from course_lib.evaluation.suite import Evaluation, evaluate_cohorts
from course_lib.evaluation.uncertainty import Interval, bootstrap_records
from course_lib.evaluation.utility import DEFAULT_OUTCOME, OutcomeLabeler
from course_lib.mimic import DEFAULT_UNKNOWN_CODES, MimicFormatError, load_mimic
from course_lib.runs import Run
from course_lib.simulate import simulate_outcomes

MIMIC_FILES = "PATIENTS.csv, ADMISSIONS.csv and DIAGNOSES_ICD.csv"
# A folder whose diagnosis codes are more than this share unknown to ICD-9-CM v32 is taken to
# use another code system (ICD-10, procedure codes, token ids); below it, the unknown codes
# are dropped and counted (real MIMIC-III holds a few codes retired before v32).
MAX_UNKNOWN_CODE_SHARE = 0.10
# OUTCOMES.csv columns that course_lib.simulate writes: their presence marks simulated data,
# whose ground-truth outcome model can label synthetic patients.
SIMULATOR_OUTCOME_COLUMNS = ("LVEF_REDUCED", "EVENT_DAYS", "EVENT_OBSERVED", "RISK_CATEGORY")
# Synthetic records identical to records of one real cohort above this share are refused: the
# "generator" returned the data itself (a model that memorises shows up in the privacy alarm).
MAX_IDENTICAL_SHARE = 0.95
# Patients per side (train, real, reference) scored with the model's log-likelihood: enough
# for an AUROC to +-0.03, few enough to keep the evaluation within seconds on a CPU.
LIKELIHOOD_PATIENTS = 500


class EvaluationInputError(ValueError):
    """An input folder the evaluation cannot use; the message names the folder and what was
    expected."""


@dataclass(frozen=True)
class FolderEvaluation(Evaluation):
    """An :class:`Evaluation` that also keeps what the report needs besides the numbers:
    ``notes`` (how the samples were made) and the cohorts compared (``real`` is the real
    test sample, ``reference`` the floor's sample)."""

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


def load_folder(
    directory: str | Path, role: str, unknown_codes: str = DEFAULT_UNKNOWN_CODES
) -> tuple[Cohort, float]:
    """Load one MIMIC-III folder for the evaluation; return the cohort and the share of its
    diagnosis codes that are not ICD-9-CM v32 (dropped with ``unknown_codes="skip"``;
    ``"error"`` stops at the first, as ``--unknown-codes``).

    ``role`` (real, synthetic, train, reference) names the folder in every error.
    """

    directory = Path(directory)
    where = f"{role} folder {directory}"
    if not directory.is_dir():
        raise EvaluationInputError(
            f"{where}: not found (expected a folder in the MIMIC-III layout with {MIMIC_FILES})"
        )
    try:
        cohort = load_mimic(directory, unknown_codes=unknown_codes)
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


def check_shared_codes(cohort: Cohort, real: Cohort, where: str, real_where: str) -> None:
    """Refuse a cohort that shares no code with the real one (another code system)."""
    codes = {code for patient in cohort for code in patient.code_set}
    real_codes = {code for patient in real for code in patient.code_set}
    if not codes & real_codes:
        raise EvaluationInputError(
            f"{where}: none of its {len(codes)} distinct codes occurs in the {real_where} "
            "(expected the same code system and vocabulary: dotless ICD-9-CM diagnosis codes "
            "of the same population)"
        )


def check_disjoint(cohort: Cohort, other: Cohort, where: str, other_where: str) -> None:
    """Refuse two real samples that share SUBJECT_IDs (a floor or holdout must be unseen)."""
    shared = {p.subject_id for p in cohort} & {p.subject_id for p in other}
    if shared:
        raise EvaluationInputError(
            f"{where}: {len(shared)} SUBJECT_IDs also in the {other_where} (e.g. "
            f"{min(shared)}); expected patients disjoint from those"
        )


def identical_share(synthetic: Cohort, real: Cohort) -> float:
    """Share of synthetic patients whose (sex, visit code sets) record occurs in ``real``."""
    records = {(p.sex, visit_signature(p)) for p in real}
    return sum((p.sex, visit_signature(p)) in records for p in synthetic) / len(synthetic)


def check_not_a_copy(synthetic: Cohort, real: Cohort, where: str, real_where: str) -> None:
    """Refuse a synthetic cohort that is (nearly) the real cohort itself."""
    share = identical_share(synthetic, real)
    if share > MAX_IDENTICAL_SHARE:
        raise EvaluationInputError(
            f"{where}: {share:.0%} of its patients are records of the {real_where} "
            "(expected generated patients, not the real data itself)"
        )


def is_simulated_cohort(cohort: Cohort) -> bool:
    """True when the outcomes table has the simulator's columns (its outcome model can label)."""
    outcomes = cohort.outcomes
    return outcomes is not None and set(SIMULATOR_OUTCOME_COLUMNS) <= set(outcomes.columns)


def _has_outcome(cohort: Cohort | None) -> bool:
    return (
        cohort is not None
        and cohort.outcomes is not None
        and DEFAULT_OUTCOME in cohort.outcomes.columns
    )


@dataclass
class LoadedFolders:
    """The checked cohorts of one evaluation, with their unknown-code share and notes."""

    real: Cohort
    synthetic: Cohort
    synthetic_unknown: float
    train: Cohort | None = None
    reference: Cohort | None = None
    notes: list[str] = field(default_factory=list)


def load_folders(
    real_dir: str | Path,
    synthetic_dir: str | Path,
    train_dir: str | Path | None = None,
    reference_dir: str | Path | None = None,
    unknown_codes: str = DEFAULT_UNKNOWN_CODES,
) -> LoadedFolders:
    """Load every folder and run the checks of the module docstring."""
    real_dir, synthetic_dir = Path(real_dir), Path(synthetic_dir)
    real_where = f"real folder {real_dir}"
    real, _ = load_folder(real_dir, "real", unknown_codes)
    synthetic, unknown = load_folder(synthetic_dir, "synthetic", unknown_codes)
    synthetic_where = f"synthetic folder {synthetic_dir}"
    check_shared_codes(synthetic, real, synthetic_where, real_where)
    check_not_a_copy(synthetic, real, synthetic_where, real_where)
    loaded = LoadedFolders(real, synthetic, unknown)
    for role, directory in (("train", train_dir), ("reference", reference_dir)):
        if directory is None:
            continue
        cohort, _ = load_folder(directory, role, unknown_codes)
        where = f"{role} folder {directory}"
        check_shared_codes(cohort, real, where, real_where)
        check_disjoint(cohort, real, where, real_where)
        setattr(loaded, role, cohort)
    if loaded.train is not None:
        check_not_a_copy(synthetic, loaded.train, synthetic_where, f"train folder {train_dir}")
        if loaded.reference is not None:
            check_disjoint(
                loaded.reference,
                loaded.train,
                f"reference folder {reference_dir}",
                f"train folder {train_dir}",
            )
    for role in ("real", "synthetic", "train", "reference"):
        cohort = getattr(loaded, role)
        if cohort is not None:
            loaded.notes.extend(f"{role}: {note}" for note in cohort.notes)
    return loaded


def split_reference(loaded: LoadedFolders, real_dir: Path, seed: int) -> None:
    """Without a reference folder, split the real one into real test and reference halves."""
    if loaded.reference is not None:
        return
    if len(loaded.real) < 2:
        raise EvaluationInputError(
            f"real folder {real_dir}: {len(loaded.real)} patient, too few to split into a "
            "real test half and a reference half (expected at least 2, or pass a reference "
            "folder)"
        )
    half = len(loaded.real) // 2
    loaded.real, loaded.reference = disjoint_splits(
        loaded.real, [len(loaded.real) - half, half], seed=seed
    )
    loaded.notes.append(
        f"No reference folder: the real folder was split at random (seed {seed}) into two "
        f"disjoint halves, {len(loaded.real)} patients as the real test sample and "
        f"{len(loaded.reference)} as the reference sample that gives every floor."
    )


def simulator_labeler(loaded: LoadedFolders, seed: int) -> OutcomeLabeler | None:
    """The simulator's ground-truth outcome model when the real data come from it (else
    None), with a note saying who was labelled: the oracle behind ``tstr_oracle_auroc``."""
    if not is_simulated_cohort(loaded.real):
        if not _has_outcome(loaded.real):
            loaded.notes.append(
                f"Utility: the real folder has no OUTCOMES.csv with {DEFAULT_OUTCOME}, so "
                "the utility metrics are null."
            )
        return None

    def labeler(patients):
        return simulate_outcomes(patients, seed)

    roles = ("train", "reference")
    unlabelled = [
        role
        for role in roles
        if getattr(loaded, role) is not None and not _has_outcome(getattr(loaded, role))
    ]
    # the oracle always labels the synthetic patients (tstr_oracle_auroc); requested labels
    # in their OUTCOMES.csv, if any, give tstr_auroc
    requested = _has_outcome(loaded.synthetic)
    what = "the synthetic patients" + (
        f" (besides their requested {DEFAULT_OUTCOME}, which give tstr_auroc)" if requested else ""
    )
    if unlabelled:
        what += f" and the {' and '.join(unlabelled)} patients (no {DEFAULT_OUTCOME})"
    loaded.notes.append(
        f"Utility: {what} were labelled, since the real OUTCOMES.csv comes from the "
        "course's simulator, with its ground-truth outcome model, "
        f"course_lib.simulate.simulate_outcomes(patients, seed={seed}) "
        "(tstr_oracle_auroc: an upper bound no real user can compute). Real MIMIC-III "
        "has no such model."
    )
    return labeler


class LikelihoodInputs(dict):
    """``{"train", "real"[, "reference"]} -> per-token log-likelihoods`` (numpy arrays): the
    mapping ``evaluate_cohorts(log_likelihoods=...)`` takes. It also carries ``metrics``
    (``perplexity``, ``perplexity_train``, ``unigram_perplexity``), their ``intervals`` and
    ``notes``, which the suite does not compute: add them to the evaluation's."""

    def __init__(
        self,
        scores: dict[str, np.ndarray],
        metrics: dict[str, float],
        intervals: dict[str, Interval],
        notes: list[str],
    ):
        super().__init__(scores)
        self.metrics, self.intervals, self.notes = metrics, intervals, notes


def _capped(cohort: Cohort, max_patients: int, rng: np.random.Generator) -> Cohort:
    """At most ``max_patients`` of ``cohort`` at random, shortest records first: batches of
    similar lengths carry little padding, and the scores do not depend on the order."""
    rows = np.arange(len(cohort))
    if len(cohort) > max_patients:
        rows = rng.choice(len(cohort), max_patients, replace=False)
    patients = [cohort.patients[row] for row in rows]
    ordered = sorted(patients, key=lambda p: sum(len(v.codes) + 2 for v in p.visits))
    return Cohort(ordered, cohort.outcomes)  # a model with outcome prompts reads the labels


def _run_training_data(run: Run) -> Cohort:
    """The cohort the run was trained on, read from its config's ``data`` folder."""

    data = run.config.data
    if not data or not Path(data).is_dir():
        raise EvaluationInputError(
            f"run {run.path}: its training data {data!r} (config.yaml 'data') is not a folder "
            "here; pass the run's training patients as the train folder (--train)"
        )
    return load_mimic(data, unknown_codes=run.config.unknown_codes)


def _held_out(cohort: Cohort, role: str, train_ids: set[int], run: Run) -> None:
    seen = {p.subject_id for p in cohort} & train_ids
    if seen:
        raise EvaluationInputError(
            f"{role} patients: {len(seen)} SUBJECT_IDs are in the training split of run "
            f"{run.path} (e.g. {min(seen)}); expected patients the model never saw (the run's "
            "test or validation split), or the likelihood attack compares members with members"
        )


def likelihood_inputs(
    run: Run | str | Path,
    real_cohort: Cohort,
    reference_cohort: Cohort | None = None,
    max_patients: int = LIKELIHOOD_PATIENTS,
    *,
    train_cohort: Cohort | None = None,
    seed: int = 0,
) -> LikelihoodInputs:
    """The model's per-patient log-likelihoods (:mod:`course_lib.evaluation.likelihood`) of the
    run's training patients, of ``real_cohort`` (held out) and of ``reference_cohort``, at most
    ``max_patients`` each (a seeded random sample), for ``mia_likelihood_auc``; and the
    held-out ``perplexity`` with the ``unigram_perplexity`` baseline on the same patients.

    The training patients are the run's train split of ``train_cohort`` (default: the run's
    own data folder). Real and reference patients must be outside that split.
    """
    if max_patients < 1:
        raise ValueError(f"max_patients must be >= 1, got {max_patients}")
    run = run if isinstance(run, Run) else Run.load(run)
    train_ids = set(run.split_ids["train"])
    for role, cohort in (("real", real_cohort), ("reference", reference_cohort)):
        if cohort is not None:
            _held_out(cohort, role, train_ids, run)
    train = run.split(
        train_cohort if train_cohort is not None else _run_training_data(run), "train"
    )
    if len(train) == 0:
        raise EvaluationInputError(
            f"run {run.path}: none of its {len(train_ids)} training patients (splits.json) is "
            "in the train cohort given (expected the data the run was trained on)"
        )
    rng = np.random.default_rng(seed)
    sides = {"train": train, "real": real_cohort, "reference": reference_cohort}
    samples = {role: _capped(c, max_patients, rng) for role, c in sides.items() if c is not None}
    model, vocabulary, normalizer, config = run.parts()
    tables = {
        role: patient_log_likelihoods(
            model, vocabulary, normalizer, sample, max_length=config.max_length
        )
        for role, sample in samples.items()
    }
    real = tables["real"]
    metrics = {
        "perplexity": perplexity(real),
        "perplexity_train": perplexity(tables["train"]),
        "unigram_perplexity": unigram_perplexity(
            train, samples["real"], vocabulary, normalizer, max_length=config.max_length
        ),
    }
    totals, counts = real["log_likelihood"].to_numpy(), real["n_tokens"].to_numpy()
    interval = bootstrap_records(
        lambda rows: float(np.exp(-totals[rows].sum() / max(counts[rows].sum(), 1))),
        len(real),
        seed=seed,
    )
    sizes = ", ".join(f"{len(samples[role])} of {len(sides[role])} {role}" for role in samples)
    note = (
        f"Likelihood (run {run.path}): the model's log-likelihood of at most {max_patients} "
        f"patients per side, drawn at random (seed {seed}): {sizes} patients. "
        "mia_likelihood_auc: AUROC of the per-token log-likelihood, training vs real test "
        "patients (floor: reference vs real test, about 0.5). perplexity: exp(-log-likelihood "
        "per token) on the real test patients (perplexity_train: on the training patients); "
        "unigram_perplexity: the training patients' token frequencies on the same real test "
        "patients, the baseline a model must beat."
    )
    scores = {role: table["per_token"].to_numpy() for role, table in tables.items()}
    return LikelihoodInputs(scores, metrics, {"perplexity": interval}, [note])


def evaluate_folders(
    real_dir: str | Path,
    synthetic_dir: str | Path,
    *,
    train_dir: str | Path | None = None,
    reference_dir: str | Path | None = None,
    seed: int = 0,
    unknown_codes: str = DEFAULT_UNKNOWN_CODES,
    run: Run | str | Path | None = None,
    likelihood_patients: int = LIKELIHOOD_PATIENTS,
) -> FolderEvaluation:
    """Load the folders, check they fit together, and evaluate with floors.

    ``unknown_code_rate`` is the share of the synthetic folder's codes outside ICD-9-CM v32
    (the loader drops them, so the cohort itself would show 0). With ``run`` (a trained run
    folder or :class:`~course_lib.runs.Run`), the likelihood metrics of
    :func:`likelihood_inputs` are added, ``likelihood_patients`` per side. Raises
    :class:`EvaluationInputError` naming the folder at fault.
    """
    loaded = load_folders(real_dir, synthetic_dir, train_dir, reference_dir, unknown_codes)
    split_reference(loaded, Path(real_dir), seed)
    if reference_dir is not None:
        loaded.notes.append(
            f"Floors: the reference folder {reference_dir} ({len(loaded.reference)} patients)."
        )
    labeler = simulator_labeler(loaded, seed)
    if loaded.train is None:
        loaded.notes.append(
            "No train folder: privacy metrics and trtr_auroc are null, pair statistics "
            "come from the real test sample."
        )
    inputs = LikelihoodInputs({}, {}, {}, [])
    if run is None:
        loaded.notes.append("No run: mia_likelihood_auc and perplexity need the model (--run).")
    else:
        inputs = likelihood_inputs(
            run,
            loaded.real,
            loaded.reference,
            likelihood_patients,
            train_cohort=loaded.train,
            seed=seed,
        )
    evaluation = evaluate_cohorts(
        loaded.synthetic,
        loaded.real,
        train=loaded.train,
        reference=loaded.reference,
        outcome_labeler=labeler,
        seed=seed,
        log_likelihoods=inputs or None,
    )
    metrics = dict(evaluation.metrics) | inputs.metrics
    metrics["unknown_code_rate"] = loaded.synthetic_unknown
    return FolderEvaluation(
        metrics,
        list(evaluation.alarms),
        evaluation.n_patients,
        intervals=dict(evaluation.intervals) | inputs.intervals,
        notes=[*loaded.notes, *inputs.notes, *evaluation.notes],
        real=loaded.real,
        synthetic=loaded.synthetic,
        reference=loaded.reference,
    )
