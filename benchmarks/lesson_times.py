"""Execute each lesson notebook once and print its wall time and the total.

    python benchmarks/lesson_times.py                       # every lessons/*.ipynb
    python benchmarks/lesson_times.py lessons/00_start_here.ipynb
    COURSE_PRESET=small python benchmarks/lesson_times.py   # time another preset

Lessons run in their own folder (as Jupyter, nbval and the book run them); the executed copies
go to a temporary folder, so the committed notebooks stay without outputs. A failing lesson is
reported and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO_ROOT = Path(__file__).resolve().parent.parent


def execute_lesson(path: Path, out_dir: Path, timeout: int) -> float:
    """Run every cell of ``path`` in a fresh kernel; return the wall time in seconds."""
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
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "lessons", nargs="*", type=Path, help="notebooks (default: lessons/*.ipynb)"
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
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
                seconds = execute_lesson(lesson.resolve(), Path(out_dir), args.timeout)
            except CellExecutionError as error:
                failed.append(lesson.name)
                print(f"{lesson.name:40s}  FAILED: {str(error).splitlines()[0][:100]}")
                continue
            total += seconds
            print(f"{lesson.name:40s} {seconds:8.1f} s")
    print(f"{'total (' + str(len(lessons) - len(failed)) + ' lessons)':40s} {total:8.1f} s")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
