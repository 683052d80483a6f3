"""The in-memory patient record every module shares (lesson 01).

A :class:`Cohort` is what the simulator produces, what the MIMIC-III loader returns,
what the generator writes and what the evaluation reads: one shape for real and
synthetic patients alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

SEXES = ("F", "M")


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
