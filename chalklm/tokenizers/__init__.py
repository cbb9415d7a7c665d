"""Tokenizers: text to ids and back. Nothing here imports torch.

- `CharTokenizer`: one id per character (next-character prediction).
- `BPETokenizer`: byte-level byte-pair encoding, the article's sub-word tokens.
- `load_tokenizer(path)`: read any chalklm tokenizer JSON file, whatever its type.
"""

from __future__ import annotations

import os

from chalklm.errors import TokenizerError
from chalklm.tokenizers.base import Tokenizer, _from_dict_checked, read_json
from chalklm.tokenizers.char import CharTokenizer

TOKENIZER_TYPES = ("char", "bpe")  # the "type" keys load_tokenizer understands


def _class_for(type_name: str, path) -> type[Tokenizer]:
    if type_name == "char":
        return CharTokenizer
    if type_name == "bpe":
        from chalklm.tokenizers.bpe import BPETokenizer

        return BPETokenizer
    raise TokenizerError(
        f"{path}: unknown tokenizer type {type_name!r}; known: {', '.join(TOKENIZER_TYPES)}"
    )


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Read a tokenizer saved by any chalklm tokenizer's `save`, dispatching on `"type"`."""
    data = read_json(path)
    return _from_dict_checked(_class_for(data["type"], path), data, path)


def __getattr__(name: str):
    # BPETokenizer loads on first use: it imports regex and tqdm (~0.1 s), which a
    # character-level run never needs.
    if name == "BPETokenizer":
        from chalklm.tokenizers.bpe import BPETokenizer

        return BPETokenizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BPETokenizer", "CharTokenizer", "Tokenizer", "load_tokenizer"]
