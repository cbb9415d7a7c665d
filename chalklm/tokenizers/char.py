"""The character tokenizer: one id per distinct character, as in next-character prediction.

The vocabulary is the sorted set of characters of a training text, so the id of a
character is its rank in that list. It is the simplest tokenizer there is, and the one
the article starts from before it introduces sub-word tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chalklm.errors import TokenizerError, UnknownCharacterError
from chalklm.tokenizers.base import Tokenizer

FORMAT_VERSION = 1


class CharTokenizer(Tokenizer):
    """Characters to ids and back. `CharTokenizer(text)`: the vocabulary is `sorted(set(text))`.

    >>> tok = CharTokenizer("hello")
    >>> tok.chars, tok.encode("hole")
    (['e', 'h', 'l', 'o'], [1, 3, 2, 0])
    """

    type_name = "char"

    def __init__(self, text: str | Iterable[str]):
        chars = sorted(set(text))
        if not chars:
            raise TokenizerError("cannot build a character vocabulary from an empty text")
        for ch in chars:
            if not isinstance(ch, str) or len(ch) != 1:
                raise TokenizerError(f"vocabulary entries must be single characters, got {ch!r}")
        self.chars: list[str] = chars
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, unknown: str | None = None) -> list[int]:
        """The id of each character. A character outside the vocabulary is an error, unless
        `unknown` names a vocabulary character to put in its place."""
        stoi = self.stoi
        try:
            return [stoi[ch] for ch in text]
        except KeyError:
            pass
        if unknown is None:
            position, ch = next((i, c) for i, c in enumerate(text) if c not in stoi)
            raise UnknownCharacterError(
                f"character {ch!r} (U+{ord(ch):04X}) at position {position} is not in the "
                f"vocabulary of {self.vocab_size} characters",
                "pass unknown=<a vocabulary character> to replace such characters",
            )
        if unknown not in stoi:
            raise TokenizerError(f"unknown={unknown!r} is not itself in the vocabulary")
        fallback = stoi[unknown]
        return [stoi.get(ch, fallback) for ch in text]

    def decode(self, ids) -> str:
        chars, n = self.chars, len(self.chars)
        out = []
        for position, i in enumerate(ids):
            i = int(i)
            if not 0 <= i < n:
                raise TokenizerError(
                    f"id {i} at position {position} is outside the vocabulary (0..{n - 1})"
                )
            out.append(chars[i])
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "version": FORMAT_VERSION, "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        if data.get("version") != FORMAT_VERSION:
            version = data.get("version")
            raise TokenizerError(f"unsupported char tokenizer format version {version!r}")
        chars = data["chars"]
        if not isinstance(chars, list) or chars != sorted(set(chars)):
            raise TokenizerError('"chars" must be a sorted list of distinct characters')
        return cls(chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
