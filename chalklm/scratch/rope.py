"""Rotary positions (RoPE, Llama's): each query and key is turned by an angle that grows
with its position, instead of a position vector being added to x.

A head's vector of hs numbers is read as hs/2 pairs, pair i being (x[i], x[i + hs/2]), as
Llama's Hugging Face weights lay it out. At position t, pair i is turned by the angle
t * theta^(-2i/hs): the first pairs spin fast, the last ones slowly. Turning a query at t
and a key at s changes their dot product only by the difference t - s of the angles, so
attention's scores see how far apart two tokens are, not where they are. Nothing here is
learned, so nothing lands in the state dict.
"""

from __future__ import annotations

import numpy as np

from chalklm.scratch.autograd import Tensor


def rope_table(length: int, head_size: int, theta: float = 10000.0) -> np.ndarray:
    """(length, head_size): row t is cos(t w_i) for each pair i, then sin(t w_i),
    w_i = theta^(-2i / head_size)."""
    half = head_size // 2
    rate = theta ** (-np.arange(half, dtype=np.float64) * 2 / head_size)
    angle = np.arange(length, dtype=np.float64)[:, None] * rate
    return np.concatenate([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)


def _heads_axis(rows: np.ndarray) -> np.ndarray:
    """Rows (T, hs) broadcast over (B, H, T, hs) as they are; rows per batch row (B, T, hs)
    (left-padded prompts count positions from their own start) get a heads axis."""
    return rows[:, None] if rows.ndim == 3 else rows


def rotate(x: Tensor, rows) -> Tensor:
    """Turn every pair (x1, x2) of x (B, H, T, hs) by its angle: rows (T or B x T, hs) hold
    cos then sin of the angles (`rope_table`'s rows for these positions).

        out1 = x1 cos - x2 sin
        out2 = x1 sin + x2 cos
    """
    rows = _heads_axis(np.asarray(rows.data if isinstance(rows, Tensor) else rows))
    half = x.shape[-1] // 2
    cos, sin = rows[..., :half].astype(x.dtype), rows[..., half:].astype(x.dtype)
    x1, x2 = x.data[..., :half], x.data[..., half:]
    out = Tensor._result(np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1),
                         (x,), "rotate")

    def backward(grad):
        # a rotation's derivative is the same rotation; sent back it turns the other way:
        # d/dx1 = g1 cos + g2 sin, d/dx2 = -g1 sin + g2 cos
        g1, g2 = grad[..., :half], grad[..., half:]
        x._add_grad(np.concatenate([g1 * cos + g2 * sin, g2 * cos - g1 * sin], -1))

    out._backward = backward
    return out


class RotaryEmbedding:
    """The angles of every position up to block_size, made once (not a Module: no weights)."""

    def __init__(self, block_size: int, head_size: int, theta: float = 10000.0):
        self.table = rope_table(block_size, head_size, theta)

    def __call__(self, T: int) -> np.ndarray:
        return self.table[:T]
