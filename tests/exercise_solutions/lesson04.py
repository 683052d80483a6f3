"""Reference solutions and wrong answers for lesson04's exercises (tests only)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from course_lib import icd9
from course_lib.cohort import Cohort
from course_lib.exercises.lesson04 import (
    SEX_SPECIFIC_COLUMNS,
    check_age_band_prompt,
    check_sex_specific_share,
)
from course_lib.model import ConditionalPrompt
from exercise_solutions import Exercise

# --- Exercise 1: an age-band prompt ---------------------------------------------------------


def solution_sex_specific_share(cohort: Cohort) -> pd.DataFrame:
    """Rows ``F``/``M``, columns ``female_only``/``male_only``: the share of that sex's code
    occurrences whose code the MCE restricts to women (rule ``female``) or to men (``male``).

    A sex without any code gets NaN. Real patients have 0 off the diagonal; a generator that
    ignores the sex prompt writes about the same shares for both rows.
    """
    rows = {}
    for sex in ("F", "M"):
        codes = [code for patient in cohort if patient.sex == sex for code in patient.codes]
        rows[sex] = {
            column: (
                sum(rule in icd9.rules_for(code) for code in codes) / len(codes)
                if codes
                else math.nan
            )
            for column, rule in zip(SEX_SPECIFIC_COLUMNS, ("female", "male"), strict=True)
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(SEX_SPECIFIC_COLUMNS))


class SolutionAgeBandPrompt(ConditionalPrompt):
    """``ConditionalPrompt``'s prompts plus one for the age band of ``x_num[:, 0]``.

    Band ``b`` holds the values in ``[band_edges[b-1], band_edges[b])`` (``len(band_edges) + 1``
    bands; edges in the units of ``x_num``, i.e. normalised ages). The band prompt is
    ``proj(E_band[b] + b_band)``, through the same projection as the other prompts.
    Output ``[batch, n_num + n_cat + 1, d_model]``, the band prompt last.
    """

    def __init__(
        self,
        n_num: int,
        cat_cardinalities: Sequence[int],
        hidden: int,
        d_model: int,
        band_edges: Sequence[float],
    ):
        super().__init__(n_num, cat_cardinalities, hidden, d_model)
        self.register_buffer("band_edges", torch.tensor(list(band_edges), dtype=torch.float32))
        self.band_embedding = nn.Embedding(len(band_edges) + 1, hidden)
        self.band_bias = nn.Parameter(torch.zeros(hidden))

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        prompts = super().forward(x_num, x_cat)  # [batch, n_num + n_cat, d_model]
        band = torch.bucketize(x_num[:, 0].contiguous(), self.band_edges, right=True)  # [batch]
        band_prompt = self.proj(self.band_embedding(band) + self.band_bias)  # [batch, d_model]
        return torch.cat([prompts, band_prompt.unsqueeze(1)], dim=1)


class _BandAddedToAge(SolutionAgeBandPrompt):
    """Adds the band to the age prompt instead of making a prompt of its own."""

    def forward(self, x_num, x_cat):
        prompts = super().forward(x_num, x_cat)
        return torch.cat([prompts[:, :1] + prompts[:, 2:], prompts[:, 1:2]], dim=1)


class _BandFromSex(SolutionAgeBandPrompt):
    """Looks the band up by the sex index instead of the age."""

    def forward(self, x_num, x_cat):
        prompts = ConditionalPrompt.forward(self, x_num, x_cat)
        band_prompt = self.proj(self.band_embedding(x_cat[:, 0]) + self.band_bias)
        return torch.cat([prompts, band_prompt.unsqueeze(1)], dim=1)


class _BandLeftOpen(SolutionAgeBandPrompt):
    """Bands ``(edge, next edge]``: an age on an edge falls in the band below."""

    def forward(self, x_num, x_cat):
        prompts = ConditionalPrompt.forward(self, x_num, x_cat)
        band = torch.bucketize(x_num[:, 0].contiguous(), self.band_edges, right=False)
        band_prompt = self.proj(self.band_embedding(band) + self.band_bias)
        return torch.cat([prompts, band_prompt.unsqueeze(1)], dim=1)


class _BandInTheMiddle(SolutionAgeBandPrompt):
    """Puts the band prompt between the age and the sex prompts."""

    def forward(self, x_num, x_cat):
        prompts = super().forward(x_num, x_cat)
        return prompts[:, [0, 2, 1]]


def _share_of_all_codes(cohort: Cohort) -> pd.DataFrame:
    """Divides by every occurrence in the cohort instead of that sex's."""
    table = solution_sex_specific_share(cohort)
    total = sum(len(patient.codes) for patient in cohort)
    for sex in table.index:
        n = sum(len(patient.codes) for patient in cohort if patient.sex == sex)
        table.loc[sex] = table.loc[sex] * n / total
    return table


def _share_of_patients(cohort: Cohort) -> pd.DataFrame:
    """Share of patients with at least one such code, not of code occurrences."""
    rows = {}
    for sex in ("F", "M"):
        patients = [patient for patient in cohort if patient.sex == sex]
        rows[sex] = {
            column: sum(any(rule in icd9.rules_for(c) for c in p.codes) for p in patients)
            / len(patients)
            for column, rule in zip(SEX_SPECIFIC_COLUMNS, ("female", "male"), strict=True)
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _swapped_columns(cohort: Cohort) -> pd.DataFrame:
    table = solution_sex_specific_share(cohort)
    return table.rename(columns={"female_only": "male_only", "male_only": "female_only"})


class _StubAgeBandPrompt(ConditionalPrompt):
    """What lesson 04 ships."""

    def __init__(self, n_num, cat_cardinalities, hidden, d_model, band_edges):
        super().__init__(n_num, cat_cardinalities, hidden, d_model)
        raise NotImplementedError("TODO: add the band embedding")


EXERCISES = [
    Exercise(
        "age_band_prompt",
        check_age_band_prompt,
        SolutionAgeBandPrompt,
        stub=_StubAgeBandPrompt,
        wrong_answers=(_BandAddedToAge, _BandFromSex, _BandLeftOpen, _BandInTheMiddle),
    ),
    Exercise(
        "sex_specific_share",
        check_sex_specific_share,
        solution_sex_specific_share,
        wrong_answers=(_share_of_all_codes, _share_of_patients, _swapped_columns),
    ),
]
