"""GPT in the fast engine: token + position vectors, a stack of residual blocks, logits.

Read it next to `chalklm.scratch.models.GPT`: the same pieces, the same parameter names
(docs/contract.md), the same arithmetic; this one runs on PyTorch kernels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from chalklm.config import GPTConfig
from chalklm.errors import ShapeError
from chalklm.models import decode_weights
from chalklm.models.block import Block
from chalklm.models.loss import cross_entropy
from chalklm.models.nn import Dropout, Linear, norm_for
from chalklm.models.positional import PositionalEmbedding, PositionalEncoding
from chalklm.models.rope import RotaryEmbedding


class GPT(nn.Module):
    """The decoder-only Transformer. `logits, loss = model(ids, targets=None)`."""

    def __init__(self, config: GPTConfig, fused_attention: bool = True):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.token_embedding = nn.Embedding(config.vocab_size, C)
        if config.positional == "learned":
            self.position_embedding = PositionalEmbedding(config.block_size, C)
        elif config.positional == "sinusoidal":
            self.position_encoding = PositionalEncoding(config.block_size, C)
        else:  # "rope": no vector added to x; each block turns its queries and keys
            self.rope = RotaryEmbedding(config.block_size, config.head_size, config.rope_theta)
        self.dropout = Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, fused_attention)
                                    for _ in range(config.n_layer))
        self.ln_f = norm_for(config)
        self.lm_head = None if config.tie_embeddings else Linear(C, config.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) everywhere, residual projections scaled down
        by 1/sqrt(2 n_layer) so the residual stream's variance does not grow with depth."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith("scale"):
                nn.init.ones_(param)
            elif name.endswith("bias"):
                nn.init.zeros_(param)
            elif name.endswith(("attn.proj.weight", "mlp.proj.weight")):
                nn.init.normal_(param, std=residual_std)
            else:
                nn.init.normal_(param, std=0.02)

    def positions(self, T: int) -> torch.Tensor:
        """Vectors added to x (learned or sinusoidal), or for RoPE the rotary table's rows."""
        if self.config.positional == "learned":
            return self.position_embedding(T)
        if self.config.positional == "sinusoidal":
            return self.position_encoding(T)
        return self.rope(T)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None, cache=None):
        """With `cache` (a `kv_cache.KVCache`, for generation), ids are only the new tokens,
        placed after the cached ones, and logits are for the last position only: (B, 1, V)."""
        T = ids.shape[-1]
        start = 0 if cache is None else cache.length
        if start + T > self.config.block_size:
            raise ShapeError(f"{start + T} tokens is more than block_size "
                             f"{self.config.block_size}")
        if cache is None:
            positions = self.positions(T)
        else:  # generating: these tokens sit at columns start..start+T-1 of the cache
            positions = cache.begin(T, self.positions(self.config.block_size))
        rope = positions if self.config.positional == "rope" else None
        x = self.token_embedding(ids)
        if rope is None:
            x = x + positions
        x = self.dropout(x)
        for i, block in enumerate(self.blocks):  # each layer adds their keys and values
            x = block(x, None if cache is None else cache.layers[i], rope)
        if cache is not None:
            cache.advance(T)
            x = x[:, -1:]  # only the last token's scores are needed to pick the next
        x = self.ln_f(x)
        if self.lm_head is not None:
            logits = self.lm_head(x)
        elif decode_weights.applies(x):  # the same product, faster (see there)
            logits = decode_weights.product(x, self.token_embedding.weight)
        else:
            logits = x @ self.token_embedding.weight.T
        loss = None
        if targets is not None:
            loss = cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss

    def num_params(self, non_embedding: bool = True) -> int:
        """Trained numbers; by default without position vectors (nanoGPT's MFU convention)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.config.positional == "learned":
            n -= self.position_embedding.weight.numel()
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N for the weights, 12 L H Q T for attention (PaLM)."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * c.block_size

    def load_weights(self, weights: dict, assign: bool = False) -> None:
        """Load name -> array (numpy or torch) weights, checking names and shapes first.
        `assign=True` makes the arrays themselves the parameters (no copy; for a model
        built on the meta device, as `chalklm.load` does)."""
        own = self.state_dict()
        missing = sorted(set(own) - set(weights))
        extra = sorted(set(weights) - set(own))
        if missing or extra:
            raise ShapeError(f"weights do not match the model: missing {missing[:5]}, "
                             f"unexpected {extra[:5]}")
        for name, value in weights.items():
            if tuple(value.shape) != tuple(own[name].shape):
                raise ShapeError(f"{name}: shape {tuple(value.shape)} in the weights, "
                                 f"{tuple(own[name].shape)} in the model")
        self.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()}, assign=assign)
