"""Exercise checks, one module per lesson (lesson 00).

Pattern, the same in every lesson:

* ``course_lib/exercises/lessonNN.py`` defines one ``check_<exercise>(answer)`` per exercise.
  It holds checks only: the reference solutions and the wrong answers each check must reject
  live in the course's tests (``tests/exercise_solutions/``), not in the installed package.
  Where a check needs the right answer on its fixed inputs, it reads a stored value from
  ``expected.py`` (written from the solutions by ``tests/exercise_solutions/expected_values.py``).
* The lesson's exercise cell ships a stub whose body is ``raise NotImplementedError`` (marked
  ``TODO``) and calls the check on it. A check given a stub (or ``None``) prints
  ``exercise <name>: not done yet (...)`` and returns False, so the lesson still runs in CI; a
  wrong answer raises :class:`ExerciseFailed` saying what is wrong; a right one prints
  ``passed`` and returns True.
* ``tests/test_exercises.py`` runs every check on its reference solution (must pass), on the
  stub (must report "not done yet") and on each known wrong answer (must fail), so no check
  can silently accept everything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

NOT_DONE = "not done yet"


class ExerciseFailed(AssertionError):
    """A learner's answer is wrong; the message says what was expected."""


def not_attempted(name: str, hint: str) -> bool:
    """Report an exercise the learner has not filled in yet (``None`` or a stub)."""
    print(f"exercise {name}: {NOT_DONE} ({hint})")
    return False


def passed(name: str, detail: str = "") -> bool:
    print(f"exercise {name}: passed" + (f" ({detail})" if detail else ""))
    return True


def require(condition: bool, name: str, message: str) -> None:
    """Raise :class:`ExerciseFailed` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ExerciseFailed(f"exercise {name}: {message}")


def exercise_check(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """Make ``check_<name>`` report a stub (it raised ``NotImplementedError``) as not done yet.

    A lesson ships each exercise as a stub, so an unfilled exercise must not fail the lesson
    (CI executes every lesson); only a real, wrong answer raises :class:`ExerciseFailed`.
    """
    name = check.__name__.removeprefix("check_")

    @functools.wraps(check)
    def run(answer: Any) -> bool:
        try:
            return check(answer)
        except NotImplementedError as error:
            detail = f": {error}" if str(error) else ""
            return not_attempted(name, f"the stub still raises NotImplementedError{detail}")

    return run
