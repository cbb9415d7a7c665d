"""Training batches: a text tokenized once into a memory-mapped file, cut into windows.

Tokenizing Tiny Shakespeare takes a moment and a BPE run much longer, so the ids are
written once to the user cache (`tokens/` under `registry.cache_dir()`, never beside the
user's data) and memory-mapped afterwards. The file is named by what the ids depend on:
the text's content (size, mtime and sha256 of its bytes) and the tokenizer's fingerprint,
so an edited text or another tokenizer never reads stale ids.

A batch is `batch_size` random windows of `block_size + 1` ids: the inputs are the first
`block_size`, the targets the same ids shifted by one (next-token prediction). Window
positions depend only on (seed, batch index), so resuming or splitting work across
processes draws exactly the batches a single uninterrupted run would.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from chalklm.data.registry import DATASETS, cache_dir, dataset_file, load_text
from chalklm.errors import DataError
from chalklm.files import write_atomic

VAL_FRACTION = 0.1  # the last 10% of the tokens (nanoGPT's split)


def _source_path(data: str) -> Path | None:
    """The file a dataset's text comes from (None for python-docs)."""
    if data in DATASETS:
        files = DATASETS[data].files
        return dataset_file(data, "text") if "text" in files else None
    return Path(data)


def content_key(data: str) -> str:
    """What the text of `data` is: size, mtime and sha256 of its file's bytes (of the text
    itself for python-docs, which has no file)."""
    source = _source_path(data)
    if source is None or not source.is_file():  # python-docs, or load_text's one-line error
        return hashlib.sha256(load_text(data).encode()).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    stat = source.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}-{digest.hexdigest()}"


def token_file_path(data: str, fingerprint: str) -> Path:
    """Where the token cache of `data` under the tokenizer `fingerprint` lives:
    `<name>.<source and tokenizer>.<content>.tokens` in the user cache."""
    source = _source_path(data)
    stem = source.name if source is not None else data
    where = source.resolve() if source is not None else data
    origin = hashlib.sha256(f"{where} | {fingerprint}".encode()).hexdigest()[:12]
    content = hashlib.sha256(content_key(data).encode()).hexdigest()[:16]
    return cache_dir() / "tokens" / f"{stem}.{origin}.{content}.tokens"


def _remove_stale(path: Path) -> None:
    """Remove the caches of earlier contents of the same text and tokenizer: they can never
    be read again (a file still memory-mapped by a running process stays readable)."""
    origin = path.name.rsplit(".", 3)[1]  # <name>.<origin>.<content>.tokens
    for old in path.parent.glob(f"*.{origin}.*.tokens"):
        if old != path:
            old.unlink(missing_ok=True)


def _dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def load_tokens(data: str, tokenizer) -> np.memmap:
    """All ids of dataset `data` as a read-only memory map, tokenizing on first use."""
    path = token_file_path(data, tokenizer.fingerprint())
    dtype = _dtype(tokenizer.vocab_size)
    if not path.is_file():
        ids = np.asarray(tokenizer.encode(load_text(data)), dtype=dtype)
        if len(ids) < 2:
            raise DataError(f"{data}: too short to train on ({len(ids)} tokens)")
        write_atomic(path, ids.tobytes())
        _remove_stale(path)
    return np.memmap(path, dtype=dtype, mode="r")


class TokenBatches:
    """Random windows from the train or val part of a token array."""

    def __init__(self, tokens: np.ndarray, block_size: int, split: str = "train",
                 val_fraction: float = VAL_FRACTION):
        n_val = int(len(tokens) * val_fraction)
        self.tokens = tokens[: len(tokens) - n_val] if split == "train" else tokens[-n_val:]
        self.block_size = block_size
        if len(self.tokens) < block_size + 2:
            raise DataError(f"the {split} split has {len(self.tokens)} tokens, fewer than "
                            f"block_size + 2 = {block_size + 2}; use a smaller block_size "
                            "or more text")

    def batch(self, batch_size: int, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch number `index` of the run seeded `seed`: (inputs, targets), each (B, T)."""
        rng = np.random.default_rng([seed, index])
        starts = rng.integers(0, len(self.tokens) - self.block_size - 1, size=batch_size)
        windows = np.stack([self.tokens[s: s + self.block_size + 1] for s in starts])
        windows = windows.astype(np.int64)
        return windows[:, :-1], windows[:, 1:]

    def sequential(self, batch_size: int):
        """Every token once, in order: (inputs, targets) batches of non-overlapping windows
        (the last window is shorter). For the full validation loss."""
        T, ids = self.block_size, self.tokens
        starts = list(range(0, len(ids) - 1, T))
        for i in range(0, len(starts), batch_size):
            chunk = starts[i: i + batch_size]
            length = min(T, len(ids) - 1 - chunk[-1])
            if length < T:  # the ragged last window goes alone
                yield from self._windows(chunk[:-1], T)
                yield self._windows_array([chunk[-1]], length)
            else:
                yield self._windows_array(chunk, T)

    def _windows(self, starts, length):
        if starts:
            yield self._windows_array(starts, length)

    def _windows_array(self, starts, length):
        w = np.stack([self.tokens[s: s + length + 1] for s in starts]).astype(np.int64)
        return w[:, :-1], w[:, 1:]

    def __len__(self) -> int:
        return len(self.tokens)
