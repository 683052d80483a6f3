"""Lesson 02's exercises: visit lengths from token ids, and a "keep the latest visits"
truncation policy (lesson 02)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache

import torch

from course_lib.cohort import Cohort
from course_lib.dataset import MIN_MAX_LENGTH
from course_lib.exercises import ExerciseFailed, exercise_check, not_attempted, passed, require
from course_lib.exercises.expected import EXPECTED
from course_lib.tokens import (
    PAD_ID,
    VISIT_END_ID,
    VISIT_START_ID,
    Vocabulary,
)


@lru_cache(maxsize=1)
def _cohort() -> Cohort:
    from course_lib.simulate import simulate_cohort

    return simulate_cohort(200, seed=12)


@exercise_check
def check_visit_lengths(visit_lengths: Callable[[Sequence[int], Vocabulary], list[int]] | None):
    """Compare with the true number of codes of each visit, for patients encoded with and
    without chapter tokens, with unknown codes, and as padded tensor rows."""
    name = "visit_lengths"
    if visit_lengths is None:
        return not_attempted(name, "write visit_lengths(ids, vocab) -> list[int]")
    patients = _cohort().patients
    known = Cohort(patients[:150])  # the last 50 patients have codes these vocabularies lack
    n_cases = 0
    for vocab in (Vocabulary.build(known), Vocabulary.build(known, chapter_tokens=True)):
        for patient in patients:
            ids = vocab.encode_patient(patient)
            expected = [len(visit.codes) for visit in patient.visits]
            padded_row = torch.tensor(ids + [PAD_ID] * 3)
            for label, given in (("list", ids), ("padded tensor row", padded_row)):
                got = visit_lengths(given, vocab)
                require(
                    isinstance(got, list | tuple) and [int(n) for n in got] == expected,
                    name,
                    f"patient {patient.subject_id} ({label}, chapter_tokens="
                    f"{vocab.chapter_tokens}): got {got!r}, expected {expected} "
                    "(count code ids and <unk>; stop at </patient>)",
                )
                n_cases += 1
    return passed(name, f"{n_cases} encoded patients")


# --- Exercise 2: a truncation policy that keeps the latest visits ----------------------------


TRUNCATION_LENGTHS = (5, 7, 10, 16, 24, 40, 64)
TRUNCATION_PATIENTS = 80


def truncation_cases() -> Iterator[tuple[str, list[list[int]], int]]:
    """``(subject id, encoded visits, max_length)``: the check's inputs."""
    cohort = _cohort()
    vocab = Vocabulary.build(cohort)
    for patient in cohort.patients[:TRUNCATION_PATIENTS]:
        chunks = [vocab.encode_visit(visit.codes) for visit in patient.visits]
        for max_length in TRUNCATION_LENGTHS:
            yield str(patient.subject_id), chunks, max_length


@exercise_check
def check_keep_latest_visits(
    keep_latest_visits: Callable[[list[list[int]], int], tuple[list[int], bool]] | None,
) -> bool:
    """Compare with the policy on encoded patients at several lengths, and require a clear
    error for a ``max_length`` too short to hold one code."""
    name = "keep_latest_visits"
    if keep_latest_visits is None:
        return not_attempted(name, "write keep_latest_visits(visit_chunks, max_length)")
    n_cases = 0
    for subject, chunks, max_length in truncation_cases():
        expected_ids, expected_cut = EXPECTED["keep_latest_visits"][subject][str(max_length)]
        answer = keep_latest_visits([list(chunk) for chunk in chunks], max_length)
        require(
            isinstance(answer, tuple) and len(answer) == 2,
            name,
            f"expected a tuple (ids, truncated), got {answer!r}",
        )
        ids, cut = answer
        ids = [int(token) for token in ids]
        where = f"patient {subject} ({len(chunks)} visits), max_length {max_length}"
        require(
            len(ids) <= max_length,
            name,
            f"{where}: {len(ids)} tokens, more than max_length",
        )
        require(
            ids == expected_ids,
            name,
            f"{where}: got {ids}, expected {expected_ids} (latest whole visits, in order; "
            "the first codes of the last visit when it alone is too long)",
        )
        require(
            bool(cut) == expected_cut,
            name,
            f"{where}: truncated={cut}, expected {expected_cut}",
        )
        n_cases += 1
    for too_short in (0, MIN_MAX_LENGTH - 1):
        try:
            keep_latest_visits([[VISIT_START_ID, 7, VISIT_END_ID]], too_short)
        except ValueError:
            continue
        except NotImplementedError:  # a stub: not done yet, not wrong
            raise
        except Exception as error:
            raise ExerciseFailed(
                f"exercise {name}: max_length {too_short}: raised {error!r}, expected ValueError"
            ) from error
        require(False, name, f"max_length {too_short}: expected a ValueError (too short)")
    return passed(name, f"{n_cases} patient/length cases")
