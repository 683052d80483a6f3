"""Outcome labels as further categorical prompts (issue 14, lesson 09).

A run trained with ``outcome_prompts=["LVEF_REDUCED"]`` reads, for every patient, the class
index of that column of ``Cohort.outcomes`` as one more ``x_cat`` column after sex
(``x_cat[:, 0]`` stays the sex: the sex head and the validity masks read it). At generation
the caller *requests* a label per patient, so the synthetic cohort carries labels a
downstream model can be trained on (``tstr_auroc``) without an oracle that labels records.

Labels are class indices ``0..k-1``; ``k`` (the prompt's cardinality) comes from the
training split and is stored in the model's config (``outcome_prompts`` names the columns,
``cat_cardinalities[1:]`` their class counts), so generation knows both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from course_lib.cohort import Cohort


def _column_values(table, column: str, where: str) -> np.ndarray:
    """The column of a DataFrame or mapping as a float array (NaN where missing)."""
    try:
        values = pd.to_numeric(pd.Series(table[column]), errors="raise")
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"outcome prompt {column} ({where}): expected integer class indices, {error}"
        ) from None
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _check_labels(
    values: np.ndarray, column: str, row_names: Sequence, where: str, classes: int | None
) -> np.ndarray:
    """Integer class indices (``< classes`` when given), or a one-line error naming the row."""
    for position, value in enumerate(values):
        if np.isnan(value):
            problem = "has no label"
        elif value != np.floor(value) or value < 0:
            problem = f"has {value:g}"
        elif classes is not None and value >= classes:
            problem = f"has class {int(value)}, which the run never saw"
        else:
            continue
        known = f"0..{classes - 1}" if classes is not None else "0, 1, ..."
        raise ValueError(
            f"outcome prompt {column} ({where}): {row_names[position]} {problem}; "
            f"expected a class index in {known}"
        )
    return values.astype(np.int64)


def cohort_prompt_labels(
    cohort: Cohort, columns: Sequence[str] | Mapping[str, int], subject_ids: Sequence[int]
) -> np.ndarray:
    """``[len(subject_ids), len(columns)]`` class indices from ``cohort.outcomes``.

    ``columns`` may map each column to its class count (labels must then lie below it).
    """
    columns = dict(columns) if isinstance(columns, Mapping) else dict.fromkeys(columns)
    if not columns:
        return np.zeros((len(subject_ids), 0), dtype=np.int64)
    table = cohort.outcomes
    have = [] if table is None else [c for c in table.columns if c != "SUBJECT_ID"]
    for column in columns:
        if column not in have:
            raise ValueError(
                f"outcome prompt {column}: the cohort's outcomes have no such column "
                f"(expected one of {have}; a folder needs OUTCOMES.csv)"
            )
    by_subject = table.drop_duplicates("SUBJECT_ID").set_index("SUBJECT_ID")
    missing = [sid for sid in subject_ids if sid not in by_subject.index]
    if missing:
        raise ValueError(
            f"outcome prompt {next(iter(columns))}: SUBJECT_ID {missing[0]} has no row in "
            "the cohort's outcomes; expected one row per patient"
        )
    rows = by_subject.loc[list(subject_ids)]
    names = [f"SUBJECT_ID {sid}" for sid in subject_ids]
    matrix = [
        _check_labels(_column_values(rows, c, "cohort outcomes"), c, names, "cohort", k)
        for c, k in columns.items()
    ]
    return np.stack(matrix, axis=1)


def model_outcome_classes(model_config) -> dict[str, int]:
    """Column -> class count of a model's outcome prompts (empty for age/sex-only models)."""
    names = list(getattr(model_config, "outcome_prompts", None) or [])
    return dict(zip(names, model_config.cat_cardinalities[1:], strict=True))


def requested_labels(outcomes, classes: Mapping[str, int], n: int) -> np.ndarray:
    """``[n, len(classes)]`` class indices from ``outcomes`` (a DataFrame or a mapping
    column -> sequence, one entry per generated patient, in order)."""
    if not classes:
        if outcomes is not None:
            raise ValueError(
                "outcomes were requested but the model was trained without outcome prompts "
                "(train with outcome_prompts to generate patients for given labels)"
            )
        return np.zeros((n, 0), dtype=np.int64)
    if outcomes is None:
        raise ValueError(
            f"the model was trained with outcome prompts {list(classes)}: pass outcomes "
            "(one label per patient for each column)"
        )
    matrix = []
    for column, count in classes.items():
        if column not in outcomes:
            raise ValueError(
                f"outcomes: no column {column}; the model's outcome prompts are {list(classes)}"
            )
        values = _column_values(outcomes, column, "requested")
        if len(values) != n:
            raise ValueError(f"outcomes[{column!r}] has {len(values)} labels for {n} patients")
        names = [f"patient {i}" for i in range(n)]
        matrix.append(_check_labels(values, column, names, "requested", count))
    return np.stack(matrix, axis=1)


def labels_table(subject_ids: Sequence[int], labels: np.ndarray, columns) -> pd.DataFrame:
    """``SUBJECT_ID`` plus one integer column per outcome prompt: a cohort's outcomes."""
    table = pd.DataFrame({"SUBJECT_ID": list(subject_ids)})
    for j, column in enumerate(columns):
        table[column] = labels[:, j]
    return table
