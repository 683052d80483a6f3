"""Training a :class:`~course_lib.recipes.Recipe`, stamping the run, and its stored copy.

One function trains a recipe (:func:`train_recipe`) for the lessons' ``ctx.train_or_load``,
for ``scripts/reference_runs.py`` and for the reference-run test, so all three compute the
same numbers. Every run it writes gets a stamp, ``recipe.json``: the recipe, its fingerprint,
the code version, the library versions, the device and the wall time. :func:`freshness`
compares a stamp with the recipe as the code defines it now and says why it differs.

A *reference run* (``reference_runs/<name>/``) is a run folder cut to what a lesson reads:
config, vocabulary, normaliser, splits, logs, the model in fp16 safetensors, the stamp and
any generated sample (``generated.jsonl``); :class:`course_lib.runs.Run` loads it as it is.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.files import atomic_write_text, new_temp_dir, replace_dir
from course_lib.recipes import Recipe, code_version, sample_version

STAMP = "recipe.json"
GENERATED = "generated.jsonl"
REFERENCE_DIR = "reference_runs"
# What a reference run keeps of a run folder (plus model/ in fp16, the stamp, the sample).
KEPT_FILES = (
    "config.yaml",
    "vocab.json",
    "normalizer.json",
    "splits.json",
    "train_demographics.csv",
    "train_visit_gaps.csv",
    "logs/train.jsonl",
    "logs/epochs.jsonl",
)
Freshness = Literal["fresh", "stale", "missing"]


def load_cohort(recipe: Recipe, data_dir: Path | None) -> Cohort:
    """The recipe's cohort: the sample in ``data_dir`` or a simulated draw."""
    if recipe.cohort.source == "simulated":
        from course_lib.simulate import simulate_cohort

        return simulate_cohort(recipe.cohort.n, recipe.cohort.seed)
    from course_lib.mimic import load_mimic

    if data_dir is None:
        raise ValueError(f"recipe {recipe.name} trains on the sample cohort: pass its data_dir")
    return load_mimic(data_dir)


def _callbacks(recipe: Recipe) -> list:
    from course_lib.sample_check import SampleCheck

    return [SampleCheck() for name in recipe.callbacks if name == "sample_check"]


def train_recipe(
    recipe: Recipe,
    out: Path,
    *,
    cohort: Cohort | None = None,
    data_dir: Path | None = None,
    stop_after_step: int | None = None,
    overwrite: bool = False,
):
    """Train ``recipe`` into ``out``; stamp it; write its generated sample if it asks for one.

    ``stop_after_step`` stops after that step as an interrupted job would (the schedule is
    the full run's), which is how the test replays a run's first steps.
    """
    from course_lib.training import train

    started = time.perf_counter()
    cohort = cohort if cohort is not None else load_cohort(recipe, data_dir)
    result = train(
        recipe.train_config(out),
        cohort,
        overwrite=overwrite,
        stop_after_step=stop_after_step,
        callbacks=_callbacks(recipe),
    )
    if stop_after_step is None:
        if recipe.generation is not None:
            write_generated(recipe, Path(out), cohort)
        write_stamp(Path(out), make_stamp(recipe, data_dir, time.perf_counter() - started))
    return result


# ------------------------------------------------------------------------------ stamps
def make_stamp(recipe: Recipe, data_dir: Path | None, wall_s: float) -> dict[str, Any]:
    """What ``recipe.json`` holds: enough to tell later whether the run is still current."""
    import torch
    import transformers

    device = "cuda" if torch.cuda.is_available() and not recipe.train_config().cpu else "cpu"
    return {
        "name": recipe.name,
        "fingerprint": recipe.fingerprint(data_dir),
        "code_version": code_version(),
        "sample_version": sample_version(data_dir) if recipe.cohort.source == "sample" else None,
        **recipe.to_json(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name()
        if device == "cuda"
        else f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s)",
        "device_type": device,
        # the vector kernels torch picked: another set sums floats in another order
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "wall_s": round(wall_s, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_stamp(folder: Path, stamp: dict[str, Any]) -> None:
    atomic_write_text(folder / STAMP, json.dumps(stamp, indent=1, sort_keys=True) + "\n")


def read_stamp(folder: Path) -> dict[str, Any] | None:
    """The run's ``recipe.json``, or None when there is none (or it is not JSON)."""
    try:
        return json.loads((Path(folder) / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def freshness(recipe: Recipe, folder: Path, data_dir: Path | None) -> tuple[Freshness, str]:
    """``("fresh" | "stale" | "missing", why)`` for the run in ``folder`` against ``recipe``."""
    stamp = read_stamp(folder)
    if stamp is None:
        return "missing", f"no {folder / STAMP}"
    if stamp.get("fingerprint") == recipe.fingerprint(data_dir):
        return "fresh", f"fingerprint {stamp['fingerprint'][:12]}"
    reasons = []
    if stamp.get("code_version") != code_version():
        reasons.append("code version changed (course_lib training code was edited)")
    if {k: stamp.get(k) for k in ("recipe", "train_config")} != recipe.to_json():
        reasons.append("the recipe changed")
    if recipe.cohort.source == "sample" and stamp.get("sample_version") != sample_version(data_dir):
        reasons.append("the sample cohort's files changed")
    return "stale", "; ".join(reasons) or "fingerprint differs"


# ----------------------------------------------------------------------- generated sample
def write_generated(recipe: Recipe, folder: Path, cohort: Cohort) -> None:
    """One patient per patient of the recipe's split, as JSON lines (``generated.jsonl``)."""
    import torch

    from course_lib.generation import generate_like
    from course_lib.runs import Run

    spec = recipe.generation
    run = Run.load(folder)
    on_gpu = torch.cuda.is_available() and not recipe.train_config().cpu
    generated = generate_like(
        run.model.to("cuda" if on_gpu else "cpu"),  # where it was trained
        run.vocabulary,
        run.normalizer,
        run.split(cohort, spec.split),
        max_new_tokens=spec.max_new_tokens,
        seed=spec.seed,
        **dict(spec.options),
    )
    lines = (
        json.dumps(
            {
                "subject_id": p.subject_id,
                "age": p.age,
                "sex": p.sex,
                "visits": [v.codes for v in p.visits],
            }
        )
        for p in generated
    )
    atomic_write_text(folder / GENERATED, "".join(line + "\n" for line in lines))


def read_generated(folder: Path) -> Cohort:
    """The generated sample stored with a run (:class:`RecipeRunError` when there is none)."""
    path = Path(folder) / GENERATED
    if not path.is_file():
        raise FileNotFoundError(f"{path}: this run stored no generated sample")
    patients = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
            visits = [Visit(codes=list(codes), age=row["age"]) for codes in row["visits"]]
            patients.append(Patient(row["subject_id"], row["sex"], row["age"], visits))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}, line {number}: not a generated patient ({error})") from None
    return Cohort(patients)


# ------------------------------------------------------------------------ reference runs
def store_reference(run_dir: Path, dest: Path) -> None:
    """Copy what a lesson reads from ``run_dir`` into ``dest``, the model in fp16."""
    from course_lib.runs import Run, save_model

    temp = new_temp_dir(dest)
    try:
        for name in (*KEPT_FILES, STAMP, GENERATED):
            if (run_dir / name).is_file():
                (temp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run_dir / name, temp / name)
        run = Run.load(run_dir)
        save_model(run.model.half(), temp, run.vocabulary)
        replace_dir(temp, dest)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
