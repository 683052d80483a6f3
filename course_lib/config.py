"""One training run's settings: the :class:`TrainConfig` fields, their checks and their flags.

Every setting is one field below: its type says what values it takes (a ``Literal`` lists the
choices, defined once here), its metadata holds the help text, and the ``train`` command's
flags are built from the fields (the ``HfArgumentParser`` pattern), so a new setting is one
line. Loss terms come from :data:`course_lib.losses.LOSS_TERMS`: a new term needs no edit here.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from course_lib.losses import CORE_TERMS, LOSS_TERMS, OPTIONAL_TERMS
from course_lib.mimic import DEFAULT_UNKNOWN_CODES, UNKNOWN_CODES
from course_lib.presets import get_preset
from course_lib.weighting import (
    STRATEGIES,
    Constant,
    LinearWarmup,
    LossWeighting,
    OffAfterEpoch,
    OffBelowThreshold,
    make_weighting,
    parse_loss_weights,
)

Objective = Literal["generate", "infill"]
PromptLocation = Literal["encoder", "decoder", "both", "none"]
AuxHead = Literal["mlp", "linear"]
Scheduler = Literal["linear", "cosine", "constant_with_warmup"]
MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
Keep = Literal["best", "last"]
UnknownCodes = Literal[UNKNOWN_CODES]  # the loader's choices: one definition, in mimic.py
OBJECTIVES = get_args(Objective)
PROMPT_LOCATIONS = get_args(PromptLocation)
AUX_HEADS = get_args(AuxHead)
SCHEDULERS = get_args(Scheduler)
MIXED_PRECISION = get_args(MixedPrecision)
WEIGHTINGS = tuple(STRATEGIES)
# Fields a resumed run may change: they do not alter what is computed.
RESUME_MUTABLE = frozenset({"data", "out", "progress", "num_workers", "cpu_threads", "max_minutes"})


class TrainConfigError(ValueError):
    """A configuration value (YAML key, CLI flag or argument) that training cannot use."""


# ----------------------------------------------------------------- command-line parsers
def _key_values(text: str) -> dict[str, Any]:
    """``"a=1,b=x"`` -> ``{"a": 1, "b": "x"}``, each value read as YAML."""
    options: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"item {item!r}: expected KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value.strip())
    return options


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _fractions(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{text!r}: expected three numbers such as 0.8,0.1,0.1") from None


def _zero_is_none(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text) or None
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None

    return parse


def setting(default: Any, help: str, **cli: Any) -> Any:
    """A config field: its default, its help text and how its flag reads (``flag``: another
    flag name; ``parse``: text -> value for flags that are not a plain number or word;
    ``low``/``high``: the range a number must lie in)."""
    metadata = {"help": help, **cli}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# ------------------------------------------------------------------------ configuration
@dataclass
class TrainConfig:
    """Everything one training run depends on; saved as ``config.yaml`` in the run folder.

    ``None`` for ``epochs``, ``batch_size``, ``lr`` and ``max_length`` means "the preset's"
    (``max_length`` is the preset's and the model's ``max_sequence_length``: tokens per patient).
    ``max_steps``, when set, overrides ``epochs`` (as in ``transformers``). ``model`` holds
    overrides of the preset's BART shape (``d_model``, ``encoder_layers``, ``dropout``...).
    """

    data: str | None = setting(None, "MIMIC-III-layout folder of the cohort (PATIENTS.csv, ...)")
    out: str = setting("runs/train", "run folder to write")
    preset: str = setting("tiny", "model size preset: tiny, small or base")
    epochs: int | None = setting(None, "passes over the training split", low=1)
    max_steps: int | None = setting(None, "optimizer steps; overrides --epochs", low=1)
    max_minutes: float | None = setting(
        None,
        "stop after this many minutes of training (the schedule still spans the full budget; "
        "a resumed run counts from its resume)",
        low=0.0,
    )
    batch_size: int | None = setting(None, "patients per micro-batch", low=1)
    lr: float | None = setting(None, "peak learning rate (> 0)", low=0.0)
    scheduler: Scheduler = setting("linear", "learning-rate schedule after warm-up")
    warmup_ratio: float = setting(0.05, "share of the steps spent warming up", low=0.0, high=1.0)
    weight_decay: float = setting(0.01, "AdamW weight decay of the matrices", low=0.0)
    grad_clip: float | None = setting(
        1.0, "max gradient norm (0 turns clipping off)", low=0.0, parse=_zero_is_none(float)
    )
    accumulation: int = setting(1, "micro-batches per optimizer step", low=1)
    group_by_length: bool = setting(
        False,
        "batch patients of similar length: less padding, but one-length batches teach the "
        "model to end records early (lesson 10)",
    )
    seed: int = setting(0, "seed of the split, the weights and the data order", low=0)
    split_fractions: list[float] = setting(
        [0.8, 0.1, 0.1], "train,val,test shares of the patients", parse=_fractions
    )
    objective: Objective = setting("generate", "generate the record, or fill in masked codes")
    prompt_location: PromptLocation = setting("both", "where the age/sex prompts enter BART")
    aux_head: AuxHead = setting("mlp", "shape of the age and sex heads")
    loss_weights: dict[str, float] = setting(
        {"age": 0.001, "sex": 0.001, "validity_log": 1.0},
        "e.g. age=0.001,sex=0.001,validity_log=1[,cooc=0.05]",
        parse=parse_loss_weights,
    )
    weighting: str = setting("static", f"loss weighting strategy: {', '.join(WEIGHTINGS)}")
    weighting_options: dict[str, Any] = setting(
        {}, "e.g. temperature=2 or alpha=1.5,lr=0.025 (YAML values)", parse=_key_values
    )
    weighting_lr: float | None = setting(
        None, "learning rate of the weighting's parameters (default: lr)", low=0.0
    )
    extra_losses: list[str] = setting(
        ["validity_log"],
        f"comma-separated optional loss terms: {', '.join(OPTIONAL_TERMS)} (none: '')",
        parse=_names,
    )
    decoder_prompt_add: bool = setting(
        True, "also add a demographic vector to every decoder position (issue 11's winner)"
    )
    outcome_prompts: list[str] = setting(
        [],
        "outcome columns (e.g. LVEF_REDUCED) given as further prompts, to generate for labels",
        parse=_names,
    )
    condition_dropout: float = setting(
        0.0,
        "share of training patients with age and sex hidden (for classifier-free guidance)",
        low=0.0,
        high=0.99,
    )
    cooc_threshold: float = setting(5.0, "co-occurrence count below which pairs count", low=0.0)
    patience: int | None = setting(
        3,
        "epochs without a better validation LM loss (0: never stop)",
        low=1,
        parse=_zero_is_none(int),
    )
    min_delta: float = setting(0.0, "improvement that counts as better", low=0.0)
    keep: Keep = setting(
        "best", "weights the run keeps: best validation LM loss, or the last step's"
    )
    sample_every_epoch: int = setting(
        64, "patients sampled per epoch for the collapse check", low=0
    )
    sample_max_new_tokens: int = setting(64, "tokens per sampled patient", low=1)
    collapse_ratio: float = setting(
        0.5, "collapse alarm below this share of the real unique codes", low=0.0, high=1.0
    )
    mixed_precision: MixedPrecision = setting("auto", "auto: bf16/fp16 on a GPU, none on a CPU")
    cpu: bool = setting(False, "train on the CPU even if a GPU is there")
    log_every: int = setting(10, "steps between two lines of logs/train.jsonl", low=1)
    checkpoint_every: int | None = setting(
        None, "also checkpoint every N steps (default: each epoch)", low=1
    )
    epoch_checkpoints: bool = setting(
        True, "checkpoint at each epoch's end for --resume (a base run's is about 1.3 GB)"
    )
    max_length: int | None = setting(None, "tokens per patient", low=5)
    min_code_count: int = setting(1, "codes seen fewer times become <unk>", low=1)
    chapter_tokens: bool = setting(False, "add ICD-9 chapter tokens")
    model: dict[str, Any] = setting(
        {},
        "BART shape overrides, e.g. d_model=64,encoder_layers=1,dropout=0",
        flag="--model-options",
        parse=_key_values,
    )
    num_workers: int = setting(0, "DataLoader worker processes", low=0)
    cpu_threads: int | None = setting(
        None, "torch intra-op threads on a CPU (1 is often fastest)", low=1
    )
    progress: bool = setting(True, "show a progress bar")
    unknown_codes: UnknownCodes = setting(
        DEFAULT_UNKNOWN_CODES, "codes outside ICD-9-CM v32 (real MIMIC-III has a few): stop or skip"
    )

    # --- building ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """A config from a mapping; unknown keys are an error naming them and ``source``."""
        if not isinstance(values, Mapping):
            raise TrainConfigError(
                f"{source}: expected a mapping of settings, got {type(values).__name__}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TrainConfigError(
                f"{source}: unknown setting(s) {unknown}; known settings: {sorted(names)}"
            )
        return cls(**dict(values))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        return cls.from_dict(read_yaml_settings(path), source=str(path))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def terms(self) -> list[str]:
        """The loss terms of this run, in logging order."""
        return [*CORE_TERMS, *self.extra_losses]

    def resolved(self) -> TrainConfig:
        """A validated copy with the preset's values filled in for every ``None`` that has one."""
        self.validate()
        preset = get_preset(self.preset)
        return self.replace(
            epochs=self.epochs if self.epochs is not None else preset.epochs,
            batch_size=self.batch_size if self.batch_size is not None else preset.batch_size,
            lr=self.lr if self.lr is not None else preset.learning_rate,
            max_length=self.max_length
            if self.max_length is not None
            else preset.max_sequence_length,
            split_fractions=[float(f) for f in self.split_fractions],
            loss_weights=self.filled_loss_weights(),
            extra_losses=list(self.extra_losses),
            outcome_prompts=list(self.outcome_prompts),
        )

    def filled_loss_weights(self) -> dict[str, float]:
        """``loss_weights`` plus the registry's default weight of any term this run turns on
        without weighing it (``--loss-weights age=0.01,sex=0.02`` keeps validity_log at 1)."""
        weights = {name: float(value) for name, value in self.loss_weights.items()}
        for term in self.terms:
            default = LOSS_TERMS[term].default_weight
            if term != "lm" and term not in weights and default is not None:
                weights[term] = float(default)
        return weights

    def validate(self) -> None:
        """Raise :class:`TrainConfigError` naming the first bad setting; does no work."""
        hints = typing.get_type_hints(type(self))
        for spec in dataclasses.fields(self):
            problem = _type_problem(getattr(self, spec.name), hints[spec.name], spec.metadata)
            if problem:
                self._fail(spec.name, problem)
        try:
            get_preset(self.preset)
        except ValueError as error:
            raise TrainConfigError(f"setting preset: {error}") from None
        if self.lr is not None and self.lr <= 0:
            self._fail("lr", "a number > 0")
        if self.weighting not in WEIGHTINGS:
            self._fail("weighting", f"one of {list(WEIGHTINGS)}")
        self._check_collections()
        try:
            make_loss_weighting(self)
        except (TypeError, ValueError) as error:
            raise TrainConfigError(f"setting weighting={self.weighting!r}: {error}") from None

    def _fail(self, name: str, expected: str) -> typing.NoReturn:
        raise TrainConfigError(f"setting {name}={getattr(self, name)!r}: expected {expected}")

    def _check_collections(self) -> None:
        fractions = self.split_fractions
        if (
            len(fractions) != 3
            or not all(_is_number(f) and f >= 0 for f in fractions)
            or not math.isclose(sum(fractions), 1.0)
            or fractions[0] <= 0
        ):
            self._fail("split_fractions", "three numbers >= 0 summing to 1 (train, val, test)")
        for name, value in self.loss_weights.items():
            if not _is_number(value) or value < 0:
                raise TrainConfigError(
                    f"setting loss_weights: weight of {name!r} is {value!r}; expected a number >= 0"
                )
        if any(e not in OPTIONAL_TERMS for e in self.extra_losses):
            self._fail("extra_losses", f"a list drawn from {list(OPTIONAL_TERMS)}")
        if not all(isinstance(c, str) and c for c in self.outcome_prompts) or len(
            set(self.outcome_prompts)
        ) != len(self.outcome_prompts):
            self._fail("outcome_prompts", "distinct outcome column names, e.g. [LVEF_REDUCED]")
        if len(set(self.extra_losses)) != len(self.extra_losses):
            self._fail("extra_losses", "each extra loss at most once")
        stray = [name for name in self.loss_weights if name not in self.terms]
        if stray:
            raise TrainConfigError(
                f"setting loss_weights: {stray} is not a loss term of this run; terms: {self.terms}"
                f" (add {'/'.join(OPTIONAL_TERMS)} to extra_losses to use them)"
            )


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _type_problem(value: Any, hint: Any, metadata: Mapping[str, Any]) -> str | None:
    """What ``value`` should have been for a field of type ``hint`` (None when it fits)."""
    optional = " or null" if _is_optional(hint) else ""
    if value is None and optional:
        return None
    kind = _unwrap_optional(hint)
    low, high = metadata.get("low", -math.inf), metadata.get("high", math.inf)
    if get_origin(kind) is Literal:
        return None if value in get_args(kind) else f"one of {list(get_args(kind))}"
    if kind is bool:
        return None if isinstance(value, bool) else "true or false"
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        return None if ok else f"an integer >= {low}{optional}"
    if kind is float:
        ok = _is_number(value) and low <= value <= high
        return None if ok else f"a number in [{low}, {high}]{optional}"
    if kind is str:
        return None if isinstance(value, str | os.PathLike) and str(value) else "a text/path"
    origin = get_origin(kind)
    if origin is dict:
        return None if isinstance(value, Mapping) else "a mapping, e.g. {d_model: 64}"
    if origin is list:
        return None if isinstance(value, list | tuple) else "a list"
    return None


def _unwrap_optional(hint: Any) -> Any:
    """``int`` for ``int | None``; any other type as it is."""
    if _is_optional(hint):
        return next(k for k in get_args(hint) if k is not type(None))
    return hint


def _is_optional(hint: Any) -> bool:
    return get_origin(hint) in (types.UnionType, typing.Union) and type(None) in get_args(hint)


def read_yaml_settings(path: str | os.PathLike) -> dict[str, Any]:
    """Only the keys a YAML settings file sets (a resumed run keeps its other values)."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        raise TrainConfigError(f"{path}: not valid YAML ({error})") from None
    if values is not None and not isinstance(values, Mapping):
        raise TrainConfigError(f"{path}: expected a mapping of settings")
    return dict(values or {})


# ---------------------------------------------------------------------- loss weighting
def _schedules_from_options(config: TrainConfig) -> dict[str, Any]:
    """``scheduled`` strategy: every term but ``lm`` gets ``Constant(loss_weights[term])``
    unless ``weighting_options.schedules`` names a schedule for it, as a number or a mapping
    ``{type: linear_warmup|off_after_epoch|off_below_threshold|constant, w: ..., ...}``."""
    kinds = {
        "constant": Constant,
        "linear_warmup": LinearWarmup,
        "off_after_epoch": OffAfterEpoch,
        "off_below_threshold": OffBelowThreshold,
    }
    given = dict(config.weighting_options.get("schedules", {}) or {})
    schedules: dict[str, Any] = {}
    for term in config.terms:
        if term == "lm" and term not in given:
            continue
        spec = given.pop(term, config.filled_loss_weights().get(term))
        if spec is None:
            raise ValueError(f"no weight or schedule for the {term!r} loss")
        if isinstance(spec, Mapping):
            spec = dict(spec)
            kind = spec.pop("type", "constant")
            if kind not in kinds:
                raise ValueError(
                    f"schedule type {kind!r} for {term!r}; choose one of {sorted(kinds)}"
                )
            schedules[term] = kinds[kind](**spec)
        else:
            schedules[term] = Constant(float(spec))
    if given:
        raise ValueError(f"schedules for unknown term(s) {sorted(given)}; terms: {config.terms}")
    return schedules


def make_loss_weighting(config: TrainConfig) -> LossWeighting:
    """The :class:`~course_lib.weighting.LossWeighting` the config asks for.

    ``static`` uses ``loss_weights`` (every term but ``lm`` needs one); ``scheduled`` uses
    ``loss_weights`` as constants unless a schedule is given; ``normalize`` uses them as base
    weights when no ``weights`` option is given; the others ignore ``loss_weights``.
    """
    options = dict(config.weighting_options)
    if config.weighting == "static":
        options.setdefault("weights", config.filled_loss_weights())
    elif config.weighting == "scheduled":
        options["schedules"] = _schedules_from_options(config)
    return make_weighting(config.weighting, config.terms, **options)


# ------------------------------------------------------------------------ command line
def _flag(spec: dataclasses.Field) -> str:
    return spec.metadata.get("flag", "--" + spec.name.replace("_", "-"))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``python -m course_lib train``: one per field, each overriding ``--config``."""
    add = parser.add_argument
    add("--config", type=Path, help="YAML file of settings (TrainConfig field names)")
    add("--resume", action="store_true", help="continue the run in --out from checkpoints/last")
    add("--overwrite", action="store_true", help="replace a finished --out run when this one ends")
    hints = typing.get_type_hints(TrainConfig)
    for spec in dataclasses.fields(TrainConfig):
        hint, help_text = hints[spec.name], spec.metadata["help"]
        kind = _unwrap_optional(hint)
        if kind is bool and spec.default is True:
            add(
                f"--no-{spec.name.replace('_', '-')}",
                dest=spec.name,
                action="store_false",
                help=f"do not {help_text}",
            )
        elif kind is bool:
            add(_flag(spec), dest=spec.name, action="store_true", help=help_text)
        elif get_origin(kind) is Literal:
            add(_flag(spec), dest=spec.name, choices=get_args(kind), help=help_text)
        else:
            number = kind if kind in (int, float) and "parse" not in spec.metadata else str
            add(_flag(spec), dest=spec.name, type=number, help=help_text)
    parser.set_defaults(**{spec.name: None for spec in dataclasses.fields(TrainConfig)})


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < the run's config.yaml (with --resume) < --config FILE < explicit flags."""
    values: dict[str, Any] = {}
    if args.resume and args.out and (Path(args.out) / "config.yaml").exists():
        values.update(TrainConfig.from_yaml(Path(args.out) / "config.yaml").to_dict())
    if args.config is not None:
        TrainConfig.from_yaml(args.config)  # names unknown keys, bad YAML
        values.update(read_yaml_settings(args.config))
    for spec in dataclasses.fields(TrainConfig):
        value = getattr(args, spec.name)
        if value is None:
            continue
        if "parse" in spec.metadata:
            try:
                value = spec.metadata["parse"](value)
            except ValueError as error:
                raise TrainConfigError(f"{_flag(spec)}: {error}") from None
        values[spec.name] = value
    config = TrainConfig.from_dict(values, source="command line")
    config.validate()
    return config
