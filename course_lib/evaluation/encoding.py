"""Sparse multi-hot encodings of cohorts that every metric family shares (lesson 09).

Patients and visits become rows of ``scipy.sparse`` matrices over one code index, so that
set sizes are row sums and set intersections are matrix products: comparing 5,000 x 5,000
patients is one sparse product instead of 25 million Python set operations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from course_lib.cohort import Cohort, Patient


@dataclass(frozen=True)
class CodeIndex:
    """A fixed code -> column mapping (columns sorted, so the order is reproducible).

    ``codes`` names the columns; ``column`` maps each code to its column (by default a code's
    own position, see :meth:`categories_of` for a coarser one).
    """

    codes: tuple[str, ...]
    column: dict[str, int] = field(repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.column:
            object.__setattr__(self, "column", {code: i for i, code in enumerate(self.codes)})

    @classmethod
    def from_cohorts(cls, *cohorts: Cohort | Iterable[Patient] | None) -> CodeIndex:
        """The union of the codes of ``cohorts`` (``None`` entries are skipped)."""
        codes: set[str] = set()
        for cohort in cohorts:
            if cohort is None:
                continue
            for patient in cohort:
                codes.update(patient.code_set)
        return cls(tuple(sorted(codes)))

    @classmethod
    def categories_of(cls, *cohorts: Cohort | Iterable[Patient] | None) -> CodeIndex:
        """Columns are 3-character ICD-9 categories (4 for E codes): every code maps to its
        category's column, so encodings count categories instead of codes."""
        codes = cls.from_cohorts(*cohorts).codes
        category_of = {code: code[: 4 if code.startswith("E") else 3] for code in codes}
        categories = tuple(sorted(set(category_of.values())))
        position = {category: i for i, category in enumerate(categories)}
        return cls(categories, {code: position[category_of[code]] for code in codes})

    def __len__(self) -> int:
        return len(self.codes)


def patient_code_matrix(
    patients: Cohort | Iterable[Patient], index: CodeIndex, *, counts: bool = False
) -> sparse.csr_matrix:
    """``[n_patients, n_codes]``: 1 where the patient has the code (or its number of
    occurrences over all visits when ``counts``). Codes outside ``index`` are dropped."""
    rows: list[int] = []
    cols: list[int] = []
    n_patients = 0
    column = index.column
    for row, patient in enumerate(patients):
        n_patients = row + 1
        for code in patient.codes:
            col = column.get(code)
            if col is not None:
                rows.append(row)
                cols.append(col)
    data = np.ones(len(rows), dtype=np.float64)
    matrix = sparse.csr_matrix((data, (rows, cols)), shape=(n_patients, len(index)))
    matrix.sum_duplicates()
    if not counts:
        matrix.data[:] = 1.0
    return matrix


@dataclass(frozen=True)
class VisitMatrix:
    """Visits as multi-hot rows, in patient order then visit order.

    ``codes``: ``[n_visits, n_codes]`` binary; ``patient_row[i]`` is the row of visit ``i``'s
    patient in the cohort; ``next_visit_rows`` are the rows ``i`` whose patient has a visit
    ``i + 1`` (the starts of consecutive-visit pairs).
    """

    codes: sparse.csr_matrix
    patient_row: np.ndarray

    @property
    def next_visit_rows(self) -> np.ndarray:
        same_patient = self.patient_row[:-1] == self.patient_row[1:]
        return np.flatnonzero(same_patient)


def visit_code_matrix(patients: Cohort | Iterable[Patient], index: CodeIndex) -> VisitMatrix:
    """Encode every visit as a binary row (codes outside ``index`` dropped)."""
    rows: list[int] = []
    cols: list[int] = []
    patient_row: list[int] = []
    column = index.column
    for row, patient in enumerate(patients):
        for visit in patient.visits:
            visit_row = len(patient_row)
            patient_row.append(row)
            for code in visit.codes:
                col = column.get(code)
                if col is not None:
                    rows.append(visit_row)
                    cols.append(col)
    data = np.ones(len(rows), dtype=np.float64)
    matrix = sparse.csr_matrix((data, (rows, cols)), shape=(len(patient_row), len(index)))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return VisitMatrix(matrix, np.asarray(patient_row, dtype=np.int64))


def age_band(age: float, band_years: int = 10) -> int:
    """Lower bound of the ``band_years``-wide age band (``67.4`` -> ``60``)."""
    return int(age // band_years) * band_years
