"""The lesson header: seeds, preset choice, paths, the run cache and the data fallback."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import lesson
from course_lib.lesson import LessonSetupError, find_data_dir, find_repo_root, setup_lesson

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for variable in ("COURSE_PRESET", "COURSE_DATA_DIR", "COURSE_RUNS_DIR"):
        monkeypatch.delenv(variable, raising=False)


def draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_setup_seeds_everything_and_prints_one_line(capsys):
    setup_lesson(seed=3, name="00_test")
    first = draws()
    setup_lesson(seed=3, name="00_test")
    assert draws() == first
    setup_lesson(seed=4, name="00_test")
    assert draws() != first
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("lesson 00_test | preset tiny | device cpu | torch ")


def test_preset_from_argument_and_environment(monkeypatch):
    assert setup_lesson(name="x", preset="small").preset.name == "small"
    monkeypatch.setenv("COURSE_PRESET", "base")
    assert setup_lesson(name="x").preset.name == "base"
    monkeypatch.setenv("COURSE_PRESET", "huge")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        setup_lesson(name="x")


def test_paths_in_the_repository(monkeypatch, tmp_path):
    context = setup_lesson(name="07_training")
    assert context.repo_root == REPO_ROOT
    assert context.runs_dir == REPO_ROOT / "runs" / "lessons" / "07_training"
    assert context.device == torch.device("cpu")
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    assert setup_lesson(name="07_training").runs_dir == tmp_path / "07_training"
    with pytest.raises(LessonSetupError, match="lesson's file stem"):
        setup_lesson(name="../elsewhere")


def test_repo_root_is_none_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.setattr(lesson, "__file__", str(tmp_path / "site-packages" / "lesson.py"))
    assert find_repo_root(tmp_path) is None
    assert find_repo_root(REPO_ROOT / "lessons") == REPO_ROOT


def make_context(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path / "runs"))
    return setup_lesson(name="07_training")


def test_load_or_train_trains_once_then_loads(tmp_path, monkeypatch):
    context = make_context(tmp_path, monkeypatch)
    trained: list[Path] = []

    def train(folder: Path) -> None:
        trained.append(folder)
        (folder / "weights.txt").write_text("42")

    def load(folder: Path) -> str:
        return (folder / "weights.txt").read_text()

    assert context.load_or_train("tiny_run", train, load) == "42"
    assert context.load_or_train("tiny_run", train, load) == "42"
    assert len(trained) == 1 and trained[0] != context.run_dir("tiny_run")
    assert context.has_run("tiny_run")
    assert sorted(p.name for p in context.runs_dir.iterdir()) == ["tiny_run"]


def test_interrupted_training_leaves_nothing(tmp_path, monkeypatch):
    context = make_context(tmp_path, monkeypatch)

    def train(folder: Path) -> None:
        (folder / "half.pt").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        context.load_or_train("tiny_run", train, lambda folder: folder)
    assert not context.has_run("tiny_run")
    assert list(context.runs_dir.iterdir()) == []
    with pytest.raises(LessonSetupError, match="plain folder name"):
        context.run_dir("a/b")


def test_data_dir_override_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(LessonSetupError, match="COURSE_DATA_DIR"):
        find_data_dir(REPO_ROOT)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert find_data_dir(None) == tmp_path
    monkeypatch.delenv("COURSE_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(LessonSetupError, match="no sample cohort"):
        find_data_dir(None, regenerate=False)


def test_regenerated_sample_without_the_repository(tmp_path, monkeypatch):
    monkeypatch.setattr(lesson, "FALLBACK_SAMPLE_PATIENTS", 15)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data_dir = find_data_dir(None)
    assert data_dir == tmp_path / "cache" / "course_lib" / "data_samples" / "mimic_sample"
    for table in ("PATIENTS.csv", "ADMISSIONS.csv", "DIAGNOSES_ICD.csv"):
        assert (data_dir / table).stat().st_size > 0
    patients = (data_dir / "PATIENTS.csv").read_text().strip().splitlines()
    assert len(patients) == 1 + 15  # header + the patched FALLBACK_SAMPLE_PATIENTS
    assert [p.name for p in data_dir.parent.iterdir()] == ["mimic_sample"]  # no temporary left
    assert find_data_dir(None) == data_dir  # found, not regenerated


def test_fallback_matches_the_committed_sample_command():
    """The regenerated cohort is the committed one: same --patients and --seed as its README."""
    readme = (REPO_ROOT / "data_samples" / "README.md").read_text(encoding="utf-8")
    command = next(line for line in readme.splitlines() if "course_lib simulate" in line)
    assert f"--patients {lesson.FALLBACK_SAMPLE_PATIENTS}" in command, command
    assert f"--seed {lesson.FALLBACK_SAMPLE_SEED}" in command, command
    assert f"data_samples/{lesson.DATA_SAMPLE_DIR}" in command, command


def stamp_fresh(folder: Path, recipe, data_dir: Path) -> None:
    """Mark the copied run ``folder`` as made by ``recipe`` with today's code."""
    from course_lib import recipe_runs

    recipe_runs.write_stamp(folder, recipe_runs.make_stamp(recipe, data_dir, 1.0))


def test_train_or_load_reference_retrain_then_cache(tmp_path, monkeypatch, capsys):
    import dataclasses
    import shutil

    from course_lib import recipe_runs
    from course_lib.recipes import get_recipe

    stored = REPO_ROOT / "reference_runs" / "baseline_none"
    if not stored.is_dir():
        pytest.skip("no stored reference run baseline_none")
    data_dir = REPO_ROOT / "data_samples" / "mimic_sample"
    monkeypatch.setenv("COURSE_DATA_DIR", str(data_dir))
    recipe = get_recipe("baseline_none")
    repo = tmp_path / "repo"
    shutil.copytree(stored, repo / "reference_runs" / recipe.name)
    stamp_fresh(repo / "reference_runs" / recipe.name, recipe, data_dir)
    context = dataclasses.replace(make_context(tmp_path, monkeypatch), repo_root=repo)
    trained: list[Path] = []

    def fake_train(recipe, out, **options):  # a copy of the stored run, stamped as trained
        trained.append(out)
        shutil.copytree(stored, out, dirs_exist_ok=True)
        stamp_fresh(out, recipe, data_dir)

    monkeypatch.setattr(recipe_runs, "train_recipe", fake_train)
    loaded = context.train_or_load("baseline_none")
    assert loaded.source == "reference" and trained == []
    assert next(loaded.model.parameters()).dtype == torch.float32  # stored in fp16
    assert loaded["config"].prompt_location == "none" and len(loaded.epochs) >= 1
    assert "loading the reference run reference_runs/baseline_none" in capsys.readouterr().out

    monkeypatch.setenv("COURSE_RETRAIN", "1")
    assert context.train_or_load(recipe).source == "trained"
    assert trained == [tmp_path / "runs" / "03_bart_for_patients" / "baseline_none"]
    assert "$COURSE_RETRAIN is set; training it into" in capsys.readouterr().out

    monkeypatch.delenv("COURSE_RETRAIN")
    (repo / "reference_runs" / recipe.name / "recipe.json").write_text("{}")
    assert context.train_or_load("baseline_none").source == "cache"
    assert "reference run stale" in capsys.readouterr().out and len(trained) == 1
    with pytest.raises(KeyError):
        loaded["_private"]
