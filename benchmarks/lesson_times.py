"""Execute each lesson notebook once and print its wall time and the total.

    python benchmarks/lesson_times.py                       # every lessons/*.ipynb
    python benchmarks/lesson_times.py lessons/00_start_here.ipynb
    COURSE_PRESET=small python benchmarks/lesson_times.py   # time another preset
    python benchmarks/lesson_times.py --retrain             # COURSE_RETRAIN=1: train every recipe

Lessons run in their own folder (as Jupyter, nbval and the book run them); the executed copies
go to a temporary folder, so the committed notebooks stay without outputs. A failing lesson is
reported and makes the exit status 1. Beside each time, how the lesson's recipes came in
(``ctx.train_or_load``'s printed lines): loaded from ``reference_runs/``, from the run cache,
or trained, so a time that includes training says so.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO_ROOT = Path(__file__).resolve().parent.parent
# What LessonContext.train_or_load prints for each recipe, and how it is counted here.
RECIPE_LINES = {
    "reference": re.compile(r"^\S+: loading the reference run ", re.M),
    "cache": re.compile(r"^\S+: .*; loading the run trained earlier in ", re.M),
    "trained": re.compile(r"^\S+: .*; training it into ", re.M),
}


def recipe_sources(notebook: nbformat.NotebookNode) -> str:
    """``"2 reference, 1 trained"``: how the executed lesson's recipes came in."""
    text = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    counts = {kind: len(pattern.findall(text)) for kind, pattern in RECIPE_LINES.items()}
    return ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)


def execute_lesson(path: Path, out_dir: Path, timeout: int) -> tuple[float, str]:
    """Run every cell of ``path`` in a fresh kernel; the wall time (s) and recipe sources."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        nbformat.write(notebook, out_dir / path.name)
    return time.perf_counter() - start, recipe_sources(notebook)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "lessons", nargs="*", type=Path, help="notebooks (default: lessons/*.ipynb)"
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    parser.add_argument(
        "--retrain", action="store_true", help="COURSE_RETRAIN=1: train every recipe, load none"
    )
    args = parser.parse_args(argv)
    if args.retrain:
        os.environ["COURSE_RETRAIN"] = "1"  # the kernels inherit it
    lessons = args.lessons or sorted((REPO_ROOT / "lessons").glob("*.ipynb"))
    for lesson in lessons:
        if lesson.suffix != ".ipynb" or not lesson.is_file():
            parser.error(f"{lesson}: expected an existing .ipynb file")

    preset = os.environ.get("COURSE_PRESET", "default (tiny on CPU, base on GPU)")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPU(s), preset {preset}")
    total, failed = 0.0, []
    with tempfile.TemporaryDirectory(prefix="lesson-times-") as out_dir:
        for lesson in lessons:
            try:
                seconds, sources = execute_lesson(lesson.resolve(), Path(out_dir), args.timeout)
            except CellExecutionError as error:
                failed.append(lesson.name)
                print(f"{lesson.name:40s}  FAILED: {str(error).splitlines()[0][:100]}")
                continue
            total += seconds
            print(f"{lesson.name:40s} {seconds:8.1f} s  {sources}")
    print(f"{'total (' + str(len(lessons) - len(failed)) + ' lessons)':40s} {total:8.1f} s")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
