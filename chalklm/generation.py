"""Generating text: predict the next token, pick one, append it, repeat.

The loop is engine-agnostic: it needs only `next_logits(ids) -> scores for the next
token`, so the fast engine and the glass box generate through the same code and, given
the same weights and seed, write the same text. Picking is done in NumPy with a seeded
generator for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from chalklm.errors import ConfigError


def pick_next(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
              rng: np.random.Generator | None = None) -> int:
    """One token id from the scores of the next token.

    temperature 0 is greedy (the highest score); otherwise softmax(logits / temperature),
    keeping only the top_k highest scores when top_k is given.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    logits = logits / temperature
    if top_k is not None and top_k < len(logits):
        cutoff = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < cutoff, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    rng = rng if rng is not None else np.random.default_rng()
    return int(rng.choice(len(probs), p=probs))


def generate(next_logits: Callable[[np.ndarray], np.ndarray], prompt_ids: list[int],
             max_new_tokens: int, block_size: int, temperature: float = 1.0,
             top_k: int | None = None, seed: int | None = None) -> list[int]:
    """The prompt's ids followed by `max_new_tokens` generated ones.

    The model sees at most the last `block_size` ids (its context length)."""
    if temperature < 0:
        raise ConfigError(f"temperature must be 0 (greedy) or above, got {temperature}")
    if top_k is not None and top_k <= 0:
        raise ConfigError(f"top_k must be a positive number, got {top_k}")
    if not prompt_ids:
        raise ConfigError("the prompt is empty; give at least one character")
    rng = np.random.default_rng(seed)
    ids = list(prompt_ids)
    for _ in range(max_new_tokens):
        context = np.asarray(ids[-block_size:], dtype=np.int64)[None, :]
        ids.append(pick_next(next_logits(context), temperature, top_k, rng))
    return ids


def torch_next_logits(model, device="cpu") -> Callable[[np.ndarray], np.ndarray]:
    """`next_logits` for a fast-engine model: the last position's logits, in fp32."""
    import torch

    @torch.no_grad()
    def next_logits(context: np.ndarray) -> np.ndarray:
        logits, _ = model(torch.as_tensor(context, device=device))
        return logits[0, -1].float().cpu().numpy()

    return next_logits
