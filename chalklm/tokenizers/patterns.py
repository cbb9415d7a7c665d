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
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import regex

from chalklm.errors import TokenizerError

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
PATTERNS: dict[str, str] = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}

# The same two patterns for Latin-1 text (every character below U+0100: English, German,
# French, Spanish...), spelled for Python's own `re`, which cuts such text two to three
# times faster than `regex` (Tiny Shakespeare: 38 ms against 93 ms). Below U+0100 each
# class is a short list, read from `regex` itself: letters (L), numbers (N, with the
# superscripts and fractions), and White_Space (S: \t-\r, space, \x85, \xa0; re's own \s
# would add \x1c-\x1f).
LATIN1_TEMPLATES: dict[str, str] = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?[%(L)s]+| ?[%(N)s]+| ?[^%(S)s%(L)s%(N)s]+"""
            r"""|[%(S)s]+(?![^%(S)s])|[%(S)s]+""",
    "gpt4": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n%(L)s%(N)s]?+[%(L)s]+|[%(N)s]{1,3}"""
            r"""| ?[^%(S)s%(L)s%(N)s]++[\r\n]*|[%(S)s]*[\r\n]|[%(S)s]+(?![^%(S)s])|[%(S)s]+""",
}


def _latin1_class(property_regex: str) -> str:
    """The characters below U+0100 that `property_regex` matches, as a character-class
    body of ranges ("\\x41-\\x5a..." for letters)."""
    codes = [ord(c) for c in regex.findall(property_regex, "".join(map(chr, range(256))))]
    runs, first = [], 0
    for i, code in enumerate(codes):
        if i + 1 == len(codes) or codes[i + 1] != code + 1:  # the run ends here
            start = f"\\x{codes[first]:02x}"
            runs.append(start + (f"-\\x{code:02x}" if code > codes[first] else ""))
            first = i + 1
    return "".join(runs)


LATIN1_PATTERNS: dict[str, str] = {
    name: template % {"L": _latin1_class(r"\p{L}"), "N": _latin1_class(r"\p{N}"),
                      "S": _latin1_class(r"\s")}
    for name, template in LATIN1_TEMPLATES.items()
}

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


@functools.lru_cache(maxsize=32)
def compile_pattern(pattern: str) -> regex.Pattern:
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        raise TokenizerError(f"the pattern {pattern!r} is not a valid regex ({exc})") from None


@functools.lru_cache(maxsize=32)
def splitter(pattern: str) -> Callable[[str], list[str]]:
    """`text -> chunks` for a pattern string. A named pattern cuts Latin-1 text with its
    `re` spelling (LATIN1_PATTERNS, tested to cut alike) and other text with `regex`; a
    custom pattern always uses `regex` and is checked to cover the text."""
    unicode = compile_pattern(pattern).findall
    name = pattern_name(pattern)
    if name is None:

        def split_custom(text: str) -> list[str]:
            chunks = unicode(text)
            check_covers(chunks, text)
            return chunks

        return split_custom
    latin1 = re.compile(LATIN1_PATTERNS[name]).findall

    def split_named(text: str) -> list[str]:
        if text.isascii():  # a flag Python keeps: no need to read the text
            return latin1(text)
        try:
            text.encode("latin-1")  # stops at the first character above U+00FF
        except UnicodeEncodeError:
            return _split_mixed(text, latin1, unicode)
        return latin1(text)

    return split_named


_WIDE = re.compile(r"[^\x00-\xff]")  # a character above U+00FF


def _split_mixed(text: str, latin1, unicode) -> list[str]:
    """The chunks of a text with some characters above U+00FF (German text's „quotes“):
    the lines around each such character are cut by `unicode` (regex), the rest, Latin-1,
    by `latin1` (re). Lines are parted only at `next_cut`/`previous_cut`, where the
    chunks of the parts are the chunks of the whole."""
    chunks, start = [], 0
    found = _WIDE.search(text)
    while found:
        low = previous_cut(text, found.start(), start)
        start_next = next_cut(text, found.end())
        chunks += latin1(text[start:low])
        chunks += unicode(text[low:start_next])
        start = start_next
        found = _WIDE.search(text, start)
    return chunks + latin1(text[start:])


def _lone_newline(text: str, i: int) -> bool:
    return 0 < i < len(text) - 1 and not text[i - 1].isspace() and not text[i + 1].isspace()


def next_cut(text: str, position: int) -> int:
    """The first place at or after `position` just after a newline between two non-space
    characters (len(text) if none). Both named patterns always end a chunk there, whatever
    follows (the newline ends a letter, digit or punctuation chunk, or is a chunk of its
    own), so a text cut there splits into the same chunks as the whole."""
    i = text.find("\n", max(position - 1, 0))
    while i != -1 and not _lone_newline(text, i):
        i = text.find("\n", i + 1)
    return len(text) if i == -1 else i + 1


def previous_cut(text: str, position: int, floor: int = 0) -> int:
    """The last such place at or before `position` and not before `floor` (else floor)."""
    i = text.rfind("\n", floor, position)
    while i != -1 and not _lone_newline(text, i):
        i = text.rfind("\n", floor, i)
    return floor if i == -1 else i + 1
