"""The inverse-CDF sampler and the growing key/value cache: the same distribution and the same
tokens as the slower standard paths they replace."""

from __future__ import annotations

import pytest
import torch
from scipy import stats
from transformers import (
    LogitsProcessorList,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.cache_utils import DynamicCache, DynamicLayer

from course_lib.generation import naive_generate
from course_lib.kv_cache import MIN_CAPACITY, GrowingLayer, growing_cache, use_growing_cache
from course_lib.processors import InverseCdfSampler, sampling_processors
from course_lib.tokens import BOS_ID, EOS_ID, PAD_ID
from tests.test_generation import make_vocabulary, small_model

NO_INPUT = torch.zeros(1, 1, dtype=torch.long)


def draws(scores: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` tokens drawn by the sampler from one row of scores."""
    torch.manual_seed(seed)
    out = InverseCdfSampler()(NO_INPUT.expand(n, 1), scores.expand(n, -1).clone())
    assert torch.isfinite(out).sum(dim=1).eq(1).all()  # one token left per row, at score 0
    assert out.max(dim=1).values.eq(0).all()
    return out.argmax(dim=1)


def test_the_sampler_draws_from_the_softmax():
    logits = torch.tensor([2.0, 0.5, -1.0, 1.0, -float("inf"), 0.0])
    probabilities = logits.double().softmax(-1)
    counts = torch.bincount(draws(logits, 40_000), minlength=len(logits))
    assert counts[4] == 0  # no mass, never drawn
    kept = probabilities > 0
    expected = (probabilities[kept] / probabilities[kept].sum() * counts.sum()).numpy()
    assert stats.chisquare(counts[kept].numpy(), expected).pvalue > 1e-3


def test_a_draw_is_the_first_token_whose_cumulative_mass_exceeds_it(monkeypatch):
    """Inverse transform sampling by hand: u = 0.5 of the mass falls in the third token's
    interval [0.3, 0.6); u at the very top (it can round up to the total) takes the last token
    with mass, never the masked ones after it."""
    probabilities = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0]])
    scores = probabilities.log()
    for u, token in ((0.5, 2), (0.0, 0), (0.1 - 1e-6, 0), (0.1 + 1e-6, 1), (1.0, 3)):
        monkeypatch.setattr(
            torch, "rand", lambda *shape, dtype, device, u=u: torch.full(shape[0], u, dtype=dtype)
        )
        assert InverseCdfSampler()(NO_INPUT, scores.clone()).argmax().item() == token


def test_a_row_without_finite_scores_is_a_clear_error():
    scores = torch.tensor([[0.0, 1.0], [-float("inf"), -float("inf")]])
    with pytest.raises(ValueError, match="row 1 of the scores has no finite entry"):
        InverseCdfSampler()(NO_INPUT.expand(2, 1), scores)


def test_sampling_processors_are_transformers_warpers_in_generate_order():
    listed = sampling_processors(0.7, top_k=20, top_p=0.9)
    assert [type(p) for p in listed] == [
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        InverseCdfSampler,
    ]
    assert [type(p) for p in sampling_processors()] == [InverseCdfSampler]
    assert len(sampling_processors(1.0, top_k=0, top_p=1.0)) == 1
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sampling_processors(0.0)
    # top-k 2 after the warpers: only the two most likely tokens are ever drawn
    logits = torch.tensor([[3.0, 2.5, 0.0, 1.0]])
    torch.manual_seed(0)
    picked = set(_drawn(logits, sampling_processors(top_k=2)).tolist())
    assert picked == {0, 1}


def _drawn(logits: torch.Tensor, processors, n: int = 200) -> torch.Tensor:
    return processors(NO_INPUT.expand(n, 1), logits.expand(n, -1).clone()).argmax(dim=1)


def test_growing_layer_keeps_the_same_keys_as_the_dynamic_layer():
    torch.manual_seed(0)
    growing, dynamic = growing_cache(), DynamicCache()
    first = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    steps = [first] + [(torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)) for _ in range(80)]
    layer = growing.self_attention_cache.layers
    for keys, values in steps:
        got = growing.self_attention_cache.update(keys, values, 0)
        want = dynamic.update(keys, values, 0)
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert isinstance(layer[0], GrowingLayer)
    assert growing.get_seq_length() == dynamic.get_seq_length() == 85
    assert layer[0]._buffers[0].shape[-2] == 2 * 65  # doubled once past MIN_CAPACITY
    assert MIN_CAPACITY == 64
    # a parent method that replaces the tensors (beam reordering) starts a new buffer
    order = torch.tensor([2, 0, 1])
    growing.self_attention_cache.reorder_cache(order)
    dynamic.reorder_cache(order)
    keys, values = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)
    got = growing.self_attention_cache.update(keys, values, 0)
    want = dynamic.update(keys, values, 0)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_generate_with_the_growing_cache_writes_the_same_tokens():
    model = small_model(make_vocabulary())
    x_num, x_cat = torch.tensor([[0.3], [-1.0], [0.0]]), torch.tensor([[0], [1], [1]])
    options = dict(
        x_num=x_num,
        x_cat=x_cat,
        do_sample=False,
        max_new_tokens=70,  # past the first buffer's 64 positions
        logits_processor=full_length(),
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
    )
    torch.manual_seed(5)
    default = model.generate(**options)  # PromptBart's default: the growing cache
    plain = _plain_cache()  # empty, hence falsy: it must still be the cache generate uses
    torch.manual_seed(5)
    dynamic = model.generate(**options, cache=plain)
    assert type(plain.self_attention_cache.layers[0]) is DynamicLayer
    assert plain.get_seq_length() > MIN_CAPACITY  # filled by that call, past a first buffer
    torch.manual_seed(5)
    naive = naive_generate(model, x_num, x_cat, 70, full_length())
    assert torch.equal(default, dynamic)
    length = min(default.shape[1], naive.shape[1])
    assert torch.equal(default[:, :length], naive[:, :length])  # same draws, no cache at all


def test_generate_keeps_a_cache_the_caller_passes_by_either_name():
    for name in ("cache", "past_key_values"):
        given = _plain_cache()
        arguments = {name: given}
        use_growing_cache(arguments)
        assert arguments == {"cache": given}
    arguments = {}
    use_growing_cache(arguments)
    assert isinstance(arguments["cache"].self_attention_cache.layers, list)
    assert arguments["cache"].self_attention_cache.layer_class_to_replicate is GrowingLayer


def full_length() -> LogitsProcessorList:
    """No ``</patient>`` or padding, then the draw: every row runs to ``max_new_tokens``."""
    return LogitsProcessorList(
        [SuppressTokensLogitsProcessor([EOS_ID, PAD_ID]), *sampling_processors()]
    )


def _plain_cache():
    from transformers.cache_utils import EncoderDecoderCache

    return EncoderDecoderCache(DynamicCache(), DynamicCache())
