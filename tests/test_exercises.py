"""Every exercise check accepts its reference solution, reports None as not attempted, and
rejects each known wrong answer: no check can pass everything."""

from __future__ import annotations

import pytest

from course_lib.exercises import Exercise, ExerciseFailed, all_exercises

EXERCISES = [exercise for exercises in all_exercises().values() for exercise in exercises]


def test_exercises_are_registered():
    assert "lesson00" in all_exercises()
    assert len({exercise.name for exercise in EXERCISES}) == len(EXERCISES), "duplicate names"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_reference_solution_passes(exercise: Exercise, capsys):
    assert exercise.check(exercise.solution) is True
    assert f"exercise {exercise.name}: passed" in capsys.readouterr().out


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_unattempted_exercise_does_not_fail_the_lesson(exercise: Exercise, capsys):
    assert exercise.check(None) is False
    assert "not attempted" in capsys.readouterr().out


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.name)
def test_wrong_answers_fail_with_a_message(exercise: Exercise):
    assert exercise.wrong_answers, f"{exercise.name}: give at least one wrong answer to reject"
    for wrong in exercise.wrong_answers:
        with pytest.raises(ExerciseFailed, match=f"exercise {exercise.name}: "):
            exercise.check(wrong)
