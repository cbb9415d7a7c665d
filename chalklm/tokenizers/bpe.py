"""Byte-level BPE: sub-word tokens learned by merging the most frequent pair of tokens.

Every text is first UTF-8 bytes, and ids 0-255 are the 256 bytes, so any text can be
encoded and nothing is ever unknown. Training repeatedly merges the most frequent
adjacent pair into a new token (`bpe_train`); encoding replays the merges on each chunk
of the text (`bpe_merge`). The text is cut into chunks by a regex first (`patterns`),
so that merges never cross a word/number/punctuation boundary.

Encoding remembers the ids of every chunk it has seen: text repeats its words, so most
chunks cost one dictionary look-up.

Interop with tiktoken and Hugging Face tokenizers lives in `formats`.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from chalklm.errors import TokenizerError
from chalklm.tokenizers import formats
from chalklm.tokenizers.base import Tokenizer
from chalklm.tokenizers.bpe_merge import (
    SHORT_CHUNK,
    build_pair_table,
    merge_long,
    merge_short,
    native_merger,
)
from chalklm.tokenizers.bpe_train import (
    count_chunks,
    replace_surrogates,
    train_merges,
    utf8_bytes,
)
from chalklm.tokenizers.patterns import (
    pattern_name,
    resolve_pattern,
    splitter,
)
from chalklm.tokenizers.special import SpecialTokens

FORMAT_VERSION = 1
NORMAL_FORMS = (None, "NFC", "NFD", "NFKC", "NFKD")  # unicodedata's, and HF's normalizers
_CACHE_LIMIT = 1 << 18  # distinct chunks remembered before the cache starts afresh
_CACHE_MAX_CHARS = 256  # longer chunks are rare and not worth remembering
_CACHE_CHECK_EVERY = 4096  # texts encode_each encodes between looks at the cache's size


class BPETokenizer(Tokenizer):
    """Byte-level BPE. Build one with `BPETokenizer.train(...)`, `load`, or the `from_*` readers.

    State: the split `pattern`; `byte_order`, the byte each of the first 256 tokens
    stands for (0..255 in chalklm's own, a permutation in GPT-2's files); `merges`, where
    merge i joins the tokens with ids (a, b) into the token 256 + i; `special_tokens`
    ({text: id}). `id_offset` shifts every ordinary id, for files that number special
    tokens first (Hugging Face's RoBERTa-style layout); it is 0 in chalklm's own.
    A token's rank is its position among the ordinary tokens: id = rank + id_offset.
    `chat`: for a chat model's tokenizer, how a conversation becomes text (a Jinja2
    template, the special tokens it names, the tokens that end a turn; chalklm.chat);
    plain data kept with the tokenizer, so that it travels with every checkpoint.
    `normalize`: a Unicode normal form ("NFC", ...) every text is put in before it is
    split, as some Hugging Face files ask (Qwen2's: NFC); None in chalklm's own.
    """

    type_name = "bpe"

    def __init__(
        self,
        merges: Iterable[Sequence[int]] = (),
        pattern: str = "gpt4",
        special_tokens: dict[str, int] | None = None,
        byte_order: Sequence[int] | None = None,
        id_offset: int = 0,
        chat: dict[str, Any] | None = None,
        normalize: str | None = None,
    ):
        if chat is not None and not isinstance(chat, dict):
            raise TokenizerError(f"chat must be a dict or None, got {type(chat).__name__}")
        if normalize not in NORMAL_FORMS:
            raise TokenizerError(f"normalize must be one of {NORMAL_FORMS}, got {normalize!r}")
        self.chat, self.normalize = chat, normalize
        self.pattern = resolve_pattern(pattern)
        self._split = splitter(self.pattern)
        self.byte_order = list(range(256)) if byte_order is None else [int(b) for b in byte_order]
        if sorted(self.byte_order) != list(range(256)):
            raise TokenizerError("byte_order must list each of the 256 bytes exactly once")
        if not isinstance(id_offset, int) or id_offset < 0:
            raise TokenizerError(f"id_offset must be a whole number >= 0, got {id_offset!r}")
        self.id_offset = id_offset
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.vocab: list[bytes] = [bytes([b]) for b in self.byte_order]  # rank -> bytes
        for i, (a, b) in enumerate(self.merges):
            left, right = a - id_offset, b - id_offset
            if not (0 <= left < 256 + i and 0 <= right < 256 + i):
                raise TokenizerError(f"merge {i} ({a}, {b}) uses an id not yet made")
            self.vocab.append(self.vocab[left] + self.vocab[right])
        self.rank = {token: i for i, token in enumerate(self.vocab)}  # bytes -> rank
        if len(self.rank) != len(self.vocab):
            raise TokenizerError("two merges make the same token; the merges are corrupt")
        ordinary = range(id_offset, id_offset + len(self.vocab))
        self.special = SpecialTokens(special_tokens or {}, ordinary)
        self._byte_ranks = [self.rank[bytes([b])] for b in range(256)]
        self._pair_table = build_pair_table(self.vocab, self.rank)
        self._native = native_merger(self._pair_table, self._byte_ranks, id_offset)
        self._id_bytes: list[bytes | None] = [None] * self.special.end_id  # id -> bytes
        self._id_bytes[ordinary.start : ordinary.stop] = self.vocab
        for text, token_id in self.special.ids.items():
            self._id_bytes[token_id] = text.encode("utf-8")
        self._cache = _ChunkCache(self._encode_chunk)

    # ----------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
        texts: str | Iterable[str],
        vocab_size: int,
        pattern: str = "gpt4",
        special_tokens: Sequence[str] = (),
        min_frequency: int = 2,
        progress: bool = True,
    ) -> BPETokenizer:
        """Learn merges from a text (or texts) until the vocabulary has `vocab_size` ids.

        The vocabulary is 256 bytes + the merges + `special_tokens` (whose ids come
        last). Training stops early, with a smaller vocabulary, when no pair occurs
        `min_frequency` times. Ties between equally frequent pairs go to the smallest
        (left id, right id), so the same texts always give the same merges. Special
        tokens found in the texts are cut out before counting.
        """
        pattern = resolve_pattern(pattern)
        specials = SpecialTokens.from_list(special_tokens, first_id=0)
        if not isinstance(vocab_size, int) or vocab_size < 256 + len(specials.ids):
            raise TokenizerError(
                f"vocab_size must be at least 256 (the bytes) + {len(specials.ids)} special "
                f"tokens, got {vocab_size!r}"
            )
        if not isinstance(min_frequency, int) or min_frequency < 1:
            raise TokenizerError(
                f"min_frequency must be a whole number >= 1, got {min_frequency!r}"
            )
        if isinstance(texts, str):
            texts = [texts]
        chunk_text = count_chunks(
            (part for text in texts for part in specials.split_out(text)), pattern, progress
        )
        chunk_bytes: Counter[bytes] = Counter()
        for chunk, count in chunk_text.items():
            chunk_bytes[utf8_bytes(chunk)] += count
        num_merges = vocab_size - 256 - len(specials.ids)
        merges = train_merges(chunk_bytes, num_merges, min_frequency, progress=progress)
        first = 256 + len(merges)
        return cls(merges, pattern, {t: first + i for i, t in enumerate(specials.ids)})

    # ----------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        """One more than the largest id (ids of special tokens may leave gaps)."""
        return self.special.end_id

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of `text`, reading special-token strings as plain text."""
        if not _is_utf8(text):  # lone surrogates become U+FFFD, as in tiktoken
            text = replace_surrogates(text)
        if self.normalize:
            text = unicodedata.normalize(self.normalize, text)
        cache = self._cache
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        # Each chunk's ids come from the cache, or from _ChunkCache.__missing__ the first time.
        return list(chain.from_iterable(map(cache.__getitem__, self._split(text))))

    def encode(self, text: str, allowed_special: str | set[str] = "none_raise") -> list[int]:
        """Ids of `text`. `allowed_special`: "none_raise" (a special token's text is an
        error, as in tiktoken), "none" (read it as plain text), "all", or a set of the
        special tokens to encode as their ids (any other found in the text is an error)."""
        allowed = self.special.allowed(allowed_special, text)
        if not allowed:
            return self.encode_ordinary(text)
        out: list[int] = []
        for part, special_id in self.special.split(text, allowed):
            if special_id is None:
                out.extend(self.encode_ordinary(part))
            else:
                out.append(special_id)
        return out

    def encode_each(self, texts: Sequence[str], allowed_special="none_raise") -> list[list[int]]:
        """`encode` of each text, in this process. For a short text the checks each call
        makes cost as much as encoding it, so here they are made once, over the texts
        joined (a special token or a lone surrogate in one text is one in the join too)."""
        joined = "".join(texts)
        if self.special.allowed(allowed_special, joined) or not _is_utf8(joined) or \
                self.normalize:
            return [self.encode(text, allowed_special) for text in texts]
        split, cache, out = self._split, self._cache, []
        for start in range(0, len(texts), _CACHE_CHECK_EVERY):
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            chunk_ids = cache.__getitem__
            out.extend(
                list(chain.from_iterable(map(chunk_ids, split(text))))
                for text in texts[start : start + _CACHE_CHECK_EVERY]
            )
        return out

    def encode_batch(
        self,
        texts: Sequence[str],
        allowed_special: str | set[str] = "none_raise",
        num_workers: int | None = None,
    ) -> list[list[int]]:
        """`encode` of each text, spread over `num_workers` processes (default: one per core
        this process may use); a small input is encoded here, as starting workers costs."""
        from chalklm.tokenizers.batch import encode_batch

        return encode_batch(self, list(texts), allowed_special, num_workers)

    def _encode_chunk(self, chunk: str) -> list[int]:
        data = chunk.encode("utf-8")
        whole = self.rank.get(data)
        if whole is not None:
            ranks = [whole]
        elif self._native is not None and len(data) <= self._native.max_bytes:
            return self._native.merge(data)
        else:
            byte_ranks = self._byte_ranks
            ranks = [byte_ranks[b] for b in data]
            merge = merge_short if len(ranks) <= SHORT_CHUNK else merge_long
            ranks = merge(ranks, self._pair_table)
        offset = self.id_offset
        return [r + offset for r in ranks] if offset else ranks

    # ----------------------------------------------------------------- decoding
    def id_to_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for (a special token: its UTF-8 text)."""
        return self.decode_bytes([token_id])

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        if hasattr(ids, "tolist"):  # numpy arrays and torch tensors
            ids = ids.tolist()
        ids = ids if isinstance(ids, list) else list(ids)
        table = self._id_bytes
        try:
            if not ids or min(ids) >= 0:
                return b"".join([table[i] for i in ids])
        except (IndexError, TypeError):
            pass
        for position, i in enumerate(ids):
            if not isinstance(i, int) or not 0 <= i < len(table) or table[i] is None:
                raise TokenizerError(
                    f"id {i!r} at position {position} is not in this vocabulary of "
                    f"{self.vocab_size} ids"
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """The text of `ids`. A cut through a multi-byte character decodes as U+FFFD
        (`errors="replace"`) unless another `errors` of bytes.decode is asked for."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # ----------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        merges = [
            [a, b, self.vocab[256 + i].decode("utf-8", "backslashreplace")]
            for i, (a, b) in enumerate(self.merges)
        ]  # the third item is the merged token as text, for people reading the file
        data = {
            "type": self.type_name,
            "version": FORMAT_VERSION,
            "pattern": self.pattern,
            "special_tokens": dict(self.special.ids),
            "byte_order": self.byte_order,
            "id_offset": self.id_offset,
        }
        if self.chat is not None:
            data["chat"] = self.chat
        if self.normalize is not None:
            data["normalize"] = self.normalize
        return {**data, "merges": merges}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BPETokenizer:
        if data.get("version") != FORMAT_VERSION:
            raise TokenizerError(
                f"unsupported bpe tokenizer format version {data.get('version')!r}"
            )
        merges = [(m[0], m[1]) for m in data["merges"]]  # m[2] is the readable token, for people
        return cls(
            merges,
            data["pattern"],
            data["special_tokens"],
            data["byte_order"],
            data.get("id_offset", 0),
            data.get("chat"),
            data.get("normalize"),
        )

    def save(self, path: str | os.PathLike) -> None:
        """One readable JSON file: pattern, special tokens, then one merge per line."""
        formats.write_readable_json(path, self.to_dict())

    # ----------------------------------------------------------------- interop
    @classmethod
    def from_ranks(
        cls, ranks: dict[bytes, int], pattern: str, special_tokens: dict[str, int] | None = None
    ) -> BPETokenizer:
        """A tokenizer from {token bytes: id} (a tiktoken vocabulary), merges recovered."""
        byte_order, merges, id_offset = formats.merges_from_ranks(ranks)
        return cls(merges, pattern, special_tokens or {}, byte_order, id_offset)

    @classmethod
    def from_tiktoken_file(
        cls, path: str | os.PathLike, pattern: str, special_tokens: dict[str, int] | None = None
    ) -> BPETokenizer:
        """Read a `.tiktoken` ranks file (e.g. GPT-4's cl100k_base.tiktoken)."""
        return cls.from_ranks(formats.read_tiktoken(path), pattern, special_tokens)

    @classmethod
    def from_hf(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a byte-level BPE `tokenizer.json` of Hugging Face tokenizers (e.g. GPT-2's)."""
        ranks, pattern, special_tokens, normalize = formats.read_hf(path)
        tokenizer = cls.from_ranks(ranks, pattern, special_tokens)
        tokenizer.normalize = normalize
        return tokenizer

    def save_tiktoken(self, path: str | os.PathLike) -> None:
        formats.write_tiktoken(path, self.vocab, self.id_offset)

    def to_tiktoken(self, name: str = "chalklm"):
        """A `tiktoken.Encoding` with this vocabulary, pattern and special tokens."""
        return formats.to_tiktoken(name, self.vocab, self.id_offset, self.pattern,
                                   self.special.ids)

    def save_hf(self, path: str | os.PathLike) -> None:
        """Write a `tokenizer.json` for `tokenizers.Tokenizer.from_file` / transformers."""
        formats.write_hf(path, self.vocab, self.id_offset, self.pattern, self.special.ids,
                         self.normalize)

    def __reduce__(self):  # pickle (for worker processes) as the small JSON state
        return (type(self).from_dict, (self.to_dict(),))

    def __repr__(self) -> str:
        name = pattern_name(self.pattern) or "custom"
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"pattern={name!r}, special_tokens={len(self.special.ids)})"
        )


def _is_utf8(text: str) -> bool:
    """False when the text holds a lone surrogate, which UTF-8 cannot encode."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _ChunkCache(dict):
    """{chunk: ids}: text repeats its words, so most chunks are merged only once."""

    def __init__(self, encode_chunk):
        super().__init__()
        self.encode_chunk = encode_chunk

    def __missing__(self, chunk: str) -> list[int]:
        ids = self.encode_chunk(chunk)
        if len(chunk) <= _CACHE_MAX_CHARS:
            self[chunk] = ids
        return ids


__all__ = ["BPETokenizer"]
