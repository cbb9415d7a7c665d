"""The KV cache: what a GPT keeps of the tokens it has already read.

Generating writes one token at a time, and each new token attends to all the tokens
before it. Without a cache, every step re-reads the whole text: each earlier token's key
and value vectors are computed again, though they never change (a token's key depends
only on that token and the ones before it; causal attention never looks ahead). The
cache keeps them. Then a step costs one column of work: the new token's query, key and
value; its key and value are written into the cache; its query is compared with every
cached key.

What the cache holds, for every layer, is two arrays of shape

    (batch, kv_heads, max_len, head_size)      keys[layer], values[layer]

filled from the left: column t holds the key (or value) vector, for every head, of the
token at column t. `length` says how many columns are filled. Nothing else is kept: not
the tokens, not the queries (a query is used once, by its own token), not the attention
weights.

Prompts of different lengths share one cache by left-padding: row b's first `pad[b]`
columns hold padding. Real tokens never look at those columns (the mask hides them), and
each row counts its positions from its first real token, so every row computes exactly
what it would compute alone.

The fast engine's cache (chalklm/models/kv_cache.py) holds the same arrays as torch
tensors and uses the two mask functions below, so both engines mask alike.
"""

from __future__ import annotations

import numpy as np

from chalklm.errors import ShapeError
from chalklm.scratch.autograd import Tensor


def position_ids(pad: np.ndarray, start: int, T: int) -> np.ndarray:
    """(batch, T) positions of columns start..start+T-1: each row counts from its first real
    token (column pad[b] is position 0); padding columns get 0."""
    columns = np.arange(start, start + T)[None, :]
    return np.maximum(columns - np.asarray(pad)[:, None], 0)


def visible(pad: np.ndarray | None, start: int, T: int) -> np.ndarray | None:
    """Booleans (batch or 1, 1, T, start+T): True where the query at column start+i may
    look at the key at column j. Causal (j <= start+i); a real token never sees padding;
    a padding query sees the padding before it (its output is never used, but it must
    not be an empty softmax). None when there is nothing to hide: one new token and no
    padding (it may look at every cached column)."""
    end = start + T
    if pad is None and T == 1:
        return None
    query_col = np.arange(start, end)[:, None]
    key_col = np.arange(end)[None, :]
    keep = (key_col <= query_col)[None, None]  # (1, 1, T, end)
    if pad is not None:
        pad = np.asarray(pad)[:, None, None, None]
        key_is_pad = key_col[None, None] < pad
        query_is_pad = query_col[None, None] < pad
        keep = keep & (~key_is_pad | query_is_pad)
    return keep


class LayerCache:
    """One layer's share of the cache: its keys and values, (batch, heads, max_len, hs).

    `KVCache.begin` tells every layer where the new columns start and which keys each new
    query may look at (`keep`: True = may look, as `causal_mask`; None: every column)."""

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        self.keys, self.values = keys, values
        self.start, self.keep = 0, None

    def store(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write the new tokens' keys and values after the cached ones; return all of them,
        (batch, heads, start + T, hs), for the new queries to attend over."""
        start = self.start
        end = start + k.shape[-2]
        self.keys[:, :, start:end] = k.data
        self.values[:, :, start:end] = v.data
        return Tensor(self.keys[:, :, :end]), Tensor(self.values[:, :, :end])


class KVCache:
    """Every layer's keys and values for a batch of rows, preallocated to `max_len` columns.

    Use: `cache = KVCache(config, batch)`, `cache.reset(pad)`, then `model(ids, cache=cache)`
    for the (padded) prompts and once per new token; each call appends its columns.
    """

    def __init__(self, config, batch: int, max_len: int | None = None, dtype=np.float32):
        self.max_len = max_len or config.block_size
        # grouped-query attention: only the n_kv_head heads of keys and values are kept
        shape = (config.n_layer, batch, config.kv_heads, self.max_len, config.head_size)
        self.keys = np.zeros(shape, dtype=dtype)
        self.values = np.zeros(shape, dtype=dtype)
        self.layers = [LayerCache(self.keys[i], self.values[i])
                       for i in range(config.n_layer)]
        self.batch = batch
        self.reset()

    def reset(self, pad=None) -> None:
        """Forget everything; `pad` (batch,) counts each row's padding columns (or None)."""
        self.length = 0
        self.pad = None if pad is None or not np.any(pad) else np.asarray(pad, dtype=np.int64)

    def begin(self, T: int, table: Tensor) -> Tensor:
        """Get ready for T new columns: tell every layer where they start and what they may
        look at; return their position vectors from `table` (one row per position)."""
        if self.length + T > self.max_len:
            raise ShapeError(f"the cache holds {self.max_len} columns; {self.length} are "
                             f"filled and {T} more do not fit")
        keep = visible(self.pad, self.length, T)
        for layer in self.layers:
            layer.start, layer.keep = self.length, keep
        if self.pad is None:
            return table[self.length:self.length + T]
        return table[position_ids(self.pad, self.length, T)]

    def advance(self, T: int) -> None:
        """The T new columns are written in every layer: they count as filled."""
        self.length += T
