"""The simulator is the course's ground truth: its promised properties, checked on real draws."""

from __future__ import annotations

import math
import shlex
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from course_lib import ground_truth, icd9, simulate
from course_lib.cli import main
from course_lib.mimic import load_mimic

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data_samples" / "mimic_sample"


@pytest.fixture(scope="module")
def cohort():
    return simulate.simulate_cohort(5000, seed=11)


def _has(patient, prefixes, visits=None) -> bool:
    chosen = patient.visits if visits is None else visits
    return any(code.startswith(prefixes) for visit in chosen for code in visit.codes)


def _pmi(patients, first: str, second: str) -> float:
    n_first = sum(first in p.code_set for p in patients)
    n_second = sum(second in p.code_set for p in patients)
    n_both = sum(first in p.code_set and second in p.code_set for p in patients)
    return math.log(n_both * len(patients) / (n_first * n_second)) if n_both else -math.inf


def test_same_seed_same_cohort_and_different_seeds_differ():
    first, again, other = (simulate.simulate_cohort(300, seed) for seed in (5, 5, 6))
    assert first.patients == again.patients
    pd.testing.assert_frame_equal(first.outcomes, again.outcomes)
    assert [p.codes for p in first] != [p.codes for p in other]
    assert {p.subject_id for p in first}.isdisjoint({p.subject_id for p in other})
    assert first.patients[0].subject_id == 5 * simulate.SUBJECT_ID_STRIDE + 1


def test_cluster_codes_are_real_icd9_codes():
    table = icd9.code_table()
    for spec in simulate.CLUSTERS.values():
        codes = [c for group in spec["groups"] for c in group[1]] + list(spec.get("principal", {}))
        assert all(code in table for code in codes), codes


def test_zero_mce_violations_and_the_restricted_codes_do_occur(cohort):
    rules_seen: Counter[str] = Counter()
    violations = 0
    for patient in cohort:
        for visit in patient.visits:
            for code in visit.codes:
                violations += icd9.check_code(code, visit.age, patient.sex) is not None
                rules_seen.update(icd9.rules_for(code))
    assert violations == 0
    # The check is not vacuous: every kind of restricted code is used, each where it is allowed.
    for rule in ("newborn", "maternity", "female", "male", "adult", "pediatric"):
        assert rules_seen[rule] > 0, rule


def test_visits_are_sets_ordered_in_time_with_principal_first(cohort):
    for patient in cohort:
        ages = [v.age for v in patient.visits]
        assert ages == sorted(ages) and 0 <= patient.age <= simulate.MAX_AGE
        assert patient.age == patient.visits[0].age and patient.dob <= patient.visits[0].admit_time
        times = [v.admit_time for v in patient.visits]
        assert times == sorted(times) and len(set(times)) == len(times)
        for number, visit in enumerate(patient.visits, start=1):
            assert len(visit.codes) == len(set(visit.codes)) >= 2
            assert visit.hadm_id == patient.subject_id * 100 + number
            # E codes and delivery-outcome V27 codes are never a principal diagnosis.
            assert not visit.codes[0].startswith(("E", "V27"))
        if patient.age < 1:
            assert patient.visits[0].codes[0][:3] in ("V30", "V31")
            assert not _has(patient, ("V30", "V31"), patient.visits[1:])


def test_demographics_mix_newborns_children_and_elderly(cohort):
    ages = np.array([p.age for p in cohort])
    assert 0.07 < (ages < 1).mean() < 0.13
    assert 0.03 < ((ages >= 1) & (ages < 18)).mean() < 0.08
    assert np.median(ages) > 55 and (ages == simulate.MAX_AGE).mean() > 0.03
    assert 0.5 < np.mean([p.sex == "M" for p in cohort]) < 0.62


def test_counts_are_long_tailed_and_codes_diverse(cohort):
    visits = np.array([len(p.visits) for p in cohort])
    per_visit = np.array([len(v.codes) for p in cohort for v in p.visits])
    per_patient = np.array([len(p.codes) for p in cohort])
    assert np.median(visits) == 1 and np.percentile(visits, 90) <= 3 and visits.max() >= 15
    assert 4.5 <= per_visit.mean() <= 8 and per_visit.max() >= 20
    assert np.percentile(per_patient, 99) >= 5 * np.median(per_patient)
    patients_per_code = Counter(code for p in cohort for code in p.code_set)
    assert len(patients_per_code) >= 1500
    assert max(patients_per_code.values()) < 0.10 * len(cohort)
    # Zipf-like: many codes seen in a single patient, a few in hundreds.
    counts = np.array(list(patients_per_code.values()))
    assert (counts == 1).sum() > 500 and (counts >= 100).sum() >= 20


def test_clusters_make_co_occurrence_meaningful(cohort):
    patients = cohort.patients
    assert _pmi(patients, "0389", "99592") > 1.5  # sepsis episode
    assert _pmi(patients, "4019", "2724") > 1.0  # metabolic cluster
    assert _pmi(patients, "0389", "99592") > _pmi(patients, "0389", "2724") + 1.0
    # A dominant template: 20 codes carry a large share of all code occurrences.
    occurrences = Counter(code for p in patients for code in p.codes)
    top_share = sum(n for _, n in occurrences.most_common(20)) / sum(occurrences.values())
    assert top_share > 0.15


def test_progression_and_age_sex_dependent_prevalence(cohort):
    repeat = [p for p in cohort if len(p.visits) >= 2]

    def later_rate(condition, outcome):
        group = [p for p in repeat if condition(p)]
        return np.mean([_has(p, outcome, p.visits[1:]) for p in group])

    def diabetic(p):
        return _has(p, "250", p.visits[:1])

    def coronary(p):
        return _has(p, ("41401", "41400", "412", "V458"), p.visits[:1])

    assert later_rate(diabetic, "585") > 1.5 * later_rate(lambda p: not diabetic(p), "585")
    assert later_rate(coronary, "428") > 1.5 * later_rate(lambda p: not coronary(p), "428")
    old = [p for p in cohort if p.age >= 65]
    young = [p for p in cohort if 18 <= p.age < 40]
    cardiac = ("428", "4273", "414")
    assert np.mean([_has(p, cardiac) for p in old]) > 4 * np.mean([_has(p, cardiac) for p in young])


def test_sex_is_trivially_predictable_for_a_share_of_patients(cohort):
    for sex, rule in (("F", "female"), ("M", "male")):
        with_code = [p for p in cohort if any(rule in icd9.rules_for(c) for c in p.code_set)]
        assert all(p.sex == sex for p in with_code)
        assert len(with_code) > 0.08 * sum(p.sex == sex for p in cohort)
    pregnant = [p for p in cohort if _has(p, ("V27", "650"))]
    assert all(p.sex == "F" for p in pregnant)
    assert len(pregnant) > 0.01 * sum(p.sex == "F" for p in cohort)


def test_outcomes_table_prevalences_and_learnability(cohort):
    outcomes = cohort.outcomes
    assert list(outcomes.columns) == [
        "SUBJECT_ID",
        "LVEF_REDUCED",
        "EVENT_DAYS",
        "EVENT_OBSERVED",
        "RISK_CATEGORY",
    ]
    assert outcomes["SUBJECT_ID"].tolist() == [p.subject_id for p in cohort]
    assert 0.20 <= outcomes["LVEF_REDUCED"].mean() <= 0.35
    assert set(outcomes["EVENT_OBSERVED"]) == {0, 1} and (outcomes["EVENT_DAYS"] > 0).all()
    risk = outcomes["RISK_CATEGORY"].value_counts(normalize=True)
    assert 0.5 < risk[0] < 0.7 and 0.2 < risk[1] < 0.35 and 0.07 < risk[2] < 0.18
    probabilities = simulate.outcome_probabilities(cohort.patients)
    assert roc_auc_score(outcomes["LVEF_REDUCED"], probabilities["P_LVEF_REDUCED"]) > 0.7
    horizons = probabilities[[f"P_EVENT_{d}D" for d in simulate.HORIZONS_DAYS]].to_numpy()
    assert (np.diff(horizons, axis=1) > 0).all() and ((horizons > 0) & (horizons < 1)).all()
    risk_columns = ["P_RISK_LOW", "P_RISK_MEDIUM", "P_RISK_HIGH"]
    assert np.allclose(probabilities[risk_columns].sum(axis=1), 1.0)
    # Observed events within a year follow the model's one-year probability (censoring >= 30 d).
    high = probabilities["P_EVENT_365D"] > 0.5
    within = (outcomes["EVENT_OBSERVED"] == 1) & (outcomes["EVENT_DAYS"] <= 30)
    assert within[high].mean() > 2 * within[~high].mean()
    chf = np.array([_has(p, "428") for p in cohort])
    assert outcomes["LVEF_REDUCED"][chf].mean() > 2 * outcomes["LVEF_REDUCED"][~chf].mean()


def test_simulate_outcomes_labels_any_patients_with_the_same_model(cohort):
    again = simulate.simulate_outcomes(cohort.patients, seed=11)
    pd.testing.assert_frame_equal(again, cohort.outcomes)
    subset = cohort.patients[:50]
    probabilities = simulate.outcome_probabilities(subset)
    full = simulate.outcome_probabilities(cohort.patients).iloc[:50]
    pd.testing.assert_frame_equal(probabilities, full)
    assert len(simulate.simulate_outcomes(subset, seed=3)) == 50


def test_bad_arguments_are_rejected_with_clear_errors(capsys):
    with pytest.raises(ValueError, match="n_patients"):
        simulate.simulate_cohort(0, seed=1)
    with pytest.raises(ValueError, match="seed"):
        simulate.simulate_cohort(10, seed=-1)
    for argv in (["--patients", "0"], ["--patients", "ten"], ["--patients", "5", "--seed", "-2"]):
        with pytest.raises(SystemExit) as stop:
            main(["simulate", *argv, "--out", "unused"])
        assert stop.value.code == 2
    assert "expected an integer" in capsys.readouterr().err


def test_cli_writes_a_cohort_that_loads_back_unchanged(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["simulate", "--patients", "200", "--seed", "4", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("wrote 200 patients")
    loaded = load_mimic(out)
    expected = simulate.simulate_cohort(200, 4)
    assert loaded.patients == expected.patients
    pd.testing.assert_frame_equal(loaded.outcomes, expected.outcomes)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    capsys.readouterr()
    assert main(["simulate", "--patients", "5", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"course_lib simulate: error: --out {blocker}: exists and is a file")
    assert len(err.splitlines()) == 1
    assert blocker.read_text() == "not a folder"


def test_data_sample_is_reproduced_byte_for_byte(tmp_path):
    readme = (SAMPLE_DIR.parent / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "course_lib simulate" in line)
    argv = shlex.split(command.strip().strip("`"))
    argv = argv[argv.index("simulate") :]
    argv[argv.index("--out") + 1] = str(tmp_path)
    assert main(argv) == 0
    names = sorted(path.name for path in SAMPLE_DIR.iterdir())
    assert names == ["ADMISSIONS.csv", "DIAGNOSES_ICD.csv", "OUTCOMES.csv", "PATIENTS.csv"]
    assert sorted(path.name for path in tmp_path.iterdir()) == names
    for name in names:
        assert (tmp_path / name).read_bytes() == (SAMPLE_DIR / name).read_bytes(), name
    sample = load_mimic(SAMPLE_DIR)
    assert len({code for p in sample for code in p.code_set}) >= 1500  # holds at 2,000 too


def test_vectorised_odds_equal_the_simulators_odds():
    ages = np.array([0.0, 0.5, 5.0, 13.0, 16.0, 30.0, 47.5, 70.0, 90.0])
    for name in simulate.CLUSTERS:
        for sex in ("F", "M"):
            for active in ([], ["metabolic", "substance"]):
                for first in (True, False):
                    vector = ground_truth.odds_array(name, ages, sex, active, first)
                    scalar = [simulate._odds(name, a, sex, active, first) for a in ages]
                    assert np.allclose(vector, scalar, rtol=1e-12, atol=0), (name, sex, first)


def test_first_code_distribution_is_exact_and_matches_sampling():
    """Expected counts of the commonest first codes against a 6,000-patient draw."""
    draw = simulate.simulate_cohort(6000, seed=21)
    ages, sexes = [p.age for p in draw], [p.sex for p in draw]
    firsts = [p.visits[0].codes[0] for p in draw]
    distributions = ground_truth.first_code_distributions(ages, sexes)
    assert all(abs(sum(d.values()) - 1.0) < 1e-9 for d in distributions)
    observed = Counter(firsts)
    for code, count in observed.most_common(12):
        expected = sum(d.get(code, 0.0) for d in distributions)
        assert abs(count - expected) < 4 * math.sqrt(expected) + 2, (code, count, expected)
    probabilities = ground_truth.first_code_probabilities(ages, sexes, firsts)
    assert (probabilities > 0).all()  # the truth never rules out what it drew
    assert np.allclose(
        probabilities[:50], [d[c] for d, c in zip(distributions[:50], firsts[:50], strict=True)]
    )
    newborn = ground_truth.first_code_distributions([0.0], ["F"])[0]
    assert set(newborn) == {"V3000", "V3001", "V3101", "V3100"}  # the birth admission
    with pytest.raises(ValueError, match="sexes must be"):
        ground_truth.first_code_distributions([30.0], ["X"])
