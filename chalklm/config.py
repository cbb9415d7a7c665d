"""Model configurations, shared by both engines and importable without torch.

A config is plain data: it is what `config.json` in a checkpoint holds, and what both the
glass box (`chalklm.scratch.models`) and the fast engine (`chalklm.models`) build from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from chalklm.errors import ConfigError

POSITIONAL_KINDS = ("learned", "sinusoidal")
# The GPT also takes "rope": rotary positions, which turn queries and keys instead of adding
# a vector to x (Llama's); the encoder-decoder Transformer keeps the two above.
GPT_POSITIONAL_KINDS = (*POSITIONAL_KINDS, "rope")
NORMS = ("layernorm", "rmsnorm")  # LayerNorm (GPT-2's) or RMSNorm (Llama's)
# The MLP: "gelu" is GPT-2's proj(activation(fc(x))) with `activation`; "swiglu" is Llama's
# gated proj(silu(gate(x)) * fc(x)).
MLPS = ("gelu", "swiglu")
# The MLP's activation: "gelu" is GELU's tanh form (GPT-2's), "gelu_exact" is x * Phi(x)
# with the normal distribution's Phi computed from erf (as written in the GELU paper; on
# CPUs it is the faster one: PyTorch's tanh kernel is slow), "relu" is max(0, x) (the
# original Transformer's).
ACTIVATIONS = ("gelu", "gelu_exact", "relu")


def _positive_ints(config, names):
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_activation(config):
    _check_choice(config, "activation", ACTIVATIONS)


def _check_modern(config):
    """The Llama-family switches: known choices, and heads that can share keys and values."""
    _check_choice(config, "norm", NORMS)
    _check_choice(config, "mlp", MLPS)
    if config.ffn_dim is not None:
        _positive_ints(config, ("ffn_dim",))
    if config.n_kv_head is not None:
        _positive_ints(config, ("n_kv_head",))
        if config.n_head % config.n_kv_head:
            raise ConfigError(f"n_head ({config.n_head}) must be a multiple of n_kv_head "
                              f"({config.n_kv_head}): each key/value head serves a group of "
                              "query heads of the same size")
    for name in ("qk_norm", "bias", "tie_embeddings"):
        if not isinstance(getattr(config, name), bool):
            raise ConfigError(f"{name} must be true or false, got {getattr(config, name)!r}")
    for name in ("rope_theta", "norm_eps"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{name} must be a number above 0, got {value!r}")
    if config.positional == "rope" and config.head_size % 2:
        raise ConfigError(f"rope turns pairs of numbers, so the head size n_embd / n_head "
                          f"must be even, got {config.head_size}")


def _check_choice(config, name, allowed):
    if getattr(config, name) not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, "
                          f"got {getattr(config, name)!r}")


def _check_common(config, positional_kinds=POSITIONAL_KINDS):
    """Checks shared by every architecture: sizes, dropout, positions, heads."""
    if not isinstance(config.dropout, (int, float)) or not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {config.dropout!r}")
    _check_choice(config, "positional", positional_kinds)
    if config.n_embd % config.n_head != 0:
        raise ConfigError(
            f"n_embd ({config.n_embd}) must be divisible by n_head ({config.n_head}): "
            "each head gets n_embd / n_head numbers"
        )


class _Config:
    """to_dict / from_dict for the JSON a checkpoint stores, with a clear error on bad keys."""

    model_type: str = ""

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict):
        data = dict(data)
        kind = data.pop("model_type", cls.model_type)
        if kind != cls.model_type:
            raise ConfigError(f"config is for model_type {kind!r}, not {cls.model_type!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown {cls.__name__} key(s) {', '.join(unknown)}; "
                f"valid keys: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class GPTConfig(_Config):
    """The GPT decoder: a stack of pre-norm residual blocks over token + position vectors."""

    vocab_size: int = 65
    block_size: int = 256  # context length: the most tokens the model looks at
    n_layer: int = 6  # blocks, one after another
    n_head: int = 6  # attention heads in each block (multi-head attention)
    n_embd: int = 384  # numbers in each token's vector: the embedding's width
    dropout: float = 0.0  # the share of activations zeroed while training (0: none)
    bias: bool = True  # biases in Linear and LayerNorm
    # "learned" (PositionalEmbedding), "sinusoidal" (PositionalEncoding) or "rope" (rotary)
    positional: str = "learned"
    tie_embeddings: bool = True  # output layer reuses the token embedding matrix
    activation: str = "gelu"  # the "gelu" MLP's nonlinearity; see ACTIVATIONS
    # The Llama-family pieces, each a switch (PRESETS["llama"] flips them all):
    norm: str = "layernorm"  # LayerNorm (GPT-2's) or RMSNorm (Llama's); see NORMS
    norm_eps: float = 1e-5  # added to the variance (or mean square) under the square root
    mlp: str = "gelu"  # GPT-2's MLP or Llama's gated one (SwiGLU); see MLPS
    ffn_dim: int | None = None  # the MLP's hidden width; None: 4 n_embd (gelu), 8/3 (swiglu)
    n_kv_head: int | None = None  # key/value heads (grouped-query attention); None: n_head
    qk_norm: bool = False  # RMSNorm on each head's queries and keys before the scores
    rope_theta: float = 10000.0  # the slowest rotation's period scale, positional = "rope"

    model_type = "gpt"

    def __post_init__(self):
        _positive_ints(self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"))
        _check_common(self, GPT_POSITIONAL_KINDS)
        _check_activation(self)
        _check_modern(self)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """How many heads of keys and values: n_kv_head, or one per query head."""
        return self.n_kv_head or self.n_head

    @property
    def hidden_size(self) -> int:
        """The MLP's hidden width. SwiGLU has three matrices where GELU's MLP has two, so its
        default width is 8/3 n_embd (rounded up to a multiple of 8): the same parameters."""
        if self.ffn_dim:
            return self.ffn_dim
        if self.mlp == "swiglu":
            return -(-8 * self.n_embd // 3 // 8) * 8
        return 4 * self.n_embd

    @property
    def is_gpt2(self) -> bool:
        """True when the config uses none of the Llama-family pieces (GPT-2's design)."""
        return (self.norm == "layernorm" and self.mlp == "gelu" and self.positional != "rope"
                and self.kv_heads == self.n_head and not self.qk_norm)


def default_kv_heads(n_head: int) -> int:
    """The preset's grouped-query attention: a third of the heads carry keys and values
    (SmolLM2: 9 heads, 3 key/value heads), else half, else all."""
    for share in (3, 2):
        if n_head % share == 0:
            return n_head // share
    return n_head


# A preset names a combination of the switches; keys given beside it win.
PRESETS = {
    "gpt2": dict(norm="layernorm", positional="learned", mlp="gelu", bias=True,
                 qk_norm=False, n_kv_head=None, ffn_dim=None),  # the MLP 4 n_embd wide
    "llama": dict(norm="rmsnorm", positional="rope", mlp="swiglu", bias=False,
                  qk_norm=False, n_kv_head=default_kv_heads),
}


def preset_keys(name: str, n_head: int) -> dict:
    """The model keys a preset sets, for a model of n_head heads."""
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return {key: value(n_head) if callable(value) else value
            for key, value in PRESETS[name].items()}


@dataclass(frozen=True)
class TransformerConfig(_Config):
    """The original encoder-decoder Transformer ("Attention Is All You Need").

    The encoder reads the source sentence (self-attention with the padding mask); the
    decoder writes the target (causal self-attention, then CrossAttention over the
    encoder's output). `norm_first=False` is the paper's post-norm, True is pre-norm.
    With `tie_embeddings` (the paper's choice, which needs one shared vocabulary) the
    source embedding, the target embedding and the output layer are one matrix.
    """

    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    n_layer_enc: int = 3  # encoder blocks (they read the source sentence)
    n_layer_dec: int = 3  # decoder blocks (they write the target sentence)
    n_head: int = 8  # attention heads in each attention layer
    n_embd: int = 256  # numbers in each token's vector: the embedding's width
    ffn_dim: int = 1024  # the MLP's hidden width (the paper: 2048 for 512 wide)
    activation: str = "relu"  # the MLP's: "relu" (the paper's); see ACTIVATIONS
    dropout: float = 0.1  # the share of activations zeroed while training (the paper's 0.1)
    max_len: int = 256  # the longest source or target, in tokens
    norm_first: bool = False  # False: the paper's post-norm; True: pre-norm (GPT-2's)
    positional: str = "sinusoidal"  # or "learned"
    tie_embeddings: bool = True  # source, target and output share one matrix
    bias: bool = True  # biases in Linear and LayerNorm
    pad_id: int = 0  # the padding token: masked in attention, ignored in the loss
    label_smoothing: float = 0.1  # in the training loss (the paper's 0.1)

    model_type = "transformer"

    def __post_init__(self):
        _positive_ints(self, ("src_vocab_size", "tgt_vocab_size", "n_layer_enc", "n_layer_dec",
                              "n_head", "n_embd", "ffn_dim", "max_len"))
        _check_common(self)
        _check_activation(self)
        if self.tie_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ConfigError(
                f"tie_embeddings needs one shared vocabulary, but src_vocab_size is "
                f"{self.src_vocab_size} and tgt_vocab_size {self.tgt_vocab_size}; set "
                "tie_embeddings = false or train one tokenizer on both languages")
        if isinstance(self.pad_id, bool) or not isinstance(self.pad_id, int) or not (
                0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size)):
            raise ConfigError(f"pad_id must be a token id of both vocabularies, got "
                              f"{self.pad_id!r}")
        if not isinstance(self.label_smoothing, (int, float)) or \
                not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head
