"""Lesson 04's exercises: an age-band prompt and the share of sex-specific codes by sex (lesson 04).

The first extends :class:`course_lib.model.ConditionalPrompt` with one more prompt vector (the
patient's age band, a categorical view of the numeric age) and plugs it into a
:class:`~course_lib.model.PromptBart`; the second is a metric of what the sex prompt changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import torch

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.exercises import exercise_check, not_attempted, passed, require
from course_lib.exercises.expected import EXPECTED
from course_lib.model import ConditionalPrompt


@exercise_check
def check_age_band_prompt(prompt_class: type | None) -> bool:
    """Shape, band semantics, the unchanged first prompts, gradients, and a PromptBart forward."""
    name = "age_band_prompt"
    if prompt_class is None:
        return not_attempted(
            name, "write class AgeBandPrompt(ConditionalPrompt) with a band_edges argument"
        )
    require(
        isinstance(prompt_class, type) and issubclass(prompt_class, ConditionalPrompt),
        name,
        "expected a subclass of course_lib.model.ConditionalPrompt",
    )
    torch.manual_seed(0)
    edges = [-1.0, 0.0, 1.0]
    # bands by [edge, next edge): 0 | 1 1 | 2 2 2 | 3 ; an age on an edge opens the next band
    x_num = torch.tensor([[-2.0], [-0.5], [-0.2], [0.0], [0.3], [0.99], [1.5]])
    bands = [0, 1, 1, 2, 2, 2, 3]
    x_cat = torch.tensor([[0], [0], [1], [0], [1], [0], [1]])
    try:
        module = prompt_class(1, [2], 16, 8, band_edges=edges)
        module.eval()
        out = module(x_num, x_cat)
    except NotImplementedError:  # a stub: not done yet, not wrong
        raise
    except Exception as error:  # the learner's code: report, do not crash the lesson
        require(
            False,
            name,
            "AgeBandPrompt(1, [2], 16, 8, band_edges=[-1.0, 0.0, 1.0])(x_num [7, 1], "
            f"x_cat [7, 1]) raised {type(error).__name__}: {error}",
        )
    require(
        tuple(out.shape) == (7, 3, 8),
        name,
        f"n_num 1, one categorical, d_model 8, batch 7: expected output [7, 3, 8] "
        f"(age, sex, band), got {list(out.shape)}",
    )
    base = ConditionalPrompt.forward(module, x_num, x_cat)
    require(
        torch.allclose(out[:, :2], base),
        name,
        "the first two prompts must be ConditionalPrompt's own (age then sex), unchanged",
    )
    band_prompts = out[:, 2]
    for i in range(len(bands)):
        for j in range(i + 1, len(bands)):
            same = torch.allclose(band_prompts[i], band_prompts[j])
            require(
                same == (bands[i] == bands[j]),
                name,
                f"x_num {x_num[i, 0].item()} and {x_num[j, 0].item()} with edges {edges}: "
                + (
                    "same band (and any sex), so the band prompts must be equal"
                    if bands[i] == bands[j]
                    else "different bands, so the band prompts must differ"
                ),
            )
    module.zero_grad()
    band_prompts.pow(2).sum().backward()
    base_names = set(dict(ConditionalPrompt(1, [2], 16, 8).named_parameters()))
    new_with_grad = [
        parameter_name
        for parameter_name, parameter in module.named_parameters()
        if parameter_name not in base_names
        and parameter.grad is not None
        and parameter.grad.abs().sum() > 0
    ]
    require(
        bool(new_with_grad),
        name,
        "no new parameter (the band embedding) receives a gradient from the band prompt",
    )
    _forward_in_prompt_bart(prompt_class, name)
    return passed(name, f"4 bands; new parameters trained: {', '.join(new_with_grad)}")


def _forward_in_prompt_bart(prompt_class: type, name: str) -> None:
    """Swap the prompt into a small encoder-prompted PromptBart and run one training forward."""
    from course_lib.model import build_model
    from course_lib.presets import PRESETS
    from course_lib.tokens import BOS_ID, EOS_ID, VISIT_END_ID, VISIT_START_ID, Vocabulary

    vocabulary = Vocabulary(["4019", "650", "V3000"])
    model = build_model(
        vocabulary, PRESETS["tiny"], prompt_location="encoder", d_model=16, ffn_dim=32
    )
    config = model.config
    model.encoder_prompt = prompt_class(
        config.n_num_features,
        config.cat_cardinalities,
        config.prompt_hidden,
        config.d_model,
        band_edges=[-1.0, 0.0, 1.0],
    )
    code = vocabulary.code_to_id("4019")
    ids = torch.tensor([[BOS_ID, VISIT_START_ID, code, VISIT_END_ID, EOS_ID]] * 2)
    output = model(
        labels=ids[:, 1:],
        decoder_input_ids=ids[:, :-1],
        x_num=torch.tensor([[-0.5], [0.5]]),
        x_cat=torch.tensor([[0], [1]]),
    )
    positions = output.encoder_last_hidden_state.shape[1]
    require(
        positions == 4,
        name,
        f"in PromptBart the encoder should see 3 prompts + 1 <mask> = 4 positions, saw {positions}",
    )
    require(
        bool(torch.isfinite(output.loss)), name, "PromptBart's loss with your prompt is not finite"
    )


# --- Exercise 2: the share of sex-specific codes by sex -------------------------------------

SEX_SPECIFIC_COLUMNS = ("female_only", "male_only")


def _one_visit(subject_id: int, sex: str, codes: list[str]) -> Patient:
    return Patient(subject_id, sex, 40.0, [Visit(codes=codes, age=40.0)])


@exercise_check
def check_sex_specific_share(sex_specific_share: Callable[[Cohort], pd.DataFrame] | None) -> bool:
    """A small cohort computed by hand, then a simulated cohort against the reference."""
    name = "sex_specific_share"
    if sex_specific_share is None:
        return not_attempted(name, "write sex_specific_share(cohort) -> DataFrame")
    # 650 delivery (female), 6259 genital symptom NOS (female), 185 prostate cancer (male),
    # 4019 hypertension (no rule). Women: 650, 4019, 4019, 6259 -> female 2/4. Men: 185, 4019,
    # 650 (a generated error) -> female 1/3, male 1/3.
    small = Cohort(
        [
            _one_visit(1, "F", ["650", "4019"]),
            _one_visit(2, "F", ["4019", "6259"]),
            _one_visit(3, "M", ["185", "4019", "650"]),
        ]
    )
    by_hand = pd.DataFrame(
        {"female_only": [2 / 4, 1 / 3], "male_only": [0.0, 1 / 3]}, index=["F", "M"]
    )
    _compare(sex_specific_share(small), by_hand, name, "the three-patient cohort in the check")
    from course_lib.simulate import simulate_cohort

    cohort = simulate_cohort(300, seed=11)
    expected = pd.DataFrame.from_dict(EXPECTED["sex_specific_share"], orient="index")
    expected = expected.loc[["F", "M"], list(SEX_SPECIFIC_COLUMNS)]
    _compare(sex_specific_share(cohort), expected, name, "simulate_cohort(300, seed=11)")
    return passed(
        name,
        f"simulated women: {expected.loc['F', 'female_only']:.2%} female-only codes; "
        f"men: {expected.loc['M', 'male_only']:.2%} male-only",
    )


def _compare(got: object, expected: pd.DataFrame, name: str, where: str) -> None:
    require(isinstance(got, pd.DataFrame), name, f"expected a DataFrame, got {type(got).__name__}")
    require(
        set(expected.index) <= set(got.index) and set(expected.columns) <= set(got.columns),
        name,
        f"expected rows {list(expected.index)} and columns {list(expected.columns)}, "
        f"got rows {list(got.index)} and columns {list(got.columns)}",
    )
    for sex in expected.index:
        for column in expected.columns:
            value, want = float(got.loc[sex, column]), float(expected.loc[sex, column])
            require(
                math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-12),
                name,
                f"{where}: {column} share for sex {sex} should be {want:.4f}, got {value:.4f}",
            )
