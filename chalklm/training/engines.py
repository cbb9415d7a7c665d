"""The trainer's two engines behind one small interface.

The training loop (trainer.py) only asks an engine to take a step on some micro-batches,
measure a loss, and hand over its weights and optimizer state as named arrays. The
fast engine does this with PyTorch (bf16 autocast, torch.compile, DDP); the glass box
(`--engine scratch`) with chalklm.scratch, every derivative visible, slowly.
"""

from __future__ import annotations

import base64
import math
import sys
from contextlib import nullcontext

import numpy as np


def fused_attention_is_faster(device: str, dtype: str) -> bool:
    """PyTorch's fused attention kernel, except in bf16 on a CPU: there (torch 2.13, AVX-512
    bf16) its backward took about 3x the time of the explicit math path in our profile of
    the default model, and a whole training step ran 1.34x faster with the explicit path
    (mask, softmax, weights @ v): 14.3k against 10.7k tokens per CPU-second."""
    return not (device == "cpu" and dtype == "bf16")


def decay_groups(named_params) -> list[dict]:
    """AdamW groups: weight decay on matrices (weights, embeddings), none on biases/scales."""
    named_params = list(named_params)
    return [
        {"params": [p for _, p in named_params if p.ndim >= 2], "decay": True},
        {"params": [p for _, p in named_params if p.ndim < 2], "decay": False},
    ]


class TorchEngine:
    """The fast engine: chalklm.models.GPT trained with torch.optim.AdamW."""

    name = "torch"

    def __init__(self, model_config, cfg, device: str, dtype: str, dist):
        from chalklm.models import GPT

        self._setup(lambda fused: GPT(model_config, fused_attention=fused), cfg, device, dtype,
                    dist)

    def _setup(self, build, cfg, device: str, dtype: str, dist, wrap=None,
               adam_eps: float = 1e-8) -> None:
        """The model from `build(fused_attention)`, its training form (compiled when asked,
        `wrap`ped into what the trainer calls, DistributedDataParallel under torchrun) and
        AdamW. Shared by every task's torch engine."""
        import torch

        from chalklm.models.compiling import compiled
        from chalklm.training.flat_parameters import FlatParameters
        from chalklm.training.memory import keep_freed_memory

        self.device, self.dtype, self.dist, self.cfg = device, dtype, dist, cfg
        if device == "cpu":
            keep_freed_memory()  # see training/memory.py: no page faults step after step
        torch.manual_seed(cfg.seed)
        self.model = build(fused_attention_is_faster(device, dtype)).to(device)
        names = {p: n for n, p in self.model.named_parameters()}
        groups = [g for g in decay_groups(self.model.named_parameters()) if g["params"]]
        self.flat = FlatParameters([g["params"] for g in groups], names)
        self.train_model = compiled(self.model) if self._compiles(cfg, device) else self.model
        if wrap is not None:
            self.train_model = wrap(self.train_model)
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [dist.local_rank] if device.startswith("cuda") else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=ids)
        for g, buffer in zip(groups, self.flat.buffers):
            g["params"] = [buffer]
            g["weight_decay"] = cfg.weight_decay if g.pop("decay") else 0.0
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate,
                                           betas=(cfg.beta1, cfg.beta2), eps=adam_eps,
                                           fused=True)
        torch.manual_seed(cfg.seed + dist.rank)  # dropout differs across processes

    def _compiles(self, cfg, device: str) -> bool:
        """Whether to compile: when asked (or, for "auto", when the run is long enough) and
        possible here. The main process says which."""
        from chalklm.models.compiling import unavailable
        from chalklm.training.config import compile_pays_off

        if not cfg.compile or (cfg.compile == "auto" and not compile_pays_off(cfg)):
            return False
        reason = unavailable(device)
        if self.dist.is_main:
            print(f"note: {reason}; training without it" if reason else
                  "note: compiling the model (torch.compile): the first steps take longer, "
                  "the rest run faster; --no-compile skips it", file=sys.stderr)
        return reason is None

    def autocast(self):
        import torch

        if self.dtype != "bf16":
            return nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)

    def _tensor(self, array):
        import torch

        return torch.from_numpy(array).to(self.device, non_blocking=True)

    def train_step(self, micro_batches, lr: float) -> tuple[float, float]:
        """One optimizer step over the micro-batches: (mean loss, gradient norm before
        clipping). A non-finite loss or gradient skips the update."""
        import torch

        from chalklm.models import training_speed

        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        n, total = len(micro_batches), 0.0
        for i, (x, y) in enumerate(micro_batches):
            last = i == n - 1
            sync = nullcontext() if last or not self.dist.enabled else self.train_model.no_sync()
            with sync:
                with self.autocast(), training_speed.enabled():  # opt in (see there)
                    _, loss = self.train_model(self._tensor(x), self._tensor(y))
                (loss / n).backward()
            total += loss.detach()
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(self.flat.buffers, clip))
        mean_loss = float(total) / n
        if math.isfinite(mean_loss) and math.isfinite(norm):
            self.optimizer.step()
            self.flat.updated()
        self.flat.zero_grad()
        return mean_loss, norm

    def loss_sum(self, x, y) -> float:
        """Summed (not mean) cross-entropy over every position of a batch, no gradients."""
        import torch

        from chalklm.models import training_speed

        self.model.eval()
        with torch.no_grad(), self.autocast(), training_speed.enabled():
            _, loss = self.model(self._tensor(x), self._tensor(y))
        return float(loss) * y.size

    def next_logits(self, context: np.ndarray) -> np.ndarray:
        from chalklm.generation.runners import torch_next_logits

        self.model.eval()
        return torch_next_logits(self.model, self.device)(context)

    def weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().float().cpu().numpy() for k, v in self.model.state_dict().items()}

    def load_weights(self, weights) -> None:
        self.model.load_weights(weights)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """AdamW's running moments, named after their parameter: `exp_avg.<name>`, ...
        (the optimizer holds them flat, one tensor per group: see FlatParameters)."""
        states = [self.optimizer.state.get(b, {}) for b in self.flat.buffers]
        if not all(states):  # before the first step
            return {}
        out = {}
        for key in ("exp_avg", "exp_avg_sq"):
            for name, view in self.flat.split([s[key] for s in states]).items():
                out[f"{key}.{name}"] = view.detach().cpu().clone()
        for name, (i, _, _) in self.flat.where.items():
            out[f"step.{name}"] = states[i]["step"].detach().cpu().reshape(1)
        return out

    def load_optimizer_state(self, arrays: dict) -> None:
        import torch

        def named(key):
            return {name: torch.from_numpy(np.array(arrays[f"{key}.{name}"]))
                    for name in self.flat.where if f"{key}.{name}" in arrays}

        moments = {key: self.flat.join(named(key)) for key in ("exp_avg", "exp_avg_sq")}
        steps = {}  # buffer -> its step count (every parameter of a group has the same)
        for name, step in named("step").items():
            steps.setdefault(self.flat.where[name][0], step)
        for i, step in steps.items():
            buffer = self.flat.buffers[i]
            self.optimizer.state[buffer] = {
                "step": step.reshape(()).to(buffer.device),
                **{key: flat[i] for key, flat in moments.items()},
            }

    def rng_state(self) -> dict:
        import torch

        state = {"torch": _b64(torch.get_rng_state())}
        if self.device.startswith("cuda"):
            state["cuda"] = _b64(torch.cuda.get_rng_state())
        return state

    def set_rng_state(self, state: dict) -> None:
        import torch

        torch.set_rng_state(_unb64(state["torch"]))
        if "cuda" in state and self.device.startswith("cuda"):
            torch.cuda.set_rng_state(_unb64(state["cuda"]))

    def flops_per_token(self) -> float:
        return self.model.flops_per_token()


def _b64(byte_tensor) -> str:
    return base64.b64encode(byte_tensor.numpy().tobytes()).decode("ascii")


def _unb64(text: str):
    import torch

    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())
