"""Learning BPE merges: count chunks once, then merge the most frequent pair, again and again.

The naive method (minbpe's) recounts every pair of the whole corpus after each merge, so
each merge costs as much as reading the corpus. Here each merge costs what the merged
pair touches:

1. Cut the text into chunks with the pattern and count the distinct chunks (a corpus
   of a million words has a few tens of thousands of distinct ones).
2. Count every adjacent pair of ids, weighted by its chunk's count, and remember in
   which chunks each pair occurs.
3. Pop the most frequent pair from a heap. Counts only ever fall (except for pairs
   that contain the new token, which are pushed fresh), so a popped entry whose count
   is out of date is pushed back with its true count and the next one is tried: "lazy
   invalidation".
4. Rewrite only the chunks that contain the pair, and adjust the counts of the pairs
   around each merge: `x a b y` loses (x,a), (a,b), (b,y) and gains (x,z), (z,y).

A pair is stored as one integer `a * PAIR_BASE + b`: cheaper to hash than a tuple, and
ordered like (a, b).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

from tqdm.auto import tqdm

from chalklm.tokenizers.patterns import PATTERNS, next_cut, splitter

PAIR_BASE = 1 << 24  # ids stay below this, so a * PAIR_BASE + b orders pairs like (a, b)
_BLOCK_CHARS = 1 << 20


def utf8_bytes(text: str) -> bytes:
    """UTF-8 bytes of `text`; a lone surrogate (not encodable) becomes U+FFFD, as in tiktoken."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return replace_surrogates(text).encode("utf-8")


def replace_surrogates(text: str) -> str:
    """Join surrogate pairs into their character and turn lone surrogates into U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _blocks(text: str, pattern: str) -> Iterator[str]:
    """Cut a long text into ~1 MB blocks at `patterns.next_cut` (just after a newline
    between two non-space characters), so the chunks of the blocks are the chunks of the
    whole text. A custom pattern's text is not cut.
    """
    if pattern not in PATTERNS.values():
        yield text
        return
    start, end = 0, len(text)
    while end - start > _BLOCK_CHARS:
        cut = next_cut(text, start + _BLOCK_CHARS + 1)
        if cut == end:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


def count_chunks(texts: str | Iterable[str], pattern: str, progress: bool = True) -> Counter[str]:
    """How many times each distinct chunk occurs in `texts` (chunks never span two texts)."""
    if isinstance(texts, str):
        texts = [texts]
    split = splitter(pattern)
    counts: Counter[str] = Counter()
    with tqdm(desc="counting chunks", unit="char", unit_scale=True, disable=not progress) as bar:
        for text in texts:
            for block in _blocks(text, pattern):
                counts.update(split(block))
                bar.update(len(block))
    return counts


def train_merges(
    chunk_counts: dict[bytes, int],
    num_merges: int,
    min_frequency: int = 2,
    first_id: int = 256,
    progress: bool = True,
) -> list[tuple[int, int]]:
    """Learn up to `num_merges` merges from {chunk bytes: count}; merge i makes id first_id+i.

    Tie-break: among pairs of equal count, the smallest (left id, right id) wins; ids
    0-255 are bytes and later ids are in merge order, so training is deterministic.
    Stops early when no pair occurs at least `min_frequency` times.
    """
    words = [list(chunk) for chunk in chunk_counts]
    counts = list(chunk_counts.values())
    pair_counts: defaultdict[int, int] = defaultdict(int)
    where: defaultdict[int, set[int]] = defaultdict(set)
    for w, (word, c) in enumerate(zip(words, counts)):
        for x, y in zip(word, word[1:]):
            key = x * PAIR_BASE + y
            pair_counts[key] += c
            where[key].add(w)
    heap = [(-c, key) for key, c in pair_counts.items() if c >= min_frequency]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    with tqdm(total=num_merges, desc="merging pairs", unit="merge", disable=not progress) as bar:
        while len(merges) < num_merges and heap:
            negative_count, key = heapq.heappop(heap)
            count = pair_counts.get(key, 0)
            if count != -negative_count:  # out of date: put back with the true count
                if count >= min_frequency:
                    heapq.heappush(heap, (-count, key))
                continue
            z = first_id + len(merges)
            merges.append(divmod(key, PAIR_BASE))
            _apply_merge(key, z, words, counts, pair_counts, where, heap, min_frequency)
            bar.update(1)
    return merges


def _apply_merge(key, z, words, counts, pair_counts, where, heap, min_frequency):
    """Rewrite the chunks holding pair `key` = (a, b) as z; update counts, index and heap.

    Around each merge `x a b y` becomes `x z y`: (x, a) and (b, y) lose the chunk's
    count, (x, z) and (z, y) gain it. The left neighbour x is read from the rewritten
    chunk, so that `a b a b` correctly becomes `z z`.
    """
    a, b = divmod(key, PAIR_BASE)
    deltas: defaultdict[int, int] = defaultdict(int)
    for w in where.pop(key):
        word, c = words[w], counts[w]
        out: list[int] = []
        i, n = 0, len(word)
        while i < n:
            if word[i] == a and i + 1 < n and word[i + 1] == b:
                if out:
                    left = out[-1]
                    deltas[left * PAIR_BASE + a] -= c
                    gained = left * PAIR_BASE + z
                    deltas[gained] += c
                    where[gained].add(w)
                if i + 2 < n:
                    right = word[i + 2]
                    deltas[b * PAIR_BASE + right] -= c
                    gained = z * PAIR_BASE + right
                    deltas[gained] += c
                    where[gained].add(w)
                out.append(z)
                i += 2
            else:
                out.append(word[i])
                i += 1
        if len(out) < n:  # else a stale index entry: the pair left this chunk earlier
            words[w] = out
    del pair_counts[key]
    for pair, delta in deltas.items():
        count = pair_counts.get(pair, 0) + delta
        if count > 0:
            pair_counts[pair] = count
        else:
            pair_counts.pop(pair, None)
        if delta > 0 and count >= min_frequency:
            heapq.heappush(heap, (-count, pair))
    where.pop(key, None)
