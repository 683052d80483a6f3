"""The in-memory patient record every module shares (lesson 01).

A :class:`Cohort` is what the simulator produces, what the MIMIC-III loader returns,
what the generator writes and what the evaluation reads: one shape for real and
synthetic patients alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

import numpy as np
import pandas as pd

SEXES = ("F", "M")
DAYS_PER_YEAR = 365.25


@dataclass
class Visit:
    """One admission: its codes in SEQ_NUM order (dotless ICD-9-CM) and the age at admission."""

    codes: list[str]
    age: float
    admit_time: datetime | None = None
    hadm_id: int | None = None


@dataclass
class Patient:
    """A patient: demographics plus visits ordered by admission time.

    ``age`` is the age in years at the first visit (the conditioning value ``x_num``);
    ``sex`` is ``"F"`` or ``"M"`` (the conditioning value ``x_cat``).
    """

    subject_id: int
    sex: str
    age: float
    visits: list[Visit]
    dob: datetime | None = None

    @property
    def codes(self) -> list[str]:
        """All codes of all visits, in order (repeats kept)."""
        return [code for visit in self.visits for code in visit.codes]

    @property
    def code_set(self) -> set[str]:
        return {code for visit in self.visits for code in visit.codes}


@dataclass
class Cohort:
    """Patients plus an optional outcomes table (one row per ``SUBJECT_ID``)."""

    patients: list[Patient]
    outcomes: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.patients)

    def __iter__(self):
        return iter(self.patients)

    def subset(self, subject_ids) -> Cohort:
        """The patients whose ids are in ``subject_ids`` (order of this cohort kept)."""
        wanted = set(subject_ids)
        patients = [p for p in self.patients if p.subject_id in wanted]
        outcomes = None
        if self.outcomes is not None:
            outcomes = self.outcomes[self.outcomes["SUBJECT_ID"].isin(wanted)].reset_index(
                drop=True
            )
        return Cohort(patients, outcomes, list(self.notes))


def cohort_visit_gaps(cohort: Cohort) -> np.ndarray:
    """Years between consecutive visits of every patient (empty when no patient has two).

    Generation draws a synthetic patient's gaps from the training split's (the model writes
    no time). Measured as ``evaluation.sequence`` measures days: from the admission times
    when both visits have one (ages capped at 90 would read as no gap), else from the ages.
    """
    gaps = []
    for patient in cohort:
        for number, (first, second) in enumerate(pairwise(patient.visits), start=2):
            if first.admit_time is not None and second.admit_time is not None:
                days = (second.admit_time - first.admit_time).total_seconds() / 86400
                gap = days / DAYS_PER_YEAR
            else:
                gap = float(second.age) - float(first.age)
            if not (math.isfinite(gap) and gap >= 0):
                raise ValueError(
                    f"SUBJECT_ID {patient.subject_id}: visit {number} is {gap!r} years after "
                    f"visit {number - 1}; expected a finite gap >= 0 (visits in admission order)"
                )
            gaps.append(gap)
    return np.asarray(gaps, dtype=np.float64)
