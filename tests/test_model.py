"""PromptBart: prompts prepended, losses and breakdown, caching, saving (issue: model)."""

from __future__ import annotations

import pytest
import torch

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.model import AUX_HIDDEN, PromptBart, PromptBartConfig, build_model, make_aux_head
from course_lib.presets import get_preset
from course_lib.tokens import BOS_ID, EOS_ID, Vocabulary


def small_config(**overrides) -> PromptBartConfig:
    options = dict(
        vocab_size=40,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        attention_heads=2,
        ffn_dim=64,
        max_sequence_length=32,
    )
    return PromptBartConfig(**(options | overrides))


def random_batch(batch: int = 8, length: int = 12, vocab: int = 40, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(7, vocab, (batch, length), generator=generator)
    labels[:, -1] = EOS_ID
    labels[0, 7] = EOS_ID
    labels[0, 8:] = -100
    x_num = torch.randn(batch, 1, generator=generator)
    x_cat = torch.randint(0, 2, (batch, 1), generator=generator)
    return labels, x_num, x_cat


def test_hand_check_total_equals_lm_plus_weighted_aux_terms():
    """The brief's check: random init, batch of 8, weights 0.005."""
    torch.manual_seed(0)
    model = PromptBart(small_config()).eval()
    labels, x_num, x_cat = random_batch()
    out = model(labels=labels, x_num=x_num, x_cat=x_cat, loss_weights={"age": 0.005, "sex": 0.005})
    terms = {name: value.item() for name, value in out.loss_terms.items()}
    by_hand = terms["lm"] + 0.005 * terms["age"] + 0.005 * terms["sex"]
    assert abs(out.loss.item() - by_hand) < 1e-5
    assert terms["lm"] > 3.0  # random init: close to log(40) = 3.69


@pytest.mark.parametrize(
    "location, n_enc, n_dec", [("both", 2, 2), ("encoder", 2, 0), ("decoder", 0, 2), ("none", 0, 0)]
)
def test_prompts_are_prepended_not_added(location, n_enc, n_dec):
    model = PromptBart(small_config(prompt_location=location)).eval()
    labels, x_num, x_cat = random_batch()
    source = torch.full((8, 3), 5)
    hidden, mask = model.encode(source, None, x_num, x_cat)
    assert hidden.shape[1] == 3 + n_enc and mask.shape == (8, 3 + n_enc)
    assert model.n_decoder_prompts == n_dec
    out = model(input_ids=source, labels=labels, x_num=x_num, x_cat=x_cat)
    assert out.logits.shape == (8, 12, 40)  # prompt positions dropped from the logits


def test_demographics_change_the_prediction_only_with_prompts():
    labels, x_num, x_cat = random_batch()
    for location, should_change in (("both", True), ("none", False)):
        torch.manual_seed(0)
        model = PromptBart(small_config(prompt_location=location)).eval()
        with torch.no_grad():
            female = model(labels=labels, x_num=x_num, x_cat=torch.zeros_like(x_cat)).logits
            male = model(labels=labels, x_num=x_num, x_cat=torch.ones_like(x_cat)).logits
        assert (not torch.allclose(female, male)) == should_change


def test_aux_heads_read_the_end_of_patient_state():
    torch.manual_seed(0)
    model = PromptBart(small_config()).eval()
    labels, x_num, x_cat = random_batch()
    out = model(labels=labels, x_num=x_num, x_cat=x_cat)
    # Patient 0 ends at position 7 (its </patient> label); changing later tokens must not matter.
    altered = labels.clone()
    altered[0, 8:] = -100
    altered_out = model(labels=altered, x_num=x_num, x_cat=x_cat)
    assert torch.allclose(out.age_pred[0], altered_out.age_pred[0])
    assert out.age_pred.shape == (8,) and out.sex_logits.shape == (8, 2)


def test_aux_head_parameter_counts_match_the_brief():
    """The notes' ~197k parameters per head are the MLP at d_model 768, not a linear layer."""
    mlp = make_aux_head(768, 1, "mlp")
    linear = make_aux_head(768, 1, "linear")
    assert (
        sum(p.numel() for p in mlp.parameters()) == 768 * AUX_HIDDEN + AUX_HIDDEN + AUX_HIDDEN + 1
    )
    assert sum(p.numel() for p in mlp.parameters()) == 197_121
    assert sum(p.numel() for p in linear.parameters()) == 769


def test_generate_with_cache_matches_full_forward():
    torch.manual_seed(0)
    model = PromptBart(small_config()).eval()
    _, x_num, x_cat = random_batch()
    result = model.generate(
        x_num=x_num,
        x_cat=x_cat,
        do_sample=False,
        max_new_tokens=8,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=0,
        eos_token_id=None,
        decoder_start_token_id=BOS_ID,
    )
    with torch.no_grad():
        full = model(
            decoder_input_ids=result.sequences, x_num=x_num, x_cat=x_cat, use_cache=False
        ).logits
    for step, scores in enumerate(result.scores):
        assert torch.allclose(scores, full[:, step], atol=1e-4)


def test_save_and_load_round_trip_with_vocabulary(tmp_path):
    cohort = Cohort(
        [
            Patient(1, "F", 40.0, [Visit(["4019", "25000"], 40.0)]),
            Patient(2, "M", 70.0, [Visit(["41401"], 70.0)]),
        ]
    )
    vocabulary = Vocabulary.build(cohort)
    model = build_model(
        vocabulary, get_preset("tiny"), d_model=32, attention_heads=2, ffn_dim=64
    ).eval()
    labels, x_num, x_cat = random_batch(vocab=len(vocabulary))
    model.save_pretrained(tmp_path / "model")
    loaded = PromptBart.from_pretrained(tmp_path / "model").eval()
    assert loaded.vocabulary is not None and loaded.vocabulary.codes == vocabulary.codes
    assert loaded.lm_head.weight is loaded.bart.shared.weight
    with torch.no_grad():
        assert torch.allclose(
            model(labels=labels, x_num=x_num, x_cat=x_cat).logits,
            loaded(labels=labels, x_num=x_num, x_cat=x_cat).logits,
        )


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="prompt_location"):
        PromptBartConfig(prompt_location="middle")
    with pytest.raises(ValueError, match="aux_head"):
        PromptBartConfig(aux_head="tree")
    with pytest.raises(ValueError, match="divisible"):
        PromptBartConfig(d_model=30, attention_heads=4)
    with pytest.raises(ValueError, match="condition_dropout"):
        PromptBartConfig(condition_dropout=1.0)
    with pytest.raises(ValueError, match="age_mean and age_std"):
        PromptBartConfig(age_mean=50.0)


def test_base_preset_has_the_brief_shape():
    config = PromptBartConfig.from_preset(get_preset("base"), vocab_size=100)
    assert (
        config.d_model,
        config.encoder_layers,
        config.decoder_layers,
        config.attention_heads,
    ) == (768, 6, 6, 12)


def sample_vocabulary() -> Vocabulary:
    """Codes with MCE rules: 650 (maternity, female), V3000 (newborn), 60000 (male)."""
    codes = ["4019", "650", "V3000", "60000", "486"]
    return Vocabulary.build(Cohort([Patient(1, "F", 30.0, [Visit(codes, 30.0)])]))


def test_validity_term_uses_the_mce_rules_of_each_patient():
    from course_lib import icd9, losses
    from course_lib.dataset import AgeNormalizer

    torch.manual_seed(0)
    vocabulary = sample_vocabulary()
    normalizer = AgeNormalizer(50.0, 20.0)
    model = build_model(
        vocabulary, get_preset("tiny"), normalizer=normalizer, d_model=32, attention_heads=2
    ).eval()
    ages, sexes = [0.0, 30.0, 70.0], ["M", "F", "M"]
    x_num = torch.tensor([[normalizer.normalize(a)] for a in ages])
    x_cat = torch.tensor([[0 if s == "F" else 1] for s in sexes])
    labels = torch.tensor([[3, 7, 4, 2]] * 3)
    out = model(
        labels=labels,
        x_num=x_num,
        x_cat=x_cat,
        extra_losses=("validity",),
        loss_weights={"validity": 2.0},
    )
    forbidden = torch.zeros(3, len(vocabulary), dtype=torch.bool)
    for row, (age, sex) in enumerate(zip(ages, sexes, strict=True)):
        for token_id in vocabulary.code_ids:
            code = vocabulary.id_to_code(token_id)
            forbidden[row, token_id] = not icd9.is_valid_for(code, age, sex)
    assert torch.equal(model.forbidden_codes(x_num, x_cat), forbidden)
    assert forbidden[0].sum() == 2 and forbidden[1].sum() == 2 and forbidden[2].sum() == 2
    by_hand = losses.validity_loss(out.logits, labels, forbidden)
    assert torch.allclose(out.loss_terms["validity"], by_hand)
    no_ages = build_model(vocabulary, get_preset("tiny"), d_model=32, attention_heads=2)
    with pytest.raises(ValueError, match="age_mean/age_std"):
        no_ages(
            labels=labels,
            x_num=x_num,
            x_cat=x_cat,
            extra_losses=("validity",),
            loss_weights={"validity": 1.0},
        )


def test_packed_logits_give_the_same_loss_terms_and_gradients_at_the_scored_positions():
    """The trainer projects only the scored positions: same terms, same gradients."""
    from course_lib.dataset import AgeNormalizer

    torch.manual_seed(0)
    vocabulary = sample_vocabulary()
    normalizer = AgeNormalizer(50.0, 20.0)
    model = build_model(
        vocabulary,
        get_preset("tiny"),
        normalizer=normalizer,
        d_model=32,
        attention_heads=2,
        decoder_prompt_add=True,
        condition_dropout=0.5,  # some rows lose their prompts: validity skips them
        loss_weights={
            "age": 0.5,
            "sex": 0.5,
            "validity": 2.0,
            "validity_log": 0.5,
            "diversity": 0.1,
        },
    ).train()
    ages, sexes = [0.0, 30.0, 70.0], ["M", "F", "M"]
    x_num = torch.tensor([[normalizer.normalize(a)] for a in ages])
    x_cat = torch.tensor([[0 if s == "F" else 1] for s in sexes])
    labels = torch.tensor(
        [[3, 7, 4, 2, -100, -100], [3, 8, 2, -100, -100, -100], [3, 7, 8, 4, 9, 2]]
    )
    extra = ("validity", "validity_log", "diversity")
    results = []
    for packed in (False, True):
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout in both passes; rows 1 and 2 lose their prompts
        out = model(
            labels=labels, x_num=x_num, x_cat=x_cat, extra_losses=extra, packed_logits=packed
        )
        out.loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((out, grads))
    (full, full_grads), (packed, packed_grads) = results
    scored = labels.ne(-100)
    assert packed.logits.shape == (int(scored.sum()), 1, len(vocabulary))
    assert torch.allclose(packed.logits[:, 0], full.logits[scored], atol=1e-6)
    for term, value in full.loss_terms.items():
        assert torch.allclose(packed.loss_terms[term], value, atol=1e-6), term
    assert set(full.loss_terms) == {"lm", "age", "sex", *extra}
    assert full.loss_terms["validity_log"].item() > 0  # untrained: forbidden mass above 1e-4
    assert len(packed_grads) == len(full_grads)
    for a, b in zip(full_grads, packed_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_decoder_prompt_add_conditions_every_step_of_generation():
    torch.manual_seed(0)
    model = PromptBart(small_config(prompt_location="none", decoder_prompt_add=True)).eval()
    labels, x_num, x_cat = random_batch()
    with torch.no_grad():
        female = model(labels=labels, x_num=x_num, x_cat=torch.zeros_like(x_cat)).logits
        male = model(labels=labels, x_num=x_num, x_cat=torch.ones_like(x_cat)).logits
    assert not torch.allclose(female, male)
    result = model.generate(
        x_num=x_num,
        x_cat=x_cat,
        do_sample=False,
        max_new_tokens=6,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=0,
        eos_token_id=None,
        decoder_start_token_id=BOS_ID,
    )
    with torch.no_grad():
        full = model(decoder_input_ids=result.sequences, x_num=x_num, x_cat=x_cat).logits
    for step, scores in enumerate(result.scores):
        assert torch.allclose(scores, full[:, step], atol=1e-4)


def test_condition_dropout_learns_an_unknown_value_used_by_guidance():
    torch.manual_seed(0)
    model = PromptBart(small_config(condition_dropout=0.5)).eval()
    labels, x_num, x_cat = random_batch()
    unknown_num = torch.full_like(x_num, float("nan"))
    unknown_cat = torch.full_like(x_cat, -1)
    with torch.no_grad():
        plain = model(decoder_input_ids=labels.clamp(min=0), x_num=unknown_num, x_cat=unknown_cat)
        known_sex = model(
            decoder_input_ids=labels.clamp(min=0), x_num=unknown_num, x_cat=torch.ones_like(x_cat)
        )
        plain, known_sex = plain.logits, known_sex.logits
    assert torch.isfinite(plain).all() and not torch.allclose(plain, known_sex)
    model.train()
    torch.manual_seed(1)
    out = model(labels=labels, x_num=x_num, x_cat=x_cat)
    assert torch.isfinite(out.loss) and out.loss_terms["sex"].item() > 0  # targets stay real
    plain_model = PromptBart(small_config()).eval()
    with pytest.raises(ValueError, match="condition_dropout"):
        plain_model(decoder_input_ids=labels.clamp(min=0), x_num=unknown_num, x_cat=unknown_cat)
    with pytest.raises(ValueError, match="condition_dropout"):
        plain_model.generate(x_num=x_num, x_cat=x_cat, guidance_scale=2.0, max_new_tokens=2)
