"""GPT in the glass box: token + position vectors, a stack of residual blocks, logits.

Read it next to `chalklm.models.GPT` (the fast engine): the same pieces, the same
parameter names and shapes (docs/contract.md), the same arithmetic, here in NumPy with
every derivative beside its operation (chalklm/scratch/autograd.py and its neighbours).
"""

from __future__ import annotations

import math

import numpy as np

from chalklm.config import GPTConfig
from chalklm.errors import ShapeError
from chalklm.scratch import autograd
from chalklm.scratch.autograd import Tensor
from chalklm.scratch.block import Block
from chalklm.scratch.nn import Dropout, Embedding, Linear, Module, ModuleList, norm_for
from chalklm.scratch.positional import PositionalEmbedding, PositionalEncoding
from chalklm.scratch.probability import cross_entropy
from chalklm.scratch.rope import RotaryEmbedding


class GPT(Module):
    """The decoder-only Transformer. `logits, loss = model(ids, targets=None)`.

    ids (B, T) integers -> logits (B, T, vocab_size): for every position, a score for
    each possible next token. loss is the mean cross-entropy against targets (B, T)
    (targets equal to -1 are ignored), or None without targets.
    """

    def __init__(self, config: GPTConfig):
        self.config = config
        C = config.n_embd
        self.token_embedding = Embedding(config.vocab_size, C)
        if config.positional == "learned":
            self.position_embedding = PositionalEmbedding(config.block_size, C)
        elif config.positional == "sinusoidal":
            self.position_encoding = PositionalEncoding(config.block_size, C)
        else:  # "rope": no vector added to x; each block turns its queries and keys
            self.rope = RotaryEmbedding(config.block_size, config.head_size, config.rope_theta)
        self.dropout = Dropout(config.dropout)
        self.blocks = ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = norm_for(config)
        self.lm_head = None if config.tie_embeddings else Linear(C, config.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's start: N(0, 0.02) weights, zero biases, unit scales, and the residual
        projections scaled by 1/sqrt(2 n_layer) so the residual sum does not grow with depth."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("scale"):
                p.data[...] = 1.0
            elif name.endswith("bias"):
                p.data[...] = 0.0
            else:
                std = residual_std if name.endswith(("attn.proj.weight", "mlp.proj.weight")) \
                    else 0.02
                p.data[...] = autograd.rng().normal(0.0, std, size=p.shape)

    def positions(self, T: int) -> Tensor:
        """What marks the first T positions: vectors added to x (learned or sinusoidal), or
        for RoPE the rotary table's rows (angles the blocks turn queries and keys by)."""
        if self.config.positional == "learned":
            return self.position_embedding(T)
        if self.config.positional == "sinusoidal":
            return self.position_encoding(T)
        return self.rope(T)

    def forward(self, ids, targets=None, cache=None) -> tuple[Tensor, Tensor | None]:
        """With `cache` (a `kv_cache.KVCache`, for generation), ids are only the new tokens,
        placed after the cached ones, and logits are for the last position only: (B, 1, V)."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ShapeError(f"GPT reads ids of shape (batch, time), got {ids.shape}")
        T = ids.shape[1]
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
        if self.lm_head is None:  # tied: score each token by its own embedding row
            logits = x @ self.token_embedding.weight.T
        else:
            logits = self.lm_head(x)
        loss = cross_entropy(logits, targets, ignore_index=-1) if targets is not None else None
        return logits, loss

    def num_params(self, non_embedding: bool = True) -> int:
        """Trained numbers; by default without position vectors (nanoGPT's MFU convention,
        as the fast engine's GPT.num_params)."""
        n = sum(p.size for p in self.parameters())
        if non_embedding and self.config.positional == "learned":
            n -= self.position_embedding.weight.size
        return n

    def load_weights(self, weights: dict) -> None:
        """Load name -> array weights (NumPy, or anything np.asarray reads), checking names
        and shapes first: the fast engine's GPT.load_weights, here."""
        self.load_state_dict({name: np.asarray(value) for name, value in weights.items()})
