"""The Colab install cell: one repository setting in _config.yml, the same cell in every lesson,
a real install from a git URL when ``google.colab`` is present, and a loud failure otherwise."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_writer():
    spec = importlib.util.spec_from_file_location(
        "write_install_cell", REPO_ROOT / "scripts" / "write_install_cell.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


writer = load_writer()


def run_cell(cell: str) -> dict:
    """Execute the cell's code as a notebook would (a fresh namespace)."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(cell, "<install cell>", "exec"), namespace)  # noqa: S102 (the cell under test)
    return namespace


@pytest.fixture
def on_colab(monkeypatch):
    """A fake ``google.colab`` module: the only thing the cell looks at to know it is on Colab."""
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google", sys.modules.get("google", google))
    monkeypatch.setitem(sys.modules, "google.colab", colab)


@pytest.fixture
def offline_pip(monkeypatch, tmp_path):
    """pip options as environment variables: install into a scratch folder, from no index."""
    target = tmp_path / "site"
    monkeypatch.setenv("PIP_TARGET", str(target))
    monkeypatch.setenv("PIP_NO_DEPS", "1")  # the dependencies are already in this venv
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # pip reads "0" as --no-build-isolation
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return target


def test_every_lesson_has_the_cell_rendered_from_config(capsys):
    url, branch = writer.read_setting()
    cell = writer.install_cell(url, branch)
    assert f'"course_lib @ git+{url}@{branch}"' in cell
    for lesson in writer.lesson_sources():
        text = lesson.read_text(encoding="utf-8")
        assert text.count(cell) == 1, f"{lesson.name}: run python scripts/write_install_cell.py"
    assert writer.main(["--check"]) == 0, capsys.readouterr().out


def test_one_cell_per_lesson_is_required():
    cell = writer.install_cell("https://github.com/a/b", "main")
    with pytest.raises(writer.InstallCellError, match="lesson.py: expected one Colab install"):
        writer.with_install_cell("# %%\nprint(1)\n", cell, "lesson.py")


def test_setting_is_validated(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: example-org/course\n  branch: main\n")
    with pytest.raises(writer.InstallCellError, match="repository.url must be an https:// URL"):
        writer.read_setting(config)
    config.write_text("repository:\n  url: https://github.com/a/b\n  branch: 'main; rm'\n")
    with pytest.raises(writer.InstallCellError, match="repository.branch must be a git ref"):
        writer.read_setting(config)


def test_the_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)

    def no_install(*args, **kwargs):
        raise AssertionError("the install cell ran pip outside Colab")

    monkeypatch.setattr(subprocess, "run", no_install)
    run_cell(writer.install_cell("https://github.com/a/b", "main"))


def test_a_failed_install_raises(on_colab, offline_pip, tmp_path, capfd):
    missing = f"file://localhost{tmp_path / 'no_such_repository'}"
    with pytest.raises(RuntimeError, match="pip could not install course_lib @ git\\+file://"):
        run_cell(writer.install_cell(missing, "main"))
    assert "course_lib installed" not in capfd.readouterr().out


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_the_cell_installs_course_lib_from_a_git_url(on_colab, offline_pip, tmp_path, capfd):
    """The cell as lessons have it, pointed at this repository's committed HEAD by file://."""
    head = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode != 0:
        pytest.skip(f"{REPO_ROOT} is not a git checkout")
    url = f"file://localhost{REPO_ROOT}"
    run_cell(writer.install_cell(url, head.stdout.strip()))
    assert f"course_lib installed from course_lib @ git+{url}" in capfd.readouterr().out

    probe = (
        "import course_lib, course_lib.exercises, course_lib.icd9 as icd9; "
        "print(course_lib.__file__); print(len(icd9.code_table()))"
    )
    environment = {**os.environ, "PYTHONPATH": str(offline_pip)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=environment, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    where, n_codes = result.stdout.split()
    assert Path(where).is_relative_to(offline_pip), f"imported {where}, not the installed copy"
    assert int(n_codes) > 1000  # the ICD-9 tables (package data) came with the install
    assert not list(offline_pip.rglob("exercise_solutions")), "the tests' solutions were installed"
