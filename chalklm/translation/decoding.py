"""Writing the translation: greedy decoding and beam search.

The decoder scores every possible next token given the source and the tokens written so
far. Greedy decoding takes the best one each time. Beam search keeps the `beam_size`
best partial translations (by total log-probability) and extends each of them, which
finds better sentences than greedy when a good start is not the locally best token.

A finished translation's score is divided by a length penalty, ((5 + length) / 6)^alpha
(GNMT's, alpha = 0.6 as in the paper): a sum of log-probabilities only falls as a
sentence grows, so without it the search would prefer short translations. Decoding
stops at the end token </s>, or after source length + 50 tokens.

Both functions are engine-agnostic (NumPy in, token lists out). They need a `stepper`:
    stepper.encode(src)                 -> a state (the encoder's output) for the batch
    stepper.log_probs(state, rows, ids) -> (len(rows), vocab) log-probabilities of the
                                           next token after `ids` (one prefix per row),
                                           row r reading source sentence rows[r]
`TorchStepper` (fast engine) and `GlassStepper` (the glass box) are the two.
"""

from __future__ import annotations

import numpy as np

from chalklm.data.parallel import SpecialIds
from chalklm.errors import ConfigError

MAX_EXTRA_TOKENS = 50  # a translation may be this many tokens longer than its source


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha; 1 for alpha = 0 (no penalty)."""
    return ((5.0 + length) / 6.0) ** alpha


def max_new_tokens(src: np.ndarray, ids: SpecialIds, max_len: int) -> np.ndarray:
    """Per sentence: source length + 50 (its </s> not counted), within the model's max_len."""
    src_len = (src != ids.pad).sum(axis=1) - 1
    return np.minimum(src_len + MAX_EXTRA_TOKENS, max_len)


def greedy(stepper, src: np.ndarray, ids: SpecialIds, max_len: int) -> list[list[int]]:
    """The most likely next token, again and again, for a batch of sources (B, S)."""
    state = stepper.encode(src)
    limit = max_new_tokens(src, ids, max_len)
    out = np.full((len(src), 1), ids.bos, dtype=np.int64)
    alive = np.ones(len(src), dtype=bool)
    for t in range(int(limit.max())):
        rows = np.flatnonzero(alive)
        nxt = np.full(len(src), ids.pad, dtype=np.int64)
        nxt[rows] = stepper.log_probs(state, rows, out[rows]).argmax(axis=1)
        out = np.concatenate([out, nxt[:, None]], axis=1)
        alive &= (nxt != ids.eos) & (t + 1 < limit)
        if not alive.any():
            break
    return [_strip(row[1:], ids) for row in out]


def _strip(tokens, ids: SpecialIds) -> list[int]:
    """Tokens up to (not including) the first </s> or <pad>."""
    result = []
    for token in tokens:
        if token in (ids.eos, ids.pad):
            break
        result.append(int(token))
    return result


def beam_search(stepper, src: np.ndarray, ids: SpecialIds, max_len: int, beam_size: int = 4,
                alpha: float = 0.6, ended: list | None = None) -> list[list[int]]:
    """The best translation found with `beam_size` partial translations per sentence.

    All sentences of the batch and all their beams go through the decoder together:
    row b * beam_size + k is beam k of sentence b. Each step every beam is extended by
    every token; the best candidates are kept. An end token ranked within the top
    beam_size ends a translation (fairseq's rule); a sentence is done when its best ended
    translation scores at least as well as its best beam still going (both divided by
    the length penalty), or at its length limit. With beam_size 1 this is exactly
    greedy decoding. `ended`, if given, receives for each sentence every ended
    translation the search weighed, as (score / length penalty, ids), best first.
    """
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ConfigError(f"beam_size must be a whole number >= 1, got {beam_size!r}")
    if alpha < 0:
        raise ConfigError(f"the length penalty alpha must be >= 0, got {alpha}")
    B, K = len(src), beam_size
    state = stepper.encode(src)
    limit = max_new_tokens(src, ids, max_len)
    prefixes = np.full((B * K, 1), ids.bos, dtype=np.int64)
    scores = np.full((B, K), -np.inf)
    scores[:, 0] = 0.0  # at the start only one beam per sentence is real
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    done = np.zeros(B, dtype=bool)
    for t in range(1, int(limit.max()) + 1):
        active = np.flatnonzero(~done)
        rows = (active[:, None] * K + np.arange(K)).reshape(-1)
        logp = stepper.log_probs(state, np.repeat(active, K), prefixes[rows])
        V = logp.shape[1]
        candidates = (scores[active][:, :, None] + logp.reshape(len(active), K, V))
        candidates = candidates.reshape(len(active), K * V)
        n_top = min(2 * K, K * V)
        top = np.argpartition(-candidates, n_top - 1, axis=1)[:, :n_top]
        new_prefixes = prefixes.copy()
        extended = np.full(B * K, ids.pad, dtype=np.int64)
        for i, b in enumerate(active):
            vals = candidates[i, top[i]]
            ranked = top[i][np.lexsort((top[i], -vals))]  # best first; ties: lowest index
            kept = 0
            for rank, flat in enumerate(ranked):
                score = candidates[i, flat]
                if score == -np.inf:
                    break
                beam, token = divmod(int(flat), V)
                prefix = prefixes[b * K + beam, 1:]
                if token == ids.eos:
                    if rank < K:  # an end ranked in the top beam_size: a finished sentence
                        finished[b].append((score / length_penalty(t, alpha), list(prefix)))
                    continue
                new_prefixes[b * K + kept, :] = prefixes[b * K + beam]
                extended[b * K + kept] = token
                scores[b, kept] = score
                kept += 1
                if kept == K:
                    break
            scores[b, kept:] = -np.inf
            best_alive = scores[b, 0] / length_penalty(t, alpha) if kept else -np.inf
            if t >= limit[b]:  # out of room: the beams end here
                done[b] = True
                for k in range(kept):
                    tokens = list(new_prefixes[b * K + k, 1:]) + [int(extended[b * K + k])]
                    finished[b].append((scores[b, k] / length_penalty(t, alpha), tokens))
            elif finished[b] and max(f[0] for f in finished[b]) >= best_alive:
                done[b] = True  # no beam still going looks better than the best ended one
        prefixes = np.concatenate([new_prefixes, extended[:, None]], axis=1)
        if done.all():
            break
    if ended is not None:
        ended.extend([(float(score), [int(x) for x in tokens])
                      for score, tokens in sorted(f, key=lambda item: -item[0])]
                     for f in finished)
    return [[int(x) for x in max(f, key=lambda item: item[0])[1]] for f in finished]


class TorchStepper:
    """The fast engine's Transformer as a stepper, with the GPT's KV cache.

    The cache (`Transformer.kv_cache`, chalklm/models/kv_cache.py) holds the decoder's
    self-attention keys and values of every prefix just scored, one row each. When each
    new prefix extends one of those by a token (as in greedy decoding and beam search,
    whatever beams were dropped or copied), the rows are reordered to follow their
    parents (`KVCache.select`) and only that token runs through the decoder; otherwise
    the whole prefix does, into a new cache. `cache=False` always reads it whole."""

    def __init__(self, model, device: str = "cpu", cache: bool = True):
        self.model, self.device, self.use_cache = model.eval(), device, cache
        self._cache, self._seen, self._columns = None, {}, model.config.max_len

    def encode(self, src: np.ndarray):
        import torch

        with torch.no_grad():
            memory, padding_mask = self.model.encode(torch.from_numpy(src).to(self.device))
            cross = self.model.cross_keys_values(memory)
        self._cache, self._seen = None, {}
        # room for the longest prefix greedy and beam search write (see max_new_tokens)
        self._columns = min(src.shape[1] + MAX_EXTRA_TOKENS, self.model.config.max_len)
        return memory, padding_mask, cross

    def log_probs(self, state, rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        import torch

        from chalklm.models import decode_weights

        _, padding_mask, cross = state
        index = torch.from_numpy(rows).to(self.device)
        earlier = [(int(r), p[:-1].tobytes()) for r, p in zip(rows, prefix)]
        # decoding opts into the one-token layout (a few rows: one sentence's beams)
        with torch.no_grad(), decode_weights.decoding():
            cross_rows = [(k[index], v[index]) for k, v in cross]
            if self._extends(earlier, prefix.shape[1]):
                self._cache.select([self._seen[e] for e in earlier])
                new_ids = prefix[:, -1:]
            else:
                self._cache = self.model.kv_cache(
                    len(rows), max(self._columns, prefix.shape[1])) if self.use_cache else None
                new_ids = prefix
            logits = self.model.decode_step(
                torch.from_numpy(np.ascontiguousarray(new_ids)).to(self.device), self._cache,
                cross_rows, padding_mask[index])
            self._seen = {(int(r), p.tobytes()): i for i, (r, p) in enumerate(zip(rows, prefix))}
            return torch.log_softmax(logits.float(), dim=-1).cpu().numpy()

    def _extends(self, earlier: list, length: int) -> bool:
        """Whether every prefix is one scored last time plus a token, and the cache has a
        row for each and a column for the token."""
        cache = self._cache
        return (cache is not None and length == cache.length + 1 <= cache.max_len
                and len(earlier) <= cache.rows and all(e in self._seen for e in earlier))


class GlassStepper:
    """The glass box's Transformer as a stepper: every number visible, slowly."""

    def __init__(self, model):
        self.model = model.eval()

    def encode(self, src: np.ndarray):
        from chalklm.scratch import no_grad

        with no_grad():
            return self.model.encode(src)

    def log_probs(self, state, rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        from chalklm.scratch import Tensor, log_softmax, no_grad

        memory, padding_mask = state
        with no_grad():
            logits = self.model.decode(prefix, Tensor(memory.data[rows]), padding_mask[rows])
            return log_softmax(logits[:, -1], axis=-1).data.astype(np.float64)
