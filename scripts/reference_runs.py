"""Train named recipes and store them as reference runs (``reference_runs/<name>/``).

    python scripts/reference_runs.py baseline_none          # train and store one recipe
    python scripts/reference_runs.py static_0_0-base        # a recipe's variant for a preset
    python scripts/reference_runs.py --all                  # every recipe of the registry
    python scripts/reference_runs.py --all --jobs 2         # the same, 2 processes side by side
    python scripts/reference_runs.py --all --preset base --drop-work --limit-mb 1e6   # a GPU
    python scripts/reference_runs.py --check                # fresh/stale/missing, sizes

Each run trains (CPU or GPU, whatever this machine has) into ``runs/reference_work/<name>``
and is then cut to what a lesson reads, the model in fp16 (``course_lib.recipe_runs``). The
stored runs together may not exceed ``--limit-mb`` (40 MB): a run that would push the total
past it is refused and nothing is replaced. With ``--jobs N`` the names are dealt round-robin
to N processes of this script (each checks the limit against what is stored when it stores);
``--drop-work`` deletes each work folder once its run is stored (a ``base`` run's checkpoints
are about 1 GB).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from course_lib.files import replace_dir
from course_lib.lesson import find_data_dir, find_repo_root
from course_lib.recipe_runs import (
    REFERENCE_DIR,
    folder_size,
    freshness,
    store_reference,
    train_recipe,
)
from course_lib.recipes import RECIPES, RecipeError, get_recipe

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 40.0


def _stored_names(store: Path) -> list[str]:
    found = sorted(p.name for p in store.iterdir() if p.is_dir() and not p.name.startswith("."))
    return list(RECIPES) + [name for name in found if name not in RECIPES]


def check(store: Path, data_dir: Path) -> int:
    """Print each recipe's stored state and size; 1 when any stored run is stale."""
    total, stale = 0, 0
    store.mkdir(exist_ok=True)
    for name in _stored_names(store):
        try:
            recipe = get_recipe(name)
        except RecipeError:
            print(f"{'orphan':8} {name:32} {'':>9}  no such recipe: delete {store / name}")
            stale += 1
            continue
        state, why = freshness(recipe, store / name, data_dir)
        size = folder_size(store / name) if (store / name).is_dir() else 0
        total += size
        stale += state == "stale"
        print(f"{state:8} {name:32} {size / 1e6:7.2f} MB  {why if state != 'missing' else ''}")
    print(f"total {total / 1e6:.2f} MB of {LIMIT_MB:g} MB")
    return 1 if stale else 0


def build_each(names: list[str], *args, **kwargs) -> int:
    """:func:`build` one recipe at a time, going on past a failure; 1 if any failed."""
    failed = []
    for name in names:
        try:
            build([name], *args, **kwargs)
        except Exception:  # noqa: BLE001 - report it with its traceback, train the others
            print(f"failed {name}:\n{traceback.format_exc()}", flush=True)
            failed.append(name)
    if failed:
        print(f"error: {len(failed)} recipes failed: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def build(
    names: list[str], store: Path, data_dir: Path, limit_mb: float, drop_work: bool = False
) -> None:
    """Train each recipe and store it, refusing any run that would pass the size limit."""
    recipes = [get_recipe(name) for name in names]  # every name checked before any training
    work = ROOT / "runs" / "reference_work"
    for recipe in recipes:
        run_dir = work / recipe.name
        print(f"training {recipe.name} ...", flush=True)
        started = time.perf_counter()
        result = train_recipe(recipe, run_dir, data_dir=data_dir, overwrite=True)
        staged = store / f".{recipe.name}.new"
        store_reference(run_dir, staged)
        others = sum(
            folder_size(p)
            for p in store.iterdir()
            if p.is_dir() and p.name != recipe.name and not p.name.startswith(".")
        )
        total = others + folder_size(staged)
        if total > limit_mb * 1e6:
            shutil.rmtree(staged)
            raise SystemExit(
                f"{recipe.name}: storing it would make {REFERENCE_DIR}/ {total / 1e6:.1f} MB, "
                f"over the {limit_mb:g} MB limit; nothing was replaced"
            )
        replace_dir(staged, store / recipe.name)
        if drop_work:
            shutil.rmtree(run_dir)
        print(
            f"stored {store / recipe.name}: {result.steps} steps in "
            f"{time.perf_counter() - started:.0f} s, "
            f"{folder_size(store / recipe.name) / 1e6:.2f} MB (total {total / 1e6:.2f} MB)",
            flush=True,
        )


def build_in_parallel(names: list[str], jobs: int, passed: list[str]) -> int:
    """Deal ``names`` round-robin to ``jobs`` processes of this script; 1 if any failed."""
    groups = [names[i::jobs] for i in range(jobs) if names[i::jobs]]
    processes = [subprocess.Popen([sys.executable, __file__, *passed, *group]) for group in groups]
    codes = [process.wait() for process in processes]
    failed = [group for group, code in zip(groups, codes, strict=True) if code]
    for group in failed:
        print(f"error: the process for {' '.join(group)} failed", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="recipe names (course_lib.recipes.RECIPES)")
    parser.add_argument("--all", action="store_true", help="every recipe of the registry")
    parser.add_argument("--check", action="store_true", help="list stored runs, train nothing")
    parser.add_argument("--limit-mb", type=float, default=LIMIT_MB, help="size limit of the store")
    parser.add_argument("--data", type=Path, default=None, help="sample cohort folder")
    parser.add_argument(
        "--preset",
        default=None,
        help="store each recipe's variant for this preset (<name>-<preset>)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="processes side by side (default 1)")
    parser.add_argument(
        "--drop-work", action="store_true", help="delete each work folder once its run is stored"
    )
    parser.add_argument(
        "--keep-going", action="store_true", help="train the other recipes when one fails"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected 1 or more")
    data_dir = args.data or find_data_dir(find_repo_root(ROOT))
    store = ROOT / REFERENCE_DIR
    store.mkdir(exist_ok=True)
    if args.check:
        return check(store, data_dir)
    names = list(RECIPES) if args.all else args.names
    if not names:
        parser.error("name one or more recipes, or pass --all or --check")
    try:
        if args.preset:
            names = [get_recipe(name, args.preset).name for name in names]
        if args.jobs > 1 and len(names) > 1:
            for name in names:
                get_recipe(name)  # a bad name stops everything before any process starts
            passed = ["--limit-mb", str(args.limit_mb)] + ["--drop-work"] * args.drop_work
            passed += ["--keep-going"] * args.keep_going
            if args.data:
                passed += ["--data", str(args.data)]
            return build_in_parallel(names, args.jobs, passed)
        if args.keep_going:
            return build_each(names, store, data_dir, args.limit_mb, args.drop_work)
        build(names, store, data_dir, args.limit_mb, args.drop_work)
    except RecipeError as error:
        parser.exit(2, f"error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
