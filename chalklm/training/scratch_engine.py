"""`--engine scratch`: the same training loop driving the glass box (NumPy).

Every multiply and every derivative is chalklm.scratch's own code, so a run here shows
the whole of training with nothing hidden. It is one process, fp32, and slow (100x or
more below the fast engine); use a small config.
"""

from __future__ import annotations

import math

import numpy as np

from chalklm.errors import ConfigError
from chalklm.training.engines import decay_groups


class ScratchEngine:
    """The glass box's GPT trained with the glass box's AdamW (torch.optim's formulas)."""

    name = "scratch"

    def __init__(self, model_config, cfg, dist):
        from chalklm.scratch.models import GPT

        self._setup(lambda: GPT(model_config), cfg, dist)

    def _setup(self, build, cfg, dist, wrap=None, adam_eps: float = 1e-8) -> None:
        """The model from `build()` (seeded), `wrap`ped into what the trainer calls, and
        AdamW over its parameters. Shared by every task's glass-box engine."""
        from chalklm.scratch import autograd
        from chalklm.scratch.optim import AdamW

        if dist.enabled:
            raise ConfigError("--engine scratch trains in one process; run it without torchrun")
        self.cfg, self._autograd = cfg, autograd
        autograd.manual_seed(cfg.seed)
        self.network = build()
        self.model = wrap(self.network) if wrap is not None else self.network
        self.params = dict(self.network.named_parameters())
        groups = decay_groups(self.params.items())
        for g in groups:
            g["weight_decay"] = cfg.weight_decay if g.pop("decay") else 0.0
        self.optimizer = AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2),
                               eps=adam_eps)

    def train_step(self, micro_batches, lr: float) -> tuple[float, float]:
        from chalklm.scratch.optim import clip_grad_norm

        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        n, total = len(micro_batches), 0.0
        for x, y in micro_batches:
            _, loss = self.model(x, y)
            (loss * (1.0 / n)).backward()  # gradients add up over the micro-batches
            total += loss.item()
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        norm = float(clip_grad_norm(self.params.values(), clip))
        if math.isfinite(total) and math.isfinite(norm):
            self.optimizer.step()
        self.optimizer.zero_grad()
        return total / n, norm

    def loss_sum(self, x, y) -> float:
        from chalklm.scratch import no_grad

        self.model.eval()
        with no_grad():
            _, loss = self.model(x, y)
        return loss.item() * y.size

    def next_logits(self, context: np.ndarray) -> np.ndarray:
        from chalklm.generation.runners import scratch_next_logits

        self.model.eval()
        return scratch_next_logits(self.model)(context)

    def weights(self) -> dict[str, np.ndarray]:
        return self.model.state_dict()

    def load_weights(self, weights) -> None:
        self.network.load_weights(weights)  # the model itself (self.model may wrap it)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """AdamW's moments under the fast engine's names (step, exp_avg, exp_avg_sq)."""
        out = {}
        for name, p in self.params.items():
            state = self.optimizer.state.get(id(p))
            if state:
                out[f"step.{name}"] = np.array([state["step"]], dtype=np.float32)
                out[f"exp_avg.{name}"] = state["m"]
                out[f"exp_avg_sq.{name}"] = state["v"]
        return out

    def load_optimizer_state(self, arrays: dict) -> None:
        for name, p in self.params.items():
            if f"step.{name}" in arrays:
                self.optimizer.state[id(p)] = {
                    "step": int(arrays[f"step.{name}"][0]),
                    "m": np.array(arrays[f"exp_avg.{name}"]),
                    "v": np.array(arrays[f"exp_avg_sq.{name}"]),
                }

    def rng_state(self) -> dict:
        return {"numpy": self._autograd.rng().bit_generator.state}

    def set_rng_state(self, state: dict) -> None:
        self._autograd.rng().bit_generator.state = state["numpy"]

    def flops_per_token(self) -> float:
        c = self.model.config
        return 6 * self.model.num_params() + 12 * c.n_layer * c.n_embd * c.block_size
