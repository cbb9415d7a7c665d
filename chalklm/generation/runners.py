"""Runners: what an engine does to produce the scores of every row's next token.

`prefill(rows)` reads the prompts (left-padded into one batch) into a fresh KV cache;
`step(ids)` feeds one new token per row and reads one column. The glass box's cache is
chalklm/scratch/kv_cache.py (read it to see what the cache holds), the fast engine's
chalklm/models/kv_cache.py. `use_cache=False` runs the article's plain loop instead
(`UncachedRunner`): every step re-reads the last block_size tokens of each row, through
a next-token function `next_logits(ids (1, T)) -> scores (vocab,)`. The next-token
functions of both engines live here too (`scratch_next_logits`, `torch_next_logits`);
the trainer's engines hand out the same ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from chalklm.errors import ConfigError


def _left_pad(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(ids (rows, width), pad (rows,)): each row right-aligned, padding (id 0) before it."""
    width = max(len(r) for r in rows)
    pad = np.array([width - len(r) for r in rows], dtype=np.int64)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    for b, row in enumerate(rows):
        ids[b, pad[b]:] = row
    return ids, pad


class CachedRunner:
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


class ScratchRunner(CachedRunner):
    path = "the glass box (NumPy), scratch/gpt.py, with the KV cache"

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
    """(The one-token step in one C call (models/fused_step.py), or None where it does not
    apply; why not, or None)."""
    from chalklm.models import fused_step

    why = fused_step.why_not(model, cache)
    return (fused_step.FusedStep(model, cache) if why is None else None), why


def _torch_path(fused: bool, compiled: bool, why_not: str | None) -> str:
    """Which code computes each new token (`chalklm sample --verbose` and --json)."""
    if fused:
        return "the C step (models/fused_step.py)"
    step = "torch.compile of models/gpt.py" if compiled else "PyTorch, models/gpt.py"
    return f"{step}, with the KV cache" + (f"; no C step: {why_not}" if why_not else "")


class TorchRunner(CachedRunner):
    def __init__(self, model, compile: bool = False):
        import torch

        super().__init__(model)
        self.torch = torch
        weight = model.token_embedding.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.one_token = _compiled_step(model) if compile else model
        self.checked = False  # whether this generation's first step has run (see `step`)
        self.fused = None  # the C step, where it applies (models/fused_step.py)
        self.path = ""  # which code computes each new token: set by each prompt (`_prompt`)

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
        self.fused, why_not = _fused_step(self.model, self.cache)
        self.path = _torch_path(self.fused is not None, self.one_token is not self.model,
                                why_not)
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
        from chalklm.models import decode_weights

        torch = self.torch
        with torch.inference_mode(), decode_weights.decoding():  # opt in (see there)
            x = torch.from_numpy(ids)
            if self.device.type != "cpu":
                x = x.to(self.device, non_blocking=True)
            logits, _ = (forward or self.model)(x, cache=self.cache)
            return logits[:, -1].float().cpu().numpy()


class UncachedRunner:
    """The article's loop: every step feeds each row's last block_size tokens back in."""

    full = False

    def __init__(self, next_logits: Callable[[np.ndarray], np.ndarray], block_size: int,
                 path: str = "a next-token function"):
        self.next_logits, self.block_size = next_logits, block_size
        self.path = f"{path}, no cache: the last block_size tokens re-read for each token"

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


def engine_of(model) -> str:
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
    """`next_logits(ids (1, T)) -> scores (vocab,)` for a glass-box model, no cache, in
    fp32 (as `torch_next_logits`). The model runs as it is: put it in eval mode first."""
    from chalklm.scratch import no_grad

    def next_logits(context: np.ndarray) -> np.ndarray:
        with no_grad():
            logits, _ = model(context)
        return np.asarray(logits.data[0, -1], dtype=np.float32)

    return next_logits


def torch_next_logits(model, device=None) -> Callable[[np.ndarray], np.ndarray]:
    """`next_logits(ids (1, T)) -> scores (vocab,)` for a fast-engine model, in fp32. The
    model runs as it is: put it in eval mode first."""
    import torch

    if device is None:
        device = model.token_embedding.weight.device

    @torch.inference_mode()
    def next_logits(context: np.ndarray) -> np.ndarray:
        logits, _ = model(torch.as_tensor(context, device=device))
        return logits[0, -1].float().cpu().numpy()

    return next_logits


def runner_for(model, use_cache: bool, block_size: int | None, compile: bool = False):
    """The runner for a GPT of either engine (cached, or the plain loop) or a function."""
    kind = engine_of(model)
    if compile and (kind != "torch" or not use_cache):
        raise ConfigError("compile=True is for the fast engine (torch) with its KV cache")
    if kind == "function":
        if block_size is None:
            raise ConfigError("generating with a next-token function needs block_size "
                              "(how many ids it reads)")
        return UncachedRunner(model, block_size)
    if use_cache:
        return ScratchRunner(model) if kind == "scratch" else TorchRunner(model, compile)
    if kind == "scratch":
        return UncachedRunner(scratch_next_logits(model), model.config.block_size,
                              "the glass box (NumPy), scratch/gpt.py")
    return UncachedRunner(torch_next_logits(model), model.config.block_size,
                          "PyTorch, models/gpt.py")
