"""Moving numbers around in the glass box: reshape, transpose, index (gather), join and
choose. Nothing is computed, so going back each gradient only returns to where its number
came from (added up where a number was picked more than once).
"""

from __future__ import annotations

import math

import numpy as np

from chalklm.scratch.autograd import Tensor, as_tensor


def reshape(x, *shape) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    a = as_tensor(x)
    out = Tensor._result(a.data.reshape(shape), (a,), "reshape")

    def backward(grad):
        a._add_grad(grad.reshape(a.shape))

    out._backward = backward
    return out


def transpose(x, *axes) -> Tensor:
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    a = as_tensor(x)
    axes = axes or tuple(reversed(range(a.ndim)))
    out = Tensor._result(a.data.transpose(axes), (a,), "transpose")

    def backward(grad):
        a._add_grad(grad.transpose(np.argsort(axes)))  # undo the permutation

    out._backward = backward
    return out


def swapaxes(x, axis1: int, axis2: int) -> Tensor:
    axes = list(range(x.ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return transpose(x, axes)


def index(x, key) -> Tensor:
    """x[key]: slices, integers, or integer arrays (a gather, as an embedding lookup)."""
    key = _plain_index(key)
    a = as_tensor(x)
    out = Tensor._result(a.data[key], (a,), "index")

    def backward(grad):
        a._add_grad(_scatter_back(grad, key, a.shape, a.dtype))

    out._backward = backward
    return out


def _plain_index(index):
    """Tensors and lists inside an index become integer arrays (the gather form)."""
    if isinstance(index, tuple):
        return tuple(_plain_index(i) for i in index)
    if isinstance(index, Tensor):
        return index.data.astype(np.int64)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def _is_basic(index) -> bool:
    """Slices, integers, None and ...: each entry picked at most once (a view)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(
        isinstance(i, (slice, int, np.integer, type(None))) or i is Ellipsis for i in parts
    )


def _scatter_back(grad: np.ndarray, index, shape: tuple, dtype) -> np.ndarray:
    """The gradient of `x[index]` with respect to x: each picked entry gets its gradient back."""
    if _is_basic(index):
        full = np.zeros(shape, dtype=dtype)
        full[index] = grad
        return full
    if isinstance(index, np.ndarray) and index.dtype.kind in "iu":
        return gather_rows_grad(grad, index, shape)
    # general case: number every entry of x, pick the numbers the index picked, and add each
    # gradient into the entry it came from (bincount sums repeated picks)
    positions = np.arange(math.prod(shape)).reshape(shape)[index]
    flat = np.bincount(positions.ravel(), weights=grad.ravel(), minlength=math.prod(shape))
    return flat.reshape(shape).astype(dtype, copy=False)


def gather_rows_grad(grad: np.ndarray, ids: np.ndarray, shape: tuple) -> np.ndarray:
    """The gradient of an embedding lookup `table[ids]`: sum the gradients of repeated ids.

    Sort the ids so equal ones sit together, add up each run of equal rows in one
    vectorised call (np.add.reduceat), and place the sums in their rows.
    """
    ids = ids.ravel() % shape[0]  # negative ids count from the end, as in NumPy
    rows = grad.reshape(len(ids), math.prod(shape[1:]))
    full = np.zeros((shape[0], rows.shape[1]), dtype=grad.dtype)
    if not len(ids):
        return full.reshape(shape)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    full[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return full.reshape(shape)


def concatenate(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis; each gets back its own slice of the gradient."""
    tensors = [as_tensor(t) for t in tensors]
    out = Tensor._result(np.concatenate([t.data for t in tensors], axis=axis), tuple(tensors),
                         "concatenate")

    def backward(grad):
        cuts = np.cumsum([t.shape[axis] for t in tensors])[:-1]
        for t, piece in zip(tensors, np.split(grad, cuts, axis=axis)):
            t._add_grad(piece)

    out._backward = backward
    return out


def stack(tensors, axis: int = 0) -> Tensor:
    """Join tensors along a new axis; each gets back its own slice of the gradient."""
    tensors = [as_tensor(t) for t in tensors]
    out = Tensor._result(np.stack([t.data for t in tensors], axis=axis), tuple(tensors), "stack")

    def backward(grad):
        for i, t in enumerate(tensors):
            t._add_grad(np.take(grad, i, axis=axis))

    out._backward = backward
    return out


def where(condition, a, b) -> Tensor:
    """Entries of a where condition holds, else of b; the gradient follows the same choice."""
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition,
                           dtype=bool)
    a, b = as_tensor(a), as_tensor(b)
    out = Tensor._result(np.where(condition, a.data, b.data), (a, b), "where")

    def backward(grad):
        zero = np.zeros((), dtype=grad.dtype)
        if a.requires_grad:
            a._add_grad(np.where(condition, grad, zero))
        if b.requires_grad:
            b._add_grad(np.where(condition, zero, grad))

    out._backward = backward
    return out


def masked_fill(x: Tensor, mask, value: float) -> Tensor:
    """x with `value` wherever mask is true (as the causal mask fills future scores with -inf)."""
    return where(mask, Tensor(value, dtype=x.dtype), x)


# The Tensor's own ways to move numbers: x.reshape(...), x.T, x[key], x.masked_fill(...).
Tensor.reshape = reshape
Tensor.transpose = transpose
Tensor.T = property(transpose)
Tensor.swapaxes = swapaxes
Tensor.__getitem__ = index
Tensor.masked_fill = masked_fill
