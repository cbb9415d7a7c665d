"""Optimizers: how a weight moves once its gradient is known.

Gradient descent moves each weight a small step against its gradient (downhill on the
loss). SGD adds momentum (a running average of past steps); AdamW divides each step by
a running size of that weight's gradients, so every weight moves at a similar pace, and
shrinks weights a little each step (decoupled weight decay). The formulas are
torch.optim's exactly, so both engines take identical steps.
"""

from __future__ import annotations

import math

import numpy as np

from chalklm.errors import ChalkError


class Optimizer:
    """Holds parameter groups: lists of weights that share settings (lr, weight_decay, ...).

    Pass a list of parameters, or a list of dicts like {"params": [...], "weight_decay": 0}
    to give some weights different settings (decay matrices, not biases or norms).
    """

    def __init__(self, params, defaults: dict):
        params = list(params)
        if not params:
            raise ChalkError("the optimizer was given no parameters")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[int, dict] = {}  # id(param) -> that weight's running numbers

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group, self.state.setdefault(id(p), {}))

    def _update(self, p, grad: np.ndarray, group: dict, state: dict) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """w -= lr * velocity, velocity = momentum * velocity + grad (+ weight_decay * w)."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def _update(self, p, grad, group, state):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        if group["momentum"]:
            if "velocity" in state:
                state["velocity"] = group["momentum"] * state["velocity"] + grad
            else:
                state["velocity"] = grad.copy()
            grad = state["velocity"]
        p.data -= group["lr"] * grad


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW.

    m = b1 m + (1 - b1) g             running mean of the gradient
    v = b2 v + (1 - b2) g^2           running mean of its square
    w -= lr * wd * w                  weight decay, apart from the gradient
    w -= lr * m_hat / (sqrt(v_hat) + eps), with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay})

    def _update(self, p, grad, group, state):
        lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
        if not state:
            state.update(step=0, m=np.zeros_like(p.data), v=np.zeros_like(p.data))
        state["step"] += 1
        t, m, v = state["step"], state["m"], state["v"]
        if group["weight_decay"]:
            p.data *= 1 - lr * group["weight_decay"]
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * np.square(grad)
        # the bias corrections (the moments start at 0), ordered as torch orders them;
        # in place, so a big matrix costs no new arrays
        update = np.sqrt(v)
        update /= math.sqrt(1 - b2**t)
        update += eps
        np.divide(m, update, out=update)  # m / (sqrt(v_hat) + eps)
        update *= lr / (1 - b1**t)
        p.data -= update


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients down together so their combined length is at most max_norm.

    Returns the length before clipping (worth logging: exploding gradients show here).
    """
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for g in grads:
            g *= np.asarray(scale, dtype=g.dtype)
    return total
