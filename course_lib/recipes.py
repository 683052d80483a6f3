"""Named training recipes: every run a lesson trains, as code (lessons 03 to 11).

A :class:`Recipe` says everything a run depends on: the cohort (the shipped sample or a
simulated draw), the split, the compute :class:`Budget` (a named model shape and length, so no
lesson writes ``d_model=64`` by hand), the experiment's :class:`~course_lib.config.TrainConfig`
settings, the end-of-epoch callbacks and, when the lesson generates from it, a
:class:`GenerationSpec`. :data:`RECIPES` holds one recipe per lesson run; a lesson calls it by
name with ``ctx.train_or_load(name)`` (:mod:`course_lib.lesson`), which loads the stored
reference run (``reference_runs/<name>/``, written by ``scripts/reference_runs.py``) when its
fingerprint matches, and trains the recipe otherwise.

``recipe.fingerprint()`` is the sha256 of the recipe's canonical JSON and of
:func:`code_version`, the sha256 of the source files that decide the numbers a run produces
(:data:`CODE_MODULES`). A stored run whose fingerprint differs is stale.

Presets other than the recipe's own (a GPU runs ``base``): ``recipe.for_preset(name)`` is the
recipe's variant for that preset, named ``<name>-<preset>``. By default the variant keeps the
experiment (loss weights, prompts, weighting, ...), takes the preset's full budget (its own
epochs, learning rate, shape) and the usual 80/10/10 split, dropping the CPU-only settings in
:data:`BUDGET_SETTINGS`; a recipe that needs something else on a preset lists the field
changes in ``variants={"base": {...}}`` (any :class:`Recipe` field but ``name``; its
``settings`` are merged into the kept ones).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from course_lib.config import TrainConfig

PACKAGE = Path(__file__).resolve().parent
# The modules whose source decides a run's numbers: settings, data, model, loss, loop.
CODE_MODULES = (
    "config.py",
    "presets.py",
    "cohort.py",
    "mimic.py",
    "mimic_csv.py",
    "simulate.py",
    "icd9.py",
    "tokens.py",
    "dataset.py",
    "outcome_prompts.py",
    "model_config.py",
    "model.py",
    "kv_cache.py",
    "prompts.py",
    "losses.py",
    "weighting.py",
    "schedules.py",
    "train_setup.py",
    "training.py",
    "checkpoint.py",
    "sample_check.py",
    "processors.py",
    "generation.py",
)
# What those modules import but does not change a run's numbers: messages and argument
# helpers, atomic writes, the run folder's layout, the CSV writer, the sample check's alarms
# (tests/test_reference_runs.py fails when a module above imports one listed in neither).
OUTSIDE_CODE_VERSION = ("cli.py", "files.py", "runs.py", "mimic_write.py", "evaluation/")
# The sample cohort's files that training reads (their bytes are part of the fingerprint).
SAMPLE_FILES = ("PATIENTS.csv", "ADMISSIONS.csv", "DIAGNOSES_ICD.csv")
# Settings that only size a run for its budget; another preset's variant drops them.
BUDGET_SETTINGS = frozenset(
    {
        "max_steps",
        "epochs",
        "lr",
        "scheduler",
        "batch_size",
        "log_every",
        "cpu_threads",
        "model",
    }
)
CALLBACKS = ("sample_check",)
FULL_SPLIT = (0.8, 0.1, 0.1)


class RecipeError(ValueError):
    """An unknown recipe name, or a recipe that cannot be built."""


@dataclass(frozen=True)
class Budget:
    """A named compute budget: the model-size preset plus the settings that size the run."""

    name: str
    preset: str
    settings: Mapping[str, Any] = field(default_factory=dict)


# One layer of width 64 on each side: short CPU runs that still show per-epoch trends.
NARROW_MODEL = {
    "d_model": 64,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "ffn_dim": 128,
    "attention_heads": 4,
    "dropout": 0.0,
}
BUDGETS: dict[str, Budget] = {
    "tiny": Budget("tiny", "tiny", {"cpu_threads": 1}),
    "narrow": Budget("narrow", "tiny", {"model": NARROW_MODEL, "lr": 5e-3, "cpu_threads": 1}),
    # The preset's own epochs, learning rate and shape. No resumable checkpoint each epoch: a
    # reference run is trained in one go, and a base run's checkpoint is about 1.3 GB.
    "small": Budget("small", "small", {"epoch_checkpoints": False}),
    "base": Budget("base", "base", {"epoch_checkpoints": False}),
}


@dataclass(frozen=True)
class CohortSpec:
    """The shipped sample (``data_samples/mimic_sample``) or ``simulate_cohort(n, seed)``."""

    source: Literal["sample", "simulated"] = "sample"
    n: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.source not in ("sample", "simulated"):
            raise RecipeError(f"cohort source {self.source!r}: expected 'sample' or 'simulated'")
        if (self.source == "simulated") != (self.n is not None and self.seed is not None):
            raise RecipeError("a simulated cohort needs n and seed; the sample takes neither")


SAMPLE = CohortSpec()


@dataclass(frozen=True)
class GenerationSpec:
    """One generated patient per patient of ``split`` (same age and sex), stored with the run.

    ``options`` are keyword arguments of :func:`course_lib.generation.generate_patients`.
    """

    split: Literal["train", "val", "test"] = "test"
    max_new_tokens: int = 64
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """One named training run of a lesson (see the module docstring)."""

    name: str
    lesson: str  # the lesson that owns the run, e.g. "03_bart_for_patients"
    budget: str = "tiny"
    settings: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields
    cohort: CohortSpec = SAMPLE
    split_fractions: tuple[float, float, float] = FULL_SPLIT
    seed: int = 0
    callbacks: tuple[str, ...] = ()
    generation: GenerationSpec | None = None
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.budget not in BUDGETS:
            raise RecipeError(f"recipe {self.name}: budget {self.budget!r}; one of {list(BUDGETS)}")
        fixed = {"out", "data", "preset", "seed", "split_fractions", "progress"} & set(
            self.settings
        )
        if fixed:
            raise RecipeError(
                f"recipe {self.name}: settings {sorted(fixed)} come from the recipe's own fields"
            )
        unknown = [c for c in self.callbacks if c not in CALLBACKS]
        if unknown:
            raise RecipeError(f"recipe {self.name}: callbacks {unknown}; known: {list(CALLBACKS)}")

    @property
    def preset(self) -> str:
        return BUDGETS[self.budget].preset

    def train_config(self, out: str | Path = "runs/train") -> TrainConfig:
        """The run's :class:`TrainConfig`: the budget's settings, then the recipe's."""
        values = {
            **BUDGETS[self.budget].settings,
            **self.settings,
            "out": str(out),
            "preset": self.preset,
            "seed": self.seed,
            "split_fractions": list(self.split_fractions),
            "progress": False,
        }
        config = TrainConfig.from_dict(values, source=f"recipe {self.name}")
        config.validate()
        return config

    def for_preset(self, preset: str) -> Recipe:
        """This recipe on another model-size preset (``<name>-<preset>``); itself on its own."""
        if preset == self.preset:
            return self
        if preset not in BUDGETS:
            raise RecipeError(f"recipe {self.name}: no budget for preset {preset!r}")
        changes = dict(self.variants.get(preset, {}))
        if "name" in changes:
            raise RecipeError(f"recipe {self.name}: a variant's name is <name>-<preset>")
        kept = {k: v for k, v in self.settings.items() if k not in BUDGET_SETTINGS}
        defaults = {"budget": preset, "split_fractions": FULL_SPLIT, "variants": {}}
        changes["settings"] = kept | dict(changes.get("settings", {}))
        return dataclasses.replace(self, name=f"{self.name}-{preset}", **(defaults | changes))

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON of the recipe (plus the config it builds), sorted keys."""
        recipe = _jsonable(dataclasses.asdict(self))
        recipe.pop("variants")  # a variant is its own recipe, with its own name
        config = self.train_config().to_dict()
        config.pop("out")
        return {"recipe": recipe, "train_config": _jsonable(config)}

    def fingerprint(self, data_dir: Path | None = None) -> str:
        """sha256 of the canonical recipe JSON, the code version and, for a recipe trained on
        the sample, the sample's CSV files in ``data_dir``."""
        digest = hashlib.sha256(canonical_json(self.to_json()).encode("utf-8"))
        digest.update(code_version().encode("ascii"))
        if self.cohort.source == "sample":
            digest.update(sample_version(data_dir).encode("ascii"))
        return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode("utf-8") + b"\0")
        # Line endings as git stores them, so a Windows checkout hashes the same.
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()


def code_version() -> str:
    """sha256 of :data:`CODE_MODULES`' source: any change to them makes stored runs stale."""
    return _hash_files([PACKAGE / name for name in CODE_MODULES])


def sample_version(data_dir: Path | None) -> str:
    """sha256 of the sample cohort's training files (``SAMPLE_FILES``) in ``data_dir``."""
    if data_dir is None:
        raise RecipeError("the sample cohort's folder is needed (e.g. LessonContext.data_dir)")
    folder = Path(data_dir)
    missing = [name for name in SAMPLE_FILES if not (folder / name).is_file()]
    if missing:
        raise RecipeError(f"{folder}: sample cohort files {missing} are missing")
    return _hash_files([folder / name for name in SAMPLE_FILES])


# --------------------------------------------------------------------------------- registry
def _register(*recipes: Recipe) -> dict[str, Recipe]:
    registry: dict[str, Recipe] = {}
    for recipe in recipes:
        if "-" in recipe.name:
            raise RecipeError(f"recipe name {recipe.name!r}: '-' is kept for <name>-<preset>")
        if recipe.name in registry:
            raise RecipeError(f"recipe name {recipe.name!r} is used twice")
        registry[recipe.name] = recipe
    return registry


NO_AUX = {"age": 0.0, "sex": 0.0}
# The conditioning of issue 11 (a validity term, a demographic vector at every decoder
# position) is the config's default now. The lessons' experiments (03-07, 10) were built
# without it and compare prompts and aux weights alone, so their recipes pin it off; lessons
# 08, 09 and 11 train the default. Changing a lesson to it is an edit of its recipe here.
WITHOUT_ISSUE_11 = {
    "extra_losses": [],
    "decoder_prompt_add": False,
    "loss_weights": {"age": 0.001, "sex": 0.001},  # the default before issue 11
}
# Lesson 03's baseline, which lesson 04's prompt variants copy but for prompt_location.
_BASELINE = {
    **WITHOUT_ISSUE_11,
    "max_steps": 150,
    "prompt_location": "none",
    "loss_weights": NO_AUX,
    "sample_every_epoch": 0,
    "log_every": 5,
}
# Lessons 04 and 05: the conditioning recipe (validity loss on, the default) and its variants,
# same budget; each stores one generated patient per training patient (no masked decoding).
_CONDITIONING = {
    "max_steps": 300,
    "log_every": 5,
    "sample_every_epoch": 0,
    "patience": None,
}
_CONDITIONING_SAMPLE = GenerationSpec(split="train")
_PROMPT_VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"prompt_location": "none", "decoder_prompt_add": False},
    "encoder": {"prompt_location": "encoder", "decoder_prompt_add": False},
    "decoder": {"prompt_location": "decoder", "decoder_prompt_add": False},
    "both": {"prompt_location": "both", "decoder_prompt_add": False},
    "both_add": {},  # the default: prompts on both sides + the decoder vector
}
# Lesson 05: heavy aux heads vs none, both without the validity loss (prompts as the default).
_AUX_VARIANTS: dict[str, dict[str, Any]] = {
    "heavy": {"extra_losses": [], "loss_weights": {"age": 1.0, "sex": 1.0}},
    "off": {"extra_losses": [], "loss_weights": NO_AUX},
}
# Lesson 07: every strategy trains the same 200 steps (10 epochs) on the narrow model, 30% of
# the sample; each stores one generated patient per validation patient, scored by the lesson.
_BALANCING = {
    **WITHOUT_ISSUE_11,
    "max_steps": 200,
    "patience": None,
    "sample_every_epoch": 0,
    "log_every": 5,
}
_BALANCING_SAMPLE = GenerationSpec(split="val")
_EPOCH_STEPS_07 = 19  # ceil(600 training patients / batch 32): one epoch of lesson 07's runs
_STATIC_07 = {
    "0.01_0.2": {"age": 0.01, "sex": 0.2},
    "0.005_0.005": {"age": 0.005, "sex": 0.005},
    "0.001_0.001": {"age": 0.001, "sex": 0.001},
    "0_0": NO_AUX,
}
_SEEDS_07 = (0, 1)  # training seeds of each static weight (the error bars)
# Lessons 07 and 10 split 30% / 10% / 60% of the sample (lesson 10's failures).
_BALANCING_SPLIT = (0.3, 0.1, 0.6)
# Lesson 10: the failures, with the trainer's per-epoch sample check. They keep the trainer's
# old length-grouped batches: with random batches this budget no longer collapses (lesson 10).
_FAILURE = {
    **WITHOUT_ISSUE_11,
    "group_by_length": True,
    "max_steps": 180,
    "scheduler": "constant_with_warmup",
    "patience": None,
    "sample_every_epoch": 32,
    "sample_max_new_tokens": 32,
    "log_every": 2,
}
_GENERATOR = {"max_steps": 150, "sample_every_epoch": 0}
# Lessons 08 and 10: one generated patient per test patient, so lesson 10 can count the visits
# the generator writes with random batches and with length-grouped ones (grouped_batches).
_GENERATOR_SAMPLE = GenerationSpec(split="test")


def _lesson07(
    name: str, variants: Mapping[str, Any] | None = None, seed: int = 0, **settings: Any
) -> Recipe:
    return Recipe(
        name,
        "07_balancing_losses",
        "narrow",
        _BALANCING | settings,
        split_fractions=_BALANCING_SPLIT,
        seed=seed,
        generation=_BALANCING_SAMPLE,
        variants=variants or {},
    )


def _scheduled_07(warmup_steps: int) -> dict[str, Any]:
    """Lesson 07's scheduled weighting: age warms up over one epoch, sex stops below 0.05."""
    schedules = {
        "age": {"type": "linear_warmup", "w": 0.01, "warmup_steps": warmup_steps},
        "sex": {"type": "off_below_threshold", "w": 0.2, "threshold": 0.05},
    }
    return {"weighting": "scheduled", "weighting_options": {"schedules": schedules}}


def _lesson10(name: str, **settings: Any) -> Recipe:
    return Recipe(
        name,
        "10_diagnosing_failures",
        "narrow",
        _FAILURE | settings,
        split_fractions=_BALANCING_SPLIT,
        callbacks=("sample_check",),
    )


RECIPES: dict[str, Recipe] = _register(
    Recipe("baseline_none", "03_bart_for_patients", "tiny", _BASELINE),
    *(
        Recipe(
            f"prompts_{name}",
            "04_conditional_prompts",
            "narrow",
            _CONDITIONING | settings,
            generation=_CONDITIONING_SAMPLE,
        )
        for name, settings in _PROMPT_VARIANTS.items()
    ),
    *(
        Recipe(
            f"aux_{name}",
            "05_multitask_heads",
            "narrow",
            _CONDITIONING | settings,
            generation=_CONDITIONING_SAMPLE,
        )
        for name, settings in _AUX_VARIANTS.items()
    ),
    *(
        _lesson07(f"static_{name}" + (f"_s{seed}" if seed else ""), seed=seed, loss_weights=w)
        for name, w in _STATIC_07.items()
        for seed in _SEEDS_07
    ),
    # The contrast: no aux heads, the validity unlikelihood of issue 11 instead.
    _lesson07("validity_07", loss_weights={**NO_AUX, "validity": 10.0}, extra_losses=["validity"]),
    _lesson07(
        "weighting_scheduled",
        **_scheduled_07(_EPOCH_STEPS_07),
        variants={  # the age weight warms up over one epoch of the preset's run
            "small": {"settings": _scheduled_07(50)},  # 1,600 patients / batch 32
            "base": {"settings": _scheduled_07(25)},  # 1,600 patients / batch 64
        },
    ),
    _lesson07("weighting_uncertainty", weighting="uncertainty"),
    _lesson07("weighting_dwa", weighting="dwa", weighting_options={"temperature": 2.0}),
    _lesson07("weighting_gradnorm", weighting="gradnorm", weighting_options={"alpha": 1.5}),
    _lesson10(
        "failing", loss_weights={"age": 0.01, "sex": 1.0, "cooc": 5.0}, extra_losses=["cooc"]
    ),
    _lesson10(
        "sex_scheduled_no_cooc",
        loss_weights={"age": 0.01, "sex": 1.0},
        weighting="scheduled",
        weighting_options={
            "schedules": {
                "sex": {
                    "type": "off_below_threshold",
                    "w": 1.0,
                    "threshold": 0.05,
                    "patience_epochs": 1,
                }
            }
        },
    ),
    _lesson10(
        "cooc_plus_diversity",
        loss_weights={"age": 0.01, "sex": 1.0, "cooc": 5.0, "diversity": 2.0},
        extra_losses=["cooc", "diversity"],
    ),
    _lesson10(
        "validity_instead",
        loss_weights={"age": 0.01, "sex": 0.0, "cooc": 5.0, "validity": 10.0},
        extra_losses=["cooc", "validity"],
    ),
    # Lessons 08 and 09: the course's default recipe (aux weights 0.001/0.001), one generator.
    Recipe("generator", "08_generating_patients", "tiny", _GENERATOR, generation=_GENERATOR_SAMPLE),
    # Lesson 10: the same generator trained on length-grouped batches (the old default), whose
    # records end too early; same cohort, split, steps and seed as "generator".
    Recipe(
        "grouped_batches",
        "10_diagnosing_failures",
        "tiny",
        {**_GENERATOR, "group_by_length": True},
        generation=_GENERATOR_SAMPLE,
    ),
    # Lesson 09: the same generator with the outcome as one more prompt (utility without an oracle).
    Recipe(
        "outcome_generator",
        "09_evaluating_records",
        "tiny",
        {**_GENERATOR, "outcome_prompts": ["LVEF_REDUCED"]},
    ),
    # Lesson 11: a short generator whose decoder states feed the prediction heads.
    Recipe(
        "heads_generator",
        "11_prediction_heads",
        "tiny",
        {"max_steps": 50, "sample_every_epoch": 0, "patience": None},
    ),
)


def get_recipe(name: str, preset: str | None = None) -> Recipe:
    """The recipe ``name`` (``<name>-<preset>`` names a preset variant), for ``preset`` if given."""
    base, _, suffix = name.partition("-")
    if name in RECIPES:
        recipe = RECIPES[name]
    elif suffix and base in RECIPES:
        recipe = RECIPES[base].for_preset(suffix)
    else:
        raise RecipeError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return recipe.for_preset(preset) if preset is not None else recipe
