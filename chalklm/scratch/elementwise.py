"""Element-wise functions of the glass box: each number of the output depends on one number
of the input, so each derivative is one number too (the slope at that input), multiplied
into the incoming gradient. `x.exp()` and `exp(x)` are the same operation.
"""

from __future__ import annotations

import math

import numpy as np

from chalklm.scratch.autograd import Tensor, as_tensor


def _erf(x: np.ndarray) -> np.ndarray:
    """erf for arrays (NumPy has none): Abramowitz & Stegun's formula 7.1.26, within 1.5e-7
    of the true value everywhere, which is float32's own rounding. erf is odd, so the
    formula, written for x >= 0, is applied to |x| and given back x's sign."""
    a = np.abs(x)
    t = 1 / (1 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
                + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1 - poly * np.exp(-a * a))


def exp(x) -> Tensor:
    a = as_tensor(x)
    e = np.exp(a.data)
    out = Tensor._result(e, (a,), "exp")

    def backward(grad):
        a._add_grad(e * grad)  # d(e^x)/dx = e^x

    out._backward = backward
    return out


def log(x) -> Tensor:
    a = as_tensor(x)
    out = Tensor._result(np.log(a.data), (a,), "log")

    def backward(grad):
        a._add_grad(grad / a.data)  # d(ln x)/dx = 1/x

    out._backward = backward
    return out


def sqrt(x) -> Tensor:
    a = as_tensor(x)
    root = np.sqrt(a.data)
    out = Tensor._result(root, (a,), "sqrt")

    def backward(grad):
        a._add_grad(grad / (2 * root))  # d(sqrt x)/dx = 1 / (2 sqrt x)

    out._backward = backward
    return out


def tanh(x) -> Tensor:
    a = as_tensor(x)
    t = np.tanh(a.data)
    out = Tensor._result(t, (a,), "tanh")

    def backward(grad):
        a._add_grad((1 - t * t) * grad)  # d(tanh x)/dx = 1 - tanh^2

    out._backward = backward
    return out


def relu(x) -> Tensor:
    a = as_tensor(x)
    out = Tensor._result(np.maximum(a.data, 0), (a,), "relu")

    def backward(grad):
        a._add_grad(grad * (a.data > 0))  # slope 1 where x > 0, else 0

    out._backward = backward
    return out


def sigmoid(x) -> Tensor:
    a = as_tensor(x)
    # 1 / (1 + e^-x), written with tanh so it cannot overflow for large |x|
    s = 0.5 * (1 + np.tanh(0.5 * a.data))
    out = Tensor._result(s, (a,), "sigmoid")

    def backward(grad):
        a._add_grad(s * (1 - s) * grad)  # s' = s (1 - s)

    out._backward = backward
    return out


def silu(x) -> Tensor:
    """SiLU (also called swish), the gate of Llama's SwiGLU: x * sigmoid(x)."""
    a = as_tensor(x)
    x = a.data
    s = 0.5 * (1 + np.tanh(0.5 * x))  # sigmoid, as in `sigmoid`
    out = Tensor._result(x * s, (a,), "silu")

    def backward(grad):
        a._add_grad((s + x * s * (1 - s)) * grad)  # product rule: s + x s (1 - s)

    out._backward = backward
    return out


def gelu_exact(x) -> Tensor:
    """GELU as its paper defines it: x * Phi(x), Phi the standard normal distribution's
    cumulative probability, Phi(x) = 0.5 (1 + erf(x / sqrt(2)))."""
    a = as_tensor(x)
    x = a.data
    phi_cdf = (0.5 * (1 + _erf(x / math.sqrt(2)))).astype(x.dtype, copy=False)
    out = Tensor._result(x * phi_cdf, (a,), "gelu_exact")

    def backward(grad):
        # product rule: Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
        density = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        a._add_grad((phi_cdf + x * density) * grad)

    out._backward = backward
    return out


def gelu(x) -> Tensor:
    """GELU, tanh form (GPT-2's): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    a = as_tensor(x)
    x = a.data
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


# Each function is a Tensor method too: x.exp() is exp(x).
Tensor.exp = exp
Tensor.log = log
Tensor.sqrt = sqrt
Tensor.tanh = tanh
Tensor.relu = relu
Tensor.sigmoid = sigmoid
Tensor.silu = silu
Tensor.gelu = gelu
Tensor.gelu_exact = gelu_exact
