"""Model configurations, shared by both engines and importable without torch.

A config is plain data: it is what `config.json` in a checkpoint holds, and what both the
glass box (`chalklm.scratch.models`) and the fast engine (`chalklm.models`) build from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from chalklm.errors import ConfigError

POSITIONAL_KINDS = ("learned", "sinusoidal")


def _positive_ints(config, names):
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_common(config):
    """Checks shared by every architecture: sizes, dropout, positions, heads."""
    if not isinstance(config.dropout, (int, float)) or not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {config.dropout!r}")
    if config.positional not in POSITIONAL_KINDS:
        raise ConfigError(
            f"positional must be one of {', '.join(POSITIONAL_KINDS)}, got {config.positional!r}"
        )
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
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm
    # "learned" (PositionalEmbedding) or "sinusoidal" (PositionalEncoding)
    positional: str = "learned"
    tie_embeddings: bool = True  # output layer reuses the token embedding matrix

    model_type = "gpt"

    def __post_init__(self):
        _positive_ints(self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"))
        _check_common(self)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head
