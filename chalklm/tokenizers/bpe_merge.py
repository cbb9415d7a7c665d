"""Applying learned merges to one chunk: the encoding half of BPE.

The rule is tiktoken's: among adjacent pairs whose joined bytes are a token, merge the
one whose token has the lowest id (the earliest learned), the leftmost on a tie, and
repeat until no adjacent pair joins into a token. A chunk whose bytes are a token
already is that token at once.

`pair_table` maps `a * PAIR_BASE + b` to the id of the token spelled bytes(a) + bytes(b),
for every such pair (not only the pairs that were merged in training), so that a
vocabulary read from a tiktoken file encodes exactly as tiktoken does.

`_merge.c` is `merge_short` in C, 8-10x faster on a new word (0.8 against 7 µs,
measured). It is built when chalklm is installed with a C compiler at hand;
`native_merger` returns it, or None when it was not built or `CHALKLM_PURE_PYTHON=1`
asks for the Python loops here.
"""

from __future__ import annotations

import heapq
import os

from chalklm.tokenizers.bpe_train import PAIR_BASE

SHORT_CHUNK = 24  # up to this many bytes merge_short beats the heap (measured)
_NO_MERGE = 1 << 62  # larger than any id: the pair joins into no token


def build_pair_table(vocab: list[bytes | None], rank: dict[bytes, int]) -> dict[int, int]:
    """{a * PAIR_BASE + b: id of bytes(a) + bytes(b)} over every split of every token."""
    table: dict[int, int] = {}
    for token_id, token in enumerate(vocab):
        if token is None or len(token) < 2:
            continue
        for cut in range(1, len(token)):
            left, right = rank.get(token[:cut]), rank.get(token[cut:])
            if left is not None and right is not None:
                table[left * PAIR_BASE + right] = token_id
    return table


def native_merger(pair_table: dict[int, int], byte_ranks: list[int], id_offset: int):
    """The C merge loop over this vocabulary (`.merge(data: bytes) -> ids` for chunks of at
    most `.max_bytes` bytes), or None: then the Python loops below do the work."""
    if os.environ.get("CHALKLM_PURE_PYTHON") == "1":
        return None
    try:
        from chalklm.tokenizers._merge import Merger
    except ImportError:
        return None
    return Merger(pair_table, byte_ranks, PAIR_BASE, id_offset)


def merge_short(ids: list[int], table: dict[int, int]) -> list[int]:
    """tiktoken's loop: keep the merged id of every adjacent pair, merge the lowest (the
    leftmost of equals), then refresh only the two pairs around it. Each step is O(n),
    but `min` and `index` scan in C, so it is the fastest way for a short chunk."""
    get = table.get
    merged = [get(ids[i] * PAIR_BASE + ids[i + 1], _NO_MERGE) for i in range(len(ids) - 1)]
    while merged:
        best = min(merged)
        if best == _NO_MERGE:
            break
        i = merged.index(best)
        ids[i : i + 2] = (best,)
        del merged[i]  # merged[k] is again the pair (ids[k], ids[k + 1]) for every k != i - 1, i
        if i < len(merged):
            merged[i] = get(best * PAIR_BASE + ids[i + 1], _NO_MERGE)
        if i > 0:
            merged[i - 1] = get(ids[i - 1] * PAIR_BASE + best, _NO_MERGE)
    return ids


def merge_long(ids: list[int], table: dict[int, int]) -> list[int]:
    """The same merges in O(n log n): a heap of (token id, position) over a linked list.

    Positions never reorder, so the smallest (id, position) is the leftmost lowest-id
    pair. A heap entry is stale when its left token died or its pair has changed since.
    Each entry is one integer, id * 2**32 + position, which the heap compares fastest.
    """
    get, push, pop = table.get, heapq.heappush, heapq.heappop
    n = len(ids)
    ids = list(ids)
    following = list(range(1, n + 1))  # following[i] == n: i is the last token
    preceding = list(range(-1, n - 1))
    heap = [
        (m << 32) | i
        for i in range(n - 1)
        if (m := get(ids[i] * PAIR_BASE + ids[i + 1])) is not None
    ]
    heapq.heapify(heap)
    while heap:
        entry = pop(heap)
        merged, i = entry >> 32, entry & 0xFFFFFFFF
        j = following[i] if ids[i] >= 0 else n
        if j == n or get(ids[i] * PAIR_BASE + ids[j]) != merged:
            continue
        ids[i], ids[j] = merged, -1
        k = following[j]
        following[i] = k
        if k < n:
            preceding[k] = i
            if (m := get(merged * PAIR_BASE + ids[k])) is not None:
                push(heap, (m << 32) | i)
        p = preceding[i]
        if p >= 0 and (m := get(ids[p] * PAIR_BASE + merged)) is not None:
            push(heap, (m << 32) | p)
    return [t for t in ids if t >= 0]
