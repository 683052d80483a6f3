"""Each weighting strategy against hand-worked numbers, its direction of travel and resume."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from course_lib.weighting import (
    Constant,
    DynamicWeightAverage,
    GradNorm,
    LinearWarmup,
    LossNormalization,
    OffAfterEpoch,
    OffBelowThreshold,
    ScheduledWeighting,
    StaticWeighting,
    UncertaintyWeighting,
    make_weighting,
    parse_loss_weights,
)


def as_tensors(values: dict[str, float]) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(value) for name, value in values.items()}


# --- static ----------------------------------------------------------------------------
def test_static_reproduces_the_notes_random_init_total():
    weighting = StaticWeighting({"age": 0.005, "sex": 0.005})
    losses = as_tensors({"lm": 7.514641, "age": 1.760908, "sex": 0.748391})
    total, weights = weighting(losses, step=0, epoch=0)
    assert total.item() == pytest.approx(7.527187, abs=1e-5)
    assert weights == pytest.approx({"lm": 1.0, "age": 0.005, "sex": 0.005})


def test_static_checks_the_terms():
    weighting = StaticWeighting({"age": 0.1})
    with pytest.raises(ValueError, match=r"expected loss terms \['lm', 'age'\]"):
        weighting(as_tensors({"lm": 1.0, "sex": 1.0}), step=0, epoch=0)
    with pytest.raises(ValueError, match=r"missing \['sex'\]"):
        StaticWeighting({"age": 0.1}, terms=["lm", "age", "sex"])
    heads_only = StaticWeighting({"risk": 1.0, "lvef": 2.0}, terms=["lvef", "risk"])
    assert heads_only.terms == ["lvef", "risk"]  # no LM term forced in


# --- scheduled -------------------------------------------------------------------------
def test_schedules_switch_at_the_documented_step_and_epoch():
    warmup = LinearWarmup(0.1, warmup_steps=10)
    assert [warmup.weight(step, 0) for step in (0, 5, 10, 50)] == pytest.approx(
        [0.0, 0.05, 0.1, 0.1]
    )
    off = OffAfterEpoch(0.2, epoch=3)
    assert [off.weight(0, epoch) for epoch in (0, 3, 4, 10)] == [0.2, 0.2, 0.0, 0.0]
    assert Constant(0.3).weight(99, 99) == 0.3


def test_sex_curriculum_turns_off_after_patience_and_stays_off():
    # The notes' sex loss: 0.167 -> 0.015 -> 0.001 -> 0.000; threshold 0.05, patience 2.
    weighting = ScheduledWeighting(
        {"age": 0.005, "sex": OffBelowThreshold(0.005, threshold=0.05, patience_epochs=2)}
    )
    losses = as_tensors({"lm": 1.0, "age": 1.0, "sex": 0.5})
    seen = []
    for epoch, sex_mean in enumerate([0.167, 0.015, 0.001, 0.000, 0.4]):
        seen.append(weighting(losses, step=0, epoch=epoch)[1]["sex"])
        weighting.end_epoch(epoch, {"lm": 1.0, "age": 1.0, "sex": sex_mean})
    # on for epochs 0-2 (below once after epoch 1, twice after epoch 2), off from epoch 3
    assert seen == [0.005, 0.005, 0.005, 0.0, 0.0]
    total, _ = weighting(losses, step=0, epoch=5)
    assert total.item() == pytest.approx(1.0 + 0.005)


def test_below_threshold_counter_resets_when_the_loss_rises():
    schedule = OffBelowThreshold(1.0, threshold=0.1, patience_epochs=2)
    for epoch, mean in enumerate([0.05, 0.5, 0.05]):
        schedule.end_epoch(epoch, mean)
    assert not schedule.off and schedule.epochs_below == 1


# --- uncertainty -----------------------------------------------------------------------
def test_uncertainty_total_for_given_log_variances():
    weighting = UncertaintyWeighting(["lm", "age"])  # lm classification, age regression
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([0.0, math.log(2.0)]))
    total, weights = weighting(as_tensors({"lm": 2.0, "age": 3.0}), step=0, epoch=0)
    # lm: exp(0) * 2 + 0/2 ; age: 0.5 * exp(-log 2) * 3 + log(2)/2
    assert total.item() == pytest.approx(2.0 + 0.75 + 0.5 * math.log(2.0), abs=1e-6)
    assert weights == pytest.approx({"lm": 1.0, "age": 0.25})


def fit_log_vars(weighting: UncertaintyWeighting, losses: dict[str, float], steps: int) -> None:
    optimizer = torch.optim.SGD(weighting.parameters(), lr=0.2)
    for _ in range(steps):
        total, _ = weighting(as_tensors(losses), step=0, epoch=0)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()


def test_uncertainty_weights_move_to_the_inverse_loss():
    # Optimum s = log(2L) for classification (weight 1/(2L)), log L for regression
    # (weight 0.5/L): lm 2.0 -> weight 0.25, age 0.5 -> weight 1.0.
    weighting = UncertaintyWeighting(["lm", "age"])
    fit_log_vars(weighting, {"lm": 2.0, "age": 0.5}, steps=300)
    _, weights = weighting(as_tensors({"lm": 2.0, "age": 0.5}), step=0, epoch=0)
    assert weights == pytest.approx({"lm": 0.25, "age": 1.0}, rel=1e-3)


def test_uncertainty_clamp_bounds_a_vanishing_loss():
    weighting = UncertaintyWeighting(["lm", "sex"], clamp=(-4.0, 4.0))
    fit_log_vars(weighting, {"lm": 1.0, "sex": 0.0}, steps=200)
    _, weights = weighting(as_tensors({"lm": 1.0, "sex": 0.0}), step=0, epoch=0)
    assert weighting.log_vars[1].item() == pytest.approx(-4.0)
    assert weights["sex"] == pytest.approx(math.exp(4.0), rel=1e-6)


def test_uncertainty_needs_a_kind_for_every_term():
    with pytest.raises(ValueError, match=r"missing \['risk'\]"):
        UncertaintyWeighting(["lm", "risk"])
    with pytest.raises(ValueError, match="invalid"):
        UncertaintyWeighting(["lm"], kinds={"lm": "ranking"})


# --- DWA -------------------------------------------------------------------------------
def test_dwa_weights_from_epoch_means():
    weighting = DynamicWeightAverage(["a", "b"], temperature=2.0)
    losses = as_tensors({"a": 1.0, "b": 1.0})
    assert weighting(losses, step=0, epoch=0)[1] == {"a": 1.0, "b": 1.0}
    weighting.end_epoch(0, {"a": 2.0, "b": 1.0})
    assert weighting(losses, step=0, epoch=1)[1] == {"a": 1.0, "b": 1.0}
    weighting.end_epoch(1, {"a": 1.0, "b": 1.0})
    # r = (0.5, 1.0): w = 2 * exp(r/2) / (e^0.25 + e^0.5): a fell faster, so it gets less
    total, weights = weighting(losses, step=0, epoch=2)
    assert weights == pytest.approx({"a": 0.8756470, "b": 1.1243530}, abs=1e-6)
    assert total.item() == pytest.approx(2.0, abs=1e-6)
    weighting.end_epoch(2, {"a": 1.0, "b": 0.5})  # now b fell faster: r = (1.0, 0.5)
    assert weighting(losses, step=0, epoch=3)[1] == pytest.approx(
        {"a": 1.1243530, "b": 0.8756470}, abs=1e-6
    )


def test_dwa_high_temperature_flattens_the_weights():
    weighting = DynamicWeightAverage(["a", "b"], temperature=1e4)
    weighting.end_epoch(0, {"a": 2.0, "b": 1.0})
    weighting.end_epoch(1, {"a": 1.0, "b": 1.0})
    assert weighting(as_tensors({"a": 1.0, "b": 1.0}), step=0, epoch=2)[1] == pytest.approx(
        {"a": 1.0, "b": 1.0}, abs=1e-4
    )


# --- GradNorm --------------------------------------------------------------------------
def test_gradnorm_steps_worked_by_hand():
    # Shared W = (1, 1); L_a = 4 W0 and L_b = W1, so ||grad_W L|| = 4 and 1.
    shared = nn.Parameter(torch.ones(2))
    weighting = GradNorm(["a", "b"], alpha=1.5, lr=0.1).attach([shared])

    # Step 1: L = L(0), r = (1, 1); G = (4, 1), target = mean(G) = 2.5 for both;
    # dL_grad/dw = sign(G - target) * ||grad|| = (+4, -1); w = (0.6, 1.1) -> sum 2: /1.7*2.
    losses = {"a": 4 * shared[0], "b": shared[1]}
    total, weights = weighting(losses, step=0, epoch=0)
    assert weights == {"a": 1.0, "b": 1.0}  # this step uses the weights it started with
    assert total.item() == pytest.approx(5.0)
    assert weighting.weights.tolist() == pytest.approx([1.2 / 1.7, 2.2 / 1.7])

    # Step 2: W0 = 2 doubles L_a's relative loss: r = (2, 1) / 1.5. G = (2.824, 1.294),
    # target = 2.059 * r^1.5 = (3.170, 1.121): a is below target, b above, so a goes up:
    # w = (0.706 + 0.4, 1.294 - 0.1) = (1.106, 1.194) -> rescaled to sum 2.
    with torch.no_grad():
        shared[0] = 2.0
    weighting({"a": 4 * shared[0], "b": shared[1]}, step=1, epoch=0)
    assert weighting.weights.tolist() == pytest.approx([0.9616368, 1.0383632], abs=1e-6)
    assert weighting.initial_losses.tolist() == [4.0, 1.0]


def test_gradnorm_lowers_the_gradient_dominant_task_on_a_toy_model():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 4, generator=generator)
    target_a = 10.0 * inputs.sum(dim=1, keepdim=True)  # large scale: large gradients
    target_b = 0.1 * inputs[:, :1]
    torch.manual_seed(0)
    shared, head_a, head_b = nn.Linear(4, 8), nn.Linear(8, 1), nn.Linear(8, 1)
    model = nn.ModuleList([shared, head_a, head_b])
    weighting = GradNorm(["a", "b"], alpha=1.5, lr=0.01).attach(shared.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for step in range(30):
        hidden = torch.relu(shared(inputs))
        losses = {
            "a": nn.functional.mse_loss(head_a(hidden), target_a),
            "b": nn.functional.mse_loss(head_b(hidden), target_b),
        }
        total, _ = weighting(losses, step=step, epoch=0)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    w_a, w_b = weighting.weights.tolist()
    assert w_a < 1.0 < w_b
    assert w_a + w_b == pytest.approx(2.0)


def test_gradnorm_needs_attach_and_keeps_weights_in_eval():
    weighting = GradNorm(["a", "b"])
    shared = nn.Parameter(torch.ones(2))
    losses = {"a": 4 * shared[0], "b": shared[1]}
    with pytest.raises(RuntimeError, match="attach"):
        weighting(losses, step=0, epoch=0)
    weighting.attach([shared]).eval()
    weighting(losses, step=0, epoch=0)
    assert weighting.weights.tolist() == [1.0, 1.0]
    assert "shared" not in " ".join(weighting.state_dict())  # W is not part of its state


# --- loss normalisation ----------------------------------------------------------------
def test_normalization_running_mean_by_hand():
    weighting = LossNormalization(["a", "b"], momentum=0.5)
    weighting({"a": torch.tensor(4.0), "b": torch.tensor(0.02)}, step=0, epoch=0)
    total, weights = weighting({"a": torch.tensor(2.0), "b": torch.tensor(0.01)}, step=1, epoch=0)
    # running means: a 4 -> 0.5*4 + 0.5*2 = 3; b 0.02 -> 0.015
    assert weights == pytest.approx({"a": 1 / 3, "b": 1 / 0.015})
    assert total.item() == pytest.approx(2 / 3 + 0.01 / 0.015)


def test_normalization_gives_equal_contributions_to_terms_of_any_scale():
    weighting = LossNormalization(["mse", "ce"], momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for step in range(200):
        noise = 1.0 + 0.1 * torch.randn(2, generator=generator)
        losses = {"mse": 500.0 * noise[0], "ce": 0.02 * noise[1]}
        _, weights = weighting(losses, step=step, epoch=0)
    contributions = [500.0 * weights["mse"], 0.02 * weights["ce"]]
    assert contributions == pytest.approx([1.0, 1.0], abs=0.1)


def test_normalization_floors_a_vanishing_loss_and_freezes_in_eval():
    weighting = LossNormalization(["lm", "sex"], momentum=0.0, min_scale=1e-3)
    _, weights = weighting(as_tensors({"lm": 2.0, "sex": 0.0}), step=0, epoch=0)
    assert weights["sex"] == pytest.approx(1e3)
    weighting.eval()
    _, weights = weighting(as_tensors({"lm": 4.0, "sex": 0.0}), step=1, epoch=0)
    assert weights["lm"] == pytest.approx(0.5)  # the running mean did not move


def test_ratio_and_likelihood_strategies_refuse_negative_losses():
    losses = {"lm": torch.tensor(2.0), "diversity": torch.tensor(-1.0)}
    with pytest.raises(ValueError, match=r"\['diversity'\] are negative"):
        UncertaintyWeighting(["lm", "diversity"])(losses, step=0, epoch=0)
    with pytest.raises(ValueError, match=r"\['diversity'\] are negative"):
        DynamicWeightAverage(["lm", "diversity"]).end_epoch(0, {"lm": 2.0, "diversity": -1.0})
    shared = nn.Parameter(torch.ones(2))
    gradnorm = GradNorm(["lm", "diversity"]).attach([shared])
    with pytest.raises(ValueError, match=r"\['diversity'\] are negative"):
        gradnorm({"lm": shared[0], "diversity": -shared[1]}, step=0, epoch=0)


# --- state round trip ------------------------------------------------------------------
def trained(name: str) -> tuple[torch.nn.Module, dict]:
    """A strategy whose state has moved away from its initial value."""
    options = {
        "static": {"weights": {"age": 0.01, "sex": 0.2}},
        "scheduled": {
            "schedules": {"age": LinearWarmup(0.1, 4), "sex": OffBelowThreshold(0.2, 0.05, 1)}
        },
        "uncertainty": {},
        "dwa": {"temperature": 2.0},
        "gradnorm": {"lr": 0.05},
        "normalize": {"momentum": 0.5},
    }[name]
    torch.manual_seed(0)
    shared = nn.Linear(3, 3)
    weighting = make_weighting(name, ["lm", "age", "sex"], **options)
    if weighting.needs_shared_parameters:
        weighting.attach(shared.parameters())
    optimizer = torch.optim.SGD([*shared.parameters(), *weighting.parameters()], lr=0.1)
    for epoch in range(3):
        for step in range(3):
            out = shared(torch.ones(3) * (step + 1))
            losses = {"lm": out[0] ** 2, "age": (out[1] - 1) ** 2, "sex": out[2].abs() / 10}
            total, _ = weighting(losses, step=step, epoch=epoch)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
        weighting.end_epoch(epoch, {"lm": 1.0 / (epoch + 1), "age": 0.5, "sex": 0.01})
    return weighting, options


@pytest.mark.parametrize(
    "name", ["static", "scheduled", "uncertainty", "dwa", "gradnorm", "normalize"]
)
def test_state_dict_round_trip_resumes_the_same_weights(name):
    weighting, options = trained(name)
    buffer = io.BytesIO()
    torch.save(weighting.state_dict(), buffer)
    buffer.seek(0)
    resumed = make_weighting(name, ["lm", "age", "sex"], **options)
    resumed.load_state_dict(torch.load(buffer))
    losses = as_tensors({"lm": 1.5, "age": 0.7, "sex": 0.2})
    weighting.eval()
    resumed.eval()
    expected_total, expected = weighting(losses, step=1, epoch=3)
    total, weights = resumed(losses, step=1, epoch=3)
    assert weights == pytest.approx(expected)
    assert total.item() == pytest.approx(expected_total.item())
    if name in ("scheduled", "uncertainty", "dwa", "gradnorm", "normalize"):
        fresh = make_weighting(name, ["lm", "age", "sex"], **options)
        # the state really moved, so the round trip was a real test
        assert fresh.eval()(losses, step=1, epoch=3)[1] != pytest.approx(expected)


# --- construction ----------------------------------------------------------------------
def test_make_weighting_builds_each_strategy_and_names_bad_input():
    terms = ["lm", "age"]
    built = {
        "static": make_weighting("static", terms, weights={"age": 0.1}),
        "scheduled": make_weighting("scheduled", terms, schedules={"age": 0.1}),
        "uncertainty": make_weighting("uncertainty", terms),
        "dwa": make_weighting("dwa", terms, temperature=3.0),
        "gradnorm": make_weighting("gradnorm", terms, alpha=0.5),
        "normalize": make_weighting("normalize", terms, momentum=0.9),
    }
    expected_types = [
        StaticWeighting,
        ScheduledWeighting,
        UncertaintyWeighting,
        DynamicWeightAverage,
        GradNorm,
        LossNormalization,
    ]
    assert [type(w) for w in built.values()] == expected_types
    assert all(w.terms == terms for w in built.values())
    assert built["dwa"].temperature == 3.0 and built["gradnorm"].alpha == 0.5
    with pytest.raises(ValueError, match=r"unknown loss weighting 'pcgrad'.*'dwa'"):
        make_weighting("pcgrad", terms)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['temprature'\]"):
        make_weighting("dwa", terms, temprature=2.0)
    with pytest.raises(ValueError, match=r"needs the option\(s\) \['weights'\]"):
        make_weighting("static", terms)
    with pytest.raises(ValueError, match=r"missing \['age'\]"):
        make_weighting("static", terms, weights={})


def test_parse_loss_weights():
    assert parse_loss_weights("age=0.001,sex=0.001") == {"age": 0.001, "sex": 0.001}
    assert parse_loss_weights(" age = 0.05 , cooc=0 ") == {"age": 0.05, "cooc": 0.0}
    assert parse_loss_weights("") == {}
    for text, message in [
        ("age", r"'age': expected NAME=VALUE"),
        ("=0.1", r"'=0.1': expected NAME=VALUE"),
        ("age=0.1,sex=abc", r"'sex=abc': 'abc' is not a number"),
        ("sex=-1", r"'sex=-1': expected a finite number >= 0"),
        ("sex=nan", r"'sex=nan': expected a finite"),
        ("age=1,age=2", r"'age' is given twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_loss_weights(text)
