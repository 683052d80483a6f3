"""A key/value cache for generation that grows by doubling (lesson 08's speed measurements).

``transformers``' ``DynamicLayer`` appends each step's keys and values with ``torch.cat``,
which copies the whole cache every step: for ``n`` steps that is ``n^2 / 2`` token copies
per layer. With classifier-free guidance on a CPU (twice the rows) these copies took about
a sixth of a generation step in this course's profile at batch 256. :class:`GrowingLayer`
writes into a buffer with spare room and doubles it when full, so each token is copied
about twice in all; attention reads a view of the filled part. Same keys, same values, same
tokens.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, EncoderDecoderCache

MIN_CAPACITY = 64  # positions allocated at the first step (prompts + a short patient)


class GrowingLayer(DynamicLayer):
    """``DynamicLayer`` whose ``keys``/``values`` are views of buffers with spare room.

    The parent's other methods (beam reordering, cropping, batch selection, offloading)
    replace ``keys``/``values`` with new tensors or shorter views; :meth:`update` notices a
    tensor that is no longer its buffer and starts a new one from it.
    """

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length, new = self.get_seq_length(), key_states.shape[-2]
        buffers = getattr(self, "_buffers", None)
        if (
            buffers is None
            or self.keys.data_ptr() != buffers[0].data_ptr()  # replaced by a parent method
            or buffers[0].shape[:-2] != key_states.shape[:-2]
            or length + new > buffers[0].shape[-2]
        ):
            capacity = max(MIN_CAPACITY, 2 * (length + new))
            buffers = tuple(
                self._grown(old, states, length, capacity)
                for old, states in ((self.keys, key_states), (self.values, value_states))
            )
            self._buffers = buffers
        buffers[0][..., length : length + new, :] = key_states
        buffers[1][..., length : length + new, :] = value_states
        self.keys = buffers[0][..., : length + new, :]
        self.values = buffers[1][..., : length + new, :]
        return self.keys, self.values

    @staticmethod
    def _grown(old: torch.Tensor, states: torch.Tensor, length: int, capacity: int):
        buffer = states.new_empty(*states.shape[:-2], capacity, states.shape[-1])
        if length:
            buffer[..., :length, :] = old
        return buffer


def growing_cache() -> EncoderDecoderCache:
    """An encoder-decoder cache for ``generate(cache=...)``: growing self-attention layers;
    the cross-attention keys and values are written once, so they keep the usual layer."""
    return EncoderDecoderCache(Cache(layer_class_to_replicate=GrowingLayer), DynamicCache())


def use_growing_cache(generate_kwargs: dict) -> None:
    """Give ``generate``'s keyword arguments a growing cache unless the caller passed one, as
    ``cache`` or as the older ``past_key_values`` (an empty cache is falsy: test for None)."""
    given = generate_kwargs.pop("cache", None)
    if given is None:
        given = generate_kwargs.pop("past_key_values", None)
    generate_kwargs["cache"] = growing_cache() if given is None else given
