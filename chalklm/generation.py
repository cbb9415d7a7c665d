"""Generating text: predict the next token, pick one, append it, repeat.

    model, tokenizer = chalklm.load("runs/shakespeare", engine="torch")   # or "scratch"
    ids = tokenizer.encode("ROMEO:")
    new = chalklm.generate(model, ids, max_new_tokens=200, temperature=0.8, top_k=40)
    print(tokenizer.decode(new[0]))
    for step in chalklm.stream(model, ids, 200): ...   # the same, one token at a time

How it is laid out, in reading order:

1. The sampling controls (`Controls`, `probabilities`, `pick`): NumPy functions on a
   (rows, vocab) array of scores, used by both engines, so the same scores and seed pick
   the same tokens whichever engine computed them. The order is the usual one:
   repetition_penalty, then temperature, then top_k, top_p, min_p, then softmax and a draw.
2. Runners: what an engine does to produce those scores. `prefill(rows)` reads the
   prompts (left-padded into one batch) into a fresh KV cache; `step(ids)` feeds one new
   token per row and reads one column. The glass box's cache is chalklm/scratch/kv_cache.py
   (read it to see what the cache holds), the fast engine's chalklm/models/kv_cache.py.
   `use_cache=False` runs the article's plain loop instead: every step re-reads the last
   block_size tokens of each row. Greedy output is the same either way (tests).
3. `stream` (the loop, one `Step` per new token) and `generate` (the loop, collected).

Past the context length (block_size): the model has only learned positions 0..block_size-1
(learned positions have no row beyond; sinusoidal ones were never trained beyond, and
the table stops there), so both kinds slide the window: when the cache is full the
oldest `slide` tokens (default a quarter of block_size) are dropped and the cache is
re-primed from the rest, positions counted from 0 again. Each token then sees between
3/4 and all of a window, and a full re-read happens every `slide` tokens, not every token.
`slide=1` re-reads at every step, which is exactly the uncached loop (tests). In a batch
the window slides when the longest row fills it.

A batch of prompts of different lengths runs as one batch: left-padded, with a mask
that hides the padding, and positions counted from each row's first real token, so each
row gets what it would get alone (up to float rounding).

An empty prompt starts from the tokenizer's <|endoftext|> token if it has one (GPT-2's
way), else from a newline (`beginning`). A row that writes a `stop` string ends with the
token that completed it (its ids include that token; `chalklm sample` cuts the text
before the stop string).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from chalklm.errors import ConfigError

# ----------------------------------------------------------------------------------------
# 1. The sampling controls


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


def probabilities(scores: np.ndarray, controls: Controls,
                  seen: np.ndarray | None = None) -> np.ndarray:
    """(rows, vocab) chances each next token is drawn from, after every control.
    Greedy: the plain softmax of the (penalized) scores, for showing."""
    scores = np.asarray(scores, dtype=np.float64)
    if controls.repetition_penalty != 1 and seen is not None:
        scores = penalize_repeats(scores, seen, controls.repetition_penalty)
    if controls.greedy:
        return softmax(scores)
    scores = scores / controls.temperature
    if controls.top_k is not None:
        scores = keep_top_k(scores, int(controls.top_k))
    return softmax(_top_p_min_p(scores, controls))


def _top_p_min_p(scores: np.ndarray, controls: Controls) -> np.ndarray:
    if controls.top_p is not None:
        scores = keep_top_p(scores, controls.top_p)
    if controls.min_p:
        scores = keep_min_p(scores, controls.min_p)
    return scores


def draw(chances: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One id per row, drawn with the given chances: a uniform number u in [0, total), and
    the token whose stretch of the running total holds u (as numpy's rng.choice does)."""
    cumulative = np.cumsum(chances, axis=-1)
    u = rng.random((chances.shape[0], 1)) * cumulative[:, -1:]
    ids = (cumulative <= u).sum(axis=-1)
    return np.minimum(ids, chances.shape[-1] - 1)


def pick(scores: np.ndarray, controls: Controls, rng: np.random.Generator,
         seen: np.ndarray | None = None) -> np.ndarray:
    """The next id of every row from scores (rows, vocab): a draw from `probabilities`."""
    if controls.repetition_penalty != 1 and seen is not None:
        scores = penalize_repeats(scores, seen, controls.repetition_penalty)
    if controls.greedy:
        return np.argmax(scores, axis=-1)
    k = controls.top_k
    if k is not None and k < scores.shape[-1]:
        # The same draw with only the k candidates (in vocabulary order, so the running
        # total is the same): top_p, min_p and softmax then touch k numbers, not 50,000.
        ids = top_k_ids(scores, k)
        kept = np.take_along_axis(scores, ids, axis=-1).astype(np.float64) / controls.temperature
        chosen = draw(softmax(_top_p_min_p(kept, controls)), rng)
        return np.take_along_axis(ids, chosen[:, None], axis=-1)[:, 0]
    scores = np.asarray(scores, dtype=np.float64) / controls.temperature
    return draw(softmax(_top_p_min_p(scores, controls)), rng)


def pick_next(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
              rng: np.random.Generator | None = None) -> int:
    """One token id from the scores of one next token (a single row)."""
    rng = rng if rng is not None else np.random.default_rng()
    scores = np.asarray(logits, dtype=np.float64)[None, :]
    return int(pick(scores, Controls(temperature, top_k), rng)[0])


# ----------------------------------------------------------------------------------------
# 2. Runners: the scores of every row's next token, from either engine


def _left_pad(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(ids (rows, width), pad (rows,)): each row right-aligned, padding (id 0) before it."""
    width = max(len(r) for r in rows)
    pad = np.array([width - len(r) for r in rows], dtype=np.int64)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    for b, row in enumerate(rows):
        ids[b, pad[b]:] = row
    return ids, pad


class _CachedRunner:
    """Prompts into a KV cache once, then one column per new token."""

    cache = None

    def __init__(self, model):
        self.model, self.block_size = model, model.config.block_size
        self.columns = self.block_size  # the cache's size; `stream` sets what a call needs

    @property
    def full(self) -> bool:
        return self.cache.length >= self.cache.max_len

    def prefill(self, rows: list[list[int]]) -> np.ndarray:
        ids, pad = _left_pad(rows)
        cache = self.cache
        if cache is None or cache.batch != len(rows) or cache.max_len != self.columns:
            self.cache = self._new_cache(len(rows))
        self.cache.reset(pad)
        return self._prompt(ids)

    def _prompt(self, ids: np.ndarray) -> np.ndarray:
        return self._run(ids)

    def step(self, ids: np.ndarray) -> np.ndarray:
        return self._run(ids[:, None])


class _ScratchRunner(_CachedRunner):
    def _new_cache(self, batch):
        from chalklm.scratch.kv_cache import KVCache

        return KVCache(self.model.config, batch, self.columns)

    def _run(self, ids: np.ndarray) -> np.ndarray:
        from chalklm.scratch import no_grad

        with no_grad():
            logits, _ = self.model(ids, cache=self.cache)
        return logits.data[:, -1]


def _compiled_step(model):
    """`model.forward` compiled by torch.compile (inductor), made once per model (kept on
    it): the one-token step becomes a few fused kernels with no Python between them.
    Compiling takes seconds to a minute, once; shapes that grow (the cache) stay symbolic."""
    from chalklm.models.compiling import compiled

    if "_compiled_step" not in model.__dict__:
        model.__dict__["_compiled_step"] = compiled(model.forward, dynamic=True)
    return model.__dict__["_compiled_step"]


def _fused_step(model, cache):
    """The one-token step in one C call (models/fused_step.py), where it applies, else None."""
    from chalklm.models import fused_step

    return fused_step.FusedStep(model, cache) if fused_step.applies(model, cache) else None


class _TorchRunner(_CachedRunner):
    def __init__(self, model, compile: bool = False):
        import torch

        super().__init__(model)
        self.torch = torch
        weight = model.token_embedding.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.one_token = _compiled_step(model) if compile else model
        self.checked = False  # whether this generation's first step has run (see `step`)
        self.fused = None  # the C step, where it applies (models/fused_step.py)

    def _new_cache(self, batch):
        from chalklm.models.kv_cache import KVCache

        # On a CPU the cache holds fp32 even for a bf16 model: attending over it is then
        # 3-6x faster (CPU bf16 kernels are slow for one query row), and it is small.
        dtype = self.torch.float32 if self.device.type == "cpu" else self.dtype
        return KVCache(self.model.config, batch, self.columns, dtype, self.device)

    def prefill(self, rows: list[list[int]]) -> np.ndarray:
        self.checked, self.fused = False, None
        return super().prefill(rows)

    def _prompt(self, ids: np.ndarray) -> np.ndarray:
        """One row in fp32 on a CPU: the C step (models/fused_step.py) takes the tokens
        after the prompt (the prompt's tokens go faster together, through PyTorch)."""
        self.fused = _fused_step(self.model, self.cache)
        return self._run(ids)

    def step(self, ids: np.ndarray) -> np.ndarray:
        from chalklm.models import decode_weights

        if self.fused is not None:
            return self.fused(int(ids[0]))
        # The first step after a prefill runs eagerly: it checks, and remakes if the weights
        # changed, the weight copies that the later steps then read unchecked.
        if not self.checked:
            self.checked = True
            return self._run(ids[:, None], self.model)
        with decode_weights.checked():
            return self._run(ids[:, None], self.one_token)

    def _run(self, ids: np.ndarray, forward=None) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(ids)
            if self.device.type != "cpu":
                x = x.to(self.device, non_blocking=True)
            logits, _ = (forward or self.model)(x, cache=self.cache)
            return logits[:, -1].float().cpu().numpy()


class _UncachedRunner:
    """The article's loop: every step feeds each row's last block_size tokens back in."""

    full = False

    def __init__(self, next_logits: Callable[[np.ndarray], np.ndarray], block_size: int):
        self.next_logits, self.block_size = next_logits, block_size

    def prefill(self, rows: list[list[int]]) -> np.ndarray:
        self.rows = [list(r) for r in rows]
        return self._scores()

    def step(self, ids: np.ndarray) -> np.ndarray:
        for row, i in zip(self.rows, ids):
            row.append(int(i))
        return self._scores()

    def _scores(self) -> np.ndarray:
        return np.stack([np.asarray(self.next_logits(
            np.asarray(row[-self.block_size:], dtype=np.int64)[None, :]), dtype=np.float32)
            for row in self.rows])


def _engine(model) -> str:
    from chalklm.scratch.nn import Module

    if isinstance(model, Module):
        if not hasattr(model, "config"):
            raise ConfigError(f"a glass-box {type(model).__name__} has no KV cache; generate "
                              "with a GPT, or with a function ids -> next-token scores")
        return "scratch"
    if hasattr(model, "config") and hasattr(model, "state_dict"):
        return "torch"
    if callable(model):
        return "function"
    raise ConfigError(f"cannot generate with a {type(model).__name__}; give a chalklm GPT "
                      "(chalklm.load) or a function ids -> next-token scores")


def scratch_next_logits(model) -> Callable[[np.ndarray], np.ndarray]:
    """`next_logits(ids (1, T)) -> scores (vocab,)` for a glass-box model, no cache."""
    from chalklm.scratch import no_grad

    def next_logits(context: np.ndarray) -> np.ndarray:
        with no_grad():
            logits, _ = model(context)
        return logits.data[0, -1]

    return next_logits


def torch_next_logits(model, device=None) -> Callable[[np.ndarray], np.ndarray]:
    """`next_logits(ids (1, T)) -> scores (vocab,)` for a fast-engine model, in fp32."""
    import torch

    if device is None:
        device = model.token_embedding.weight.device

    @torch.inference_mode()
    def next_logits(context: np.ndarray) -> np.ndarray:
        logits, _ = model(torch.as_tensor(context, device=device))
        return logits[0, -1].float().cpu().numpy()

    return next_logits


def _runner(model, use_cache: bool, block_size: int | None, compile: bool = False):
    kind = _engine(model)
    if compile and (kind != "torch" or not use_cache):
        raise ConfigError("compile=True is for the fast engine (torch) with its KV cache")
    if kind == "function":
        if block_size is None:
            raise ConfigError("generating with a next-token function needs block_size "
                              "(how many ids it reads)")
        return _UncachedRunner(model, block_size)
    if use_cache:
        return _ScratchRunner(model) if kind == "scratch" else _TorchRunner(model, compile)
    fn = scratch_next_logits(model) if kind == "scratch" else torch_next_logits(model)
    return _UncachedRunner(fn, model.config.block_size)


# ----------------------------------------------------------------------------------------
# 3. The loop


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


@dataclass
class Step:
    """One step of `stream`: the new id of each row (None where the row had already
    stopped), which rows a stop string ended just now, and, when asked, the chances
    (rows, vocab) each id was drawn from."""

    ids: list[int | None]
    stopped: list[bool]
    probs: np.ndarray | None = None


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{name} must be a whole number above 0, got {value!r}")
    return int(value)


def _prompts(ids, tokenizer, vocab_size: int | None) -> list[list[int]]:
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


def stream(model, prompts, max_new_tokens: int, *, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
           repetition_penalty: float = 1.0, seed: int | None = None,
           stop: Sequence[str] | None = None, num_samples: int = 1, tokenizer=None,
           use_cache: bool = True, slide: int | None = None, probs: bool = False,
           block_size: int | None = None, compile: bool = False) -> Iterator[Step]:
    """Generate one token per row per step, yielding each `Step` as soon as it is picked.

    model: a chalklm GPT of either engine (`chalklm.load`), or a function
    `next_logits(ids (1, T)) -> scores (vocab,)` with `block_size`. prompts: a list of ids,
    a list of such lists (of any lengths), or text(s) with `tokenizer`; an empty prompt
    starts from `beginning(tokenizer)`. Rows: each prompt `num_samples` times, prompt by
    prompt. `stop`: strings (needs `tokenizer`); a row ends with the token that completes
    one. `seed`: the same seed, prompts and controls give the same tokens, in either engine.
    `probs=True` fills each Step's chances. One row, float32, on a CPU (fast engine): each
    token is one call to C (chalklm/models/fused_step.py), unless chalklm was installed
    without a C compiler or CHALKLM_PURE_PYTHON=1. Elsewhere, `compile=True` (fast engine)
    compiles the one-token step with torch.compile the first time (seconds to a minute,
    once per model); then each token costs less (measured on a CPU). The model's weights
    must not change while one call is generating: the steps read the weight copies of
    chalklm/models/decode_weights.py without checking them (the first step checks).
    """
    max_new_tokens = _positive_int("max_new_tokens", max_new_tokens)
    num_samples = _positive_int("num_samples", num_samples)
    controls = Controls(temperature, top_k, top_p, min_p, repetition_penalty)
    stop = [stop] if isinstance(stop, str) else list(stop or [])
    if stop and tokenizer is None:
        raise ConfigError("stop strings need tokenizer= to read the generated text")
    if any(not isinstance(s, str) or not s for s in stop):
        raise ConfigError(f"stop must be non-empty strings, got {stop!r}")
    runner = _runner(model, use_cache, block_size, compile)
    window = runner.block_size
    slide = max(1, window // 4) if slide is None else _positive_int("slide", slide)
    if slide > window:
        raise ConfigError(f"slide ({slide}) cannot exceed the context length ({window})")
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    rows = [row for row in _prompts(prompts, tokenizer, vocab) for _ in range(num_samples)]
    rng = np.random.default_rng(seed)
    seen = None  # (rows, vocab): True for each token already in the row (for the penalty)
    generated: list[list[int]] = [[] for _ in rows]
    done = [False] * len(rows)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    # the cache needs no more columns than the longest row will reach (at most a window)
    runner.columns = min(window, max(len(r) for r in rows) + max_new_tokens)
    try:
        scores = runner.prefill([row[-window:] for row in rows])
        if controls.repetition_penalty != 1:
            seen = np.zeros(scores.shape, dtype=bool)
            for b, row in enumerate(rows):
                seen[b, row] = True
        for n in range(max_new_tokens):
            ids = pick(scores, controls, rng, seen)
            chances = probabilities(scores, controls, seen) if probs else None
            stopped = [False] * len(rows)
            out: list[int | None] = []
            for b, i in enumerate(ids.tolist()):
                if done[b]:
                    out.append(None)
                    continue
                out.append(i)
                rows[b].append(i)
                generated[b].append(i)
                if seen is not None:
                    seen[b, i] = True
                if stop and any(s in tokenizer.decode(generated[b]) for s in stop):
                    stopped[b] = done[b] = True
            yield Step(out, stopped, chances)
            if n == max_new_tokens - 1 or all(done):
                return
            if runner.full:  # no room for the new token: drop the oldest `slide` tokens
                scores = runner.prefill([row[-(window + 1 - slide):] for row in rows])
            else:
                scores = runner.step(ids)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()


def generate(model, prompts, max_new_tokens: int, *args, **controls) -> list[list[int]]:
    """The new ids of every row (one list per prompt; with num_samples, each prompt's
    samples one after another). Takes the arguments of `stream`.

    The older form `generate(next_logits, prompt_ids, max_new_tokens, block_size,
    temperature, top_k, seed)` (a function and one prompt) returns the prompt's ids
    followed by the new ones, as the trainer and the demos use it."""
    if _engine(model) == "function":
        return _generate_from_function(model, prompts, max_new_tokens, *args, **controls)
    if args:
        raise ConfigError("generate(model, prompts, max_new_tokens, ...): pass the controls "
                          "by name (temperature=..., top_k=...)")
    rows: list[list[int]] | None = None
    for step in stream(model, prompts, max_new_tokens, **controls):
        if rows is None:
            rows = [[] for _ in step.ids]
        for row, i in zip(rows, step.ids):
            if i is not None:
                row.append(i)
    return rows or []


def _generate_from_function(next_logits, prompt_ids, max_new_tokens, block_size=None,
                            temperature=1.0, top_k=None, seed=None, **controls) -> list[int]:
    if not isinstance(prompt_ids, (list, tuple)) or not prompt_ids:
        raise ConfigError("the prompt is empty; give at least one character")
    if isinstance(prompt_ids[0], (list, tuple)):
        raise ConfigError("a next-token function takes one prompt (a list of ids)")
    if max_new_tokens == 0:
        return list(prompt_ids)
    new = []
    for step in stream(next_logits, list(prompt_ids), max_new_tokens, block_size=block_size,
                       temperature=temperature, top_k=top_k, seed=seed, **controls):
        if step.ids[0] is not None:
            new.append(step.ids[0])
    return list(prompt_ids) + new


# ----------------------------------------------------------------------------------------
# Opening a checkpoint


DTYPES = ("float32", "bfloat16", "float16")
SHORT_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # train's spelling


def load(path, engine: str = "torch", device: str = "cpu", dtype: str = "float32"):
    """`model, tokenizer` from a checkpoint folder (or a run folder: its best/), ready to
    generate: the glass box's GPT (engine="scratch", NumPy) or the fast engine's
    (engine="torch", on `device` in `dtype`: float32, bfloat16, float16, or fp32, bf16,
    fp16), in eval mode. tokenizer is None when the
    folder has no tokenizer.json (then prompts are ids)."""
    from chalklm import checkpoint
    from chalklm.config import GPTConfig

    if engine not in ("torch", "scratch"):
        raise ConfigError(f"engine must be 'torch' or 'scratch', got {engine!r}")
    dtype = SHORT_DTYPES.get(dtype, dtype)
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)} (or fp32, bf16, fp16), "
                          f"got {dtype!r}")
    folder = checkpoint.resolve(path)
    config = checkpoint.load_config(folder)
    if not isinstance(config, GPTConfig):
        raise ConfigError(f"{folder}: a {config.model_type!r} model; "
                          "generation needs a GPT checkpoint")
    tokenizer = (checkpoint.load_tokenizer(folder)
                 if (folder / checkpoint.TOKENIZER_FILE).is_file() else None)
    if engine == "scratch":
        if dtype != "float32":
            raise ConfigError("the glass box computes in float32; drop the dtype")
        from chalklm.scratch.gpt import GPT as ScratchGPT

        model = ScratchGPT(config)
        model.load_state_dict(checkpoint.load_weights(folder))
    else:
        import torch

        from chalklm.models import GPT
        from chalklm.models.layers import PositionalEncoding
        from chalklm.training.engines import resolve_device

        device = resolve_device(device)
        with torch.device("meta"):  # shapes only: the weights come from the file, uninitialised
            model = GPT(config)
        weights = checkpoint.read_safetensors_as(folder / checkpoint.MODEL_FILE,
                                                 getattr(torch, dtype))
        model.load_weights(weights, assign=True)  # the file's arrays become the parameters
        if config.positional == "sinusoidal":  # a fixed table, not in the file: make it
            model.position_encoding = PositionalEncoding(config.block_size, config.n_embd)
        model = model.to(device=device, dtype=getattr(torch, dtype))
        for p in model.parameters():
            p.requires_grad_(False)
    model.eval()
    return model, tokenizer
