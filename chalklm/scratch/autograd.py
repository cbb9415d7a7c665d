"""Reverse-mode automatic differentiation over NumPy arrays: the glass box's engine.

A `Tensor` holds an array (`.data`) and, after `backward()`, the derivative of the final
number with respect to every entry (`.grad`). Every operation below computes its result
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
import math

import numpy as np

from chalklm.errors import ChalkError, ShapeError


def _erf(x: np.ndarray) -> np.ndarray:
    """erf for arrays (NumPy has none): Abramowitz & Stegun's formula 7.1.26, within 1.5e-7
    of the true value everywhere, which is float32's own rounding. erf is odd, so the
    formula, written for x >= 0, is applied to |x| and given back x's sign."""
    a = np.abs(x)
    t = 1 / (1 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
                + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1 - poly * np.exp(-a * a))


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

    # ---- element-wise functions ---------------------------------------------------------

    def exp(self) -> Tensor:
        a = self
        e = np.exp(a.data)
        out = Tensor._result(e, (a,), "exp")

        def backward(grad):
            a._add_grad(e * grad)  # d(e^x)/dx = e^x

        out._backward = backward
        return out

    def log(self) -> Tensor:
        a = self
        out = Tensor._result(np.log(a.data), (a,), "log")

        def backward(grad):
            a._add_grad(grad / a.data)  # d(ln x)/dx = 1/x

        out._backward = backward
        return out

    def sqrt(self) -> Tensor:
        a = self
        root = np.sqrt(a.data)
        out = Tensor._result(root, (a,), "sqrt")

        def backward(grad):
            a._add_grad(grad / (2 * root))  # d(sqrt x)/dx = 1 / (2 sqrt x)

        out._backward = backward
        return out

    def tanh(self) -> Tensor:
        a = self
        t = np.tanh(a.data)
        out = Tensor._result(t, (a,), "tanh")

        def backward(grad):
            a._add_grad((1 - t * t) * grad)  # d(tanh x)/dx = 1 - tanh^2

        out._backward = backward
        return out

    def relu(self) -> Tensor:
        a = self
        out = Tensor._result(np.maximum(a.data, 0), (a,), "relu")

        def backward(grad):
            a._add_grad(grad * (a.data > 0))  # slope 1 where x > 0, else 0

        out._backward = backward
        return out

    def sigmoid(self) -> Tensor:
        a = self
        # 1 / (1 + e^-x), written with tanh so it cannot overflow for large |x|
        s = 0.5 * (1 + np.tanh(0.5 * a.data))
        out = Tensor._result(s, (a,), "sigmoid")

        def backward(grad):
            a._add_grad(s * (1 - s) * grad)  # s' = s (1 - s)

        out._backward = backward
        return out

    def silu(self) -> Tensor:
        """SiLU (also called swish), the gate of Llama's SwiGLU: x * sigmoid(x)."""
        a, x = self, self.data
        s = 0.5 * (1 + np.tanh(0.5 * x))  # sigmoid, as in `sigmoid`
        out = Tensor._result(x * s, (a,), "silu")

        def backward(grad):
            a._add_grad((s + x * s * (1 - s)) * grad)  # product rule: s + x s (1 - s)

        out._backward = backward
        return out

    def gelu_exact(self) -> Tensor:
        """GELU as its paper defines it: x * Phi(x), Phi the standard normal distribution's
        cumulative probability, Phi(x) = 0.5 (1 + erf(x / sqrt(2)))."""
        a, x = self, self.data
        phi_cdf = (0.5 * (1 + _erf(x / math.sqrt(2)))).astype(x.dtype, copy=False)
        out = Tensor._result(x * phi_cdf, (a,), "gelu_exact")

        def backward(grad):
            # product rule: Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
            density = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
            a._add_grad((phi_cdf + x * density) * grad)

        out._backward = backward
        return out

    def gelu(self) -> Tensor:
        """GELU, tanh form (GPT-2's): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
        a, x = self, self.data
        c = math.sqrt(2 / math.pi)
        inner = c * (x + 0.044715 * (x * x * x))
        t = np.tanh(inner)
        out = Tensor._result(0.5 * x * (1 + t), (a,), "gelu")

        def backward(grad):
            # product rule: 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2)
            slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 0.134145 * (x * x))
            a._add_grad(slope * grad)

        out._backward = backward
        return out

    # ---- reductions ---------------------------------------------------------------------

    def sum(self, axis=None, keepdims: bool = False) -> Tensor:
        a = self
        out = Tensor._result(a.data.sum(axis=axis, keepdims=keepdims), (a,), "sum")

        def backward(grad):
            # every summed entry moved the total by exactly its own change: copy the gradient
            if not keepdims:
                grad = _restore_axes(grad, axis, a.ndim)
            a._add_grad(np.broadcast_to(grad, a.shape))

        out._backward = backward
        return out

    def mean(self, axis=None, keepdims: bool = False) -> Tensor:
        axes = range(self.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
        count = math.prod(self.shape[a] for a in axes)
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / count)

    def max(self, axis=None, keepdims: bool = False) -> Tensor:
        a = self
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

    # ---- shape --------------------------------------------------------------------------

    def reshape(self, *shape) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        a = self
        out = Tensor._result(a.data.reshape(shape), (a,), "reshape")

        def backward(grad):
            a._add_grad(grad.reshape(a.shape))

        out._backward = backward
        return out

    def transpose(self, *axes) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        a = self
        axes = axes or tuple(reversed(range(a.ndim)))
        out = Tensor._result(a.data.transpose(axes), (a,), "transpose")

        def backward(grad):
            a._add_grad(grad.transpose(np.argsort(axes)))  # undo the permutation

        out._backward = backward
        return out

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def swapaxes(self, axis1: int, axis2: int) -> Tensor:
        axes = list(range(self.ndim))
        axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
        return self.transpose(axes)

    def __getitem__(self, index) -> Tensor:
        index = _plain_index(index)
        a = self
        out = Tensor._result(a.data[index], (a,), "index")

        def backward(grad):
            a._add_grad(_scatter_back(grad, index, a.shape, a.dtype))

        out._backward = backward
        return out

    # ---- methods that forward to the functions below -------------------------------------

    def softmax(self, axis: int = -1) -> Tensor:
        return softmax(self, axis)

    def log_softmax(self, axis: int = -1) -> Tensor:
        return log_softmax(self, axis)

    def masked_fill(self, mask, value: float) -> Tensor:
        return masked_fill(self, mask, value)

    def dropout(self, p: float, training: bool = True) -> Tensor:
        return dropout(self, p, training)


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


def _restore_axes(grad: np.ndarray, axis, ndim: int) -> np.ndarray:
    """Put back the axes a reduction (without keepdims) removed, as size-1 axes."""
    if axis is None:
        return np.reshape(grad, (1,) * ndim)
    axes = (axis,) if isinstance(axis, int) else axis
    return np.expand_dims(grad, tuple(a % ndim for a in axes))


# ---- indexing ---------------------------------------------------------------------------


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


# ---- functions of several tensors --------------------------------------------------------


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """A new tensor (float32 unless dtype says otherwise)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def _as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _rows_times(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w; when w is one matrix and x a stack of them, as one big product (faster)."""
    if w.ndim == 2 and x.ndim > 2:
        return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])
    return x @ w


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b, batched over leading axes; 1-D operands act as a row (a) or column (b) vector."""
    a, b = _as_tensor(a), _as_tensor(b)
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


def concatenate(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis; each gets back its own slice of the gradient."""
    tensors = [_as_tensor(t) for t in tensors]
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
    tensors = [_as_tensor(t) for t in tensors]
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
    a, b = _as_tensor(a), _as_tensor(b)
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


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """e^x / sum(e^x): positive numbers that add up to 1 (shifted by the max for stability)."""
    x = _as_tensor(x)
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
    x = _as_tensor(x)
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
    logits = _as_tensor(logits)
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
    x = _as_tensor(x)
    if not 0.0 <= p < 1.0:
        raise ChalkError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    keep = (_rng.random(x.shape, dtype=np.float32) >= p) * np.asarray(1 / (1 - p), x.dtype)
    out = Tensor._result(x.data * keep, (x,), "dropout")

    def backward(grad):
        x._add_grad(grad * keep)  # the kept entries pass their gradient, scaled alike

    out._backward = backward
    return out


def exp(x) -> Tensor:
    return _as_tensor(x).exp()


def log(x) -> Tensor:
    return _as_tensor(x).log()


def sqrt(x) -> Tensor:
    return _as_tensor(x).sqrt()


def tanh(x) -> Tensor:
    return _as_tensor(x).tanh()


def relu(x) -> Tensor:
    return _as_tensor(x).relu()


def sigmoid(x) -> Tensor:
    return _as_tensor(x).sigmoid()


def gelu(x) -> Tensor:
    return _as_tensor(x).gelu()


def silu(x) -> Tensor:
    return _as_tensor(x).silu()


def gelu_exact(x) -> Tensor:
    return _as_tensor(x).gelu_exact()
