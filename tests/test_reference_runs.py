"""Reference runs: each stored run matches its recipe, and its first steps replay exactly.

Byte for byte on a CPU with the vector kernels that stored the run (``cpu_capability`` in its
``recipe.json``, e.g. AVX2); on one with other kernels, float sums run in another order, so
the numbers must agree to 1e-4 relative instead.

A stored run (``reference_runs/<name>/``) is current when its fingerprint (recipe + code
version + sample files) equals the recipe's now; a live re-run of its first
:data:`REPLAY_STEPS` steps must then write the same ``logs/train.jsonl`` lines, byte for byte.
A stale run fails with the command that regenerates it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from course_lib import recipe_runs, recipes
from course_lib.recipe_runs import REFERENCE_DIR, folder_size, freshness, read_stamp
from course_lib.recipes import (
    BUDGET_SETTINGS,
    RECIPES,
    Recipe,
    RecipeError,
    get_recipe,
)

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / REFERENCE_DIR
SAMPLE = ROOT / "data_samples" / "mimic_sample"
REPLAY_STEPS = 20
LIMIT_BYTES = 40_000_000
STORED = sorted(p.name for p in STORE.iterdir() if p.is_dir() and not p.name.startswith("."))


def regenerate(name: str) -> str:
    return f"regenerate it: python scripts/reference_runs.py {name}"


# --------------------------------------------------------------------- the stored runs
def test_at_least_one_run_is_stored_and_the_store_fits():
    assert "baseline_none" in STORED, "lesson 03's baseline must be stored"
    total = sum(folder_size(STORE / name) for name in STORED)
    assert total <= LIMIT_BYTES, f"{STORE} holds {total / 1e6:.1f} MB, over 40 MB"


@pytest.mark.parametrize("name", sorted(set(RECIPES) | set(STORED)))
def test_stored_run_matches_its_recipe(name):
    if name not in STORED:
        pytest.skip(f"{name} is not stored yet ({regenerate(name)})")
    recipe = get_recipe(name)  # an orphan (recipe removed) fails here, naming the recipes
    state, why = freshness(recipe, STORE / name, SAMPLE)
    assert state == "fresh", f"{STORE / name} is {state}: {why}; {regenerate(name)}"
    stamp = read_stamp(STORE / name)
    assert stamp["name"] == name
    assert {"recipe", "train_config"} <= set(stamp)
    assert stamp["torch"] and stamp["transformers"] and stamp["wall_s"] > 0


@pytest.mark.parametrize("name", STORED)
def test_first_steps_replay_exactly(name, tmp_path):
    recipe = get_recipe(name)
    state, why = freshness(recipe, STORE / name, SAMPLE)
    if state != "fresh":
        pytest.fail(f"{STORE / name} is {state}: {why}; {regenerate(name)}")
    stamp = read_stamp(STORE / name)
    here = "cuda" if torch.cuda.is_available() else "cpu"
    if stamp["device_type"] != here:
        pytest.skip(f"stored on {stamp['device_type']}, this machine has {here}")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the recipes' cpu_threads; set here too for any other
        recipe_runs.train_recipe(
            recipe, tmp_path / "run", data_dir=SAMPLE, stop_after_step=REPLAY_STEPS
        )
    finally:
        torch.set_num_threads(threads)
    live = (tmp_path / "run" / "logs" / "train.jsonl").read_text().splitlines()
    stored = [
        line
        for line in (STORE / name / "logs" / "train.jsonl").read_text().splitlines()
        if json.loads(line)["step"] <= REPLAY_STEPS
    ]
    assert stored, f"{name}: no logged step <= {REPLAY_STEPS}"
    assert json.loads(live[-1])["step"] == json.loads(stored[-1])["step"]
    same_kernels = stamp.get("cpu_capability") == torch.backends.cpu.get_cpu_capability()
    for mine, theirs in zip(live, stored, strict=True):
        where = f"{name}: step {json.loads(theirs)['step']} differs; " + regenerate(name)
        if same_kernels or here == "cuda":
            assert mine == theirs, where  # byte for byte
        else:  # other vector kernels sum in another order: the same run up to rounding
            assert numbers(json.loads(mine)) == pytest.approx(
                numbers(json.loads(theirs)), rel=1e-4, abs=1e-6
            ), where


def numbers(record, prefix: str = "") -> dict[str, float]:
    """A log line's numeric leaves, flattened (``terms.lm.raw``)."""
    found: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            found |= numbers(value, f"{prefix}{key}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[f"{prefix}{key}"] = float(value)
        else:
            found[f"{prefix}{key}"] = value
    return found


# ------------------------------------------------------------------- recipes as code
def test_every_recipe_builds_its_config_and_a_gpu_variant():
    lessons = {p.stem for p in (ROOT / "lessons").glob("*.py")}
    for name, recipe in RECIPES.items():
        assert recipe.name == name
        assert recipe.lesson in lessons, f"{name}: no lesson {recipe.lesson}"
        config = recipe.train_config("somewhere")
        assert config.preset == recipe.preset and config.out == "somewhere"
        base = recipe.for_preset("base")
        assert base.name == f"{name}-base" and base.train_config().preset == "base"
        assert not BUDGET_SETTINGS & set(base.settings)
        assert get_recipe(f"{name}-base") == base
        assert get_recipe(name, preset=recipe.preset) is recipe


def test_gpu_variant_keeps_the_experiment_and_takes_explicit_changes():
    recipe = RECIPES["failing"]
    base = recipe.for_preset("base")
    assert base.settings["loss_weights"] == recipe.settings["loss_weights"]
    assert base.split_fractions == (0.8, 0.1, 0.1) and base.callbacks == recipe.callbacks
    assert base.train_config().max_steps is None  # the preset's epochs
    custom = Recipe("x", "10_diagnosing_failures", variants={"base": {"seed": 5}})
    assert custom.for_preset("base").seed == 5
    with pytest.raises(RecipeError, match="no budget for preset"):
        recipe.for_preset("huge")


def test_fingerprint_follows_recipe_code_and_data(monkeypatch, tmp_path):
    recipe = RECIPES["baseline_none"]
    first = recipe.fingerprint(SAMPLE)
    assert first == recipe.fingerprint(SAMPLE)
    changed = Recipe(recipe.name, recipe.lesson, settings={**recipe.settings, "max_steps": 151})
    assert changed.fingerprint(SAMPLE) != first
    copy = tmp_path / "sample"
    copy.mkdir()
    for name in recipes.SAMPLE_FILES:
        (copy / name).write_bytes((SAMPLE / name).read_bytes())
    assert recipe.fingerprint(copy) == first
    with open(copy / "PATIENTS.csv", "a") as out:
        out.write("\n")
    assert recipe.fingerprint(copy) != first
    monkeypatch.setattr(recipes, "code_version", lambda: "0" * 64)
    assert recipe.fingerprint(SAMPLE) != first


def test_freshness_says_why(monkeypatch, tmp_path):
    recipe = RECIPES["baseline_none"]
    assert freshness(recipe, tmp_path, SAMPLE)[0] == "missing"
    recipe_runs.write_stamp(tmp_path, recipe_runs.make_stamp(recipe, SAMPLE, 1.0))
    assert freshness(recipe, tmp_path, SAMPLE)[0] == "fresh"
    monkeypatch.setattr(recipes, "code_version", lambda: "0" * 64)
    monkeypatch.setattr(recipe_runs, "code_version", lambda: "0" * 64)
    state, why = freshness(recipe, tmp_path, SAMPLE)
    assert state == "stale" and "code version changed" in why
    other = RECIPES["prompts_both"]
    assert "recipe changed" in freshness(other, tmp_path, SAMPLE)[1]


def test_bad_recipes_and_names_are_refused():
    with pytest.raises(RecipeError, match="unknown recipe 'nope'; known recipes: baseline_none"):
        get_recipe("nope")
    with pytest.raises(RecipeError, match="budget 'huge'"):
        Recipe("x", "03_bart_for_patients", "huge")
    with pytest.raises(RecipeError, match=r"settings \['seed'\] come from the recipe"):
        Recipe("x", "03_bart_for_patients", settings={"seed": 3})
    with pytest.raises(RecipeError, match="simulated cohort needs n and seed"):
        recipes.CohortSpec("simulated")


# ----------------------------------------------------------------------------- the script
def _script():
    spec = importlib.util.spec_from_file_location(
        "reference_runs", ROOT / "scripts" / "reference_runs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_refuses_to_pass_the_size_limit(monkeypatch, tmp_path):
    script = _script()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "weights").write_bytes(b"x" * 600_000)

    def fake_store(run_dir, dest):
        dest.mkdir()
        (dest / "weights").write_bytes(b"y" * 500_000)

    monkeypatch.setattr(script, "train_recipe", lambda *a, **k: None)
    monkeypatch.setattr(script, "store_reference", fake_store)
    monkeypatch.setattr(script, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match="over the 1 MB limit; nothing was replaced"):
        script.build(["baseline_none"], tmp_path, SAMPLE, limit_mb=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_script_check_lists_every_recipe(capsys):
    status = _script().check(STORE, SAMPLE)
    out = capsys.readouterr().out
    assert all(name in out for name in RECIPES)
    assert out.strip().splitlines()[-1].startswith("total ")
    stale = any(line.startswith(("stale", "orphan")) for line in out.splitlines())
    assert status == (1 if stale else 0)


def test_generated_sample_is_written_and_read_back(tmp_path):
    import dataclasses
    import shutil

    from course_lib.mimic import load_mimic
    from course_lib.recipes import GenerationSpec
    from course_lib.runs import Run

    shutil.copytree(STORE / "baseline_none", tmp_path / "run")
    recipe = dataclasses.replace(
        RECIPES["baseline_none"], generation=GenerationSpec(split="val", max_new_tokens=6)
    )
    cohort = load_mimic(SAMPLE)
    recipe_runs.write_generated(recipe, tmp_path / "run", cohort)
    generated = recipe_runs.read_generated(tmp_path / "run")
    prompts = Run(tmp_path / "run").split(cohort, "val")
    assert [(p.age, p.sex) for p in generated] == [(p.age, p.sex) for p in prompts]
    assert all(len(p.codes) <= 6 for p in generated)
    (tmp_path / "run" / recipe_runs.GENERATED).write_text('{"age": 3}\n')
    with pytest.raises(ValueError, match=r"generated.jsonl, line 1: not a generated patient"):
        recipe_runs.read_generated(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="stored no generated sample"):
        recipe_runs.read_generated(tmp_path)
    with pytest.raises(RecipeError, match="'-' is kept for"):
        recipes._register(Recipe("a-b", "03_bart_for_patients"))


def test_code_version_covers_every_module_the_training_code_imports():
    """A module split off the training code must join CODE_MODULES (or be named harmless)."""
    import ast

    covered = set(recipes.CODE_MODULES) | set(recipes.OUTSIDE_CODE_VERSION)
    missing = {}
    for name in recipes.CODE_MODULES:
        tree = ast.parse((recipes.PACKAGE / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_lib"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                if parts[0] != "course_lib" or len(parts) < 2:
                    continue
                file = parts[1] + ("/" if (recipes.PACKAGE / parts[1]).is_dir() else ".py")
                if file not in covered and (recipes.PACKAGE / file).exists():
                    missing.setdefault(file, set()).add(name)
    assert not missing, (
        f"{missing}: add to course_lib.recipes.CODE_MODULES if they change a run's numbers, "
        "else to OUTSIDE_CODE_VERSION"
    )


def test_script_deals_names_to_parallel_processes_and_reports_a_failure(monkeypatch, capsys):
    script = _script()
    started = []

    class FakeProcess:
        def __init__(self, command):
            self.command = command
            started.append(command)

        def wait(self):
            return 3 if "b" in self.command else 0

    monkeypatch.setattr(script.subprocess, "Popen", FakeProcess)
    status = script.build_in_parallel(["a", "b", "c", "d", "e"], 3, ["--drop-work"])
    assert [command[2:] for command in started] == [
        ["--drop-work", "a", "d"],
        ["--drop-work", "b", "e"],
        ["--drop-work", "c"],
    ]
    assert status == 1
    assert "the process for b e failed" in capsys.readouterr().err


def test_script_names_each_recipe_s_preset_variant_and_refuses_bad_jobs(monkeypatch, capsys):
    script = _script()
    built = {}
    monkeypatch.setattr(script, "build", lambda names, *a: built.setdefault("names", names))
    assert script.main(["baseline_none", "failing", "--preset", "base"]) == 0
    assert built["names"] == ["baseline_none-base", "failing-base"]
    with pytest.raises(SystemExit):
        script.main(["baseline_none", "--jobs", "0"])
    assert "--jobs 0: expected 1 or more" in capsys.readouterr().err
