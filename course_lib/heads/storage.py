"""Versioned storage of prediction heads: ``<head>_YYYYMMDD_HHMMSS/`` folders (lesson 11).

Each version folder holds::

    weights.safetensors   the head's tensors (trunk, output layer, input scaling, trained flag)
    config.json           head name, input size, outputs, feature kind, run, split, trained
    metrics.json          test metrics with their baselines (may be {} for an untrained head)
    README.md             generated summary: what it predicts, how it was trained, the metrics
    (any extra files passed in, e.g. reliability.png)

A version is written whole into a hidden temporary folder next to it, then renamed into
place: a crash never leaves a half version that ``latest`` could pick. Two saves in the same
second get ``<head>_YYYYMMDD_HHMMSS_2``, ``_3``... (the rename fails if the name is taken, so
two processes cannot overwrite each other either). ``latest`` is the newest timestamp, then
the highest counter.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from safetensors.torch import load_file, save_file

from course_lib.heads.modules import HEAD_NAMES, PredictionHead

VERSION_PATTERN = re.compile(r"^(?P<head>[a-z][a-z0-9]*)_(?P<stamp>\d{8}_\d{6})(?:_(?P<n>\d+))?$")
WEIGHTS_FILE = "weights.safetensors"


class HeadStorageError(ValueError):
    """A head version is missing, malformed, or does not fit the features it is given."""


class HeadInputSizeError(HeadStorageError):
    """The saved head expects features of another width than the model gives."""


@dataclass
class StoredHead:
    """A loaded version: the head (eval mode), its config and metrics, and where it lives."""

    head: PredictionHead
    config: dict
    metrics: dict
    path: Path

    @property
    def version(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class HeadVersion:
    """One row of :func:`list_heads`."""

    head: str
    version: str
    path: Path
    trained: bool
    created: str
    summary: str


def _sort_key(version: str) -> tuple[str, int]:
    match = VERSION_PATTERN.match(version)
    return (match["stamp"], int(match["n"] or 1)) if match else ("", 0)


def save_head(
    head: PredictionHead,
    heads_dir: str | Path,
    name: str,
    *,
    config: dict | None = None,
    metrics: dict | None = None,
    extra_files: dict[str, Path] | None = None,
    now: datetime | None = None,
) -> Path:
    """Write a new version of head ``name`` under ``heads_dir``; return its folder."""
    if name not in HEAD_NAMES:
        raise HeadStorageError(f"unknown head name {name!r}; expected one of {list(HEAD_NAMES)}")
    heads_dir = Path(heads_dir)
    heads_dir.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    full_config = {
        **(config or {}),
        "head": name,
        "input_size": head.input_size,
        "n_outputs": head.n_outputs,
        "hidden": head.hidden,
        "dropout": head.dropout,
        "trained": head.trained,
        "created": (now or datetime.now()).isoformat(timespec="seconds"),
    }
    temp = Path(tempfile.mkdtemp(dir=heads_dir, prefix=f".{name}_{stamp}.tmp-"))
    try:
        tensors = {
            key: value.detach().cpu().contiguous() for key, value in head.state_dict().items()
        }
        save_file(tensors, str(temp / WEIGHTS_FILE))
        (temp / "metrics.json").write_text(json_text(metrics or {}), encoding="utf-8")
        for file_name, source in (extra_files or {}).items():
            shutil.copyfile(source, temp / file_name)
        counter = 1
        while True:
            version = f"{name}_{stamp}" + (f"_{counter}" if counter > 1 else "")
            full_config["version"] = version
            (temp / "config.json").write_text(json_text(full_config), encoding="utf-8")
            (temp / "README.md").write_text(
                render_readme(full_config, metrics or {}), encoding="utf-8"
            )
            final = heads_dir / version
            if not final.exists():
                try:
                    os.rename(temp, final)  # fails if another writer took the name meanwhile
                    return final
                except OSError:
                    if not final.exists():
                        raise
            counter += 1
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def json_text(data: dict) -> str:
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None  # JSON has no NaN
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), indent=2) + "\n"


def _versions(heads_dir: Path, name: str | None = None) -> list[Path]:
    if not heads_dir.is_dir():
        return []
    found = [
        path
        for path in heads_dir.iterdir()
        if path.is_dir()
        and (match := VERSION_PATTERN.match(path.name))
        and (name is None or match["head"] == name)
    ]
    return sorted(
        found, key=lambda path: (VERSION_PATTERN.match(path.name)["head"], _sort_key(path.name))
    )


def resolve_version(heads_dir: str | Path, name: str, version: str | None = None) -> Path:
    """The folder of ``version`` (a full folder name) or, without it, the latest of ``name``."""
    heads_dir = Path(heads_dir)
    if version is not None:
        path = heads_dir / version
        if not (VERSION_PATTERN.match(version) and path.is_dir()):
            available = [p.name for p in _versions(heads_dir)]
            raise HeadStorageError(
                f"{path}: no such head version (available: {', '.join(available) or 'none'})"
            )
        return path
    versions = _versions(heads_dir, name)
    if not versions:
        raise HeadStorageError(f"{heads_dir}: no saved version of head {name!r}")
    return versions[-1]


def load_head(
    heads_dir: str | Path,
    name: str,
    version: str | None = None,
    *,
    expected_input_size: int | None = None,
) -> StoredHead:
    """Load a named version (or the latest) of head ``name``.

    With ``expected_input_size`` (the width of the features the model gives, see
    :func:`course_lib.heads.features.feature_size`) a head built for another width is a
    :class:`HeadInputSizeError`, raised before any tensor is touched.
    """
    path = resolve_version(heads_dir, name, version)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise HeadStorageError(
            f"{path}: unreadable config.json or metrics.json ({error})"
        ) from None
    if config.get("head") != name and version is None:
        raise HeadStorageError(f"{path}/config.json: head is {config.get('head')!r}, not {name!r}")
    input_size = int(config["input_size"])
    if expected_input_size is not None and input_size != expected_input_size:
        raise HeadInputSizeError(
            f"{path}: head {path.name} takes {input_size}-dim features "
            f"({config.get('feature_kind', '?')} of a model with d_model "
            f"{config.get('d_model', '?')}), but this model gives {expected_input_size}-dim "
            "features; use the run (and feature kind) the head was trained on, or retrain it"
        )
    head = PredictionHead(
        input_size, int(config["n_outputs"]), int(config["hidden"]), float(config["dropout"])
    )
    tensors = load_file(str(path / WEIGHTS_FILE))
    expected = {key: tuple(value.shape) for key, value in head.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in tensors.items()}
    if expected != found:
        raise HeadStorageError(
            f"{path}/{WEIGHTS_FILE}: tensors do not match config.json "
            f"(expected {expected}, found {found})"
        )
    head.load_state_dict(tensors)
    if head.trained != bool(config.get("trained")):
        raise HeadStorageError(
            f"{path}: the trained flag of the weights ({head.trained}) and of config.json "
            f"({config.get('trained')}) disagree"
        )
    head.eval()
    return StoredHead(head, config, metrics, path)


def list_heads(heads_dir: str | Path) -> list[HeadVersion]:
    """Every saved version, oldest first per head, with its trained flag and a metric."""
    rows = []
    for path in _versions(Path(heads_dir)):
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            rows.append(
                HeadVersion(path.name.split("_")[0], path.name, path, False, "", f"BROKEN: {error}")
            )
            continue
        auroc = metrics.get("auroc")
        summary = f"test AUROC {auroc:.3f}" if isinstance(auroc, float) else "no test metrics"
        rows.append(
            HeadVersion(
                config.get("head", "?"),
                path.name,
                path,
                bool(config.get("trained")),
                str(config.get("created", "")),
                summary,
            )
        )
    return rows


def render_readme(config: dict, metrics: dict) -> str:
    """The generated README.md of a version."""
    name = config["head"]
    lines = [f"# Prediction head `{config.get('version', name)}`", ""]
    if not config.get("trained"):
        lines += [
            "> **UNTRAINED**: this head is random-init. Its outputs are noise; "
            "`PredictionHead.predict` warns when it is used.",
            "",
        ]
    lines += [
        f"- predicts: {config.get('description', name)}",
        f"- architecture: features [{config['input_size']}] -> standardise -> "
        f"Linear({config['hidden']}) -> ReLU -> Dropout({config['dropout']}) -> "
        f"Linear({config['n_outputs']})",
        f"- features: `{config.get('feature_kind', '?')}` of run `{config.get('run', '?')}`",
        f"- split: {config.get('split', '?')}; training: {config.get('training_mode', '?')}",
        f"- created: {config.get('created', '?')}",
        "",
    ]
    if metrics:
        baseline = metrics.get("baseline", {})
        lines += [
            "## Test metrics",
            "",
            "| metric | head | trivial baseline |",
            "| --- | --- | --- |",
        ]
        for key in ("auroc", "macro_f1", "accuracy", "brier", "ece"):
            if key in metrics:
                base = baseline.get(key)
                base_text = "" if base is None else f"{base:.4f}"
                value = metrics[key]
                lines.append(
                    f"| {key} | {value:.4f} | {base_text} |"
                    if value is not None
                    else f"| {key} | n/a | {base_text} |"
                )
        if "baseline" in metrics and "rule" in baseline:
            lines += ["", f"Baseline: {baseline['rule']}."]
        lines += ["", "All metrics are in `metrics.json`."]
    else:
        lines += ["No test metrics were recorded."]
    lines += [
        "",
        "Load it with `course_lib.heads.load_head(HEADS_DIR, "
        f"'{name}', '{config.get('version', '')}')`.",
        "",
    ]
    return "\n".join(lines)
