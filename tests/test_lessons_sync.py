"""Each lesson is a jupytext pair; the committed notebook is exactly the .py, without outputs."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

LESSONS_DIR = Path(__file__).resolve().parent.parent / "lessons"
LESSON_SOURCES = sorted(p for p in LESSONS_DIR.glob("*.py") if p.name != "conftest.py")
LESSON_NOTEBOOKS = sorted(LESSONS_DIR.glob("*.ipynb"))
LESSON_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")


def cell_summary(cell) -> tuple[str, str, list[str]]:
    return cell.cell_type, cell.source, list(cell.metadata.get("tags", []))


def test_there_are_lessons():
    assert LESSON_SOURCES, f"no lessons/*.py in {LESSONS_DIR}"


@pytest.mark.parametrize("source", LESSON_SOURCES, ids=lambda p: p.name)
def test_lesson_has_an_identical_notebook_twin(source: Path):
    assert LESSON_NAME.match(source.stem), f"{source.name}: expected NN_lowercase_name.py"
    notebook_path = source.with_suffix(".ipynb")
    assert notebook_path.exists(), f"{notebook_path.name} missing: run scripts/sync_lessons.sh"
    expected = jupytext.read(source)
    committed = nbformat.read(notebook_path, as_version=4)
    expected_cells = [cell_summary(cell) for cell in expected.cells]
    committed_cells = [cell_summary(cell) for cell in committed.cells]
    assert len(committed_cells) == len(expected_cells), (
        f"{notebook_path.name} has {len(committed_cells)} cells, {source.name} "
        f"{len(expected_cells)}: run scripts/sync_lessons.sh"
    )
    for index, (got, want) in enumerate(zip(committed_cells, expected_cells, strict=True)):
        assert got == want, f"{notebook_path.name} cell {index} differs from {source.name}"
    assert committed.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("notebook_path", LESSON_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(notebook_path: Path):
    assert notebook_path.with_suffix(".py").exists(), f"{notebook_path.name} has no .py source"
    notebook = nbformat.read(notebook_path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{notebook_path.name} cell {index} has outputs"
            assert cell.execution_count is None, f"{notebook_path.name} cell {index} was run"


@pytest.mark.parametrize("source", LESSON_SOURCES, ids=lambda p: p.name)
def test_lesson_starts_with_colab_install_then_header(source: Path):
    """Cell 1 is the install cell (tests/test_colab_install.py checks its text and runs it)."""
    code_cells = [cell.source for cell in jupytext.read(source).cells if cell.cell_type == "code"]
    assert len(code_cells) >= 2, f"{source.name}: expected the install and header cells"
    install = code_cells[0]
    assert '"google.colab" in sys.modules' in install, f"{source.name}: cell 1 must test for Colab"
    assert re.search(r'^\s+COURSE_PACKAGE = "course_lib @ git\+', install, re.M), source.name
    pip = [line for line in install.splitlines() if '"pip", "install"' in line]
    assert len(pip) == 1 and not re.search(r'"torch', pip[0]), f"{source.name}: never torch"
    assert pip[0].rstrip().endswith("COURSE_PACKAGE]"), (
        f"{source.name}: cell 1 must install course_lib only (never torch)"
    )
    header = code_cells[1]
    assert f'setup_lesson(seed=0, name="{source.stem}")' in header, (
        f'{source.name}: cell 2 must call setup_lesson(seed=0, name="{source.stem}")'
    )
