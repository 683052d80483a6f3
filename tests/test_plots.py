"""Tests of the report's figures: each draws what its docstring says, from hand-made cohorts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.evaluation import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cohort(records: list[tuple[str, list[list[str]]]], first_id: int = 1) -> Cohort:
    """``records``: (sex, visits as code lists); ages 50, 51, ..."""
    patients = [
        Patient(
            first_id + row,
            sex,
            50.0,
            [Visit(codes, 50.0 + position) for position, codes in enumerate(visits)],
        )
        for row, (sex, visits) in enumerate(records)
    ]
    return Cohort(patients)


@pytest.fixture
def real() -> Cohort:
    return _cohort(
        [
            ("F", [["4019", "25000", "2724"], ["4019", "4280"]]),
            ("M", [["4019", "25000"]]),
            ("M", [["5849", "0389"], ["4280", "4019"], ["5849"]]),
            ("F", [["2724"]]),
        ]
    )


@pytest.fixture
def synthetic() -> Cohort:
    return _cohort([("F", [["4019", "5849"]]), ("M", [["4019", "4019", "99591"]])], first_id=100)


def test_cooccurrence_matrix_counts_shares_of_visits(real: Cohort) -> None:
    matrix = plots.cooccurrence_matrix(real, ["4019", "25000", "5849"])
    # 7 visits: 4019 in 4, 25000 in 2 (both with 4019), 5849 in 2 (never with 4019).
    expected = np.array([[4, 2, 0], [2, 2, 0], [0, 0, 2]]) / 7
    np.testing.assert_allclose(matrix.to_numpy(), expected)
    assert list(matrix.index) == ["4019", "25000", "5849"] == list(matrix.columns)


def test_cooccurrence_matrix_needs_codes(real: Cohort) -> None:
    with pytest.raises(ValueError, match="at least one code"):
        plots.cooccurrence_matrix(real, [])


def test_frequency_rank_draws_normalised_curves(real: Cohort, synthetic: Cohort) -> None:
    fig = plots.frequency_rank(real, synthetic, reference=real)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = {line.get_label().split(" ")[0]: line for line in ax.get_lines()}
    assert set(lines) == {"real", "synthetic", "reference"}
    real_shares = lines["real"].get_ydata()
    assert len(real_shares) == 6  # six distinct real codes
    assert math.isclose(real_shares.sum(), 1.0)
    assert real_shares[0] == pytest.approx(4 / 13)  # 4019: 4 of 13 occurrences
    assert list(real_shares) == sorted(real_shares, reverse=True)
    assert lines["synthetic"].get_ydata()[0] == pytest.approx(3 / 5)


def test_top_codes_side_by_side_labels_codes_with_descriptions(
    real: Cohort, synthetic: Cohort
) -> None:
    fig = plots.top_codes_side_by_side(real, synthetic, k=3)
    real_ax, synthetic_ax = fig.axes[:2]
    real_labels = [label.get_text() for label in real_ax.get_yticklabels()]
    assert real_labels[0] == "401.9 Hypertension NOS"  # 3 of 4 real patients
    assert len(real_labels) == 3
    widths = [bar.get_width() for bar in real_ax.patches]
    assert widths[0] == pytest.approx(3 / 4)
    synthetic_bars = {
        label.get_text().split(" ")[0]: bar
        for label, bar in zip(synthetic_ax.get_yticklabels(), synthetic_ax.patches, strict=True)
    }
    assert synthetic_bars["401.9"].get_width() == pytest.approx(1.0)
    # 995.91 is in no real patient: hatched; 401.9 is in both top-3 lists: solid.
    assert synthetic_bars["995.91"].get_hatch() == "//"
    assert not synthetic_bars["401.9"].get_hatch()


def test_code_label_cuts_long_descriptions() -> None:
    label = plots.code_label("4019", width=6)
    assert label == "401.9 Hyper…"


def test_per_patient_histograms_has_one_panel_per_measure(real: Cohort, synthetic: Cohort) -> None:
    fig = plots.per_patient_histograms(real, synthetic)
    panels = [ax for ax in fig.axes if ax.get_xlabel()]
    assert [ax.get_xlabel() for ax in panels] == [
        "distinct codes per patient",
        "visits per patient",
        "ICD-9 chapters per patient",
    ]
    # Each cohort is normalised on its own: both synthetic patients have one visit, a share
    # of 1.0 (pooled with the real patients it would be 2 / 6).
    assert panels[1].get_ylim()[1] >= 1.0
    with pytest.raises(ValueError, match="unknown measures"):
        plots.per_patient_histograms(real, synthetic, measures=("codes", "weight"))


def test_cooccurrence_heatmaps_share_order_and_scale(real: Cohort, synthetic: Cohort) -> None:
    fig = plots.cooccurrence_heatmaps(real, synthetic, k=4)
    real_ax, synthetic_ax = fig.axes[:2]
    real_ticks = [label.get_text() for label in real_ax.get_xticklabels()]
    assert real_ticks == [label.get_text() for label in synthetic_ax.get_xticklabels()]
    assert real_ticks[0] == "401.9" and len(real_ticks) == 4
    limits = [ax.collections[0].get_clim() for ax in (real_ax, synthetic_ax)]
    assert limits[0] == limits[1]
    assert limits[0][1] == pytest.approx(2 / 7)  # 4019 with 25000 or 4280: 2 of 7 visits


def test_validity_bars_draw_percentages_and_missing_floor() -> None:
    evaluation = {
        "age_violation_rate": 0.02,
        "age_violation_rate_floor": 0.0,
        "sex_violation_rate": 0.005,
        "sex_violation_rate_floor": math.nan,
        "duplicate_rate": 0.1,
        "duplicate_rate_floor": 0.0,
    }
    fig = plots.validity_bars(evaluation)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    assert heights == pytest.approx([2.0, 0.5, 10.0, 0.0, 0.0, 0.0])
    texts = [text.get_text() for text in fig.axes[0].texts]
    assert "n/a" in texts and "2.00%" in texts
    with pytest.raises(ValueError, match="duplicate_rate"):
        plots.validity_bars({"age_violation_rate": 0.0, "sex_violation_rate": 0.0})


def test_empty_cohort_is_refused(real: Cohort) -> None:
    with pytest.raises(ValueError, match="empty synthetic cohort"):
        plots.frequency_rank(real, Cohort([]))


def test_save_figure_writes_png_atomically(tmp_path, real: Cohort, synthetic: Cohort) -> None:
    from course_lib.evaluation.report import save_figure

    path = save_figure(plots.frequency_rank(real, synthetic), tmp_path / "sub" / "rank.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    before = path.read_bytes()

    broken = Figure()

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    broken.savefig = fail
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(broken, path)
    assert path.read_bytes() == before  # the previous figure survives
    assert [p.name for p in path.parent.iterdir()] == ["rank.png"]  # no temporary file left
    with pytest.raises(ValueError, match="expected a .png path"):
        save_figure(broken, tmp_path / "rank.pdf")


def test_figures_draw_into_the_callers_axes(real: Cohort, synthetic: Cohort) -> None:
    fig = Figure()
    left, right, spare = fig.subplots(1, 3)
    assert plots.frequency_rank(real, synthetic, ax=left) is fig
    assert left.get_xscale() == "log" and not spare.has_data()
    assert plots.top_codes_side_by_side(real, synthetic, k=3, ax=[right, spare]) is fig
    assert right.get_title().startswith("real: top 3 codes") and spare.has_data()
    assert fig.get_suptitle() == ""  # the caller's figure keeps its own title
    with pytest.raises(ValueError, match="expected 2 Axes"):
        plots.cooccurrence_heatmaps(real, synthetic, ax=[left])


def test_plots_module_writes_nothing_and_keeps_the_backend() -> None:
    source = Path(plots.__file__).read_text(encoding="utf-8")
    forbidden_calls = (".savefig(", "matplotlib.use(", "import matplotlib.pyplot", "open(")
    for forbidden in forbidden_calls + ("from matplotlib import pyplot",):
        assert forbidden not in source
