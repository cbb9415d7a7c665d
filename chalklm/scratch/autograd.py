"""Reverse-mode automatic differentiation over NumPy arrays: the glass box's engine.

This file is the `Tensor`, its graph walk (`backward`) and arithmetic (+ - * / ** @). The
other operations live beside it by family, each derivative beside its forward:
elementwise.py (exp, tanh, GELU, SiLU, ...), reductions.py (sum, mean, max), shapes.py
(reshape, transpose, index, concatenate, where) and probability.py (softmax,
cross-entropy, dropout). Each family imports the Tensor from here (never the other way
round) and gives it its operations as methods (`x.exp()` is `exp(x)`); the package
(chalklm/scratch/__init__.py) imports every family, so a Tensor has all its methods as
soon as anything of the glass box is imported.

A `Tensor` holds an array (`.data`) and, after `backward()`, the derivative of the final
number with respect to every entry (`.grad`). Every operation computes its result
and, right beside it, says how to send a gradient back to its inputs (the chain rule):
`out = a * b` is followed by `a.grad += b * grad`, where grad is out's gradient.
`backward()` visits the operations in reverse (topological) order and runs those rules,
so each gradient arrives complete before it is passed further back. (The rules receive
grad as an argument rather than reading out.grad, so an output and its rule do not keep
each other alive: a graph is freed as soon as the loss is dropped.)

Arrays broadcast as in NumPy; a gradient flowing back to an input that was broadcast is
summed over the broadcast axes (`unbroadcast`), because that input was used once per copy.
"""

from __future__ import annotations

import contextlib

import numpy as np

from chalklm.errors import ChalkError, ShapeError

DEFAULT_DTYPE = np.float32

_grad_enabled = True
_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator used for weight initialisation and dropout masks."""
    global _rng
    _rng = np.random.default_rng(seed)


def rng() -> np.random.Generator:
    """The glass box's random generator (set by `manual_seed`)."""
    return _rng


@contextlib.contextmanager
def no_grad():
    """Inside this block operations record nothing to differentiate: inference only."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `grad` down to `shape`: the inverse of NumPy broadcasting `shape` up to grad.shape."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


class Tensor:
    """An array that remembers how it was computed, so gradients can flow back through it."""

    __array_ufunc__ = None  # `array * tensor` calls Tensor.__rmul__, so the graph sees it

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        self.data = np.asarray(data, dtype=dtype or DEFAULT_DTYPE)
        self.requires_grad = requires_grad
        self.grad: np.ndarray | None = None
        self._parents: tuple[Tensor, ...] = ()
        self._backward = None  # sends self.grad to the parents
        self._op = ""

    # ---- bookkeeping --------------------------------------------------------------------

    @classmethod
    def _result(cls, data: np.ndarray, parents: tuple, op: str) -> Tensor:
        """The output of an operation; linked to its parents only when a gradient is wanted."""
        out = cls.__new__(Tensor)
        out.data = data
        out.grad = None
        out._op = op
        out.requires_grad = _grad_enabled and any(p.requires_grad for p in parents)
        out._parents = parents if out.requires_grad else ()
        out._backward = None
        return out

    def _add_grad(self, grad: np.ndarray) -> None:
        """Accumulate a gradient (a tensor used twice receives the sum of both)."""
        if not self.requires_grad:
            return
        grad = unbroadcast(grad, self.data.shape)
        if self._parents:  # an intermediate result: its gradient is only read, never changed
            grad = grad.astype(self.data.dtype, copy=False)
            self.grad = grad if self.grad is None else self.grad + grad
        elif self.grad is None:  # a leaf (a weight): keep a private copy an optimizer may edit
            self.grad = np.array(grad, dtype=self.data.dtype)
        else:
            self.grad += grad

    def backward(self, grad=None) -> None:
        """Fill `.grad` of every tensor this one was computed from, by the chain rule.

        A scalar (the loss) starts from d loss / d loss = 1; anything else needs the
        gradient of some later scalar with respect to it, passed as `grad`.
        """
        if not self.requires_grad:
            raise ChalkError("backward() on a tensor that does not require grad")
        if grad is None:
            if self.data.size != 1:
                raise ShapeError(
                    f"backward() on a tensor of shape {self.shape} needs grad= "
                    "(only a single number has an implicit gradient of 1)"
                )
            grad = np.ones_like(self.data)
        grad = np.asarray(grad, dtype=self.data.dtype)
        if grad.shape != self.data.shape:
            raise ShapeError(f"grad has shape {grad.shape}, tensor has shape {self.shape}")
        order = self._topological_order()
        for node in order:  # intermediate gradients start afresh; leaves accumulate
            if node._parents:
                node.grad = None
        self.grad = grad if self.grad is None else self.grad + grad
        for node in reversed(order):
            if node._backward is not None and node.grad is not None:
                node._backward(node.grad)

    def _topological_order(self) -> list[Tensor]:
        """Every tensor before the ones computed from it (iterative, so deep graphs are fine)."""
        order, seen, stack = [], set(), [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if id(p) not in seen)
        return order

    def zero_grad(self) -> None:
        self.grad = None

    def detach(self) -> Tensor:
        """The same numbers, cut off from the graph."""
        return Tensor(self.data, dtype=self.data.dtype)

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def _lift(self, other) -> Tensor:
        """A plain number or array joins an operation as a constant tensor of our dtype."""
        if isinstance(other, Tensor):
            return other
        return Tensor(other, dtype=self.data.dtype)

    # ---- arithmetic ---------------------------------------------------------------------

    def __add__(self, other) -> Tensor:
        a, b = self, self._lift(other)
        out = Tensor._result(a.data + b.data, (a, b), "+")

        def backward(grad):
            a._add_grad(grad)  # d(a+b)/da = 1
            b._add_grad(grad)

        out._backward = backward
        return out

    __radd__ = __add__

    def __neg__(self) -> Tensor:
        a = self
        out = Tensor._result(-a.data, (a,), "neg")

        def backward(grad):
            a._add_grad(-grad)

        out._backward = backward
        return out

    def __sub__(self, other) -> Tensor:
        a, b = self, self._lift(other)
        out = Tensor._result(a.data - b.data, (a, b), "-")

        def backward(grad):
            a._add_grad(grad)
            b._add_grad(-grad)

        out._backward = backward
        return out

    def __rsub__(self, other) -> Tensor:
        return self._lift(other) - self

    def __mul__(self, other) -> Tensor:
        a, b = self, self._lift(other)
        out = Tensor._result(a.data * b.data, (a, b), "*")

        def backward(grad):
            if a.requires_grad:
                a._add_grad(b.data * grad)  # d(ab)/da = b
            if b.requires_grad:
                b._add_grad(a.data * grad)

        out._backward = backward
        return out

    __rmul__ = __mul__

    def __truediv__(self, other) -> Tensor:
        a, b = self, self._lift(other)
        quotient = a.data / b.data
        out = Tensor._result(quotient, (a, b), "/")

        def backward(grad):
            if a.requires_grad:
                a._add_grad(grad / b.data)  # d(a/b)/da = 1/b
            if b.requires_grad:
                b._add_grad(-grad * quotient / b.data)  # d(a/b)/db = -a/b^2

        out._backward = backward
        return out

    def __rtruediv__(self, other) -> Tensor:
        return self._lift(other) / self

    def __pow__(self, exponent) -> Tensor:
        if isinstance(exponent, Tensor):
            raise ChalkError("x ** y needs a plain number exponent")
        a, n = self, exponent
        out = Tensor._result(_power(a.data, n), (a,), "**")

        def backward(grad):
            a._add_grad(n * _power(a.data, n - 1) * grad)  # d(x^n)/dx = n x^(n-1)

        out._backward = backward
        return out

    def __matmul__(self, other) -> Tensor:
        return matmul(self, self._lift(other))

    def __rmatmul__(self, other) -> Tensor:
        return matmul(self._lift(other), self)


def _power(x: np.ndarray, n):
    """x ** n, with small whole powers as products (float ** is far slower than *)."""
    if n == 1:
        return x
    if n == 2:
        return x * x
    if n == 3:
        return x * x * x
    if n == 0.5:
        return np.sqrt(x)
    return x**n


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """A new tensor (float32 unless dtype says otherwise)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def as_tensor(x) -> Tensor:
    """x itself if it is a Tensor, else a new constant Tensor of its numbers."""
    return x if isinstance(x, Tensor) else Tensor(x)


def _rows_times(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w; when w is one matrix and x a stack of them, as one big product (faster)."""
    if w.ndim == 2 and x.ndim > 2:
        return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])
    return x @ w


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b, batched over leading axes; 1-D operands act as a row (a) or column (b) vector."""
    a, b = as_tensor(a), as_tensor(b)
    out = Tensor._result(_rows_times(a.data, b.data), (a, b), "@")

    def backward(grad):
        # as 2-D blocks: d(AB)/dA = grad @ B.T and d(AB)/dB = A.T @ grad
        A = a.data[None, :] if a.ndim == 1 else a.data  # a vector on the left is one row
        B = b.data[:, None] if b.ndim == 1 else b.data  # a vector on the right is one column
        if b.ndim == 1:
            grad = np.expand_dims(grad, -1)
        if a.ndim == 1:
            grad = np.expand_dims(grad, -2)
        if a.requires_grad:
            ga = _rows_times(grad, np.swapaxes(B, -1, -2))
            a._add_grad(unbroadcast(ga, A.shape).reshape(a.shape))
        if b.requires_grad:
            if B.ndim == 2 and A.ndim > 2:
                # a weight shared by every row of a batch: one big product over all rows
                gb = A.reshape(-1, A.shape[-1]).T @ grad.reshape(-1, grad.shape[-1])
            else:
                gb = np.swapaxes(A, -1, -2) @ grad
            b._add_grad(unbroadcast(gb, B.shape).reshape(b.shape))

    out._backward = backward
    return out

