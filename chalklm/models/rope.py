"""Rotary positions (RoPE), the twins of chalklm/scratch/rope.py: the same table, the
same turn of each pair of numbers."""

from __future__ import annotations

import torch
from torch import nn

from chalklm.scratch.rope import rope_table


class RotaryEmbedding(nn.Module):
    """Rotary positions: the table of cos and sin of every position's angles
    (chalklm/scratch/rope.py `rope_table`), not trained, so not in the state dict."""

    def __init__(self, block_size: int, head_size: int, theta: float = 10000.0):
        super().__init__()
        self.register_buffer("table", torch.from_numpy(rope_table(block_size, head_size, theta)),
                             persistent=False)

    def forward(self, T: int) -> torch.Tensor:
        return self.table[:T]



def rotate(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Turn every pair (x[i], x[i + hs/2]) of x (B, H, T, hs) by its angle; rows (T or
    B x T, hs) hold cos then sin (as chalklm/scratch/rope.py `rotate`)."""
    if rows.ndim == 3:  # per batch row (left-padded prompts): broadcast over the heads
        rows = rows[:, None]
    half = x.shape[-1] // 2
    cos, sin = rows[..., :half].to(x.dtype), rows[..., half:].to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
