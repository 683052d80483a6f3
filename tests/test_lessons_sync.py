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
    code_cells = [cell.source for cell in jupytext.read(source).cells if cell.cell_type == "code"]
    assert len(code_cells) >= 2, f"{source.name}: expected the install and header cells"
    install = code_cells[0]
    assert '"google.colab" in sys.modules' in install, f"{source.name}: cell 1 must test for Colab"
    pip_lines = [line.strip() for line in install.splitlines() if "%pip install" in line]
    assert pip_lines, f"{source.name}: cell 1 must %pip install course_lib"
    assert all("course_lib @ git+" in line for line in pip_lines)
    assert not any(re.search(r"\btorch\b", line) for line in pip_lines), "never install torch"
    header = code_cells[1]
    assert f'setup_lesson(seed=0, name="{source.stem}")' in header, (
        f'{source.name}: cell 2 must call setup_lesson(seed=0, name="{source.stem}")'
    )


def test_percent_magics_round_trip(tmp_path: Path):
    """An indented %pip survives .ipynb -> .py (commented) -> .ipynb, as cell 1 relies on."""
    cell = 'import sys\n\nif "google.colab" in sys.modules:\n    %pip install -q x\n    print("ok")'
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    text = jupytext.writes(notebook, fmt="py:percent")
    assert "    # %pip install -q x" in text
    compile(text, "lesson.py", "exec")  # the .py stays valid Python
    assert jupytext.reads(text, fmt="py:percent").cells[0].source == cell
