"""The Transformer block: attention, then a small neural network, each on a residual path.

Pre-norm, as GPT-2: each part reads a LayerNorm-ed copy of x and adds its result back
to x (the residual connection), so the signal and its gradient have a direct route
through every block.
"""

from __future__ import annotations

from chalklm.scratch.attention import MultiHeadAttention
from chalklm.scratch.autograd import Tensor
from chalklm.scratch.nn import Dropout, LayerNorm, Linear, Module


class MLP(Module):
    """The feed-forward part of a block: proj(activation(fc(x))), wider in the middle.

    GPT-2: 4 * n_embd wide, GELU (the default; "gelu_exact" is its erf form). The original
    Transformer: ffn_dim wide, ReLU (max(0, x))."""

    def __init__(self, n_embd: int, bias: bool = True, hidden: int | None = None,
                 activation: str = "gelu"):
        hidden = hidden or 4 * n_embd
        self.fc = Linear(n_embd, hidden, bias)
        self.proj = Linear(hidden, n_embd, bias)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        # Tensor.gelu, .gelu_exact or .relu: the activations' names (chalklm.config.ACTIVATIONS)
        return self.proj(getattr(self.fc(x), self.activation)())


class Block(Module):
    """x = x + dropout(attn(ln_1(x))); x = x + dropout(mlp(ln_2(x)))."""

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0,
                 activation: str = "gelu"):
        self.ln_1 = LayerNorm(n_embd, bias=bias)
        self.attn = MultiHeadAttention(n_embd, n_head, bias, dropout, causal=True)
        self.ln_2 = LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, bias, activation=activation)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, cache=None) -> Tensor:
        x = x + self.dropout(self.attn(self.ln_1(x), cache=cache))
        return x + self.dropout(self.mlp(self.ln_2(x)))
