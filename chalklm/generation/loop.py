"""The loop: predict the next token, pick one, append it, repeat.

`stream` yields one `Step` per new token; `generate` collects them.

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

A row that writes a `stop` string ends with the token that completed it (its ids include
that token; `chalklm sample` cuts the text before the stop string).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from chalklm.errors import ConfigError
from chalklm.generation.prompts import positive_int, prompt_rows
from chalklm.generation.runners import runner_for
from chalklm.generation.sampling import Controls, pick, probabilities


@dataclass
class Step:
    """One step of `stream`: the new id of each row (None where the row had already
    stopped), which rows a stop string ended just now, when asked the chances (rows,
    vocab) each id was drawn from, and which code computes the new tokens' scores (the C
    step, PyTorch, the glass box...: generation/runners.py)."""

    ids: list[int | None]
    stopped: list[bool]
    probs: np.ndarray | None = None
    path: str = ""


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
    max_new_tokens = positive_int("max_new_tokens", max_new_tokens)
    num_samples = positive_int("num_samples", num_samples)
    controls = Controls(temperature, top_k, top_p, min_p, repetition_penalty)
    stop = [stop] if isinstance(stop, str) else list(stop or [])
    if stop and tokenizer is None:
        raise ConfigError("stop strings need tokenizer= to read the generated text")
    if any(not isinstance(s, str) or not s for s in stop):
        raise ConfigError(f"stop must be non-empty strings, got {stop!r}")
    runner = runner_for(model, use_cache, block_size, compile)
    window = runner.block_size
    slide = max(1, window // 4) if slide is None else positive_int("slide", slide)
    if slide > window:
        raise ConfigError(f"slide ({slide}) cannot exceed the context length ({window})")
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    rows = [row for row in prompt_rows(prompts, tokenizer, vocab) for _ in range(num_samples)]
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
            yield Step(out, stopped, chances, runner.path)
            if n == max_new_tokens - 1 or all(done):
                return
            if runner.full:  # no room for the new token: drop the oldest `slide` tokens
                scores = runner.prefill([row[-(window + 1 - slide):] for row in rows])
            else:
                scores = runner.step(ids)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()


def generate(model, prompts, max_new_tokens: int, **controls) -> list[list[int]]:
    """The new ids of every row (one list per prompt; with num_samples, each prompt's
    samples one after another), whatever the model: a GPT of either engine or a
    next-token function (with block_size=). Takes the keyword arguments of `stream`."""
    rows: list[list[int]] | None = None
    for step in stream(model, prompts, max_new_tokens, **controls):
        if rows is None:
            rows = [[] for _ in step.ids]
        for row, i in zip(rows, step.ids):
            if i is not None:
                row.append(i)
    return rows or []
