"""Attention, the twins of chalklm/scratch/attention.py: the causal mask, one head's
scaled dot-product attention, several heads side by side (grouped-query attention and
qk-norm among them)."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from chalklm.models import decode_weights, training_speed
from chalklm.models.nn import Linear, RMSNorm, dropout
from chalklm.models.rope import rotate


def causal_mask(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """(queries, keys) booleans, True where query i (the last `queries` of `keys` positions)
    may look at key j: j <= i + (keys - queries), as the glass box's `causal_mask` and
    PyTorch's attn_mask. Made once per shape (`_kept_causal_mask`) and read by every layer
    and step; under torch.compile made in the graph, which folds it into its kernels."""
    if torch.compiler.is_compiling():
        return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)
    return _kept_causal_mask(queries, keys, device)



@functools.lru_cache(maxsize=64)
def _kept_causal_mask(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """An ordinary tensor even when first asked for under inference_mode, so that training
    may save it for the backward pass later."""
    with torch.inference_mode(False):
        return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)



def repeat_heads(x: torch.Tensor, group: int) -> torch.Tensor:
    """(B, Hkv, T, hs) -> (B, Hkv * group, T, hs): query head h reads key/value head
    h // group (grouped-query attention)."""
    return x if group == 1 else x.repeat_interleave(group, dim=1)



class SelfAttention(nn.Module):
    """Scaled dot-product attention over already-split heads: `softmax(q @ k.T / sqrt(hs)) @ v`.

    q (B, H, Tq, hs), k and v (B, H, Tk, hs), or fewer heads of k and v (grouped-query
    attention: each serves H / their heads query heads). `causal` hides later positions (GPT);
    `padding_mask` (B, Tk), True where a key is padding, hides those keys (the
    Transformer's encoder and its CrossAttention, where k and v come from another
    sequence). `fused=True` calls PyTorch's fused kernel; `fused=False` spells out the
    math (mask, softmax, weights @ v) and gives the same numbers, only slower.
    """

    def __init__(self, dropout: float = 0.0, fused: bool = True):
        super().__init__()
        self.dropout = dropout
        self.fused = fused

    def forward(self, q, k, v, causal: bool = False, padding_mask=None,
                keep=None) -> torch.Tensor:
        """`keep`, if given, is a ready mask (True = may look), e.g. the KV cache's."""
        p = self.dropout if self.training else 0.0
        mask = self._keep_mask(q, k, causal, padding_mask) if keep is None else keep
        if self.fused:
            # PyTorch's is_causal aligns the mask top-left; ours is bottom-right (tril(Tk - Tq)),
            # so the flag is only the same mask when queries and keys are equally many.
            is_causal = (causal and padding_mask is None and keep is None
                         and q.shape[-2] == k.shape[-2])
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if is_causal else mask, dropout_p=p,
                is_causal=is_causal, enable_gqa=k.shape[1] != q.shape[1],
            )
        group = q.shape[1] // k.shape[1]
        k, v = repeat_heads(k, group), repeat_heads(v, group)
        if keep is None and padding_mask is None and causal and \
                training_speed.halves_apply(q, k):  # the trainer's: fewer scores (see there)
            return training_speed.causal_halves(lambda q, k, v: self._math(
                q, k, v, causal_mask(q.shape[-2], k.shape[-2], q.device), p), q, k, v)
        return self._math(q, k, v, mask, p)

    def _math(self, q, k, v, mask, p: float) -> torch.Tensor:
        """softmax(q @ k.T / sqrt(hs), hidden where mask is False) @ v, spelled out."""
        # q / sqrt(hs) @ k.T: scaling q (T x hs numbers) costs less than scaling the T x T scores
        scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
        if mask is not None:
            # + 0 where the mask allows, + (-inf) where it hides: the numbers of
            # where(mask, scores, -inf), but torch.compile makes a cheaper softmax of it
            # (measured: a 6-layer, 384-wide bf16 training step 453 -> 427 ms, 2 CPU cores)
            scores = scores + torch.where(mask, 0.0, float("-inf")).to(scores.dtype)
        weights = dropout(torch.softmax(scores, dim=-1), p, self.training)
        return weights @ v

    @staticmethod
    def _keep_mask(q, k, causal, padding_mask):
        """Boolean (.., Tq, Tk) mask, True where a query may look at a key; None for all."""
        mask = None
        if causal:
            mask = causal_mask(q.shape[-2], k.shape[-2], q.device)
        if padding_mask is not None:
            keep = ~padding_mask[:, None, None, :]
            mask = keep if mask is None else mask & keep
        return mask



class MultiHeadAttention(nn.Module):
    """Several heads side by side: head h uses columns h*hs:(h+1)*hs of query/key/value.

    `forward(x)` is self-attention; `forward(x, context=memory)` takes keys and values
    from another sequence (the Transformer's CrossAttention reuses this class as is).
    `n_kv_head` < n_head: grouped-query attention (key and value n_kv_head * hs wide);
    `qk_norm`: RMSNorm q_norm and k_norm over each head's numbers.
    """

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0,
                 causal: bool = True, fused: bool = True, n_kv_head: int | None = None,
                 qk_norm: bool = False, norm_eps: float = 1e-5):
        super().__init__()
        self.n_head, self.n_kv_head = n_head, n_kv_head or n_head
        self.head_size = n_embd // n_head
        self.causal = causal
        self.query = Linear(n_embd, n_embd, bias)
        self.key = Linear(n_embd, self.n_kv_head * self.head_size, bias)
        self.value = Linear(n_embd, self.n_kv_head * self.head_size, bias)
        self.q_norm = RMSNorm(self.head_size, norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(self.head_size, norm_eps) if qk_norm else None
        self.attention = SelfAttention(dropout, fused)
        self.proj = Linear(n_embd, n_embd, bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, heads * hs) -> (B, heads, T, hs)."""
        B, T, C = x.shape
        return x.view(B, T, C // self.head_size, self.head_size).transpose(1, 2)

    def forward(self, x, context=None, padding_mask=None, cache=None, rope=None) -> torch.Tensor:
        """`cache` (a `kv_cache.LayerCache`, generation only): x holds just the new tokens;
        their keys and values join the cached ones and the queries attend over all.
        `rope`: the rotary table's rows for these tokens' positions."""
        q, k, v = (self.split_heads(t) for t in self.project(x, context))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rotate(q, rope), rotate(k, rope)
        if cache is None:
            y = self.attention(q, k, v, causal=self.causal and context is None,
                               padding_mask=padding_mask)
        else:  # the cache keeps n_kv_head heads: the shared ones, once
            k, v = cache.store(k, v)  # in the cache's dtype, which may be wider than x's
            y = self.attention(q.to(k.dtype), k, v, keep=cache.keep).to(x.dtype)
        B, _, T, _ = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))

    def project(self, x, context=None):
        """Queries from x; keys and values from `context` (or from x: self-attention).
        Generating (decode_weights) and training (training_speed), the products that read
        the same input run as one, their weights side by side: the same numbers, sooner."""
        layers = (self.query, self.key, self.value)
        if context is None and decode_weights.applies(x):  # one token per sequence, CPU
            joined = decode_weights.product(x, *decode_weights.packed(self, layers))
            return joined.split([layer.weight.shape[1] for layer in layers], dim=-1)
        if self.training and training_speed.active():
            if context is None:
                return training_speed.joint_linear(layers, x)
            return (self.query(x), *training_speed.joint_linear(layers[1:], context))
        source = x if context is None else context
        return tuple(layer(s) for layer, s in zip(layers, (x, source, source)))
