"""Where each token sits: a vector per position, added to the token's own vector.

Attention by itself ignores order (it is a weighted sum), so the model is told each
token's position. `PositionalEmbedding` learns one vector per position (GPT-2);
`PositionalEncoding` uses fixed sine and cosine waves (the original Transformer).
"""

from __future__ import annotations

import math

import numpy as np

from chalklm.scratch import autograd
from chalklm.scratch.autograd import Tensor
from chalklm.scratch.nn import Module, Parameter


class PositionalEmbedding(Module):
    """Learned positions: row t of `weight` (block_size, dim) is added to the token at t."""

    def __init__(self, block_size: int, dim: int):
        self.weight = Parameter(autograd.rng().normal(0.0, 0.02, size=(block_size, dim)))

    def forward(self, T: int) -> Tensor:
        return self.weight[:T]


def sinusoidal_table(length: int, dim: int) -> np.ndarray:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)).

    Each pair of columns is a wave of its own wavelength, from 2 pi up to 10000 * 2 pi,
    so every position gets a distinct pattern and nearby positions similar ones.
    """
    position = np.arange(length, dtype=np.float64)[:, None]
    rate = np.exp(-math.log(10000.0) * np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.zeros((length, dim), dtype=np.float64)
    table[:, 0::2] = np.sin(position * rate)
    table[:, 1::2] = np.cos(position * rate)[:, : dim // 2]
    return table.astype(np.float32)


class PositionalEncoding(Module):
    """Fixed sine/cosine positions: computed once, never trained, not in the state_dict."""

    def __init__(self, block_size: int, dim: int):
        self.table = sinusoidal_table(block_size, dim)  # a plain array, not a Parameter

    def forward(self, T: int) -> Tensor:
        return Tensor(self.table[:T])
