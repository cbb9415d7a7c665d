"""Positions, the twins of chalklm/scratch/positional.py: learned rows or fixed sines."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionalEmbedding(nn.Module):
    """Learned positions: row `t` of `weight` (block_size, dim) is added to the token at t."""

    def __init__(self, block_size: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(block_size, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, T: int) -> torch.Tensor:
        return self.weight[:T]



def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d))."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    rate = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)[:, : dim // 2]
    return table.float()



class PositionalEncoding(nn.Module):
    """Fixed sine/cosine positions (not trained, so not in the state dict)."""

    def __init__(self, block_size: int, dim: int):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(block_size, dim), persistent=False)

    def forward(self, T: int) -> torch.Tensor:
        return self.table[:T]
