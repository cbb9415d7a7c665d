"""Argument types and text input shared by several subcommands (each rule in one place)."""

from __future__ import annotations

import argparse
import sys

from chalklm.errors import DataError
from chalklm.training.config import MAX_SEED


def _number(convert, kind: str, allowed, wanted: str, name: str):
    """An argparse type: `convert(text)`, refused with one line unless `allowed(value)`.
    (`not allowed(...)` rather than a reversed test, so NaN is refused too.)"""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not allowed(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    parse.__name__ = name
    return parse


positive_int = _number(int, "a whole number", lambda v: v > 0, "a number above 0",
                       "positive_int")
positive_float = _number(float, "a number", lambda v: v > 0, "a number above 0",
                         "positive_float")
# from 0 up: a seed, a count that may be zero
non_negative_int = _number(int, "a whole number", lambda v: v >= 0, "0 or more",
                           "non_negative_int")
# from 0 up: a temperature, a length penalty
non_negative_float = _number(float, "a number", lambda v: v >= 0, "0 or more",
                             "non_negative_float")
# a seed: what TrainConfig and the samplers accept
seed = _number(int, "a whole number", lambda v: 0 <= v <= MAX_SEED,
               f"a whole number from 0 to {MAX_SEED}", "seed")


def utf8_text(text: str, where: str) -> str:
    """`text` as given on the command line or stdin, refused if its bytes were not UTF-8.

    Python hands such bytes over as lone surrogates (U+DC80..U+DCFF), which a tokenizer
    would turn into U+FFFD without a word; a --file with the same bytes is refused, so
    these are too, with the same message."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError as exc:
        start = exc.start
    try:  # the byte offset, as for a file
        text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
    except UnicodeEncodeError:  # a surrogate no byte stands for: say where it is
        raise DataError(f"{where}: character {start} is a lone surrogate, not text") from None
    raise DataError(f"{where}: not valid UTF-8 at byte {start}; convert it, e.g. with "
                    "iconv -t UTF-8")


def read_stdin() -> str:
    """All of standard input as UTF-8 text (its bytes, whatever the locale says; a stream
    of text without bytes, as a caller may put in sys.stdin, is read as it is)."""
    raw = getattr(sys.stdin, "buffer", None)
    text = raw.read().decode("utf-8", "surrogateescape") if raw else sys.stdin.read()
    return utf8_text(text, "standard input")
