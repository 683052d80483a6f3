"""Reference solutions and wrong answers of the exercises, one module per lesson (tests only).

They live here, not in ``course_lib``, so that a learner who installs the course package does
not get the answers with it. Each ``lessonNN.py`` lists ``EXERCISES``: the check from
``course_lib.exercises.lessonNN``, the reference solution it must accept, the stub the lesson
ships (it must report "not done yet") and the wrong answers it must reject.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def stub_function(*args: Any, **kwargs: Any) -> Any:
    """What a lesson's function exercise ships: a body that is still a TODO."""
    raise NotImplementedError("TODO: write this function")


@dataclass(frozen=True)
class Exercise:
    """One exercise: its check, the reference solution, the stub and answers to reject."""

    name: str
    check: Callable[[Any], bool]
    solution: Any
    wrong_answers: tuple[Any, ...] = field(default_factory=tuple)
    stub: Any = stub_function


def all_exercises() -> dict[str, list[Exercise]]:
    """Every lesson module's ``EXERCISES``, keyed by module name (``lesson00`` ...)."""
    found: dict[str, list[Exercise]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("lesson"):
            module = importlib.import_module(f"{__name__}.{module_info.name}")
            found[module_info.name] = list(module.EXERCISES)
    return found
