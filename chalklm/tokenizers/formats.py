"""Files: chalklm's readable JSON, tiktoken's `.tiktoken` ranks, Hugging Face `tokenizer.json`.

tiktoken stores a vocabulary as ranks: each token's bytes and its id, lowest first, with
no merges; encoding merges the lowest-ranked joinable pair, so ranks are all it needs.
Hugging Face stores `vocab` ({token: id}) and `merges` over a "byte-level" alphabet in
which every byte is a printable character (GPT-2's `bytes_to_unicode`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
from pathlib import Path
from typing import Any

from chalklm.errors import TokenizerError
from chalklm.files import write_atomic
from chalklm.tokenizers.base import write_json
from chalklm.tokenizers.bpe_merge import build_pair_table
from chalklm.tokenizers.bpe_train import PAIR_BASE
from chalklm.tokenizers.patterns import GPT2_PATTERN, export_pattern, import_pattern


def write_readable_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """JSON with each item of a list of lists (a merge) on its own line."""
    lines = []
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], list):
            items = ",\n".join(f"  {json.dumps(v, ensure_ascii=False)}" for v in value)
            lines.append(f"{json.dumps(key)}: [\n{items}\n ]")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    text = "{\n " + ",\n ".join(lines) + "\n}\n"
    write_atomic(path, text)


# ----------------------------------------------------------------- ranks -> merges
def merges_from_ranks(
    ranks: dict[bytes, int],
) -> tuple[list[int], list[tuple[int, int]], int]:
    """(byte_order, merges, id_offset) that rebuild a {token bytes: id} vocabulary.

    The ids must be consecutive, the 256 single bytes first. Each longer token is split
    the way BPE would have built it from lower-ranked tokens (minbpe's recover_merges).
    """
    by_id = sorted(ranks.items(), key=lambda item: item[1])
    offset = by_id[0][1] if by_id else 0
    if [i for _, i in by_id] != list(range(offset, offset + len(by_id))):
        raise TokenizerError("the vocabulary ids are not consecutive (there are gaps)")
    if len(by_id) < 256 or any(len(token) != 1 for token, _ in by_id[:256]):
        raise TokenizerError("the first 256 ids must be the 256 single bytes (byte-level BPE)")
    byte_order = [token[0] for token, _ in by_id[:256]]
    merges = [_split_in_two(token, rank, ranks) for token, rank in by_id[256:]]
    return byte_order, merges, offset


def _split_in_two(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[int, int]:
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < rank and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) == 2 and ranks[parts[0]] < rank and ranks[parts[1]] < rank:
        return ranks[parts[0]], ranks[parts[1]]
    for cut in range(1, len(token)):  # not reachable by merging: any split of earlier tokens
        left, right = ranks.get(token[:cut]), ranks.get(token[cut:])
        if left is not None and right is not None and left < rank and right < rank:
            return left, right
    raise TokenizerError(f"token {token!r} (id {rank}) is not two earlier tokens joined")


# ----------------------------------------------------------------- tiktoken
def write_tiktoken(path: str | os.PathLike, vocab: list[bytes], id_offset: int = 0) -> None:
    """One line per token: base64 of its bytes, a space, its id (tiktoken's format)."""
    lines = [
        f"{base64.b64encode(token).decode('ascii')} {rank + id_offset}\n"
        for rank, token in enumerate(vocab)
    ]
    write_atomic(path, "".join(lines))


def read_tiktoken(path: str | os.PathLike) -> dict[bytes, int]:
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"{path}: no such .tiktoken file")
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise TokenizerError(
                f"{path}:{number}: expected '<base64 token> <id>', got {line[:60]!r}"
            ) from None
    return ranks


def to_tiktoken(name: str, vocab: list[bytes], id_offset: int, pattern: str,
                special_ids: dict[str, int]):
    """A `tiktoken.Encoding` of a vocabulary (token bytes in id order, from `id_offset`)."""
    try:
        import tiktoken
    except ImportError:
        raise TokenizerError("to_tiktoken needs tiktoken: pip install tiktoken") from None
    return tiktoken.Encoding(
        name=name,
        pat_str=export_pattern(pattern, "tiktoken"),
        mergeable_ranks={token: rank + id_offset for rank, token in enumerate(vocab)},
        special_tokens=dict(special_ids),
    )


# ----------------------------------------------------------------- Hugging Face
@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (space -> 'Ġ', newline -> 'Ċ')."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    extra = iter(range(256, 512))
    return {b: chr(b) if b in printable else chr(next(extra)) for b in range(256)}


def _to_hf_text(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def write_hf(path: str | os.PathLike, tokens: list[bytes], id_offset: int, pattern: str,
             special_ids: dict[str, int], normalize: str | None) -> None:
    """A `tokenizer.json`: Split(pattern) then ByteLevel, and a BPE model whose merges list
    every pair that joins into a token, ordered by the token's id, so that Hugging Face's
    lowest-merge-first rule picks what tiktoken's lowest-rank-first rule picks.
    tokens: the vocabulary's bytes in id order (the first has id `id_offset`)."""
    vocab = {_to_hf_text(token): rank + id_offset for rank, token in enumerate(tokens)}
    for text, token_id in special_ids.items():  # as in GPT-2's file: HF numbers an added
        if text in vocab:  # token missing from the model's vocab after the vocab instead
            raise TokenizerError(f"special token {text!r} is also an ordinary token's text")
        vocab[text] = token_id
    rank = {token: i for i, token in enumerate(tokens)}
    joins = sorted(
        (merged, *divmod(pair, PAIR_BASE))
        for pair, merged in build_pair_table(tokens, rank).items()
    )
    merges = [f"{_to_hf_text(tokens[a])} {_to_hf_text(tokens[b])}" for _, a, b in joins]
    byte_level = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": True,
        "use_regex": False,
    }
    data = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            _added_token(text, i)
            for text, i in sorted(special_ids.items(), key=lambda item: item[1])
        ],
        "normalizer": {"type": normalize} if normalize else None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": export_pattern(pattern, "hf")},
                    "behavior": "Isolated",
                    "invert": False,
                },
                byte_level,
            ],
        },
        "post_processor": None,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": vocab,
            "merges": merges,
        },
    }
    write_json(path, data)


def _added_token(text: str, token_id: int) -> dict[str, Any]:
    """A special token as Hugging Face lists it: matched verbatim, before any splitting."""
    return {
        "id": token_id,
        "content": text,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def read_hf(path: str | os.PathLike) -> tuple[dict[bytes, int], str, dict[str, int], str | None]:
    """(ranks, pattern, special tokens, Unicode normal form or None) of a byte-level BPE
    tokenizer.json."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        model = data["model"]
    except FileNotFoundError:
        raise TokenizerError(f"{path}: no such tokenizer.json") from None
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise TokenizerError(f"{path}: not a Hugging Face tokenizer.json ({exc})") from None
    if model.get("type") != "BPE":
        raise TokenizerError(f"{path}: a {model.get('type')} model, not byte-level BPE")
    _check_hf_pipeline(data, path)
    pattern = _hf_pattern(data.get("pre_tokenizer"), path)
    specials = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
    back = {c: b for b, c in bytes_to_unicode().items()}
    ranks: dict[bytes, int] = {}
    for text, i in model["vocab"].items():
        if text in specials:
            continue
        try:
            ranks[bytes(back[c] for c in text)] = i
        except KeyError:
            raise TokenizerError(
                f"{path}: token {text!r} is not in the byte-level alphabet; only byte-level "
                "BPE (GPT-2 style) files can be read"
            ) from None
    return ranks, pattern, specials, (data.get("normalizer") or {}).get("type")


# GPT-2's pattern for text whose numbers were first cut out by a `Digits` pre-tokenizer
# (SmolLM2's files): a number is its own chunk (each digit alone, or a run of digits), and
# whitespace before a number ends where a piece ended, so `(?!\S)` becomes "not followed
# by anything but whitespace or a number".
DIGITS_THEN_GPT2 = (r"""%s|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+"""
                    r"""|\s+(?![^\s\p{N}])|\s+""")


def _hf_pattern(pre: dict | None, path: Path) -> str:
    """The split regex of a pre_tokenizer: ByteLevel(use_regex) is GPT-2's; Split has its
    own; Digits then ByteLevel(use_regex) is GPT-2's with numbers cut out first."""
    steps = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else [pre]
    digits = None
    for step in steps:
        if not step:
            continue
        if step.get("type") == "Digits" and digits is None:
            digits = r"\p{N}" if step.get("individual_digits") else r"\p{N}+"
        elif step.get("type") == "Split" and "Regex" in step.get("pattern", {}) and not digits:
            return import_pattern(step["pattern"]["Regex"], "hf")
        elif step.get("type") == "ByteLevel" and step.get("use_regex", True):
            return DIGITS_THEN_GPT2 % digits if digits else GPT2_PATTERN
        elif step.get("type") != "ByteLevel":
            raise TokenizerError(f"{path}: its pre_tokenizer has a {step.get('type')} step, "
                                 "which chalklm cannot express as one split pattern")
    raise TokenizerError(f"{path}: no byte-level split found in its pre_tokenizer")


def _check_hf_pipeline(data: dict, path: Path) -> None:
    """Refuse what chalklm's byte-level BPE does not do: a normalizer other than a Unicode
    normal form (lowercasing, replacing...), added tokens that swallow spaces around them,
    or a BPE model with word prefixes."""
    normalizer = (data.get("normalizer") or {}).get("type")
    if normalizer not in (None, "NFC", "NFD", "NFKC", "NFKD"):
        raise TokenizerError(f"{path}: its normalizer ({normalizer}) changes the text before "
                             "splitting; chalklm reads files with none or a Unicode normal "
                             "form (NFC, NFD, NFKC, NFKD)")
    for token in data.get("added_tokens", []):
        for flag in ("lstrip", "rstrip", "single_word"):
            if token.get(flag):
                raise TokenizerError(f"{path}: added token {token.get('content')!r} has "
                                     f"{flag}=true; chalklm matches added tokens verbatim")
    model = data["model"]
    if model.get("byte_fallback") or model.get("continuing_subword_prefix") or \
            model.get("end_of_word_suffix"):
        raise TokenizerError(f"{path}: a BPE model with byte_fallback or word prefixes/"
                             "suffixes (SentencePiece style), not byte-level BPE")
