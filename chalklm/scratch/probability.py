"""From scores to chances and back: softmax, log-softmax, the cross-entropy loss, and
dropout's random zeros. Each derivative is written in its simplest form (softmax's
Jacobian applied without building it; cross-entropy's gradient is softmax minus the aim).
"""

from __future__ import annotations

import numpy as np

from chalklm.errors import ChalkError, ShapeError
from chalklm.scratch import autograd
from chalklm.scratch.autograd import Tensor, as_tensor


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """e^x / sum(e^x): positive numbers that add up to 1 (shifted by the max for stability)."""
    x = as_tensor(x)
    e = np.exp(x.data - x.data.max(axis=axis, keepdims=True))
    s = e / e.sum(axis=axis, keepdims=True)
    out = Tensor._result(s, (x,), "softmax")

    def backward(grad):
        # ds_i/dx_j = s_i (delta_ij - s_j), so grad_x = s * (grad - sum(grad * s))
        g = grad
        x._add_grad(s * (g - (g * s).sum(axis=axis, keepdims=True)))

    out._backward = backward
    return out


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) = x - log(sum(e^x)), computed without overflow."""
    x = as_tensor(x)
    shifted = x.data - x.data.max(axis=axis, keepdims=True)
    logsumexp = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    logp = shifted - logsumexp
    out = Tensor._result(logp, (x,), "log_softmax")

    def backward(grad):
        # d/dx_j of (x_i - logsumexp) = delta_ij - softmax_j
        g = grad
        x._add_grad(g - np.exp(logp) * g.sum(axis=axis, keepdims=True))

    out._backward = backward
    return out


def cross_entropy(logits: Tensor, targets, ignore_index: int = -1,
                  label_smoothing: float = 0.0) -> Tensor:
    """Mean of -log p(correct class) over the positions whose target is not ignore_index.

    logits (..., classes); targets (...) integer classes. With label smoothing the correct
    class is aimed at with weight 1 - e and every class with e / classes. Computed from
    log_softmax in one step: the gradient is simply (softmax - aim) / count.
    """
    logits = as_tensor(logits)
    targets = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    classes = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ShapeError(
            f"cross_entropy: targets of shape {targets.shape} do not match logits "
            f"{logits.shape} (expected {logits.shape[:-1]})"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ChalkError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    z = logits.data.reshape(-1, classes)
    t = targets.reshape(-1).astype(np.int64)
    keep = t != ignore_index
    if np.any((t[keep] < 0) | (t[keep] >= classes)):
        raise ShapeError(f"cross_entropy: a target is outside 0..{classes - 1}")
    count = keep.sum()
    shifted = z - z.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(t))
    picked = logp[rows, np.where(keep, t, 0)]
    per_row = -(1 - label_smoothing) * picked - label_smoothing * logp.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = np.asarray((per_row * keep).sum() / count, dtype=logits.dtype)
    out = Tensor._result(loss, (logits,), "cross_entropy")

    def backward(grad):
        aim = np.full_like(z, label_smoothing / classes)
        aim[rows, np.where(keep, t, 0)] += 1 - label_smoothing
        grad = (np.exp(logp) - aim) * (keep[:, None] * (grad / float(count)))
        logits._add_grad(grad.reshape(logits.shape))

    out._backward = backward
    return out


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each entry with probability p and scale the rest by 1/(1-p) (training only)."""
    x = as_tensor(x)
    if not 0.0 <= p < 1.0:
        raise ChalkError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    draws = autograd.rng().random(x.shape, dtype=np.float32)
    keep = (draws >= p) * np.asarray(1 / (1 - p), x.dtype)
    out = Tensor._result(x.data * keep, (x,), "dropout")

    def backward(grad):
        x._add_grad(grad * keep)  # the kept entries pass their gradient, scaled alike

    out._backward = backward
    return out


# Each is a Tensor method too: x.softmax(axis) is softmax(x, axis).
Tensor.softmax = softmax
Tensor.log_softmax = log_softmax
Tensor.dropout = dropout
