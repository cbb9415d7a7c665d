"""Reductions of the glass box: many numbers in, fewer out (a sum, a mean, a maximum).
Going back, each input number receives the gradient of the output it went into.
"""

from __future__ import annotations

import math

import numpy as np

from chalklm.scratch.autograd import Tensor, as_tensor


def sum(x, axis=None, keepdims: bool = False) -> Tensor:
    a = as_tensor(x)
    out = Tensor._result(a.data.sum(axis=axis, keepdims=keepdims), (a,), "sum")

    def backward(grad):
        # every summed entry moved the total by exactly its own change: copy the gradient
        if not keepdims:
            grad = _restore_axes(grad, axis, a.ndim)
        a._add_grad(np.broadcast_to(grad, a.shape))

    out._backward = backward
    return out


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    """The sum divided by how many numbers were summed (its derivative follows from sum's)."""
    x = as_tensor(x)
    axes = range(x.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    count = math.prod(x.shape[a] for a in axes)
    return sum(x, axis=axis, keepdims=keepdims) * (1.0 / count)


def max(x, axis=None, keepdims: bool = False) -> Tensor:
    a = as_tensor(x)
    out = Tensor._result(a.data.max(axis=axis, keepdims=keepdims), (a,), "max")

    def backward(grad):
        # only the largest entry moved the max; ties share the gradient equally
        top = a.data.max(axis=axis, keepdims=True)
        winners = a.data == top
        if not keepdims:
            grad = _restore_axes(grad, axis, a.ndim)
        a._add_grad(winners * (grad / winners.sum(axis=axis, keepdims=True)))

    out._backward = backward
    return out


def _restore_axes(grad: np.ndarray, axis, ndim: int) -> np.ndarray:
    """Put back the axes a reduction (without keepdims) removed, as size-1 axes."""
    if axis is None:
        return np.reshape(grad, (1,) * ndim)
    axes = (axis,) if isinstance(axis, int) else axis
    return np.expand_dims(grad, tuple(a % ndim for a in axes))


# Each reduction is a Tensor method too: x.sum(axis) is sum(x, axis).
Tensor.sum = sum
Tensor.mean = mean
Tensor.max = max
