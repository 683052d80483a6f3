"""The answers the exercise checks compare with, computed here from the reference solutions.

The checks in ``course_lib.exercises`` hold no solution code: where a check needs the right
answer on its own fixed inputs (a simulated cohort, seeded random tensors), it reads it from
``course_lib/exercises/expected.py``, which this module writes:

    python tests/exercise_solutions/expected_values.py     # after changing a check's inputs

``tests/test_exercises.py`` recomputes the values and fails when the stored ones differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `exercise_solutions` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course_lib import icd9
from course_lib.exercises import lesson01 as checks01
from course_lib.exercises import lesson02 as checks02
from course_lib.exercises import lesson03 as checks03
from course_lib.exercises import lesson05 as checks05
from course_lib.exercises import lesson06 as checks06
from course_lib.exercises import lesson11 as checks11
from course_lib.files import atomic_write_text
from course_lib.simulate import simulate_cohort
from exercise_solutions import lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson11

TARGET = Path(__file__).resolve().parents[2] / "course_lib" / "exercises" / "expected.py"
HEADER = '''"""Expected answers of the exercise checks on their fixed inputs (generated: do not edit).

Written by ``python tests/exercise_solutions/expected_values.py`` from the reference solutions,
which live in the course's tests, not in this package: values, not code, so the answers do not
ship with ``course_lib``. ``tests/test_exercises.py`` fails when they disagree.
"""

import json
from typing import Any

EXPECTED: dict[str, Any] = json.loads(
    r"""
'''
FOOTER = '''"""
)
'''


def keep_latest_visits() -> dict[str, dict[str, list]]:
    """``{subject: {max_length: [ids, truncated]}}`` on the check's encoded patients."""
    found: dict[str, dict[str, list]] = {}
    for subject, chunks, max_length in checks02.truncation_cases():
        answer = lesson02.solution_keep_latest_visits(chunks, max_length)
        found.setdefault(subject, {})[str(max_length)] = list(answer)
    return found


def compute_expected() -> dict[str, Any]:
    """Every stored answer, keyed by exercise name (JSON types only)."""
    cohorts = {"edge-case": checks01._edge_case_cohort(), "simulated": checks01._simulated_cohort()}
    train, evaluation = checks03.bigram_inputs()
    hidden, labels = checks05.padded_states()
    return {
        "codes_in_chapter": {
            label: {ch: lesson01.solution_codes_in_chapter(c, ch) for ch in icd9.CHAPTER_TITLES}
            for label, c in cohorts.items()
        },
        "keep_latest_visits": keep_latest_visits(),
        "bigram_cross_entropy": {
            str(alpha): lesson03.solution_bigram_cross_entropy(train, evaluation, 30, alpha)
            for alpha in (1.0, 0.1)
        },
        "expected_violation_rates": lesson03.solution_expected_violation_rates(
            simulate_cohort(300, seed=11)
        ),
        "sex_specific_share": lesson04.solution_sex_specific_share(
            simulate_cohort(300, seed=11)
        ).to_dict(orient="index"),
        "focal_sex_loss": {
            f"{batch}:{gamma}": float(lesson05.solution_focal_sex_loss(logits, target, gamma))
            for batch, logits, target in checks05.focal_batches()
            for gamma in checks05.FOCAL_GAMMAS
        },
        "mean_decoder_state": lesson05.solution_mean_decoder_state(hidden, labels).tolist(),
        "pmi_matrix": lesson06.solution_pmi_matrix(*checks06.pmi_inputs()).double().tolist(),
        "cumulative_risk": lesson11.solution_cumulative_risk(
            checks11.hazard_logits_input().double()
        ).tolist(),
    }


def render(values: dict[str, Any]) -> str:
    """The module text: the values as JSON (``-Infinity`` allowed) inside a raw string, one
    line per exercise and case, so a changed answer shows as a small diff."""

    def lines(value: Any, depth: int) -> str:
        if not isinstance(value, dict) or depth == 2:
            return json.dumps(value, sort_keys=True)
        pad = " " * (depth + 1)
        entries = [f"{pad}{json.dumps(k)}: {lines(v, depth + 1)}" for k, v in sorted(value.items())]
        return "{\n" + ",\n".join(entries) + "\n" + " " * depth + "}"

    return HEADER + lines(values, 0) + "\n" + FOOTER


if __name__ == "__main__":
    atomic_write_text(TARGET, render(compute_expected()))
    print(f"wrote {TARGET}")
