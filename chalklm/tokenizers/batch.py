"""Encoding many texts on all cores.

Python runs one thread of Python code at a time, and BPE encoding is Python code, so
threads do not help (benchmarks/tokenizer.py measures it); worker processes do. Each
worker gets the tokenizer once (forked, or rebuilt from its JSON state) and then only
texts and ids cross between processes.
"""

from __future__ import annotations

import multiprocessing
import os
from array import array

_MIN_CHARS_PER_WORKER = 1 << 16  # below this, starting processes costs more than it saves
_worker_tokenizer = None


def _start_worker(tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_in_worker(job) -> tuple[bytes, list[int]]:
    """Ids of a slice of texts as one packed array (pickling many small lists is slow)."""
    texts, allowed_special = job
    packed, lengths = array("I"), []
    for text in texts:
        ids = _worker_tokenizer.encode(text, allowed_special)
        packed.extend(ids)
        lengths.append(len(ids))
    return packed.tobytes(), lengths


def _unpack(packed: bytes, lengths: list[int]) -> list[list[int]]:
    ids = array("I")
    ids.frombytes(packed)
    out, start = [], 0
    for length in lengths:
        out.append(ids[start : start + length].tolist())
        start += length
    return out


def encode_batch(tokenizer, texts: list[str], allowed_special, num_workers: int | None):
    workers = num_workers or os.cpu_count() or 1
    total = sum(map(len, texts))
    workers = max(1, min(workers, len(texts), total // _MIN_CHARS_PER_WORKER))
    if workers == 1:
        return [tokenizer.encode(text, allowed_special) for text in texts]
    tokenizer.special.allowed(allowed_special, "")  # a bad mode fails here, not in a worker
    per_job = max(1, len(texts) // (workers * 4))
    jobs = [(texts[i : i + per_job], allowed_special) for i in range(0, len(texts), per_job)]
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, _start_worker, (tokenizer,)) as pool:
        parts = pool.map(_encode_in_worker, jobs)
    return [ids for packed, lengths in parts for ids in _unpack(packed, lengths)]
