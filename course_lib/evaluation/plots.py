"""The evaluation report's figures, real against synthetic, one function each (lesson 09).

Every function takes cohorts (or an evaluation mapping) and returns a
:class:`matplotlib.figure.Figure`. Without ``ax`` it builds its own figure without ``pyplot``
(no global figure state, no backend switch, so drawing many in a loop leaks no memory); with
``ax`` (one Axes, or a sequence for the multi-panel figures) it draws into the caller's
figure and returns that. Nothing here writes a file: a lesson shows the returned figure
inline (it is the cell's value); the ``evaluate`` command saves it
(:func:`course_lib.evaluation.report.save_figure`).

Colours stay fixed across figures: real is blue, synthetic orange, the real reference sample
(the floor) grey.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from course_lib import icd9
from course_lib.cohort import Cohort
from course_lib.evaluation.coherence import code_frequencies, top_codes
from course_lib.evaluation.diversity import distributions_for_plots
from course_lib.evaluation.encoding import CodeIndex, visit_code_matrix

COLOURS = {"real": "#1f77b4", "synthetic": "#ff7f0e", "reference": "#7f7f7f"}
DESCRIPTION_CHARS = 32
VALIDITY_KEYS = ("age_violation_rate", "sex_violation_rate", "duplicate_rate")


def _check_cohorts(**cohorts: Cohort | None) -> None:
    for name, cohort in cohorts.items():
        if cohort is not None and len(cohort) == 0:
            raise ValueError(f"cannot plot an empty {name} cohort (expected at least one patient)")


def _panels(
    ax: Axes | Sequence[Axes] | None, n_panels: int, figsize: tuple[float, float]
) -> tuple[Figure, list[Axes]]:
    """The caller's axes (checked to be ``n_panels``) or a new pyplot-free figure with them."""
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, list(np.atleast_1d(fig.subplots(1, n_panels)))
    axes = [ax] if isinstance(ax, Axes) else list(ax)
    if len(axes) != n_panels:
        raise ValueError(f"ax: expected {n_panels} Axes for this figure, got {len(axes)}")
    return axes[0].figure, axes


def code_label(code: str, width: int = DESCRIPTION_CHARS) -> str:
    """``"401.9 Hypertension NOS"``: dotted code and short description, cut to ``width``."""
    description = icd9.describe(code)
    if len(description) > width:
        description = description[: width - 1] + "…"
    return f"{icd9.to_dotted(code)} {description}"


# ------------------------------------------------------------------------ frequency-rank


def frequency_rank(
    real: Cohort, synthetic: Cohort, *, reference: Cohort | None = None, ax: Axes | None = None
) -> Figure:
    """Relative frequency of each code against its rank, log-log.

    Real codes follow a long (Zipf-like) tail; a collapsed generator's curve stops after a few
    dozen ranks and starts higher (its few codes share all the mass). The reference sample,
    when given, shows how far two real samples of that size already differ in the tail.
    """
    _check_cohorts(real=real, synthetic=synthetic, reference=reference)
    fig, (ax,) = _panels(ax, 1, (6.5, 4.5))
    curves = [("real", real), ("synthetic", synthetic)]
    if reference is not None:
        curves.append(("reference", reference))
    for name, cohort in curves:
        counts = np.array(sorted(code_frequencies(cohort).values(), reverse=True), dtype=float)
        if counts.size == 0:
            continue
        ranks = np.arange(1, counts.size + 1)
        style = "--" if name == "reference" else "-"
        label = f"{name} ({counts.size} codes)"
        ax.loglog(ranks, counts / counts.sum(), style, color=COLOURS[name], label=label)
    ax.set_xlabel("code rank (1 = most frequent)")
    ax.set_ylabel("share of code occurrences")
    ax.set_title("Code frequency by rank")
    ax.legend()
    return fig


# ------------------------------------------------------------------------ top codes


def _patient_shares(cohort: Cohort) -> Counter[str]:
    """Share of patients carrying each code at least once."""
    carriers = Counter(code for patient in cohort for code in patient.code_set)
    return Counter({code: count / len(cohort) for code, count in carriers.items()})


def top_codes_side_by_side(
    real: Cohort, synthetic: Cohort, k: int = 30, *, ax: Sequence[Axes] | None = None
) -> Figure:
    """Each cohort's ``k`` most common codes (share of patients), with their descriptions.

    Two panels on one x scale, real left, synthetic right. A bar is solid when the code is in
    both top-``k`` lists and hatched when only one cohort ranks it that high, so a generator
    that invents its own favourites stands out.
    """
    _check_cohorts(real=real, synthetic=synthetic)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    shares = {"real": _patient_shares(real), "synthetic": _patient_shares(synthetic)}
    tops = {name: top_codes(values, k) for name, values in shares.items()}
    shared = set(tops["real"]) & set(tops["synthetic"])
    rows = max(len(codes) for codes in tops.values()) or 1
    fig, axes = _panels(ax, 2, (14, 1.2 + 0.28 * rows))
    axes[1].sharex(axes[0])
    for panel, name in zip(axes, ("real", "synthetic"), strict=True):
        codes = tops[name]
        values = [shares[name][code] for code in codes]
        positions = np.arange(len(codes))
        bars = panel.barh(positions, values, color=COLOURS[name])
        for bar, code in zip(bars, codes, strict=True):
            if code not in shared:
                bar.set_hatch("//")
                bar.set_alpha(0.6)
        panel.set_yticks(positions, [code_label(code) for code in codes], fontsize=8)
        panel.set_ylim(rows - 0.5, -0.5)
        panel.set_xlabel("share of patients with the code")
        panel.set_title(
            f"{name}: top {len(codes)} codes ({len(shared)} shared with the other list)"
        )
    if ax is None:  # a caller's figure keeps its own title
        fig.suptitle(f"Top-{k} codes, real vs synthetic (hatched: not in the other top {k})")
    return fig


# ------------------------------------------------------------------------ per-patient counts


def per_patient_histograms(
    real: Cohort,
    synthetic: Cohort,
    measures: Sequence[str] = ("codes", "visits", "chapters"),
    *,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """Histograms of distinct codes, visits and ICD-9 chapters per patient, real vs synthetic.

    Each cohort is normalised on its own (share of patients), so cohorts of different sizes
    compare. The notes' collapse shows up as a single spike at 2 chapters per patient.
    """
    import seaborn as sns

    _check_cohorts(real=real, synthetic=synthetic)
    table = distributions_for_plots(synthetic, real)
    unknown = set(measures) - set(table["measure"])
    if unknown:
        raise ValueError(f"unknown measures {sorted(unknown)} (expected codes, visits, chapters)")
    titles = {
        "codes": "distinct codes per patient",
        "visits": "visits per patient",
        "chapters": "ICD-9 chapters per patient",
    }
    fig, axes = _panels(ax, len(measures), (4.5 * len(measures), 3.8))
    for panel, measure in zip(axes, measures, strict=True):
        values = table[table["measure"] == measure]
        sns.histplot(
            data=values,
            x="value",
            hue="cohort",
            hue_order=["real", "synthetic"],
            palette=COLOURS,
            stat="probability",
            common_norm=False,
            discrete=True,
            element="step",
            ax=panel,
        )
        panel.set_xlabel(titles[measure])
        panel.set_ylabel("share of patients")
    if ax is None:  # a caller's figure keeps its own title
        fig.suptitle("Per-patient counts, real vs synthetic")
    return fig


# ------------------------------------------------------------------------ co-occurrence


def cooccurrence_matrix(cohort: Cohort, codes: Sequence[str]) -> pd.DataFrame:
    """``[len(codes), len(codes)]`` share of visits containing both codes (diagonal: the
    share of visits containing the code), rows and columns in the order of ``codes``."""
    if not codes:
        raise ValueError("cooccurrence_matrix needs at least one code")
    index = CodeIndex(tuple(sorted(set(codes))))
    visits = visit_code_matrix(cohort, index).codes
    n_visits = max(visits.shape[0], 1)
    together = (visits.T @ visits).toarray() / n_visits
    order = [index.column[code] for code in codes]
    return pd.DataFrame(together[np.ix_(order, order)], index=list(codes), columns=list(codes))


def cooccurrence_heatmaps(
    real: Cohort, synthetic: Cohort, k: int = 20, *, ax: Sequence[Axes] | None = None
) -> Figure:
    """Within-visit co-occurrence of the real cohort's ``k`` most frequent codes, real
    (left) and synthetic (right), in the same code order and on one colour scale.

    Cells are shares of visits containing both codes; the diagonal is blanked because a
    code's own frequency would dominate the scale. Real comorbidity clusters appear as bright
    blocks; a generator that learned codes but not their combinations shows a flat map.
    """
    import seaborn as sns

    _check_cohorts(real=real, synthetic=synthetic)
    codes = top_codes(code_frequencies(real), k)
    if not codes:
        raise ValueError("the real cohort has no codes to draw co-occurrences of")
    matrices = {
        "real": cooccurrence_matrix(real, codes),
        "synthetic": cooccurrence_matrix(synthetic, codes),
    }
    off_diagonal = ~np.eye(len(codes), dtype=bool)
    highest = max(float(matrix.to_numpy()[off_diagonal].max()) for matrix in matrices.values())
    highest = highest if highest > 0 else 1.0
    labels = [icd9.to_dotted(code) for code in codes]
    fig, axes = _panels(ax, 2, (13, 6))
    for position, (panel, (name, matrix)) in enumerate(zip(axes, matrices.items(), strict=True)):
        sns.heatmap(
            matrix.set_axis(labels, axis=0).set_axis(labels, axis=1),
            mask=~off_diagonal,
            vmin=0.0,
            vmax=highest,
            cmap="viridis",
            square=True,
            cbar=position == 1,
            cbar_kws={"label": "share of visits with both codes"},
            ax=panel,
        )
        panel.set_title(f"{name}")
        panel.tick_params(labelsize=7)
    if ax is None:  # a caller's figure keeps its own title
        fig.suptitle(f"Within-visit co-occurrence of the top {len(codes)} real codes")
    return fig


# ------------------------------------------------------------------------ validity


def validity_bars(
    evaluation: Mapping[str, float],
    keys: Sequence[str] = VALIDITY_KEYS,
    *,
    ax: Axes | None = None,
) -> Figure:
    """Validity rates of the synthetic cohort next to their real floors (in percent).

    ``evaluation`` is any mapping with ``<key>`` and ``<key>_floor`` (an
    :class:`course_lib.evaluation.Evaluation`); a missing floor draws no grey bar.
    """
    missing = [key for key in keys if key not in evaluation]
    if missing:
        raise ValueError(f"validity_bars: the evaluation has no {', '.join(missing)}")
    rows = []
    for key in keys:
        rows.append((key, "synthetic", 100 * float(evaluation[key])))
        floor = float(evaluation.get(f"{key}_floor", math.nan))
        rows.append((key, "reference", 100 * floor))
    table = pd.DataFrame(rows, columns=["metric", "cohort", "percent"])
    fig, (ax,) = _panels(ax, 1, (6.5, 4))
    width = 0.38
    positions = np.arange(len(keys))
    for offset, cohort in ((-width / 2, "synthetic"), (width / 2, "reference")):
        values = table[table["cohort"] == cohort]["percent"].to_numpy()
        label = "synthetic" if cohort == "synthetic" else "real reference (floor)"
        bars = ax.bar(positions + offset, np.nan_to_num(values), width, color=COLOURS[cohort])
        bars.set_label(label)
        for x, value in zip(positions + offset, values, strict=True):
            text = "n/a" if math.isnan(value) else f"{value:.2f}%"
            ax.annotate(text, (x, np.nan_to_num(value)), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(positions, [key.replace("_", " ") for key in keys])
    ax.set_ylabel("percent of code occurrences")
    ax.set_title("Medical validity: synthetic vs real floor")
    ax.legend()
    return fig
