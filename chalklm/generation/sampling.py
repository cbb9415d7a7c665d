"""The sampling controls: how the next token is picked from the model's scores.

NumPy functions on a (rows, vocab) array of scores, used by both engines, so the same
scores and seed pick the same tokens whichever engine computed them. The order is the
usual one: repetition_penalty, then temperature, then top_k, top_p, min_p, then softmax
and a draw. `candidates` applies them, once; `probabilities` shows the chances that
result and `pick` draws from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from chalklm.errors import ConfigError


@dataclass(frozen=True)
class Controls:
    """How the next token is picked from the model's scores (logits).

    temperature          0 = greedy (the highest score); else scores / temperature, so
                         below 1 sharpens the chances and above 1 flattens them
    top_k                keep only the k highest scores
    top_p                keep the fewest tokens whose chances add up to at least top_p
    min_p                keep tokens whose chance is at least min_p x the top chance
    repetition_penalty   scores of tokens already in the row are divided by it (a
                         negative score multiplied): above 1 discourages repeats
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0

    def __post_init__(self):
        t = self.temperature
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ConfigError(f"temperature must be 0 (greedy) or above, got {t!r}")
        k = self.top_k
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer))
                              or k <= 0):
            raise ConfigError(f"top_k must be a whole number above 0, got {k!r}")
        p = self.top_p
        if p is not None and not (isinstance(p, (int, float)) and 0 < p <= 1):
            raise ConfigError(f"top_p must be in (0, 1] (1 keeps every token), got {p!r}")
        m = self.min_p
        if m is not None and not (isinstance(m, (int, float)) and 0 <= m <= 1):
            raise ConfigError(f"min_p must be in [0, 1], got {m!r}")
        r = self.repetition_penalty
        if not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0:
            raise ConfigError(f"repetition_penalty must be above 0 (1 = none), got {r!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def softmax(scores: np.ndarray) -> np.ndarray:
    """Chances from scores, per row: e^score / sum of e^scores (the article's softmax).
    Subtracting the row's largest score first changes nothing but avoids overflow."""
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def penalize_repeats(scores: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """Divide the (positive) scores of tokens already seen by `penalty`; multiply negative
    ones (CTRL's rule, as in transformers). seen: booleans (rows, vocab)."""
    lowered = np.where(scores > 0, scores / penalty, scores * penalty)
    return np.where(seen, lowered, scores)


def top_k_ids(scores: np.ndarray, k: int) -> np.ndarray:
    """(rows, k): the ids of each row's k highest scores, in vocabulary order."""
    last = scores.shape[-1] - k
    return np.sort(np.argpartition(scores, last, axis=-1)[:, last:], axis=-1)


def keep_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The k highest scores of each row; the others become -inf (never drawn)."""
    if k >= scores.shape[-1]:
        return scores
    ids = top_k_ids(scores, k)
    kept = np.full_like(scores, -np.inf)
    np.put_along_axis(kept, ids, np.take_along_axis(scores, ids, axis=-1), axis=-1)
    return kept


def keep_top_p(scores: np.ndarray, p: float) -> np.ndarray:
    """Nucleus: sort by chance; keep each token whose better-ranked tokens add up to < p."""
    if p >= 1:
        return scores
    order = np.argsort(-scores, axis=-1, kind="stable")
    chances = np.take_along_axis(softmax(scores), order, axis=-1)
    before = np.cumsum(chances, axis=-1) - chances
    drop = np.empty_like(before, dtype=bool)
    np.put_along_axis(drop, order, before >= p, axis=-1)
    return np.where(drop, -np.inf, scores)


def keep_min_p(scores: np.ndarray, min_p: float) -> np.ndarray:
    chances = softmax(scores)
    return np.where(chances < min_p * chances.max(axis=-1, keepdims=True), -np.inf, scores)


def candidates(scores: np.ndarray, controls: Controls,
               seen: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """Every control applied, in order: `(ids, scores)` of the tokens still in the running.

    With top_k, ids (rows, k) are each row's k best in vocabulary order and scores their
    (rows, k) controlled scores, so top_p, min_p and softmax touch k numbers, not 50,000.
    Without it, ids is None and scores covers the whole vocabulary. Greedy: the
    (penalized) scores, not divided by a temperature of 0."""
    scores = np.asarray(scores, dtype=np.float64)
    if controls.repetition_penalty != 1 and seen is not None:
        scores = penalize_repeats(scores, seen, controls.repetition_penalty)
    if controls.greedy:
        return None, scores
    ids, k = None, controls.top_k
    if k is not None and k < scores.shape[-1]:
        ids = top_k_ids(scores, int(k))
        scores = np.take_along_axis(scores, ids, axis=-1)
    scores = scores / controls.temperature
    if controls.top_p is not None:
        scores = keep_top_p(scores, controls.top_p)
    if controls.min_p:
        scores = keep_min_p(scores, controls.min_p)
    return ids, scores


def probabilities(scores: np.ndarray, controls: Controls,
                  seen: np.ndarray | None = None) -> np.ndarray:
    """(rows, vocab) chances each next token is drawn from, after every control (0 for the
    tokens the controls removed). Greedy: the plain softmax of the (penalized) scores,
    for showing."""
    ids, kept = candidates(scores, controls, seen)
    chances = softmax(kept)
    if ids is None:
        return chances
    full = np.zeros((chances.shape[0], np.shape(scores)[-1]))
    np.put_along_axis(full, ids, chances, axis=-1)
    return full


def draw(chances: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One id per row, drawn with the given chances: a uniform number u in [0, total), and
    the token whose stretch of the running total holds u (as numpy's rng.choice does)."""
    cumulative = np.cumsum(chances, axis=-1)
    u = rng.random((chances.shape[0], 1)) * cumulative[:, -1:]
    ids = (cumulative <= u).sum(axis=-1)
    return np.minimum(ids, chances.shape[-1] - 1)


def pick(scores: np.ndarray, controls: Controls, rng: np.random.Generator,
         seen: np.ndarray | None = None) -> np.ndarray:
    """The next id of every row from scores (rows, vocab): a draw from `probabilities`
    (the candidates keep vocabulary order, so the running total is the same), or the
    highest score when greedy."""
    ids, kept = candidates(scores, controls, seen)
    if controls.greedy:
        return np.argmax(kept, axis=-1)
    chosen = draw(softmax(kept), rng)
    return chosen if ids is None else np.take_along_axis(ids, chosen[:, None], axis=-1)[:, 0]

