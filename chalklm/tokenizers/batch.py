"""Encoding many texts on all cores.

Python runs one thread of Python code at a time, and BPE encoding is Python code, so
threads do not help (benchmarks/tokenizer.py measures it); worker processes do. What
makes processes slow is everything but the encoding, so each cost is cut:

- starting: one worker per core, forked where the system can (the child starts with
  the tokenizer and its warm caches already in memory; nothing is pickled), else handed
  the tokenizer once through the pool's initializer;
- talking: a few large slices of texts go out, and each comes back as two packed arrays
  of 32-bit ids and lengths, not as thousands of small pickled lists;
- unpacking: the parent rebuilds the lists of ids slice by slice while the workers
  still encode, with the cycle collector paused (lists of ints hold no cycles, and
  building 100 000 of them would otherwise start it hundreds of times).

Small inputs are encoded in this process: starting workers would cost more than it saves.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from array import array
from contextlib import contextmanager
from itertools import accumulate

_MIN_CHARS_PER_WORKER = 1 << 16  # below this, starting processes costs more than it saves
_SLICES_PER_WORKER = 4  # a few slices each: a slow worker does not hold up the rest
_worker_tokenizer = None


def encode_batch(tokenizer, texts: list[str], allowed_special, num_workers: int | None):
    """`tokenizer.encode(text, allowed_special)` of each text, on `num_workers` processes
    (default: the cores this process may use), or here when the input is small."""
    workers = _worker_count(texts, num_workers)
    if workers == 1:
        with _cycle_collector_paused():
            return tokenizer.encode_each(texts, allowed_special)
    tokenizer.special.allowed(allowed_special, "")  # a bad mode fails here, not in a worker
    per_slice = -(-len(texts) // (workers * _SLICES_PER_WORKER))  # rounded up
    jobs = [(texts[i : i + per_slice], allowed_special) for i in range(0, len(texts), per_slice)]
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    out: list[list[int]] = []
    with context.Pool(workers, _start_worker, (tokenizer,)) as pool:
        for packed_ids, packed_lengths in pool.imap(_encode_in_worker, jobs):
            out.extend(_unpack(packed_ids, packed_lengths))
    return out


def _worker_count(texts: list[str], num_workers: int | None) -> int:
    """As many workers as asked (or cores), but each with at least
    _MIN_CHARS_PER_WORKER characters and one text to encode."""
    if num_workers is None:
        cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        num_workers = len(cores) if cores else os.cpu_count() or 1
    total_chars = sum(map(len, texts))
    return max(1, min(num_workers, len(texts), total_chars // _MIN_CHARS_PER_WORKER))


def _start_worker(tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_in_worker(job) -> tuple[bytes, bytes]:
    """The ids of a slice of texts, all in one array, and each text's number of ids."""
    texts, allowed_special = job
    ids, lengths = array("I"), array("I")
    for encoded in _worker_tokenizer.encode_each(texts, allowed_special):
        ids.extend(encoded)
        lengths.append(len(encoded))
    return ids.tobytes(), lengths.tobytes()


def _unpack(packed_ids: bytes, packed_lengths: bytes) -> list[list[int]]:
    """The lists of ids again: one list of every id, then one slice of it per text."""
    ids = array("I", packed_ids).tolist()
    lengths = array("I", packed_lengths)
    with _cycle_collector_paused():
        return [ids[end - n : end] for n, end in zip(lengths, accumulate(lengths))]


@contextmanager
def _cycle_collector_paused():
    """Pause Python's cycle collector while building many lists that cannot form cycles:
    it starts every 700 new containers and then walks the heap, which can cost more than
    the building itself."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
