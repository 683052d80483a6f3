"""Time gaps between generated visits: drawn from the training split's empirical gaps
(cohort_visit_gaps, train_visit_gaps.csv, Run.visit_gaps, generate_patients(visit_gaps=...))."""

from __future__ import annotations

import math
import shutil
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib.cli import main
from course_lib.cohort import DAYS_PER_YEAR, Cohort, Patient, Visit
from course_lib.dataset import AgeNormalizer
from course_lib.generation import cohort_visit_gaps, generate_patients
from course_lib.mimic import load_mimic, write_mimic
from course_lib.model import build_model
from course_lib.presets import get_preset
from course_lib.runs import Run, RunError
from course_lib.tokens import Vocabulary
from course_lib.training import TrainConfig, train

CODES = ["4019", "4280", "42731", "5849", "25000", "2724", "51881", "5990", "53081", "2449"]
TINY = {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 32}
GAPS = [0.25, 1.5, 4.0]


@pytest.fixture(autouse=True)
def one_cpu_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def multi_visit_cohort(n: int) -> Cohort:
    """Patients with 1 to 3 visits, each later visit 0.5 or 2 years after the one before."""
    patients = []
    for index in range(n):
        age = 20.0 + (7.0 * index) % 60
        visits = []
        for number in range(1 + index % 3):
            codes = [CODES[(index + number + k) % len(CODES)] for k in range(2)]
            visits.append(Visit(codes, age + number * (0.5 if index % 2 else 2.0)))
        patients.append(Patient(index + 1, "FM"[index % 2], age, visits))
    return Cohort(patients)


@pytest.fixture(scope="module")
def random_model():
    """An untrained tiny model: it writes several visits per patient."""
    vocabulary = Vocabulary.build(multi_visit_cohort(10))
    torch.manual_seed(0)
    model = build_model(vocabulary, get_preset("tiny"), d_model=32, attention_heads=2, ffn_dim=64)
    return model, vocabulary, AgeNormalizer(mean=50.0, std=20.0)


def generate(random_model, **options) -> Cohort:
    ages, sexes = [30.0, 60.0, 45.0, 8.0] * 3, ["F", "M"] * 6
    return generate_patients(*random_model, ages, sexes, max_new_tokens=48, seed=5, **options)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Cohort]:
    """A two-step training run on patients with several visits."""
    with torch.random.fork_rng():
        cohort = multi_visit_cohort(30)
        out = tmp_path_factory.mktemp("runs") / "run"
        config = TrainConfig(
            out=str(out), batch_size=4, max_length=24, model={**TINY, "attention_heads": 2},
            sample_every_epoch=0, patience=None, log_every=1, progress=False, max_steps=2,
        )  # fmt: skip
        train(config, cohort)
    return out, cohort


# ------------------------------------------------------------------- cohort_visit_gaps
def test_cohort_visit_gaps_are_the_years_between_consecutive_visits():
    admitted = datetime(2150, 3, 1)
    cohort = Cohort(
        [
            Patient(1, "F", 30.0, [Visit(["4019"], 30.0), Visit(["4019"], 30.5)]),
            Patient(2, "M", 50.0, [Visit(["4280"], 50.0)]),
            Patient(3, "F", 40.0, [Visit(["4019"], 40.0), Visit(["5849"], 41.5)]),
            # ages capped at 90 by the loader: the admission times say 2 years
            Patient(
                4,
                "M",
                90.0,
                [
                    Visit(["4280"], 90.0, admitted),
                    Visit(["4280"], 90.0, admitted + timedelta(days=2 * DAYS_PER_YEAR)),
                ],
            ),
        ]
    )
    gaps = cohort_visit_gaps(cohort)
    assert gaps.dtype == np.float64 and gaps.tolist() == [0.5, 1.5, 2.0]
    assert cohort_visit_gaps(Cohort(cohort.patients[1:2])).shape == (0,)


def test_visits_out_of_order_are_named():
    patient = Patient(7, "F", 30.0, [Visit(["4019"], 31.0), Visit(["4019"], 30.0)])
    with pytest.raises(ValueError, match=r"SUBJECT_ID 7: visit 2 is -1.0 years after visit 1"):
        cohort_visit_gaps(Cohort([patient]))


# ------------------------------------------------------------------ generation with gaps
def test_generated_visits_get_gaps_drawn_from_the_given_ones(random_model):
    without = generate(random_model)
    with_gaps = generate(random_model, visit_gaps=np.array(GAPS))
    assert any(len(p.visits) > 1 for p in without), "the model should write several visits"
    # the gaps draw from their own generator: the sampled tokens are those without gaps
    assert [[v.codes for v in p.visits] for p in with_gaps] == [
        [v.codes for v in p.visits] for p in without
    ]
    for patient in with_gaps:
        ages = [visit.age for visit in patient.visits]
        assert ages[0] == patient.age
        steps = np.diff(ages)
        assert all(any(math.isclose(step, gap) for gap in GAPS) for step in steps), ages
    assert all(v.age == p.age for p in without for v in p.visits)  # None: the prompt age
    again = generate(random_model, visit_gaps=GAPS)
    assert [[v.age for v in p.visits] for p in again] == [
        [v.age for v in p.visits] for p in with_gaps
    ]


@pytest.mark.parametrize(
    ("gaps", "message"),
    [
        ([1.0, -0.5], r"visit_gaps\[1\] is -0.5; expected a finite number of years >= 0"),
        ([float("nan")], r"visit_gaps\[0\] is nan; expected a finite number of years >= 0"),
        ([[1.0, 2.0]], r"visit_gaps must be a 1-d array of years, got shape \(1, 2\)"),
        (["soon"], r"visit_gaps must be numbers of years, got list"),
        ([], r"visit_gaps is empty but generated patient \d+ has \d+ visits; expected at least"),
    ],
)
def test_bad_visit_gaps_are_one_line_errors(random_model, gaps, message):
    with pytest.raises(ValueError, match=message) as error:
        generate(random_model, visit_gaps=gaps)
    assert "\n" not in str(error.value)


def test_empty_gaps_are_fine_when_every_patient_has_one_visit(random_model):
    # 4 new tokens hold at most one visit: <visit> code </visit> </patient>
    cohort = generate_patients(*random_model, [30.0, 60.0], ["F", "M"], max_new_tokens=4)
    assert all(len(p.visits) <= 1 for p in cohort)
    assert (
        generate_patients(
            *random_model, [30.0, 60.0], ["F", "M"], max_new_tokens=4, visit_gaps=[]
        ).patients
        == cohort.patients
    )


def test_write_mimic_keeps_the_gaps_as_admission_dates(random_model, tmp_path):
    synthetic = generate(random_model, visit_gaps=GAPS)
    write_mimic(synthetic, tmp_path / "synthetic")
    loaded = {p.subject_id: p for p in load_mimic(tmp_path / "synthetic")}
    checked = 0
    for patient in synthetic:
        times = [visit.admit_time for visit in loaded[patient.subject_id].visits]
        ages = [visit.age for visit in patient.visits]
        assert len(times) == len(ages)
        for (t0, t1), (a0, a1) in zip(pairwise(times), pairwise(ages), strict=True):
            days = (t1 - t0).total_seconds() / 86400
            assert abs(days - (a1 - a0) * DAYS_PER_YEAR) < 1.0
            checked += 1
    assert checked > 0


# ----------------------------------------------------------------------- run folders
def test_training_writes_the_training_splits_gaps(trained):
    folder, cohort = trained
    run = Run.load(folder)
    assert (folder / "train_visit_gaps.csv").read_text().splitlines()[0] == "gap_years"
    expected = cohort_visit_gaps(run.split(cohort, "train"))
    assert expected.size > 0 and run.visit_gaps().tolist() == expected.tolist()


def test_an_older_run_without_the_file_keeps_visits_at_the_prompt_age(trained, tmp_path, capsys):
    folder, _ = trained
    old = Path(shutil.copytree(folder, tmp_path / "old"))
    (old / "train_visit_gaps.csv").unlink()
    assert Run.load(old).visit_gaps() is None
    argv = ["generate", "--run", str(old), "--patients", "3", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "gen_old")]) == 0
    assert "has no train_visit_gaps.csv" in capsys.readouterr().out
    assert main([*argv[:2], str(folder), *argv[3:], "--out", str(tmp_path / "gen")]) == 0
    assert "train_visit_gaps.csv" not in capsys.readouterr().out


def test_a_damaged_gaps_file_is_named_with_its_line(trained, tmp_path):
    folder, _ = trained
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    (copy / "train_visit_gaps.csv").write_text("gap_years\n0.5\n-2\n")
    with pytest.raises(RunError, match=r"train_visit_gaps.csv, line 3: expected a number of years"):
        Run.load(copy).visit_gaps()
    (copy / "train_visit_gaps.csv").write_text("days\n3\n")
    with pytest.raises(RunError, match="expected the header gap_years"):
        Run.load(copy).visit_gaps()
