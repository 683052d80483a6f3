"""Every exercise check accepts its reference solution, reports the lesson's stub as not done
yet, and rejects each known wrong answer: no check can pass everything. The solutions live in
``tests/exercise_solutions``, never in the installed ``course_lib``."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys

import pytest
from exercise_solutions import Exercise, all_exercises
from exercise_solutions.expected_values import compute_expected

import course_lib.exercises
from course_lib.exercises import NOT_DONE, ExerciseFailed
from course_lib.exercises.expected import EXPECTED

EXERCISES = [exercise for exercises in all_exercises().values() for exercise in exercises]


def _check_functions() -> dict[str, set[str]]:
    """``{lessonNN: {check names}}`` as course_lib.exercises defines them."""
    found = {}
    for info in pkgutil.iter_modules(course_lib.exercises.__path__):
        if not info.name.startswith("lesson"):
            continue  # expected.py: the stored answers
        module = importlib.import_module(f"course_lib.exercises.{info.name}")
        found[info.name] = {
            name.removeprefix("check_")
            for name, value in vars(module).items()
            if name.startswith("check_") and inspect.isfunction(value)
        }
    return found


def test_every_check_has_a_solution_and_nothing_else():
    registered = {
        module: {exercise.name for exercise in exercises}
        for module, exercises in all_exercises().items()
    }
    assert registered == _check_functions()
    assert len({exercise.name for exercise in EXERCISES}) == len(EXERCISES), "duplicate names"


def test_the_package_ships_no_solution():
    """A learner is not one import away from an answer (issue 13's acceptance line)."""
    command = "from course_lib.exercises.lesson07 import InverseInitialLoss"
    result = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True)
    assert result.returncode != 0 and "ImportError" in result.stderr
    for info in pkgutil.iter_modules(course_lib.exercises.__path__):
        module = importlib.import_module(f"course_lib.exercises.{info.name}")
        public = [
            name for name in vars(module) if name.lower().startswith(("solution", "_reference"))
        ]
        assert not public, f"{info.name} defines {public}"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_reference_solution_passes(exercise: Exercise, capsys):
    assert exercise.check(exercise.solution) is True
    assert f"exercise {exercise.name}: passed" in capsys.readouterr().out


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
@pytest.mark.parametrize("unfilled", ["stub", "none"])
def test_unfilled_exercise_does_not_fail_the_lesson(exercise: Exercise, unfilled: str, capsys):
    answer = exercise.stub if unfilled == "stub" else None
    assert exercise.check(answer) is False
    assert f"exercise {exercise.name}: {NOT_DONE}" in capsys.readouterr().out


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_wrong_answers_fail_with_a_message(exercise: Exercise):
    assert exercise.wrong_answers, f"{exercise.name}: give at least one wrong answer to reject"
    for wrong in exercise.wrong_answers:
        with pytest.raises(ExerciseFailed, match=f"exercise {exercise.name}: "):
            exercise.check(wrong)


def test_stored_answers_are_the_reference_solutions_answers():
    """course_lib/exercises/expected.py holds values only; they must be what the solutions give
    (rewrite it with ``python tests/exercise_solutions/expected_values.py``)."""
    computed = flatten(json.loads(json.dumps(compute_expected())))  # stored form: JSON types
    stored = flatten(EXPECTED)
    rewrite = "run python tests/exercise_solutions/expected_values.py"
    assert stored.keys() == computed.keys(), rewrite
    for path, value in computed.items():
        if isinstance(value, float):
            assert stored[path] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), (
                f"{path}: {rewrite}"
            )
        else:
            assert stored[path] == value, f"{path}: {rewrite}"


def flatten(value: object, path: str = "") -> dict[str, object]:
    """``{"exercise/case/.../index": leaf}`` for nested dicts and lists."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {path: value}
    return {k: v for key, item in items for k, v in flatten(item, f"{path}/{key}").items()}
