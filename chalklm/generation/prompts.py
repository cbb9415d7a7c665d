"""Prompts: what a caller may pass as prompts, turned into one list of ids per row.

An empty prompt starts from the tokenizer's <|endoftext|> token if it has one (GPT-2's
way), else from a newline (`beginning`): the one place that decides it, for `generate`,
`chalklm sample` and the trainer's sample alike.
"""

from __future__ import annotations

import numpy as np

from chalklm.errors import ConfigError


def beginning(tokenizer) -> tuple[list[int], str]:
    """What an empty prompt starts from, and its name: the tokenizer's `<|endoftext|>`
    token (GPT-2's beginning-of-text) if it has one, else a newline."""
    special = getattr(getattr(tokenizer, "special", None), "ids", {}) or {}
    if "<|endoftext|>" in special:
        return [special["<|endoftext|>"]], "the <|endoftext|> token"
    try:
        return tokenizer.encode("\n"), "a newline"
    except Exception:  # a vocabulary without a newline  # noqa: BLE001
        return [0], "token 0 (the vocabulary has no newline)"


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{name} must be a whole number above 0, got {value!r}")
    return int(value)


def prompt_rows(ids, tokenizer, vocab_size: int | None) -> list[list[int]]:
    """One list of ids per prompt, from: ids, a list of id lists, an array, or text(s)."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, str) or (isinstance(ids, (list, tuple)) and ids
                                and all(isinstance(x, str) for x in ids)):
        if tokenizer is None:
            raise ConfigError("a text prompt needs tokenizer= to turn it into ids")
        ids = [tokenizer.encode(t) for t in ([ids] if isinstance(ids, str) else ids)]
    if not isinstance(ids, (list, tuple)):
        raise ConfigError(f"prompts must be a list of ids or of id lists, got {type(ids).__name__}")
    if not ids or all(isinstance(x, (int, np.integer)) for x in ids):
        ids = [ids]  # one prompt
    rows = []
    for n, row in enumerate(ids):
        if not isinstance(row, (list, tuple)) or not all(
                isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in row):
            raise ConfigError(f"prompt {n} must be a list of whole-number ids")
        if not row:
            if tokenizer is None:
                raise ConfigError(f"prompt {n} is empty; give at least one id, or pass "
                                  "tokenizer= to start from its beginning token")
            row = beginning(tokenizer)[0]
        if vocab_size is not None and not all(0 <= x < vocab_size for x in row):
            bad = next(x for x in row if not 0 <= x < vocab_size)
            raise ConfigError(f"prompt {n}: id {bad} is outside the vocabulary "
                              f"(0..{vocab_size - 1})")
        rows.append([int(x) for x in row])
    return rows
