"""The pre-tokenization patterns: how text is cut into chunks before BPE merges bytes.

BPE never merges across a chunk boundary, so a word and the space before it, a run of
digits, or a run of punctuation are learned separately. Each named pattern is one exact
string, kept here and nowhere else:

- "gpt2": the pattern of the GPT-2 release (contractions, letter runs with one leading
  space, number runs, punctuation runs, whitespace).
- "gpt4": the cl100k pattern as tiktoken 0.6 and minbpe write it (case-insensitive
  contractions, digits in groups of at most three, newlines kept apart from words).
  tiktoken's newer copy adds `\\s++$` and other possessives, which changes how trailing
  whitespace splits; this one is the reference here.

Each exporter receives a copy its regex engine reads the same way (`EXPORT_PATTERNS`);
tests check that Python's `regex`, tiktoken and Hugging Face tokenizers cut identically.

`split_at_spaces` cuts a text into space-led words before the pattern runs, which lets
the encoder look up whole words (see its docstring for why that is exact).
"""

from __future__ import annotations

import functools

import regex

from chalklm.errors import TokenizerError

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
PATTERNS: dict[str, str] = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}

# The copy each exporter writes, where its regex engine needs a different spelling of the
# same pattern (none does today: tests/test_tokenizer_interop.py checks they cut alike).
EXPORT_PATTERNS: dict[str, dict[str, str]] = {
    "tiktoken": dict(PATTERNS),
    "hf": dict(PATTERNS),
}


def resolve_pattern(pattern: str) -> str:
    """A pattern name ("gpt2", "gpt4") or a regex, checked to compile; returns the regex."""
    if not isinstance(pattern, str) or not pattern:
        raise TokenizerError(
            f"pattern must be {' or '.join(map(repr, PATTERNS))} or a regex, got {pattern!r}"
        )
    pattern = PATTERNS.get(pattern, pattern)
    compile_pattern(pattern)
    return pattern


def pattern_name(pattern: str) -> str | None:
    """The name of a pattern string, or None for a custom regex."""
    return next((name for name, text in PATTERNS.items() if text == pattern), None)


def export_pattern(pattern: str, exporter: str) -> str:
    """The spelling of `pattern` to write into an `exporter` file ("tiktoken" or "hf")."""
    name = pattern_name(pattern)
    return EXPORT_PATTERNS[exporter][name] if name else pattern


def import_pattern(text: str, exporter: str) -> str:
    """The inverse of `export_pattern`: a named pattern's exporter copy back to the name's."""
    for name, copy in EXPORT_PATTERNS[exporter].items():
        if copy == text:
            return PATTERNS[name]
    return text


def check_covers(chunks: list[str], text: str) -> None:
    """A custom pattern must match every character, or the skipped ones would be lost."""
    if sum(map(len, chunks)) != len(text):
        raise TokenizerError(
            "the custom pattern skips some characters of the text, so they could not be "
            "decoded back; end it with a catch-all alternative such as |[\\s\\S]"
        )


# A space right after whitespace (the pattern's own \s, which differs from str.isspace).
_SPACE_AFTER_WHITESPACE = regex.compile(r"(?<=\s) ")


def split_at_spaces(text: str) -> list[str]:
    """`text` cut before every space that follows a non-space character, the cut spaces
    dropped: the pieces [p0, p1, p2, ...] stand for p0 + " " + p1 + " " + p2 + ...

    Why: `str.split` runs in C, several times faster than the pattern, and most pieces
    are words seen before, so an encoder can look up " " + p1 whole instead of its chunks.
    Exact for both named patterns (not for a custom one): neither puts a non-space and
    the space after it into one chunk, so a chunk starts at each such space; and no part
    of them that reads that space would match the end of the text instead, so the
    pattern cuts each piece as it cuts the whole text. A space after whitespace ("  ",
    "\n ") may belong to a run of whitespace, so it joins its piece to the one before.
    """
    pieces = text.split(" ")
    joins, spaces_before, last = [], 0, 0
    for found in _SPACE_AFTER_WHITESPACE.finditer(text):  # rare in prose
        spaces_before += text.count(" ", last, found.start())
        last = found.start()
        joins.append(spaces_before + 1)  # this space ends piece spaces_before
    return _join_pieces(pieces, joins) if joins else pieces


def _join_pieces(pieces: list[str], joins: list[int]) -> list[str]:
    """`pieces` with each piece k in `joins` (ascending) put back after piece k - 1 and
    its space. A run k, k + 1, ... is joined at once: a long run of spaces stays linear."""
    out, done, i = [], 0, 0
    while i < len(joins):
        first = last = joins[i]
        while i + 1 < len(joins) and joins[i + 1] == last + 1:
            i, last = i + 1, last + 1
        out.extend(pieces[done : first - 1])
        out.append(" ".join(pieces[first - 1 : last + 1]))
        done, i = last + 1, i + 1
    out.extend(pieces[done:])
    return out


@functools.lru_cache(maxsize=32)
def compile_pattern(pattern: str) -> regex.Pattern:
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        raise TokenizerError(f"the pattern {pattern!r} is not a valid regex ({exc})") from None
