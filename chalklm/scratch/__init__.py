"""The glass box: language models built on NumPy alone, every derivative in plain sight.

`Tensor` and the operations on it (autograd.py), layers (nn.py), optimizers (optim.py),
attention (attention.py) and whole models (models.py). Nothing here imports torch.
"""

from chalklm.scratch.autograd import (
    Tensor,
    concatenate,
    cross_entropy,
    dropout,
    exp,
    gelu,
    is_grad_enabled,
    log,
    log_softmax,
    manual_seed,
    masked_fill,
    matmul,
    no_grad,
    relu,
    sigmoid,
    softmax,
    sqrt,
    stack,
    tanh,
    tensor,
    where,
)

__all__ = [
    "Tensor",
    "concatenate",
    "cross_entropy",
    "dropout",
    "exp",
    "gelu",
    "is_grad_enabled",
    "log",
    "log_softmax",
    "manual_seed",
    "masked_fill",
    "matmul",
    "no_grad",
    "relu",
    "sigmoid",
    "softmax",
    "sqrt",
    "stack",
    "tanh",
    "tensor",
    "where",
]
