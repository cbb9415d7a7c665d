"""Special tokens: strings such as <|endoftext|> that stand for one id, outside BPE.

They are matched in the text before the pattern splits it, and only when the caller
allows it: text from users could otherwise smuggle a control token in (tiktoken's rule).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import regex

from chalklm.errors import TokenizerError

ALLOWED_SPECIAL_MODES = ("none_raise", "none", "all")


class SpecialTokens:
    """{text: id} for the special tokens, whose ids lie outside the `ordinary` ids."""

    def __init__(self, ids: dict[str, int], ordinary: range):
        if not isinstance(ids, dict):
            raise TokenizerError(f"special_tokens must map text to id, got {type(ids).__name__}")
        for text, token_id in ids.items():
            if not isinstance(text, str) or not text:
                raise TokenizerError(f"a special token must be a non-empty string, got {text!r}")
            if not isinstance(token_id, int) or token_id < 0 or token_id in ordinary:
                raise TokenizerError(
                    f"special token {text!r} has id {token_id!r}; it must be a whole number "
                    f">= 0 outside the ordinary tokens' ids {ordinary.start}..{ordinary.stop - 1}"
                )
        if len(set(ids.values())) != len(ids):
            raise TokenizerError("two special tokens share an id")
        self.ids = dict(ids)
        self.end_id = max([ordinary.stop, *(i + 1 for i in ids.values())])

    @classmethod
    def from_list(cls, texts: Sequence[str], first_id: int) -> SpecialTokens:
        """Special tokens numbered from `first_id` in the order listed."""
        if isinstance(texts, str):
            raise TokenizerError("special_tokens must be a list of strings, not one string")
        texts = list(texts)
        if len(set(texts)) != len(texts):
            raise TokenizerError(f"special_tokens lists a token twice: {texts}")
        return cls({t: first_id + i for i, t in enumerate(texts)}, range(first_id))

    def allowed(self, allowed_special: str | set[str], text: str) -> frozenset[str]:
        """The specials to encode as ids; raises if the text holds one that is not allowed."""
        if allowed_special == "all":
            return frozenset(self.ids)
        if allowed_special in ("none", "none_raise"):
            allowed = frozenset()
        elif isinstance(allowed_special, (set, frozenset, list, tuple)):
            allowed = frozenset(allowed_special)
            unknown = allowed - self.ids.keys()
            if unknown:
                raise TokenizerError(f"allowed_special names unknown tokens: {sorted(unknown)}")
        else:
            raise TokenizerError(
                f"allowed_special must be one of {ALLOWED_SPECIAL_MODES} or a set of special "
                f"tokens, got {allowed_special!r}"
            )
        forbidden = frozenset(self.ids) - allowed
        if forbidden and allowed_special != "none":
            found = _matcher(forbidden).search(text)
            if found:
                raise TokenizerError(
                    f"the text holds the special token {found.group()!r} at position "
                    f"{found.start()}; pass allowed_special='all' (or a set) to encode it as "
                    "its id, or use encode_ordinary to read it as plain text"
                )
        return allowed

    def split(self, text: str, allowed: frozenset[str]) -> Iterator[tuple[str, int | None]]:
        """(piece, None) for ordinary text and (token, id) for each allowed special token."""
        start = 0
        for found in _matcher(allowed).finditer(text):
            if found.start() > start:
                yield text[start : found.start()], None
            yield found.group(), self.ids[found.group()]
            start = found.end()
        if start < len(text):
            yield text[start:], None

    def split_out(self, text: str) -> Iterator[str]:
        """The ordinary pieces of `text`, all special tokens removed (for training)."""
        if not self.ids:
            yield text
            return
        for piece, special_id in self.split(text, frozenset(self.ids)):
            if special_id is None:
                yield piece


@functools.lru_cache(maxsize=64)
def _matcher(tokens: frozenset[str]) -> regex.Pattern:
    """One regex for a set of special tokens, longest first so none hides a longer one."""
    ordered = sorted(tokens, key=lambda t: (-len(t), t))
    return regex.compile("|".join(regex.escape(t) for t in ordered))
