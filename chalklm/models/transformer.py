"""The original Transformer in the fast engine: an encoder reads, a decoder writes.

Read it next to `chalklm.scratch.transformer` (the glass box, where each step is
explained): the same classes, the same parameter names (docs/contract.md), the same
arithmetic, built from the GPT's layers (MultiHeadAttention, MLP, LayerNorm,
PositionalEncoding) and run on PyTorch kernels (fused attention with the padding mask).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from chalklm.config import TransformerConfig
from chalklm.errors import ShapeError
from chalklm.models.attention import MultiHeadAttention
from chalklm.models.block import MLP
from chalklm.models.gpt import GPT
from chalklm.models.kv_cache import KVCache
from chalklm.models.loss import cross_entropy
from chalklm.models.nn import Dropout, LayerNorm, Linear
from chalklm.models.positional import PositionalEmbedding, PositionalEncoding


class CrossAttention(MultiHeadAttention):
    """Queries from the target, keys and values from the encoder's output (`memory`);
    no causal mask, the source's padding hidden."""

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0,
                 fused: bool = True):
        super().__init__(n_embd, n_head, bias, dropout, causal=False, fused=fused)

    def forward(self, x, memory, memory_padding_mask=None) -> torch.Tensor:
        return super().forward(x, context=memory, padding_mask=memory_padding_mask)


def residual(x, sublayer, norm: LayerNorm, drop: Dropout, norm_first: bool):
    """post-norm: LayerNorm(x + dropout(sublayer(x))); pre-norm: x + dropout(sublayer(LN(x)))."""
    if norm_first:
        return x + drop(sublayer(norm(x)))
    return norm(x + drop(sublayer(x)))


def _attend(attn: MultiHeadAttention, x, k, v, padding_mask=None):
    """`attn` for queries x (N, T, C) over keys and values already split into heads (the
    source's, computed once per sentence by `Transformer.cross_keys_values`)."""
    y = attn.attention(attn.split_heads(attn.query(x)), k, v, padding_mask=padding_mask)
    N, _, T, _ = y.shape
    return attn.proj(y.transpose(1, 2).reshape(N, T, -1))


class EncoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig, fused: bool = True):
        super().__init__()
        C, H, bias, p = config.n_embd, config.n_head, config.bias, config.dropout
        self.norm_first = config.norm_first
        self.self_attn = MultiHeadAttention(C, H, bias, p, causal=False, fused=fused)
        self.ln_1 = LayerNorm(C, bias)
        self.mlp = MLP(C, bias, config.ffn_dim, config.activation)
        self.ln_2 = LayerNorm(C, bias)
        self.dropout = Dropout(p)

    def forward(self, x, padding_mask):
        x = residual(x, lambda h: self.self_attn(h, padding_mask=padding_mask), self.ln_1,
                     self.dropout, self.norm_first)
        return residual(x, self.mlp, self.ln_2, self.dropout, self.norm_first)


class DecoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig, fused: bool = True):
        super().__init__()
        C, H, bias, p = config.n_embd, config.n_head, config.bias, config.dropout
        self.norm_first = config.norm_first
        self.self_attn = MultiHeadAttention(C, H, bias, p, causal=True, fused=fused)
        self.ln_1 = LayerNorm(C, bias)
        self.cross_attn = CrossAttention(C, H, bias, p, fused=fused)
        self.ln_2 = LayerNorm(C, bias)
        self.mlp = MLP(C, bias, config.ffn_dim, config.activation)
        self.ln_3 = LayerNorm(C, bias)
        self.dropout = Dropout(p)

    def forward(self, x, memory, memory_padding_mask):
        x = residual(x, self.self_attn, self.ln_1, self.dropout, self.norm_first)
        x = residual(x, lambda h: self.cross_attn(h, memory, memory_padding_mask), self.ln_2,
                     self.dropout, self.norm_first)
        return residual(x, self.mlp, self.ln_3, self.dropout, self.norm_first)


class Encoder(nn.Module):
    def __init__(self, config: TransformerConfig, fused: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config, fused)
                                    for _ in range(config.n_layer_enc))
        self.ln_f = LayerNorm(config.n_embd, config.bias) if config.norm_first else None

    def forward(self, x, padding_mask):
        for layer in self.layers:
            x = layer(x, padding_mask)
        return self.ln_f(x) if self.ln_f is not None else x


class Decoder(nn.Module):
    def __init__(self, config: TransformerConfig, fused: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config, fused)
                                    for _ in range(config.n_layer_dec))
        self.ln_f = LayerNorm(config.n_embd, config.bias) if config.norm_first else None

    def forward(self, x, memory, memory_padding_mask):
        for layer in self.layers:
            x = layer(x, memory, memory_padding_mask)
        return self.ln_f(x) if self.ln_f is not None else x


class Transformer(nn.Module):
    """Encoder-decoder. `logits, loss = model(src_ids, tgt_in_ids, tgt_out_ids=None)`;
    padding (`config.pad_id`) is hidden from attention and ignored in the loss."""

    def __init__(self, config: TransformerConfig, fused_attention: bool = True):
        super().__init__()
        self.config = config
        C = config.n_embd
        if config.tie_embeddings:
            self.token_embedding = nn.Embedding(config.src_vocab_size, C)
        else:
            self.src_embedding = nn.Embedding(config.src_vocab_size, C)
            self.tgt_embedding = nn.Embedding(config.tgt_vocab_size, C)
        if config.positional == "learned":
            self.src_position_embedding = PositionalEmbedding(config.max_len, C)
            self.tgt_position_embedding = PositionalEmbedding(config.max_len, C)
        else:
            self.position_encoding = PositionalEncoding(config.max_len, C)
        self.dropout = Dropout(config.dropout)
        self.encoder = Encoder(config, fused_attention)
        self.decoder = Decoder(config, fused_attention)
        if not config.tie_embeddings:
            self.lm_head = Linear(C, config.tgt_vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """Xavier-uniform matrices, N(0, 1/n_embd) embeddings, zero biases, unit scales."""
        C = self.config.n_embd
        for name, p in self.named_parameters():
            if name.endswith("scale"):
                nn.init.ones_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            elif "position" in name:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("embedding.weight"):
                nn.init.normal_(p, std=C**-0.5)
            else:
                nn.init.xavier_uniform_(p)

    def positions(self, side: str, T: int) -> torch.Tensor:
        """The position vectors of positions 0..T-1: learned (one table per side) or sine."""
        if self.config.positional == "learned":
            return getattr(self, f"{side}_position_embedding")(T)
        return self.position_encoding(T)

    def embed(self, ids: torch.Tensor, side: str, positions=None) -> torch.Tensor:
        """Token vectors x sqrt(n_embd) + position vectors (by default those of 0..T-1;
        a KV cache gives its new columns'); dropout."""
        c = self.config
        if ids.ndim != 2:
            raise ShapeError(f"the Transformer reads ids of shape (batch, time), got "
                             f"{tuple(ids.shape)}")
        if positions is None:
            T = ids.shape[1]
            if T > c.max_len:
                raise ShapeError(f"{T} tokens is more than max_len {c.max_len}")
            positions = self.positions(side, T)
        table = self.token_embedding if c.tie_embeddings else getattr(self, f"{side}_embedding")
        return self.dropout(table(ids) * math.sqrt(c.n_embd) + positions)

    def encode(self, src_ids: torch.Tensor):
        """(memory (B, S, C), padding mask (B, S), True at padding)."""
        padding_mask = src_ids == self.config.pad_id
        return self.encoder(self.embed(src_ids, "src"), padding_mask), padding_mask

    def decode(self, tgt_ids, memory, memory_padding_mask) -> torch.Tensor:
        """Logits (B, T, V) for the next target token at each position."""
        x = self.decoder(self.embed(tgt_ids, "tgt"), memory, memory_padding_mask)
        return self.output(x)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.tie_embeddings:
            return x @ self.token_embedding.weight.T
        return self.lm_head(x)

    # ---- decoding one token at a time, with a KV cache (for translation) -------------
    def cross_keys_values(self, memory) -> list:
        """Each decoder layer's CrossAttention keys and values of the source: computed
        once per sentence, then read at every step."""
        return [(layer.cross_attn.split_heads(layer.cross_attn.key(memory)),
                 layer.cross_attn.split_heads(layer.cross_attn.value(memory)))
                for layer in self.decoder.layers]

    def kv_cache(self, batch: int, columns: int | None = None) -> KVCache:
        """The GPT's KV cache (chalklm/models/kv_cache.py) for the decoder's self-attention:
        `batch` rows of up to `columns` target tokens (at most max_len, the default)."""
        if columns is not None and columns > self.config.max_len:
            raise ShapeError(f"{columns} tokens is more than max_len {self.config.max_len}")
        weight = next(self.parameters())
        return KVCache(self.config, batch, columns, weight.dtype, weight.device)

    def decode_step(self, new_ids, cache: KVCache | None, cross: list, memory_padding_mask):
        """Logits (N, V) for the token after `new_ids` (N, T): the newest tokens of each
        prefix. `cache` (from `kv_cache`) holds the decoder's self-attention keys and
        values of the earlier tokens and receives the new ones (None: `new_ids` is the
        whole prefix). `cross`: `cross_keys_values` of each row's source. Equal to
        `decode(prefix)[:, -1]`, but a step with a cache reads only the newest token."""
        if cache is None:
            x = self.embed(new_ids, "tgt")
        else:  # these tokens sit at columns length.. of the cache
            table = self.positions("tgt", cache.max_len)
            x = self.embed(new_ids, "tgt", cache.begin(new_ids.shape[1], table))
        for i, layer in enumerate(self.decoder.layers):
            own = None if cache is None else cache.layers[i]
            x = residual(x, lambda h, a=layer.self_attn, own=own: a(h, cache=own), layer.ln_1,
                         layer.dropout, layer.norm_first)
            x = residual(x, lambda h, a=layer.cross_attn, kv=cross[i]: _attend(
                a, h, kv[0], kv[1], memory_padding_mask), layer.ln_2, layer.dropout,
                layer.norm_first)
            x = residual(x, layer.mlp, layer.ln_3, layer.dropout, layer.norm_first)
        if cache is not None:
            cache.advance(new_ids.shape[1])
        x = x[:, -1]  # only the last token's scores are needed to pick the next
        if self.decoder.ln_f is not None:
            x = self.decoder.ln_f(x)
        return self.output(x)

    def forward(self, src_ids, tgt_in_ids, tgt_out_ids=None, label_smoothing=None,
                return_logits: bool = True):
        """(logits (B, T, V), loss or None). `return_logits=False` (training) gives
        (None, loss) and scores only the target positions that are not padding: the
        output layer and the loss are a large part of a step, and padding rows add
        nothing to the loss (they are ignored), so they are left out before the matrix
        product. The loss is the same either way."""
        memory, padding_mask = self.encode(src_ids)
        x = self.decoder(self.embed(tgt_in_ids, "tgt"), memory, padding_mask)
        if tgt_out_ids is None:
            return self.output(x), None
        smoothing = self.config.label_smoothing if label_smoothing is None else label_smoothing
        if return_logits:
            logits = self.output(x)
            return logits, self.loss(logits, tgt_out_ids, smoothing)
        targets = tgt_out_ids != self.config.pad_id
        return None, self.loss(self.output(x[targets]), tgt_out_ids[targets], smoothing)

    def loss(self, logits, targets, smoothing: float) -> torch.Tensor:
        """Mean label-smoothed cross-entropy over the targets that are not padding, in fp32
        (a log-softmax over the vocabulary in bf16 would round the small probabilities)."""
        return cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             self.config.pad_id, smoothing)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, length: int = 32) -> float:
        """Training FLOPs per target token: 6N for the weights plus attention, with source
        and target of `length` tokens (a rough figure, for MFU)."""
        c = self.config
        attention = 12 * c.n_embd * length * (c.n_layer_enc + 2 * c.n_layer_dec)
        return 6 * self.num_params() + attention

    # the GPT's loader: check every name and shape, then copy (one rule, one place)
    load_weights = GPT.load_weights
