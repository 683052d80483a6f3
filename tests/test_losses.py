"""Each loss against values worked out by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import losses
from course_lib.losses import (
    IGNORE_INDEX,
    LossInputError,
    age_loss,
    build_cooccurrence_counts,
    cooccurrence_loss,
    diversity_loss,
    lm_loss,
    loss_breakdown,
    sex_loss,
    total_loss,
)

VOCAB = 10  # ids 0..6 special, 7, 8, 9 codes
CODE_MASK = torch.arange(VOCAB) >= 7


def log_probs(*probs: float) -> torch.Tensor:
    """Logits whose softmax is exactly ``probs`` (they must sum to 1)."""
    assert math.isclose(sum(probs), 1.0)
    return torch.tensor(probs).log()


# --- LM, age, sex --------------------------------------------------------------------
def test_lm_loss_averages_over_scored_tokens_only():
    logits = torch.zeros(1, 3, 6)
    logits[0, 0] = log_probs(0.5, 0.1, 0.1, 0.1, 0.1, 0.1)  # target 0: -log 0.5
    logits[0, 2, 1] = -50.0  # ignored position that would cost ~50 nats if it counted
    labels = torch.tensor([[0, 3, IGNORE_INDEX]])  # position 1 uniform over 6: log 6
    expected = (math.log(2) + math.log(6)) / 2
    assert lm_loss(logits, labels).item() == pytest.approx(expected, abs=1e-6)


def test_lm_loss_rejects_all_padding_and_bad_shapes():
    with pytest.raises(LossInputError, match="no position to score"):
        lm_loss(torch.zeros(2, 3, 6), torch.full((2, 3), IGNORE_INDEX))
    with pytest.raises(LossInputError, match="labels must be"):
        lm_loss(torch.zeros(2, 3, 6), torch.zeros(2, 4, dtype=torch.long))


def test_age_loss_is_mse_and_refuses_broadcasting():
    pred = torch.tensor([0.5, -1.0, 2.0])
    target = torch.tensor([0.0, 0.0, 1.0])
    assert age_loss(pred, target).item() == pytest.approx((0.25 + 1.0 + 1.0) / 3)
    assert age_loss(pred[:, None], target).item() == pytest.approx(0.75)  # head output [B, 1]
    with pytest.raises(LossInputError, match="age_pred and age_target"):
        age_loss(pred, target[:2])


def test_sex_loss_is_cross_entropy():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = (1/2, 1/2), (3/4, 1/4)
    target = torch.tensor([1, 0])
    expected = (math.log(2) + math.log(4 / 3)) / 2
    assert sex_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)
    assert sex_loss(logits, target[:, None]).item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(LossInputError, match="sex_logits"):
        sex_loss(logits, torch.tensor([1, 0, 1]))


# --- co-occurrence ---------------------------------------------------------------------
def test_build_cooccurrence_counts_counts_each_pair_once_per_patient():
    patients = [
        [1, 3, 7, 8, 4, 3, 7, 9, 4, 2],  # codes {7, 8, 9}, 7 repeated: pairs 78 79 89
        [1, 3, 8, 9, 9, 4, 2],  # pair 89
        [1, 3, 7, 4, 2],  # a single code: no pair
    ]
    counts = build_cooccurrence_counts(patients, VOCAB, CODE_MASK)
    expected = torch.zeros(VOCAB, VOCAB, dtype=torch.int32)
    for a, b, n in [(7, 8, 1), (7, 9, 1), (8, 9, 2)]:
        expected[a, b] = expected[b, a] = n
    assert torch.equal(counts, expected)


def test_build_cooccurrence_counts_names_the_bad_patient():
    with pytest.raises(ValueError, match="patient 1 has token id 12"):
        build_cooccurrence_counts([[7, 8], [7, 12]], VOCAB, CODE_MASK)
    with pytest.raises(ValueError, match="code_mask"):
        build_cooccurrence_counts([[7, 8]], VOCAB, CODE_MASK[:5])


def cooc_counts() -> torch.Tensor:
    counts = torch.zeros(VOCAB, VOCAB)
    for a, b, n in [(7, 8, 6.0), (7, 9, 2.0), (8, 9, 5.0)]:
        counts[a, b] = counts[b, a] = n
    return counts


# Patient <visit> 7 8 </visit> </patient>. With threshold 5:
#   t=0, t=1: no code seen yet -> not counted
#   t=2: S={7}: 7 (diagonal 0) and 9 (count 2) unsupported, 8 (count 6) supported
#   t=3, t=4: S={7, 8}: 7 via 8 (6), 8 via 7 (6), 9 via 8 (5 >= 5): nothing unsupported
LABELS = torch.tensor([[3, 7, 8, 4, 2]])


def test_cooccurrence_loss_uniform_predictions():
    logits = torch.zeros(1, 5, VOCAB)  # every token 1/10
    loss = cooccurrence_loss(logits, LABELS, cooc_counts(), 5.0, CODE_MASK)
    assert loss.item() == pytest.approx((0.2 + 0.0 + 0.0) / 3, abs=1e-6)


def test_cooccurrence_loss_counts_the_mass_on_unsupported_codes():
    logits = torch.zeros(1, 5, VOCAB)
    logits[0, 2] = log_probs(*([0.075] * 7), 0.1, 0.075, 0.3)  # p(7)=0.1, p(9)=0.3
    loss = cooccurrence_loss(logits, LABELS, cooc_counts(), 5.0, CODE_MASK)
    assert loss.item() == pytest.approx(0.4 / 3, abs=1e-6)
    ignored_end = LABELS.clone()
    ignored_end[0, 4] = IGNORE_INDEX
    loss = cooccurrence_loss(logits, ignored_end, cooc_counts(), 5.0, CODE_MASK)
    assert loss.item() == pytest.approx(0.4 / 2, abs=1e-6)


def test_cooccurrence_loss_threshold_is_inclusive_support():
    # Threshold 6: 9 is no longer supported by 8 (count 5), so t=3 and t=4 lose 0.1 each.
    logits = torch.zeros(1, 5, VOCAB)
    loss = cooccurrence_loss(logits, LABELS, cooc_counts(), 6.0, CODE_MASK)
    assert loss.item() == pytest.approx((0.2 + 0.1 + 0.1) / 3, abs=1e-6)


def test_cooccurrence_loss_batch_with_padding():
    # Second patient: <visit> 9 </visit> then padding; t=2: S={9}: 7 (count 2) and 9
    # (diagonal) unsupported -> 0.2; t=3, t=4 ignored.
    labels = torch.tensor([[3, 7, 8, 4, 2], [3, 9, 4, IGNORE_INDEX, IGNORE_INDEX]])
    logits = torch.zeros(2, 5, VOCAB)
    loss = cooccurrence_loss(logits, labels, cooc_counts().long(), 5.0, CODE_MASK)
    assert loss.item() == pytest.approx((0.2 + 0.0 + 0.0 + 0.2) / 4, abs=1e-6)


def test_cooccurrence_loss_gradient_lowers_unsupported_codes():
    logits = torch.zeros(1, 5, VOCAB, requires_grad=True)
    cooccurrence_loss(logits, LABELS, cooc_counts(), 5.0, CODE_MASK).backward()
    grad = logits.grad[0, 2]
    assert grad[9] > 0 and grad[7] > 0  # raising them would raise the loss
    assert grad[8] < 0 and grad[2] < 0  # supported code and special tokens gain mass
    assert torch.all(logits.grad[0, :2] == 0)  # positions with no history do not count


def test_cooccurrence_loss_without_history_is_zero_with_a_graph():
    logits = torch.zeros(1, 3, VOCAB, requires_grad=True)
    loss = cooccurrence_loss(logits, torch.tensor([[3, 4, 7]]), cooc_counts(), 5.0, CODE_MASK)
    assert loss.item() == 0.0
    loss.backward()  # a trainer's backward must not fail on such a batch
    assert torch.all(logits.grad == 0)


def test_cooccurrence_loss_on_counts_built_from_patients():
    # 5 patients hold 7 and 8 together, 1 holds 7 and 9: with threshold 5, after 7 only 8
    # is supported; 7 itself and 9 are not.
    counts = build_cooccurrence_counts([[7, 8]] * 5 + [[7, 9]], VOCAB, CODE_MASK)
    logits = torch.zeros(1, 3, VOCAB)
    loss = cooccurrence_loss(logits, torch.tensor([[7, 8, 2]]), counts, 5.0, CODE_MASK)
    # t=1: S={7}: {7, 9} unsupported -> 0.2; t=2: S={7, 8}: 9 has max(1, 0) < 5 -> 0.1
    assert loss.item() == pytest.approx((0.2 + 0.1) / 2, abs=1e-6)


def test_cooccurrence_loss_checks_the_counts_shape():
    with pytest.raises(LossInputError, match="cooccurrence_counts must be"):
        cooccurrence_loss(torch.zeros(1, 5, VOCAB), LABELS, torch.zeros(5, 5), 5.0, CODE_MASK)


# --- diversity -------------------------------------------------------------------------
def test_diversity_loss_of_uniform_predictions_is_minus_log_n_codes():
    logits = torch.zeros(2, 4, VOCAB)
    labels = torch.full((2, 4), 7)
    assert diversity_loss(logits, labels, CODE_MASK).item() == pytest.approx(-math.log(3))


def test_diversity_loss_renormalises_over_codes_and_averages_positions():
    # Position 0: codes (0.6, 0, 0) of 0.6 code mass -> (1, 0, 0); position 1: codes
    # (0, 0.3, 0.3) -> (0, 1/2, 1/2); position 2 is ignored. Mean (1/2, 1/4, 1/4):
    # 1/2 ln 1/2 + 2 * 1/4 ln 1/4 = -(3/2) ln 2.
    logits = torch.zeros(1, 3, VOCAB)
    logits[0, 0] = log_probs(0.08, 0.08, 0.08, 0.08, 0.0, 0.0, 0.08, 0.6, 0.0, 0.0)
    logits[0, 1] = log_probs(0.1, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0, 0.3, 0.3)
    labels = torch.tensor([[7, 8, IGNORE_INDEX]])
    loss = diversity_loss(logits, labels, CODE_MASK)
    assert loss.item() == pytest.approx(-1.5 * math.log(2), abs=1e-6)


def test_diversity_loss_is_zero_for_a_collapsed_batch_and_within_range():
    collapsed = torch.zeros(2, 3, VOCAB)
    collapsed[..., 8] = 30.0  # every position ~certain of code 8
    labels = torch.full((2, 3), 8)
    assert diversity_loss(collapsed, labels, CODE_MASK).item() == pytest.approx(0.0, abs=1e-6)
    generator = torch.Generator().manual_seed(0)
    random_logits = torch.randn(4, 6, VOCAB, generator=generator) * 3
    loss = diversity_loss(random_logits, torch.full((4, 6), 7), CODE_MASK).item()
    assert -math.log(3) <= loss <= 0.0


# --- totals and shares -----------------------------------------------------------------
def test_total_loss_reproduces_the_notes_random_init_check():
    raw = {
        "lm": torch.tensor(7.514641),
        "age": torch.tensor(1.760908),
        "sex": torch.tensor(0.748391),
    }
    total = total_loss(raw, {"age": 0.005, "sex": 0.005})
    assert total.item() == pytest.approx(7.527187, abs=1e-5)


def test_total_loss_weight_rules():
    raw = {"lm": torch.tensor(2.0), "age": torch.tensor(4.0)}
    assert total_loss(raw, {"age": 0.5, "cooc": 0.0}).item() == pytest.approx(4.0)
    assert total_loss(raw, {"lm": 0.5, "age": 0.0}).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"no weight for loss term\(s\) \['age'\]"):
        total_loss(raw, {})
    with pytest.raises(ValueError, match="sexx"):
        total_loss(raw, {"age": 0.1, "sexx": 0.2})


def test_loss_breakdown_reproduces_the_notes_epoch_30_shares():
    frame = loss_breakdown(
        {"lm": 0.4763, "age": 0.21, "sex": 0.000, "cooc": 3.665},
        {"age": 0.005, "sex": 0.005, "cooc": 0.05},
    )
    assert list(frame.index) == ["lm", "age", "sex", "cooc"]
    assert frame.loc["lm", "weight"] == 1.0
    assert frame.loc["cooc", "weighted"] == pytest.approx(0.18325)
    assert frame["share_pct"].round(2).tolist() == [72.10, 0.16, 0.00, 27.74]
    assert frame["share_pct"].sum() == pytest.approx(100.0)


def test_loss_breakdown_uses_magnitudes_for_negative_terms():
    frame = loss_breakdown({"lm": 3.0, "diversity": -2.0}, {"diversity": 0.5})
    assert frame["share_pct"].tolist() == pytest.approx([75.0, 25.0])
    with pytest.raises(ValueError, match="not finite"):
        loss_breakdown({"lm": float("nan")}, {})


def _two_positions():
    """One patient, two positions, vocab of 4, tokens 2 and 3 forbidden; and the forbidden
    mass at each position by hand (about 0.86, then 0.5)."""
    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]]])
    labels = torch.tensor([[1, 0]])
    forbidden = torch.tensor([[False, False, True, True]])
    first = math.exp(2) + math.exp(3)
    return logits, labels, forbidden, [first / (1 + math.e + first), 0.5]


def test_validity_loss_matches_a_hand_computation():
    logits, labels, forbidden, q = _two_positions()
    by_hand = -(math.log(1 - q[0]) + math.log(1 - q[1])) / 2
    value = losses.validity_loss(logits, labels, forbidden)
    assert abs(value.item() - by_hand) < 1e-5
    # padding is not scored, and nothing forbidden costs nothing
    assert losses.validity_loss(
        logits, torch.tensor([[1, -100]]), forbidden
    ).item() == pytest.approx(-math.log(1 - q[0]), abs=1e-5)
    assert losses.validity_loss(logits, labels, torch.zeros_like(forbidden)).item() == 0.0


def test_validity_loss_gradient_lowers_forbidden_codes_and_checks_shapes():
    logits = torch.zeros(2, 3, 6, requires_grad=True)
    labels = torch.full((2, 3), 1)
    forbidden = torch.zeros(2, 6, dtype=torch.bool)
    forbidden[0, 4] = forbidden[1, 5] = True
    losses.validity_loss(logits, labels, forbidden).backward()
    assert (logits.grad[0, :, 4] > 0).all() and (logits.grad[1, :, 5] > 0).all()
    assert (logits.grad[0, :, :4] < 0).all()
    with pytest.raises(losses.LossInputError, match="forbidden must be bool"):
        losses.validity_loss(logits, labels, forbidden[:1])
    with pytest.raises(losses.LossInputError, match="every token forbidden"):
        losses.validity_loss(logits, labels, torch.ones(2, 6, dtype=torch.bool))
    assert losses.LOSS_TERMS["validity"].per == "token" and "validity" in losses.OPTIONAL_TERMS


def test_validity_log_loss_matches_a_hand_computation():
    logits, labels, forbidden, q = _two_positions()
    floor = 0.3  # the first position (q ~ 0.86) and the second (0.5) are both above it
    by_hand = sum(math.log(v) - math.log(floor) for v in q) / 2
    value = losses.validity_log_loss(logits, labels, forbidden, floor=floor)
    assert value.item() == pytest.approx(by_hand, abs=1e-5)
    # below the floor a position costs nothing: with floor 0.6 only the first one counts
    only_first = (math.log(q[0]) - math.log(0.6)) / 2
    assert losses.validity_log_loss(logits, labels, forbidden, floor=0.6).item() == (
        pytest.approx(only_first, abs=1e-5)
    )
    with pytest.raises(losses.LossInputError, match="floor must lie in"):
        losses.validity_log_loss(logits, labels, forbidden, floor=1.0)


def test_validity_log_loss_keeps_pulling_where_unlikelihood_fades():
    # forbidden mass 1e-3 (above the 1e-4 floor): the unlikelihood gradient on the forbidden
    # logit is about q = 1e-3, the log hinge's about 1 - q, and nothing forbidden gives 0, not NaN
    forbidden = torch.tensor([[False, True], [False, False]])
    logit = math.log(1e-3 / (1 - 1e-3))
    grads = {}
    for name, loss in losses.VALIDITY_LOSSES.items():
        logits = torch.tensor([[[0.0, logit]], [[0.0, 0.0]]], requires_grad=True)
        loss(logits, torch.tensor([[0], [0]]), forbidden).backward()
        assert torch.isfinite(logits.grad).all()
        assert logits.grad[1].abs().sum() == 0  # the patient without forbidden codes
        grads[name] = float(logits.grad[0, 0, 1])
    assert grads["validity"] == pytest.approx(1e-3 / 2, rel=1e-2)  # mean over 2 positions
    assert grads["validity_log"] == pytest.approx((1 - 1e-3) / 2, rel=1e-2)
    assert losses.LOSS_TERMS["validity_log"].optional and "validity_log" in losses.OPTIONAL_TERMS


def test_balance_by_tokens_makes_every_token_count_once_over_length_grouped_batches():
    # Three length-grouped batches: short records, long records, one long and one short.
    torch.manual_seed(0)
    batches = []
    for lengths in ([2, 2, 3], [9, 8, 9], [1, 7]):
        labels = torch.full((len(lengths), 10), -100)
        for row, n in enumerate(lengths):
            labels[row, :n] = torch.randint(0, 5, (n,))
        batches.append((torch.randn(len(lengths), 10, 5), labels))
    token_sum = sum(
        F.cross_entropy(lg.reshape(-1, 5), lb.reshape(-1), ignore_index=-100, reduction="sum")
        for lg, lb in batches
    )
    n_tokens = [int(lb.ne(-100).sum()) for _, lb in batches]
    per_batch = sum(n_tokens) / len(batches)
    balanced = [
        losses.balance_by_tokens(
            {"lm": losses.lm_loss(lg, lb), "sex": torch.tensor(0.7)}, n, per_batch
        )
        for (lg, lb), n in zip(batches, n_tokens, strict=True)
    ]
    epoch_mean = float(sum(b["lm"] for b in balanced)) / len(batches)
    plain_mean = float(sum(losses.lm_loss(lg, lb) for lg, lb in batches)) / len(batches)
    token_mean = float(token_sum) / sum(n_tokens)
    assert epoch_mean == pytest.approx(token_mean, rel=1e-6)
    # the plain per-batch mean weighs the 7 short-record tokens like the 26 long ones
    assert abs(plain_mean - token_mean) > 0.01
    assert all(b["sex"] == pytest.approx(0.7) for b in balanced)  # a per-patient term


def test_balance_by_tokens_scales_position_means_only_and_checks_the_count():
    raw = {"lm": torch.tensor(2.0), "validity": torch.tensor(0.5), "diversity": torch.tensor(1.0)}
    out = losses.balance_by_tokens(raw, 50, 100.0)
    assert (out["lm"].item(), out["validity"].item(), out["diversity"].item()) == (1.0, 0.25, 1.0)
    with pytest.raises(ValueError, match="tokens_per_batch must be > 0, got 0"):
        losses.balance_by_tokens(raw, 50, 0.0)
