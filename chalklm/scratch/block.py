"""The Transformer block: attention, then a small neural network, each on a residual path.

Pre-norm, as GPT-2: each part reads a normalised copy of x and adds its result back to x
(the residual connection), so the signal and its gradient have a direct route through
every block. The norm is LayerNorm (GPT-2) or RMSNorm (Llama), as the config says.
"""

from __future__ import annotations

from chalklm.scratch.attention import MultiHeadAttention
from chalklm.scratch.autograd import Tensor
from chalklm.scratch.nn import Dropout, Linear, Module, norm_for


class MLP(Module):
    """The feed-forward part of a block: proj(activation(fc(x))), wider in the middle.

    GPT-2: 4 * n_embd wide, GELU (the default; "gelu_exact" is its erf form). The original
    Transformer: ffn_dim wide, ReLU (max(0, x)).
    `gated=True` is Llama's SwiGLU: proj(silu(gate(x)) * fc(x)). A second product of x, the
    gate, decides through SiLU how much of each hidden number passes."""

    def __init__(self, n_embd: int, bias: bool = True, hidden: int | None = None,
                 activation: str = "gelu", gated: bool = False):
        hidden = hidden or 4 * n_embd
        self.gate = Linear(n_embd, hidden, bias) if gated else None
        self.fc = Linear(n_embd, hidden, bias)
        self.proj = Linear(hidden, n_embd, bias)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        if self.gate is not None:
            return self.proj(self.gate(x).silu() * self.fc(x))
        # Tensor.gelu, .gelu_exact or .relu: the activations' names (chalklm.config.ACTIVATIONS)
        return self.proj(getattr(self.fc(x), self.activation)())


class Block(Module):
    """x = x + dropout(attn(ln_1(x))); x = x + dropout(mlp(ln_2(x))). Built from a GPTConfig."""

    def __init__(self, config):
        C = config.n_embd
        self.ln_1 = norm_for(config)
        self.attn = MultiHeadAttention(C, config.n_head, config.bias, config.dropout,
                                       causal=True, n_kv_head=config.n_kv_head,
                                       qk_norm=config.qk_norm, norm_eps=config.norm_eps)
        self.ln_2 = norm_for(config)
        self.mlp = MLP(C, config.bias, config.hidden_size, config.activation,
                       gated=config.mlp == "swiglu")
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor, cache=None, rope=None) -> Tensor:
        x = x + self.dropout(self.attn(self.ln_1(x), cache=cache, rope=rope))
        return x + self.dropout(self.mlp(self.ln_2(x)))
