"""The fast engine's KV cache: the glass box's (chalklm/scratch/kv_cache.py), in torch.

Same contents: for every layer, keys and values of shape (batch, heads, max_len, head_size),
preallocated once and filled from the left; `length` columns are filled. Same masks (the
glass box's `visible` and `position_ids`, computed in NumPy once per prompt). What makes
it fast is what a decode step does not do: it allocates nothing (a new token's key and
value are copied into the preallocated column), and with no padding it builds no mask at
all (a single new token may look at every filled column).

It serves two models: a GPT's blocks (generation) and the Transformer's decoder layers
(translation: their self-attention; the cross-attention's keys and values of the source
are computed once per sentence, chalklm/models/transformer.py). Beam search adds one
thing the glass box's cache has no need of (the glass box translates without a cache):
`select`, which reorders the rows when each new beam continues an earlier one.
"""

from __future__ import annotations

import numpy as np
import torch

from chalklm.errors import ShapeError
from chalklm.scratch.kv_cache import position_ids, visible


class LayerCache:
    """One layer's keys and values, (batch, heads, max_len, hs) each; `KVCache.begin` sets
    where the new columns start and `keep` (True where a query may look at a key, torch's
    mask convention; None: everywhere). No link back to the KVCache: no reference cycle,
    so a finished cache's memory is freed at once, not when Python's cycle collector runs."""

    __slots__ = ("keys", "values", "start", "keep")

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.keys, self.values = keys, values
        self.start, self.keep = 0, None

    def store(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new columns; return all filled ones (batch, heads, start + T, hs)."""
        start = self.start
        end = start + k.shape[-2]
        self.keys[:, :, start:end] = k
        self.values[:, :, start:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end]


def cache_shape(config, batch: int, max_len: int | None) -> tuple[int, ...]:
    """(layers, batch, key/value heads, columns, head_size) for a GPT (its blocks; columns
    default to block_size) or a Transformer (its decoder layers; default max_len)."""
    if config.model_type == "transformer":
        return (config.n_layer_dec, batch, config.n_head, max_len or config.max_len,
                config.head_size)
    # grouped-query attention: only the n_kv_head heads of keys and values are kept
    return (config.n_layer, batch, config.kv_heads, max_len or config.block_size,
            config.head_size)


class KVCache:
    """Every layer's keys and values for `batch` rows, `max_len` columns (`cache_shape`).

    `keys` and `values` hold all the `rows` allocated; the layers use the first `batch`
    of them (all, unless `select` kept fewer)."""

    def __init__(self, config, batch: int, max_len: int | None = None,
                 dtype: torch.dtype = torch.float32, device="cpu"):
        shape = cache_shape(config, batch, max_len)
        self.max_len = shape[3]
        # empty, not zeros: a column is always written before anything reads it
        self.keys = torch.empty(shape, dtype=dtype, device=device)
        self.values = torch.empty(shape, dtype=dtype, device=device)
        self.device, self.rows = self.keys.device, batch
        self._spare = None  # for `select`: another pair of the same size, made on first use
        self._use_rows(batch)
        self.reset()

    def _use_rows(self, batch: int) -> None:
        """The layers see rows 0..batch-1 of the allocated ones."""
        self.batch = batch
        self.layers = [LayerCache(self.keys[i, :batch], self.values[i, :batch])
                       for i in range(len(self.keys))]

    def reset(self, pad=None) -> None:
        """Forget everything (every allocated row is in use again); `pad` (batch,) counts
        each row's padding columns (or None)."""
        self.length = 0
        if self.batch != self.rows:
            self._use_rows(self.rows)
        self._set_pad(pad)

    def _set_pad(self, pad) -> None:
        """Each row's padding columns, and the one-token mask made from them once."""
        self.pad = None if pad is None or not np.any(pad) else np.asarray(pad, dtype=np.int64)
        self.padded = self.pad is not None
        self._decode_keep = self._pad = None  # with padding: made once per prompt batch
        if self.padded:
            row_keep = np.arange(self.max_len)[None, :] >= self.pad[:, None]
            self._decode_keep = torch.from_numpy(row_keep[:, None, None, :]).to(self.device)
            self._pad = torch.from_numpy(self.pad[:, None]).to(self.device)  # (batch, 1)

    def begin(self, T: int, table: torch.Tensor) -> torch.Tensor:
        """Get ready for T new columns: tell every layer where they start and what they may
        look at; return their position vectors from `table`."""
        start = self.length
        if start + T > self.max_len:
            raise ShapeError(f"the cache holds {self.max_len} columns; {start} are "
                             f"filled and {T} more do not fit")
        # One new token touches only tensors and ints here, so torch.compile can trace it.
        if not self.padded:  # one new token: no mask at all; a prompt: causal
            keep = None if T == 1 else torch.from_numpy(visible(None, start, T)).to(self.device)
            positions = table[start:start + T]
        elif T == 1:  # a real token looks at every real column so far; its position: start - pad
            keep = self._decode_keep[..., :start + 1]
            positions = table[start - self._pad]
        else:
            keep = torch.from_numpy(visible(self.pad, start, T)).to(self.device)
            ids = torch.from_numpy(position_ids(self.pad, start, T)).to(self.device)
            positions = table[ids]
        for layer in self.layers:
            layer.start, layer.keep = start, keep
        return positions

    def advance(self, T: int) -> None:
        """The T new columns are written in every layer: they count as filled."""
        self.length += T

    def select(self, parent) -> None:
        """Beam search's reordering: row i now holds what row parent[i] held, in every
        layer (an earlier row may live on in several rows, or in none). Fewer rows than
        before is fine (the first len(parent) allocated ones are used from here on), more
        than were allocated is not.

        The filled columns are gathered, for all layers at once, into a spare pair of
        tensors (made on the first call), which then become `keys` and `values`: a step
        allocates nothing and copies each number once. (Gathering into a new tensor and
        copying back costs 2-5x more: measured 200 rows, 3 layers, 256 wide, 2-core CPU.)"""
        parent = np.asarray(parent, dtype=np.int64)
        n = len(parent)
        if n > self.rows:
            raise ShapeError(f"the cache has {self.rows} rows; {n} do not fit")
        if not np.array_equal(parent, np.arange(n)):  # else the rows are already in place
            if self._spare is None:
                self._spare = (torch.empty_like(self.keys), torch.empty_like(self.values))
            keys, values = self._spare
            index, end = torch.from_numpy(parent).to(self.device), self.length
            torch.index_select(self.keys[:, :, :, :end], 1, index, out=keys[:, :n, :, :end])
            torch.index_select(self.values[:, :, :, :end], 1, index, out=values[:, :n, :, :end])
            self._spare = (self.keys, self.values)
            self.keys, self.values = keys, values
            self._use_rows(n)
        elif n != self.batch:
            self._use_rows(n)
        if self.padded:
            self._set_pad(self.pad[parent])
