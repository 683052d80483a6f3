"""Exercise checks and reference solutions, one module per lesson (lesson 00).

Pattern, the same in every lesson:

* ``course_lib/exercises/lessonNN.py`` defines ``check_<exercise>(answer)`` and a reference
  ``solution_<exercise>``, and lists them in ``EXERCISES``.
* The lesson's exercise cell sets ``answer = None`` and calls the check: ``None`` means "not
  attempted yet" (the check prints so and returns False, so the lesson still runs in CI); a wrong
  answer raises :class:`ExerciseFailed` saying what is wrong; a right one prints and returns True.
* ``tests/test_exercises.py`` runs every check on its reference solution (must pass), on None
  (must report "not attempted") and on each known wrong answer (must fail), so no check can
  silently accept everything.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class ExerciseFailed(AssertionError):
    """A learner's answer is wrong; the message says what was expected."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: its check, the reference solution, and answers the check must reject."""

    name: str
    check: Callable[[Any], bool]
    solution: Any
    wrong_answers: tuple[Any, ...] = field(default_factory=tuple)


def not_attempted(name: str, hint: str) -> bool:
    print(f"exercise {name}: not attempted yet ({hint})")
    return False


def passed(name: str, detail: str = "") -> bool:
    print(f"exercise {name}: passed" + (f" ({detail})" if detail else ""))
    return True


def require(condition: bool, name: str, message: str) -> None:
    """Raise :class:`ExerciseFailed` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ExerciseFailed(f"exercise {name}: {message}")


def all_exercises() -> dict[str, list[Exercise]]:
    """Every lesson module's ``EXERCISES``, keyed by module name (for the test suite)."""
    found: dict[str, list[Exercise]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("lesson"):
            module = importlib.import_module(f"{__name__}.{module_info.name}")
            found[module_info.name] = list(module.EXERCISES)
    return found
