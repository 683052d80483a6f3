"""The header every lesson runs first: seeds, preset, device, paths, plot defaults (lesson 00).

One call, ``ctx = setup_lesson(seed=0, name="03_model")``, makes a lesson reproducible and
runnable anywhere (laptop CPU, Colab, cluster GPU), and prints one line saying where it runs.
Only the standard library is imported at module level: torch and matplotlib are imported when
``setup_lesson`` runs, and transformers never, so the header costs well under a second.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from course_lib.presets import Preset, default_preset_name, get_preset

if TYPE_CHECKING:
    import torch

    from course_lib.recipes import Recipe
    from course_lib.runs import Run

# The sample cohort in MIMIC-III CSV layout lives in <repo>/data_samples/<DATA_SAMPLE_DIR>.
DATA_SAMPLE_DIR = "mimic_sample"
DATA_SAMPLES = "data_samples"
# Overrides: where the sample cohort is, where trained runs are cached.
DATA_DIR_ENV = "COURSE_DATA_DIR"
RUNS_DIR_ENV = "COURSE_RUNS_DIR"
# Written last into a finished run folder: a folder without it is an interrupted run.
RUN_COMPLETE_MARKER = ".complete"
# Set to 1 to retrain every recipe a lesson asks for instead of loading the stored run.
RETRAIN_ENV = "COURSE_RETRAIN"
# Seed and size of the cohort regenerated when the repository is not there (pip install on
# Colab): those of the command in data_samples/README.md, so both give the same patients.
FALLBACK_SAMPLE_SEED = 7
FALLBACK_SAMPLE_PATIENTS = 2000

T = TypeVar("T")


class LessonSetupError(ValueError):
    """A lesson cannot find or make what its header needs (data folder, preset, run folder)."""


@dataclass(frozen=True)
class LessonContext:
    """What a lesson needs to know about where it runs; made by :func:`setup_lesson`."""

    name: str
    seed: int
    preset: Preset
    device: torch.device
    repo_root: Path | None  # None when course_lib is installed without the repository
    runs_dir: Path  # this lesson's cache of trained runs (gitignored)
    regenerate_data: bool = True

    @cached_property
    def data_dir(self) -> Path:
        """The sample cohort (PATIENTS.csv, ADMISSIONS.csv, DIAGNOSES_ICD.csv).

        Found on first use, so a lesson that needs no data never regenerates it.
        """
        return find_data_dir(self.repo_root, regenerate=self.regenerate_data)

    def run_dir(self, run_name: str) -> Path:
        """Folder of one trained run of this lesson, e.g. ``runs/lessons/07_training/tiny_w0.01``."""
        if not run_name or "/" in run_name or run_name.startswith("."):
            raise LessonSetupError(
                f"run_name {run_name!r}: expected a plain folder name (no '/', not hidden)"
            )
        return self.runs_dir / run_name

    def has_run(self, run_name: str) -> bool:
        """True when the run folder exists and was finished (not an interrupted training)."""
        return (self.run_dir(run_name) / RUN_COMPLETE_MARKER).exists()

    def load_or_train(
        self,
        run_name: str,
        train: Callable[[Path], Any],
        load: Callable[[Path], T],
    ) -> T:
        """Load a finished run if there is one, else train it, then load it.

        ``train(folder)`` writes the run (checkpoint, metrics) into an empty temporary folder
        next to the final one; only when it returns is the folder renamed into place, so an
        interrupted training never leaves a half-written run that a later call would load.
        """
        final_dir = self.run_dir(run_name)
        if self.has_run(run_name):
            print(f"loading finished run {final_dir}")
            return load(final_dir)
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        work_dir = Path(tempfile.mkdtemp(prefix=f".{run_name}.", dir=final_dir.parent))
        try:
            train(work_dir)
            (work_dir / RUN_COMPLETE_MARKER).write_text(f"{self.preset.name}\n")
            if final_dir.exists():  # an interrupted run without the marker
                shutil.rmtree(final_dir)
            os.replace(work_dir, final_dir)
        finally:
            if work_dir.exists():
                shutil.rmtree(work_dir, ignore_errors=True)
        print(f"trained and saved run {final_dir}")
        return load(final_dir)

    def train_or_load(self, recipe: str | Recipe) -> TrainedRun:
        """The run of a named recipe (:mod:`course_lib.recipes`) for this lesson's preset.

        Loads the stored reference run ``reference_runs/<name>/`` when its fingerprint
        matches the recipe and the code; otherwise (missing, stale, or ``$COURSE_RETRAIN=1``)
        loads the recipe's run from the lesson run cache if that one is current, else trains
        it there. Prints which it did and why.
        """
        from course_lib.recipe_runs import REFERENCE_DIR, freshness, train_recipe
        from course_lib.recipes import get_recipe

        if isinstance(recipe, str):
            recipe = get_recipe(recipe)
        recipe = recipe.for_preset(self.preset.name)
        retrain = os.environ.get(RETRAIN_ENV, "") not in ("", "0")
        reason = f"${RETRAIN_ENV} is set"
        if not retrain:
            stored = (self.repo_root or Path.cwd()) / REFERENCE_DIR / recipe.name
            state, why = freshness(recipe, stored, self.data_dir)
            if state == "fresh":
                print(
                    f"{recipe.name}: loading the reference run {REFERENCE_DIR}/{recipe.name} ({why})"
                )
                return TrainedRun.load(recipe, stored, "reference", self.device)
            reason = f"reference run {state}: {why}"
        cache = self.runs_dir.parent / recipe.lesson / recipe.name
        if not retrain and freshness(recipe, cache, self.data_dir)[0] == "fresh":
            print(f"{recipe.name}: {reason}; loading the run trained earlier in {cache}")
            return TrainedRun.load(recipe, cache, "cache", self.device)
        print(f"{recipe.name}: {reason}; training it into {cache}")
        cache.parent.mkdir(parents=True, exist_ok=True)
        train_recipe(recipe, cache, data_dir=self.data_dir, overwrite=True)
        return TrainedRun.load(recipe, cache, "trained", self.device)


@dataclass
class TrainedRun:
    """What :meth:`LessonContext.train_or_load` returns: the recipe and its :class:`Run`.

    The run's parts are attributes (``model`` in float32 on the lesson's device,
    ``vocabulary``, ``normalizer``, ``config``, ``steps`` and ``epochs`` logs, ``splits``:
    subject ids); ``trained["model"]`` reads the same attribute, for cells written for dicts.
    """

    recipe: Recipe
    run: Run
    source: str  # "reference", "cache" or "trained"
    model: Any
    name: str

    @classmethod
    def load(cls, recipe: Recipe, folder: Path, source: str, device: Any) -> TrainedRun:
        from course_lib.runs import Run

        run = Run.load(folder)
        model = run.model.float().to(device)  # a reference run stores fp16 weights
        return cls(recipe, run, source, model, recipe.name)

    @property
    def vocabulary(self) -> Any:
        return self.run.vocabulary

    @property
    def normalizer(self) -> Any:
        return self.run.normalizer

    @property
    def config(self) -> Any:
        return self.run.config

    @cached_property
    def steps(self) -> Any:
        """``logs/train.jsonl`` as a table (one row per logged step)."""
        return self.run.log("train")

    @cached_property
    def epochs(self) -> Any:
        """``logs/epochs.jsonl`` as a table (one row per epoch)."""
        return self.run.log("epochs")

    @property
    def splits(self) -> dict[str, list[int]]:
        return self.run.split_ids

    def generated(self) -> Any:
        """The generated sample stored with the run (recipes with a ``generation`` spec)."""
        from course_lib.recipe_runs import read_generated

        return read_generated(self.run.path)

    def __getitem__(self, key: str) -> Any:
        if key.startswith("_") or not hasattr(self, key):
            raise KeyError(key)
        return getattr(self, key)


def find_repo_root(start: Path | None = None) -> Path | None:
    """The course repository that holds ``data_samples/`` and ``course_lib/``, or None.

    Looks upwards from ``start`` (default: the working directory, which is the lesson's folder
    under Jupyter, nbval and jupyter-book), then from this file (an editable install).
    """
    candidates = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve().parent]
    for candidate in candidates:
        for folder in (candidate, *candidate.parents):
            if (folder / DATA_SAMPLES).is_dir() and (folder / "course_lib").is_dir():
                return folder
    return None


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "course_lib"


def regenerate_data_sample(
    out_dir: Path, patients: int | None = None, seed: int | None = None
) -> Path:
    """Write the sample cohort with ``course_lib simulate`` when the repository is absent.

    Used on Colab after ``pip install``: the CSVs are not in the wheel, but the simulator is
    seeded, so the same command gives the same cohort. Written to a temporary sibling folder
    and renamed, so an interrupted run leaves nothing half-written.
    """
    from course_lib.cli import main as cli_main

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        status = cli_main(
            [
                "simulate",
                "--out",
                str(work_dir),
                "--patients",
                str(FALLBACK_SAMPLE_PATIENTS if patients is None else patients),
                "--seed",
                str(FALLBACK_SAMPLE_SEED if seed is None else seed),
            ]
        )
        if status != 0:
            raise LessonSetupError(f"course_lib simulate exited with status {status}")
        os.replace(work_dir, out_dir)
    finally:
        if work_dir.exists():
            shutil.rmtree(work_dir, ignore_errors=True)
    return out_dir


def find_data_dir(repo_root: Path | None, regenerate: bool = True) -> Path:
    """Folder of the sample cohort: ``$COURSE_DATA_DIR``, else the repository's, else regenerated."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        data_dir = Path(override)
        if not data_dir.is_dir():
            raise LessonSetupError(f"${DATA_DIR_ENV}={override}: expected an existing folder")
        return data_dir
    if repo_root is not None:
        data_dir = repo_root / DATA_SAMPLES / DATA_SAMPLE_DIR
        if data_dir.is_dir():
            return data_dir
    cached = _user_cache_dir() / DATA_SAMPLES / DATA_SAMPLE_DIR
    if cached.is_dir():
        return cached
    if not regenerate:
        raise LessonSetupError(
            f"no sample cohort: expected {DATA_SAMPLES}/{DATA_SAMPLE_DIR} in the repository, "
            f"{cached}, or ${DATA_DIR_ENV}"
        )
    print(f"no {DATA_SAMPLES}/{DATA_SAMPLE_DIR} here: regenerating it in {cached}")
    return regenerate_data_sample(cached)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) so a lesson reruns identically."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def in_notebook() -> bool:
    """True inside a Jupyter kernel (Jupyter, Colab, nbval, jupyter-book execution)."""
    return "ipykernel" in sys.modules


def set_plot_defaults() -> None:
    """Small, readable figures; the Agg backend when no notebook or display can show them."""
    import matplotlib

    shell = None
    if in_notebook():
        from IPython import get_ipython

        shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")  # a Figure shows as a cell's value
    elif not os.environ.get("MPLBACKEND") and not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")
    matplotlib.rcParams.update(
        {
            "figure.figsize": (7.0, 3.5),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "font.size": 10,
        }
    )


def pick_device() -> torch.device:
    """The first CUDA GPU if there is one, else the CPU (every lesson runs on both)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup_lesson(
    seed: int = 0,
    name: str = "scratch",
    preset: str | None = None,
    regenerate_data: bool = True,
) -> LessonContext:
    """Seed, choose preset and device, find the repository and the run cache, print one line.

    ``preset`` defaults to :func:`course_lib.presets.default_preset_name` (``tiny`` on a CPU,
    ``base`` on a GPU, ``$COURSE_PRESET`` overrides both). Runs are cached in
    ``<repo>/runs/lessons/<name>`` (or ``$COURSE_RUNS_DIR/<name>``) so a rerun loads them.
    """
    import torch

    if not name or "/" in name:
        raise LessonSetupError(f"name {name!r}: expected the lesson's file stem, e.g. '03_model'")
    seed_everything(seed)
    chosen = get_preset(preset or default_preset_name())
    device = pick_device()
    set_plot_defaults()
    # transformers imports tqdm.auto, which warns in a kernel without ipywidgets and then
    # falls back to plain text bars: the fallback is what the lessons want.
    warnings.filterwarnings("ignore", message="IProgress not found")
    repo_root = find_repo_root()
    runs_base = os.environ.get(RUNS_DIR_ENV)
    if runs_base:
        runs_dir = Path(runs_base) / name
    elif repo_root is not None:
        runs_dir = repo_root / "runs" / "lessons" / name
    else:
        runs_dir = _user_cache_dir() / "runs" / "lessons" / name
    context = LessonContext(
        name=name,
        seed=seed,
        preset=chosen,
        device=device,
        repo_root=repo_root,
        runs_dir=runs_dir,
        regenerate_data=regenerate_data,
    )
    print(
        f"lesson {name} | preset {chosen.name} | device {device.type} | "
        f"torch {torch.__version__} | seed {seed}"
    )
    return context


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Make ``value`` available to the prose as ``{glue:text}`name``` (myst-nb), and return it.

    Falls back to doing nothing where myst-nb is not installed (Colab): the number is then only
    in the cell's printed output, which is where a notebook reader sees it anyway.
    """
    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()  # myst-nb formats Python numbers; np.float64 prints as its repr
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return value
    myst_glue(name, value, display=display)
    return value
