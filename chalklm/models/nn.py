"""The fast engine's basic layers: the twins of chalklm/scratch/nn.py, in PyTorch.

Every class of chalklm/models has a twin of the same name in `chalklm.scratch` and the
same parameter names and shapes (docs/contract.md), so one state dict loads into either
engine. The arithmetic is the same too; only the speed differs (fused kernels, bf16,
torch.compile). The speed-ups that change how a layer computes sit behind two seams, each
a module of its own with the plain math here as its fallback: models/decode_weights.py,
which generation opts into, and models/training_speed.py, which the trainer opts into.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chalklm.models import decode_weights, training_speed


class Linear(nn.Module):
    """The article's neuron layer: `y = x @ weight + bias`, `weight` of shape (inputs, outputs).

    (PyTorch's own nn.Linear stores the transpose; we keep the article's orientation so a
    checkpoint reads the same in both engines.)
    """

    def __init__(self, inputs: int, outputs: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(inputs, outputs))
        self.bias = nn.Parameter(torch.zeros(outputs)) if bias else None
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if decode_weights.applies(x):  # one token per sequence, generating on a CPU
            return decode_weights.product(x, *decode_weights.packed(self, (self,)))
        if self.bias is None:
            return x @ self.weight
        # addmm fuses the bias into the matrix product: one kernel instead of two.
        flat = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return flat.view(*x.shape[:-1], self.weight.shape[1])



class LayerNorm(nn.Module):
    """`(x - mean) / sqrt(var + 1e-5) * scale + bias` over the last axis (biased variance)."""

    def __init__(self, dim: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.scale, self.bias, self.eps)



class RMSNorm(nn.Module):
    """`x / sqrt(mean(x^2) + eps) * scale` over the last axis (Llama's; no centering, no bias)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the scale in x's dtype: under bf16 autocast a head's queries arrive in bf16, and
        # PyTorch's fused kernel (which sums in float32 either way) needs both alike
        return F.rms_norm(x, x.shape[-1:], self.scale.to(x.dtype), self.eps)



def norm_for(config, dim: int | None = None) -> nn.Module:
    """The block's normalisation, as `config.norm` picks: LayerNorm or RMSNorm."""
    dim = dim or config.n_embd
    if config.norm == "rmsnorm":
        return RMSNorm(dim, config.norm_eps)
    return LayerNorm(dim, config.bias, config.norm_eps)



def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each number with probability p and scale the survivors by 1 / (1 - p), so the
    expected value is unchanged; the identity when not training. (The trainer's steps
    draw a cheaper mask on a CPU: training_speed.dropout.)"""
    if not training or p == 0.0:
        return x
    if training_speed.active():
        return training_speed.dropout(x, p)
    return F.dropout(x, p, True)



class Dropout(nn.Module):
    """`dropout(x, p)` while training, nothing in eval mode."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
