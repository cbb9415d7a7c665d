"""Attention in the glass box: each token looks at the others and takes a weighted mix.

A token's query is compared with every token's key (a dot product: how well they match);
softmax turns those scores into weights that add up to 1; the output is the weighted sum
of the values. GPT adds the causal mask (a token may not look at later tokens), and
multi-head attention runs several such lookups side by side on slices of the vectors.
Llama's variations are switches here: grouped-query attention (fewer key/value heads than
query heads, `repeat_heads`), RMSNorm on queries and keys (`qk_norm`), and rotary
positions (`rope`: queries and keys turned by their position, scratch/rope.py).
"""

from __future__ import annotations

import math

import numpy as np

from chalklm.scratch.autograd import Tensor
from chalklm.scratch.nn import Linear, Module, RMSNorm
from chalklm.scratch.probability import dropout, softmax
from chalklm.scratch.rope import rotate


def causal_mask(queries: int, keys: int) -> np.ndarray:
    """(queries, keys) booleans, True where the query may look at the key: itself and the
    tokens before it (PyTorch's attn_mask convention, the fast engine's too).

    With fewer queries than keys (the newest tokens of a longer sequence) query i sits at
    position keys - queries + i, so it may look at keys 0 .. keys - queries + i.
    """
    return np.tril(np.ones((queries, keys), dtype=bool), k=keys - queries)


def repeat_heads(x: Tensor, group: int) -> Tensor:
    """(B, Hkv, T, hs) -> (B, Hkv * group, T, hs): grouped-query attention's sharing, where
    query head h reads key/value head h // group (group = 1: every head has its own)."""
    if group == 1:
        return x
    out = Tensor._result(np.repeat(x.data, group, axis=1), (x,), "repeat_heads")

    def backward(grad):
        # each key/value head was copied to `group` query heads: their gradients add up
        B, H, T, hs = grad.shape
        x._add_grad(grad.reshape(B, H // group, group, T, hs).sum(axis=2))

    out._backward = backward
    return out


class SelfAttention(Module):
    """softmax(q @ k.T / sqrt(head_size)) @ v, on heads already split apart.

    q (B, H, Tq, hs); k and v (B, H, Tk, hs). `causal` hides later positions (GPT);
    `padding_mask` (B, Tk), True where a key is padding, hides those keys (for the
    Transformer's encoder and its CrossAttention). Dropout applies to the weights.
    """

    def __init__(self, dropout: float = 0.0):
        self.dropout = dropout

    def forward(self, q: Tensor, k: Tensor, v: Tensor, causal: bool = False,
                padding_mask=None, keep=None) -> Tensor:
        """`keep`, if given, is a ready mask (True = may look), e.g. the KV cache's."""
        scores = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
        if keep is None:
            keep = self._keep_mask(q.shape[-2], k.shape[-2], causal, padding_mask)
        if keep is not None:  # hidden where the mask is False: e^-inf = 0, no weight at all
            scores = scores.masked_fill(~keep, -np.inf)
        weights = dropout(softmax(scores, axis=-1), self.dropout, self.training)
        self.last_weights = weights.data  # kept for anyone who wants to look at them
        return weights @ v

    @staticmethod
    def _keep_mask(queries: int, keys: int, causal: bool, padding_mask) -> np.ndarray | None:
        """Booleans (.., Tq, Tk), True where a query may look at a key; None for all."""
        mask = causal_mask(queries, keys) if causal else None
        if padding_mask is not None:
            keep = ~np.asarray(padding_mask, dtype=bool)[:, None, None, :]
            mask = keep if mask is None else mask & keep
        return mask


class MultiHeadAttention(Module):
    """Several attention heads side by side: head h uses columns h*hs:(h+1)*hs.

    `forward(x)` is self-attention (x attends to itself, masked causally if `causal`);
    `forward(x, context=memory)` takes keys and values from another sequence, which is
    all the Transformer's CrossAttention needs. Weights: query, key, value, proj.
    `n_kv_head` < n_head shares each key/value head among n_head / n_kv_head query heads
    (key and value are then narrower: n_kv_head * hs outputs); `qk_norm` adds q_norm and
    k_norm (RMSNorm over each head's hs numbers).
    """

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0,
                 causal: bool = True, n_kv_head: int | None = None, qk_norm: bool = False,
                 norm_eps: float = 1e-5):
        self.n_head, self.n_kv_head = n_head, n_kv_head or n_head
        self.head_size = n_embd // n_head
        self.causal = causal
        self.query = Linear(n_embd, n_embd, bias)
        self.key = Linear(n_embd, self.n_kv_head * self.head_size, bias)
        self.value = Linear(n_embd, self.n_kv_head * self.head_size, bias)
        self.q_norm = RMSNorm(self.head_size, norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(self.head_size, norm_eps) if qk_norm else None
        self.attention = SelfAttention(dropout)
        self.proj = Linear(n_embd, n_embd, bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, heads * hs) -> (B, heads, T, hs): each head gets its own slice of every vector."""
        B, T, C = x.shape
        return x.reshape(B, T, C // self.head_size, self.head_size).transpose(0, 2, 1, 3)

    def merge_heads(self, y: Tensor) -> Tensor:
        """(B, H, T, hs) -> (B, T, H*hs): the heads' outputs laid side by side again."""
        B, H, T, hs = y.shape
        return y.transpose(0, 2, 1, 3).reshape(B, T, H * hs)

    def forward(self, x: Tensor, context: Tensor | None = None, padding_mask=None,
                cache=None, rope=None) -> Tensor:
        """`cache` (a `kv_cache.LayerCache`, generation only): x holds just the new tokens;
        their keys and values join the cached ones and the queries attend over all.
        `rope`: the rotary table's rows for these tokens' positions (scratch/rope.py)."""
        source = x if context is None else context
        q = self.split_heads(self.query(x))
        k = self.split_heads(self.key(source))
        v = self.split_heads(self.value(source))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rotate(q, rope), rotate(k, rope)
        if cache is not None:  # the cache keeps n_kv_head heads: the shared ones, once
            k, v = cache.store(k, v)
        group = self.n_head // self.n_kv_head
        k, v = repeat_heads(k, group), repeat_heads(v, group)
        if cache is not None:
            return self.proj(self.merge_heads(self.attention(q, k, v, keep=cache.keep)))
        y = self.attention(q, k, v, causal=self.causal and context is None,
                           padding_mask=padding_mask)
        return self.proj(self.merge_heads(y))
