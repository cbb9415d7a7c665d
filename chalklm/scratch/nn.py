"""Layers for the glass box: a Module holds weights (Parameters) and other Modules.

Names follow PyTorch's habits so checkpoints match the fast engine: a module's
parameters are found by attribute, and their names are the attribute path
(`blocks.0.attn.query.weight`). See docs/contract.md for every name and shape.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np

from chalklm.errors import ShapeError
from chalklm.scratch import autograd, probability
from chalklm.scratch.autograd import Tensor


class Parameter(Tensor):
    """A tensor the model learns: it always wants a gradient and is saved in the state_dict."""

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)


class Module:
    """Something with weights that maps inputs to outputs; call it like a function."""

    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def children(self):
        """(name, module) for each direct sub-module, in the order they were assigned."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_parameters(self, prefix: str = ""):
        """(dotted name, Parameter) for every weight, each shared weight once."""
        seen = set()
        for name, param in self._walk_parameters(prefix):
            if id(param) not in seen:
                seen.add(id(param))
                yield name, param

    def _walk_parameters(self, prefix):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
            elif isinstance(value, Module):
                yield from value._walk_parameters(f"{prefix}{name}.")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def modules(self):
        """This module and every module inside it."""
        yield self
        for _, child in self.children():
            yield from child.modules()

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        """Training mode: dropout drops. `eval()` switches it off for measuring and sampling."""
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """name -> a copy of the weight's numbers (what a checkpoint stores)."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict) -> None:
        """Copy weights in by name; any missing, unexpected or mis-shaped name is a ShapeError."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected {', '.join(unexpected)}")
        for name in sorted(set(own) & set(state)):
            shape = tuple(np.shape(state[name]))
            if shape != own[name].shape:
                problems.append(f"{name} has shape {shape}, the model expects {own[name].shape}")
        if problems:
            raise ShapeError(f"{type(self).__name__} state_dict does not fit: "
                             + "; ".join(problems))
        for name, param in own.items():
            np.copyto(param.data, np.asarray(state[name]), casting="same_kind")

    def __repr__(self) -> str:
        """The tree of modules with each weight's shape, to see a model's anatomy."""
        lines = [f"{name}: {p.shape}" for name, p in vars(self).items()
                 if isinstance(p, Parameter)]
        lines += [f"{name}: {child!r}" for name, child in self.children()]
        if not lines:
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}(\n" + textwrap.indent("\n".join(lines), "  ") + "\n)"


class ModuleList(Module):
    """A list of modules named 0, 1, 2, ... (so a stack of blocks is `blocks.0`, `blocks.1`)."""

    def __init__(self, modules=()):
        self._items = []
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> None:
        setattr(self, str(len(self._items)), module)
        self._items.append(module)

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> Module:
        return self._items[i]


class Sequential(ModuleList):
    """Modules applied one after another: the output of each is the input of the next."""

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x


def _uniform(shape, bound: float) -> Parameter:
    return Parameter(autograd.rng().uniform(-bound, bound, size=shape))


class Linear(Module):
    """A layer of neurons: each output is a weighted sum of the inputs plus a bias.

    y = x @ weight + bias, with weight of shape (inputs, outputs): column j holds the
    weights of neuron j. Starts uniform in +-1/sqrt(inputs), as PyTorch does.
    """

    def __init__(self, inputs: int, outputs: int, bias: bool = True):
        bound = 1 / math.sqrt(inputs)
        self.weight = _uniform((inputs, outputs), bound)
        self.bias = _uniform((outputs,), bound) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y


class Embedding(Module):
    """A table with one learned vector per token; looking up ids picks their rows."""

    def __init__(self, num_embeddings: int, dim: int):
        self.weight = Parameter(autograd.rng().standard_normal((num_embeddings, dim)))

    def forward(self, ids) -> Tensor:
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise ShapeError(f"Embedding needs integer ids, got dtype {ids.dtype}")
        rows = self.weight.shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= rows):
            bad = ids.max() if ids.max() >= rows else ids.min()
            raise ShapeError(f"token id {bad} is outside the embedding table (0..{rows - 1})")
        return self.weight[ids]


class LayerNorm(Module):
    """Rescale each vector to mean 0 and variance 1, then apply a learned scale and bias.

    (x - mean) / sqrt(var + eps) * scale + bias, over the last axis, biased variance.
    """

    def __init__(self, dim: int, bias: bool = True, eps: float = 1e-5):
        self.eps = eps
        self.scale = Parameter(np.ones(dim))
        self.bias = Parameter(np.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        centered = x - x.mean(axis=-1, keepdims=True)
        variance = (centered * centered).mean(axis=-1, keepdims=True)
        y = centered / (variance + self.eps).sqrt() * self.scale
        return y + self.bias if self.bias is not None else y


class RMSNorm(Module):
    """LayerNorm without the centering and the bias (Llama's): divide each vector by its
    root mean square, then apply a learned scale.

    x / sqrt(mean(x^2) + eps) * scale, over the last axis. One mean instead of two, and
    measured in large models to train as well as LayerNorm.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        self.eps = eps
        self.scale = Parameter(np.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        mean_square = (x * x).mean(axis=-1, keepdims=True)
        return x / (mean_square + self.eps).sqrt() * self.scale


def norm_for(config, dim: int | None = None) -> Module:
    """The block's normalisation, as `config.norm` picks: LayerNorm or RMSNorm."""
    dim = dim or config.n_embd
    if config.norm == "rmsnorm":
        return RMSNorm(dim, config.norm_eps)
    return LayerNorm(dim, config.bias, config.norm_eps)


class Dropout(Module):
    """During training, zero a random fraction p of the numbers (and scale up the rest)."""

    def __init__(self, p: float = 0.0):
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return probability.dropout(x, self.p, self.training)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class GELU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.gelu()
