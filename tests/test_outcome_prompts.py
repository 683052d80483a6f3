"""Outcome labels as further categorical prompts (issue 14): the dataset's x_cat columns, the
errors, generation for requested labels and tstr_auroc from those labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.cli import main
from course_lib.cohort import Cohort, Patient, Visit
from course_lib.config import TrainConfig, TrainConfigError
from course_lib.dataset import AgeNormalizer, PatientCollator, PatientDataset
from course_lib.evaluation.utility import utility_evaluation
from course_lib.generation import generate_like, generate_patients, prompt_labels
from course_lib.mimic import load_mimic, write_mimic
from course_lib.model import build_model
from course_lib.presets import get_preset
from course_lib.runs import Run
from course_lib.tokens import Vocabulary
from course_lib.training import train

MARKER = {1: "4280", 0: "4019"}  # the code a patient of each LVEF_REDUCED class carries
BACKGROUND = ["25000", "5849", "2724", "41401", "42731", "0389"]
SMALL = {"d_model": 32, "attention_heads": 2, "ffn_dim": 64}


def labelled_cohort(n: int = 40, seed: int = 0) -> Cohort:
    """Patients whose LVEF_REDUCED label decides a marker code in every visit."""
    rng = np.random.default_rng(seed)
    patients, labels = [], []
    for index in range(n):
        label = index % 2
        age = float(rng.integers(30, 80))
        visits = [
            Visit([MARKER[label], *rng.choice(BACKGROUND, 2, replace=False)], age)
            for _ in range(1 + int(rng.integers(2)))
        ]
        patients.append(Patient(100 + index, "FM"[(index // 2) % 2], age, visits))
        labels.append(label)
    outcomes = pd.DataFrame(
        {
            "SUBJECT_ID": [p.subject_id for p in patients],
            "LVEF_REDUCED": labels,
            "RISK_CATEGORY": [i % 3 for i in range(n)],
        }
    )
    return Cohort(patients, outcomes)


def dataset(cohort: Cohort, prompts=("LVEF_REDUCED",)) -> PatientDataset:
    vocabulary = Vocabulary.build(cohort)
    return PatientDataset(cohort, vocabulary, AgeNormalizer(50.0, 20.0), 32, prompts)


# ----------------------------------------------------------------------- config, dataset
def test_outcome_prompts_setting_and_its_checks():
    assert TrainConfig().outcome_prompts == []  # train: no outcome prompts by default
    config = TrainConfig(outcome_prompts=["LVEF_REDUCED", "RISK_CATEGORY"])
    assert config.resolved().outcome_prompts == ["LVEF_REDUCED", "RISK_CATEGORY"]
    with pytest.raises(TrainConfigError, match="outcome_prompts.*distinct outcome column"):
        TrainConfig(outcome_prompts=["LVEF_REDUCED", "LVEF_REDUCED"]).validate()


def test_dataset_appends_one_x_cat_column_per_outcome_prompt():
    cohort = labelled_cohort(6)
    items = dataset(cohort, ("LVEF_REDUCED", "RISK_CATEGORY"))
    assert items.outcome_classes == {"LVEF_REDUCED": 2, "RISK_CATEGORY": 3}
    first = cohort.patients[1]  # label 1, risk 1, sex F (index 1 // 2 = 0)
    assert items[1]["x_cat"].tolist() == [0, 1, 1] and first.sex == "F"
    batch = PatientCollator()([items[i] for i in range(4)])
    assert batch["x_cat"].shape == (4, 3)
    assert batch["x_cat"][:, 1].tolist() == [0, 1, 0, 1]
    plain = dataset(cohort, ())
    assert plain[1]["x_cat"].tolist() == [0] and plain.outcome_classes == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns="LVEF_REDUCED"), "LVEF_REDUCED: the cohort's outcomes have no"),
        (lambda t: t.iloc[1:], "no row for SUBJECT_ID \\[100\\]"),
        (lambda t: t.assign(LVEF_REDUCED=[0.5] + [0] * 5), "SUBJECT_ID 100 has 0.5; expected"),
        (lambda t: t.assign(LVEF_REDUCED=[-1] + [0] * 5), "SUBJECT_ID 100 has -1; expected"),
        (lambda t: t.assign(LVEF_REDUCED=[None] + [0] * 5), "SUBJECT_ID 100 has no label"),
        (lambda t: t.assign(LVEF_REDUCED=["x"] + [0] * 5), "LVEF_REDUCED must be numeric"),
    ],
)
def test_bad_outcome_labels_are_one_line_errors(change, message):
    cohort = labelled_cohort(6)
    cohort.outcomes = change(cohort.outcomes)
    with pytest.raises(ValueError, match=message) as error:
        dataset(cohort)
    assert "\n" not in str(error.value)


def test_a_cohort_without_outcomes_and_a_class_the_run_never_saw():
    with pytest.raises(ValueError, match="no such column.*OUTCOMES.csv"):
        dataset(Cohort(labelled_cohort(4).patients))
    cohort = labelled_cohort(6)
    cohort.outcomes["LVEF_REDUCED"] = [2, 0, 1, 0, 1, 0]
    with pytest.raises(ValueError, match="SUBJECT_ID 100 has class 2.*0..1"):
        dataset(cohort, {"LVEF_REDUCED": 2})


# ---------------------------------------------------------------------------- generation
def test_generation_returns_the_requested_labels_and_checks_them():
    cohort = labelled_cohort(8)
    vocabulary = Vocabulary.build(cohort)
    torch.manual_seed(0)
    model = build_model(
        vocabulary,
        get_preset("tiny"),
        cat_cardinalities=[2, 2],
        outcome_prompts=["LVEF_REDUCED"],
        **SMALL,
    )
    normalizer = AgeNormalizer(50.0, 20.0)
    ages, sexes = [p.age for p in cohort], [p.sex for p in cohort]
    asked = prompt_labels(model, cohort)
    synthetic = generate_patients(
        model, vocabulary, normalizer, ages, sexes, outcomes=asked, max_new_tokens=12
    )
    assert synthetic.outcomes["SUBJECT_ID"].tolist() == [p.subject_id for p in synthetic]
    assert synthetic.outcomes["LVEF_REDUCED"].tolist() == [i % 2 for i in range(8)]
    with pytest.raises(ValueError, match="trained with outcome prompts.*pass outcomes"):
        generate_patients(model, vocabulary, normalizer, ages, sexes)
    with pytest.raises(ValueError, match="patient 0 has class 3.*0..1"):
        generate_patients(
            model, vocabulary, normalizer, ages[:1], sexes[:1], outcomes={"LVEF_REDUCED": [3]}
        )
    plain = build_model(vocabulary, get_preset("tiny"), **SMALL)
    with pytest.raises(ValueError, match="trained without outcome prompts"):
        generate_patients(plain, vocabulary, normalizer, ages, sexes, outcomes=asked)
    assert (
        prompt_labels(plain, cohort) is None
        and generate_patients(
            plain, vocabulary, normalizer, ages[:2], sexes[:2], max_new_tokens=8
        ).outcomes
        is None
    )


def test_generate_like_asks_for_each_patients_age_sex_and_labels():
    """The one recipe the pipeline, the stored samples and the lessons share: the same
    patients as generate_patients with the cohort's demographics and prompt labels."""
    cohort = labelled_cohort(8)
    vocabulary = Vocabulary.build(cohort)
    torch.manual_seed(0)
    model = build_model(
        vocabulary,
        get_preset("tiny"),
        cat_cardinalities=[2, 2],
        outcome_prompts=["LVEF_REDUCED"],
        **SMALL,
    )
    normalizer = AgeNormalizer(50.0, 20.0)
    liked = generate_like(model, vocabulary, normalizer, cohort, max_new_tokens=12, seed=4)
    direct = generate_patients(
        model,
        vocabulary,
        normalizer,
        [p.age for p in cohort],
        [p.sex for p in cohort],
        outcomes=prompt_labels(model, cohort),
        max_new_tokens=12,
        seed=4,
    )
    assert [p.codes for p in liked] == [p.codes for p in direct]
    assert [(p.age, p.sex) for p in liked] == [(p.age, p.sex) for p in cohort]
    assert liked.outcomes["LVEF_REDUCED"].tolist() == [i % 2 for i in range(8)]
    plain = build_model(vocabulary, get_preset("tiny"), **SMALL)
    assert generate_like(plain, vocabulary, normalizer, cohort, max_new_tokens=8).outcomes is None


def marker_share(cohort: Cohort, code: str) -> float:
    codes = [c for p in cohort for c in p.codes]
    return codes.count(code) / max(len(codes), 1)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A run trained with LVEF_REDUCED as a prompt on :func:`labelled_cohort` patients."""
    out = tmp_path_factory.mktemp("outcome_run") / "run"
    torch.set_num_threads(1)
    cohort = labelled_cohort(64)
    config = TrainConfig(
        out=str(out),
        outcome_prompts=["LVEF_REDUCED"],
        epochs=30,
        batch_size=16,
        lr=3e-3,
        max_length=24,
        model={**SMALL, "dropout": 0.0},
        extra_losses=[],
        loss_weights={"age": 0.0, "sex": 0.0},
        sample_every_epoch=0,
        patience=None,
        progress=False,
        cpu=True,
        split_fractions=[0.75, 0.25, 0.0],
    )
    train(config, cohort)
    return out


def test_a_trained_outcome_prompt_steers_the_generated_codes(trained_run):
    """The label decides a marker code in the training data; asked for label 1 the model
    writes the label-1 marker far more often than asked for label 0, and the other way."""
    run = Run.load(trained_run)
    assert run.model.config.outcome_prompts == ["LVEF_REDUCED"]
    assert run.model.config.cat_cardinalities == [2, 2]
    assert "LVEF_REDUCED" in run.train_demographics.columns
    model, vocabulary, normalizer, _ = run.parts()
    ages, sexes = [50.0] * 40, ["F", "M"] * 20
    by_label = {
        label: generate_patients(
            model, vocabulary, normalizer, ages, sexes, outcomes={"LVEF_REDUCED": [label] * 40}
        )
        for label in (0, 1)
    }
    assert marker_share(by_label[1], MARKER[1]) > marker_share(by_label[0], MARKER[1]) + 0.1
    assert marker_share(by_label[0], MARKER[0]) > marker_share(by_label[1], MARKER[0]) + 0.1


# ------------------------------------------------------------------------------- utility
def test_utility_gives_tstr_auroc_only_for_requested_labels():
    real, train_split = labelled_cohort(40, 1), labelled_cohort(40, 2)
    synthetic = labelled_cohort(40, 3)  # stands for patients generated for these labels

    def labeler(patients):  # an oracle that reads the marker code
        ids = [p.subject_id for p in patients]
        return pd.DataFrame(
            {"SUBJECT_ID": ids, "LVEF_REDUCED": [int("4280" in p.codes) for p in patients]}
        )

    metrics, intervals = utility_evaluation(synthetic, real, train_split, outcome_labeler=labeler)
    assert metrics["tstr_auroc"] == metrics["tstr_oracle_auroc"] == 1.0
    assert "tstr_auroc" in intervals and "tstr_oracle_auroc" in intervals
    unlabelled, _ = utility_evaluation(
        Cohort(synthetic.patients), real, train_split, outcome_labeler=labeler
    )
    assert math.isnan(unlabelled["tstr_auroc"]) and unlabelled["tstr_oracle_auroc"] == 1.0
    # requested labels that contradict the codes: the user's figure drops, the oracle's not
    flipped = labelled_cohort(40, 3)
    flipped.outcomes["LVEF_REDUCED"] = 1 - flipped.outcomes["LVEF_REDUCED"]
    contradicted, _ = utility_evaluation(flipped, real, train_split, outcome_labeler=labeler)
    assert contradicted["tstr_auroc"] == 0.0 and contradicted["tstr_oracle_auroc"] == 1.0
    assert contradicted["augmentation_auroc"] < metrics["augmentation_auroc"]  # requested used


def test_the_generate_command_requests_labels_and_writes_them(trained_run, tmp_path, capsys):
    # default: whole rows of the training split's demographics, labels included
    assert (
        main(
            [
                "generate",
                "--run",
                str(trained_run),
                "--patients",
                "6",
                "--out",
                str(tmp_path / "a"),
                "--no-progress",
            ]
        )
        == 0
    )
    written = load_mimic(tmp_path / "a")
    assert set(written.outcomes["LVEF_REDUCED"]) <= {0, 1} and len(written.outcomes) == 6
    # --demographics-from: that cohort's ages, sexes and labels, in its order
    like = labelled_cohort(8, seed=5)
    write_mimic(like, tmp_path / "like")
    argv = ["generate", "--run", str(trained_run), "--patients", "8", "--no-progress"]
    assert (
        main([*argv, "--out", str(tmp_path / "b"), "--demographics-from", str(tmp_path / "like")])
        == 0
    )
    assert load_mimic(tmp_path / "b").outcomes["LVEF_REDUCED"].tolist() == [i % 2 for i in range(8)]
    write_mimic(Cohort(like.patients), tmp_path / "bare")  # no OUTCOMES.csv
    capsys.readouterr()
    code = main(
        [*argv, "--out", str(tmp_path / "c"), "--demographics-from", str(tmp_path / "bare")]
    )
    error = capsys.readouterr().err.strip()
    assert code == 1 and "LVEF_REDUCED" in error and "OUTCOMES.csv" in error
    assert len(error.splitlines()) == 1
