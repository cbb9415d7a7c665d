"""A transformer block, the twins of chalklm/scratch/block.py: the MLP, and attention
then MLP, each added back to the residual stream."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from chalklm.models import training_speed
from chalklm.models.attention import MultiHeadAttention
from chalklm.models.nn import Dropout, Linear, norm_for

# chalklm.config.ACTIVATIONS, as PyTorch computes them
ACTIVATE = {
    "gelu": functools.partial(F.gelu, approximate="tanh"),
    "gelu_exact": F.gelu,
    "relu": F.relu,
}



class MLP(nn.Module):
    """The feed-forward part of a block: `proj(activation(fc(x)))`, wider in the middle.

    GPT-2: 4 * n_embd wide, GELU (tanh form; the default). The original Transformer:
    ffn_dim wide, ReLU. `activation` is one of chalklm.config.ACTIVATIONS.
    `gated=True` is Llama's SwiGLU: `proj(silu(gate(x)) * fc(x))`."""

    def __init__(self, n_embd: int, bias: bool = True, hidden: int | None = None,
                 activation: str = "gelu", gated: bool = False):
        super().__init__()
        hidden = hidden or 4 * n_embd
        self.gate = Linear(n_embd, hidden, bias) if gated else None
        self.fc = Linear(n_embd, hidden, bias)
        self.proj = Linear(hidden, n_embd, bias)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return self.proj(ACTIVATE[self.activation](self.fc(x)))
        if self.training and training_speed.active():  # one product (as in project)
            gate, up = training_speed.joint_linear((self.gate, self.fc), x)
        else:
            gate, up = self.gate(x), self.fc(x)
        return self.proj(F.silu(gate) * up)



class Block(nn.Module):
    """A pre-norm residual block (GPT-2): `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
    Built from a GPTConfig: its norm, attention heads and MLP are the config's switches."""

    def __init__(self, config, fused: bool = True):
        super().__init__()
        C = config.n_embd
        self.ln_1 = norm_for(config)
        self.attn = MultiHeadAttention(C, config.n_head, config.bias, config.dropout,
                                       causal=True, fused=fused, n_kv_head=config.n_kv_head,
                                       qk_norm=config.qk_norm, norm_eps=config.norm_eps)
        self.ln_2 = norm_for(config)
        self.mlp = MLP(C, config.bias, config.hidden_size, config.activation,
                       gated=config.mlp == "swiglu")
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache=None, rope=None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.ln_1(x), cache=cache, rope=rope))
        return x + self.dropout(self.mlp(self.ln_2(x)))
