"""Argument types shared by several subcommands (so each rule lives in one place)."""

from __future__ import annotations

import argparse


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
