"""The original Transformer in the glass box: an encoder reads, a decoder writes.

"Attention Is All You Need" (Vaswani et al., 2017), for translation. The encoder turns
the German sentence into one vector per token (self-attention over the whole sentence,
padding hidden). The decoder writes the English sentence one token at a time: causal
self-attention over what it has written so far, then `CrossAttention` over the
encoder's vectors (which German words matter for the next English one), then the MLP.
Each of those sub-layers sits on a residual path with a layer norm: after it
(`norm_first=False`, the paper's post-norm) or before it (pre-norm, as GPT-2).

Everything is the GPT's pieces: MultiHeadAttention (causal or not, keys and values
from the same or another sequence, a padding mask), MLP, LayerNorm, Embedding,
PositionalEncoding. Read it next to `chalklm.models.transformer` (the fast engine):
same names, same shapes (docs/contract.md), same arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

from chalklm.config import TransformerConfig
from chalklm.errors import ShapeError
from chalklm.scratch import autograd
from chalklm.scratch.attention import MultiHeadAttention
from chalklm.scratch.autograd import Tensor
from chalklm.scratch.block import MLP
from chalklm.scratch.gpt import GPT
from chalklm.scratch.nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList
from chalklm.scratch.positional import PositionalEmbedding, PositionalEncoding
from chalklm.scratch.probability import cross_entropy


class CrossAttention(MultiHeadAttention):
    """The decoder's look at the source: queries from the target, keys and values from
    the encoder's output (`memory`). No causal mask (the whole source is known), only
    the source's padding hidden. The same weights as any MultiHeadAttention."""

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0):
        super().__init__(n_embd, n_head, bias, dropout, causal=False)

    def forward(self, x: Tensor, memory: Tensor, memory_padding_mask=None) -> Tensor:
        return super().forward(x, context=memory, padding_mask=memory_padding_mask)


def residual(x: Tensor, sublayer, norm: LayerNorm, drop: Dropout, norm_first: bool) -> Tensor:
    """One sub-layer on its residual path.

    post-norm (the paper): LayerNorm(x + dropout(sublayer(x)))
    pre-norm (GPT-2):      x + dropout(sublayer(LayerNorm(x)))
    """
    if norm_first:
        return x + drop(sublayer(norm(x)))
    return norm(x + drop(sublayer(x)))


class EncoderLayer(Module):
    """Self-attention over the source (padding hidden), then the MLP."""

    def __init__(self, config: TransformerConfig):
        C, H, bias, p = config.n_embd, config.n_head, config.bias, config.dropout
        self.norm_first = config.norm_first
        self.self_attn = MultiHeadAttention(C, H, bias, p, causal=False)
        self.ln_1 = LayerNorm(C, bias=bias)
        self.mlp = MLP(C, bias, config.ffn_dim, config.activation)
        self.ln_2 = LayerNorm(C, bias=bias)
        self.dropout = Dropout(p)

    def forward(self, x: Tensor, padding_mask) -> Tensor:
        x = residual(x, lambda h: self.self_attn(h, padding_mask=padding_mask), self.ln_1,
                     self.dropout, self.norm_first)
        return residual(x, self.mlp, self.ln_2, self.dropout, self.norm_first)


class DecoderLayer(Module):
    """Causal self-attention over the target so far, CrossAttention over the source, MLP."""

    def __init__(self, config: TransformerConfig):
        C, H, bias, p = config.n_embd, config.n_head, config.bias, config.dropout
        self.norm_first = config.norm_first
        self.self_attn = MultiHeadAttention(C, H, bias, p, causal=True)
        self.ln_1 = LayerNorm(C, bias=bias)
        self.cross_attn = CrossAttention(C, H, bias, p)
        self.ln_2 = LayerNorm(C, bias=bias)
        self.mlp = MLP(C, bias, config.ffn_dim, config.activation)
        self.ln_3 = LayerNorm(C, bias=bias)
        self.dropout = Dropout(p)

    def forward(self, x: Tensor, memory: Tensor, memory_padding_mask) -> Tensor:
        x = residual(x, self.self_attn, self.ln_1, self.dropout, self.norm_first)
        x = residual(x, lambda h: self.cross_attn(h, memory, memory_padding_mask), self.ln_2,
                     self.dropout, self.norm_first)
        return residual(x, self.mlp, self.ln_3, self.dropout, self.norm_first)


class Encoder(Module):
    """A stack of EncoderLayers; pre-norm ends with a final LayerNorm (`ln_f`)."""

    def __init__(self, config: TransformerConfig):
        self.layers = ModuleList(EncoderLayer(config) for _ in range(config.n_layer_enc))
        self.ln_f = LayerNorm(config.n_embd, bias=config.bias) if config.norm_first else None

    def forward(self, x: Tensor, padding_mask) -> Tensor:
        for layer in self.layers:
            x = layer(x, padding_mask)
        return self.ln_f(x) if self.ln_f is not None else x


class Decoder(Module):
    """A stack of DecoderLayers; pre-norm ends with a final LayerNorm (`ln_f`)."""

    def __init__(self, config: TransformerConfig):
        self.layers = ModuleList(DecoderLayer(config) for _ in range(config.n_layer_dec))
        self.ln_f = LayerNorm(config.n_embd, bias=config.bias) if config.norm_first else None

    def forward(self, x: Tensor, memory: Tensor, memory_padding_mask) -> Tensor:
        for layer in self.layers:
            x = layer(x, memory, memory_padding_mask)
        return self.ln_f(x) if self.ln_f is not None else x


class Transformer(Module):
    """Encoder-decoder. `logits, loss = model(src_ids, tgt_in_ids, tgt_out_ids=None)`.

    src_ids (B, S) the source, right-padded with `pad_id`; tgt_in_ids (B, T) the target
    so far (begins with the begin token); tgt_out_ids (B, T) the same shifted by one
    (what each position should predict; padding there is ignored). logits (B, T,
    tgt_vocab_size); loss the mean cross-entropy over the non-padding targets, with
    label smoothing (`label_smoothing=None` takes the config's; pass 0.0 to measure).
    """

    def __init__(self, config: TransformerConfig):
        self.config = config
        C = config.n_embd
        if config.tie_embeddings:  # one table: source words, target words, output scores
            self.token_embedding = Embedding(config.src_vocab_size, C)
        else:
            self.src_embedding = Embedding(config.src_vocab_size, C)
            self.tgt_embedding = Embedding(config.tgt_vocab_size, C)
        if config.positional == "learned":
            self.src_position_embedding = PositionalEmbedding(config.max_len, C)
            self.tgt_position_embedding = PositionalEmbedding(config.max_len, C)
        else:
            self.position_encoding = PositionalEncoding(config.max_len, C)
        self.dropout = Dropout(config.dropout)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        if not config.tie_embeddings:
            self.lm_head = Linear(C, config.tgt_vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """Matrices Xavier-uniform (the Annotated Transformer's), embeddings N(0, 1/n_embd)
        (times sqrt(n_embd) on the way in: unit-sized vectors), zero biases, unit scales."""
        C = self.config.n_embd
        for name, p in self.named_parameters():
            if name.endswith("scale"):
                p.data[...] = 1.0
            elif name.endswith("bias"):
                p.data[...] = 0.0
            elif name.endswith("embedding.weight") and "position" not in name:
                p.data[...] = autograd.rng().normal(0.0, C**-0.5, size=p.shape)
            elif "position" in name:
                p.data[...] = autograd.rng().normal(0.0, 0.02, size=p.shape)
            else:
                bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
                p.data[...] = autograd.rng().uniform(-bound, bound, size=p.shape)

    # ---- the pieces, usable one at a time (translation calls encode once, decode often)
    def embed(self, ids, side: str) -> Tensor:
        """Token vectors times sqrt(n_embd) (the paper's scaling), plus positions, dropout."""
        c = self.config
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ShapeError(f"the Transformer reads ids of shape (batch, time), got {ids.shape}")
        T = ids.shape[1]
        if T > c.max_len:
            raise ShapeError(f"{T} tokens is more than max_len {c.max_len}")
        table = self.token_embedding if c.tie_embeddings else getattr(self, f"{side}_embedding")
        x = table(ids) * math.sqrt(c.n_embd)
        if c.positional == "learned":
            positions = getattr(self, f"{side}_position_embedding")(T)
        else:
            positions = self.position_encoding(T)
        return self.dropout(x + positions)

    def encode(self, src_ids) -> tuple[Tensor, np.ndarray]:
        """(memory (B, S, C), padding mask (B, S), True at padding) for a source batch."""
        padding_mask = np.asarray(src_ids) == self.config.pad_id
        return self.encoder(self.embed(src_ids, "src"), padding_mask), padding_mask

    def decode(self, tgt_ids, memory: Tensor, memory_padding_mask) -> Tensor:
        """Logits (B, T, tgt_vocab_size) for the next target token at each position."""
        x = self.decoder(self.embed(tgt_ids, "tgt"), memory, memory_padding_mask)
        if self.config.tie_embeddings:  # score each word by its own embedding row
            return x @ self.token_embedding.weight.T
        return self.lm_head(x)

    def forward(self, src_ids, tgt_in_ids, tgt_out_ids=None,
                label_smoothing: float | None = None) -> tuple[Tensor, Tensor | None]:
        memory, padding_mask = self.encode(src_ids)
        logits = self.decode(tgt_in_ids, memory, padding_mask)
        if tgt_out_ids is None:
            return logits, None
        smoothing = self.config.label_smoothing if label_smoothing is None else label_smoothing
        loss = cross_entropy(logits, tgt_out_ids, ignore_index=self.config.pad_id,
                             label_smoothing=smoothing)
        return logits, loss

    def num_params(self) -> int:
        return sum(p.size for p in self.parameters())

    # the GPT's loader: check every name and shape, then copy (as the fast engine's)
    load_weights = GPT.load_weights
