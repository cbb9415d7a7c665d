"""Weights laid out for one-token steps on a CPU (generating, float32).

A decode step multiplies each weight matrix by one row per sequence, so it reads every
weight once for very little arithmetic: its speed is the speed of reading weights from
memory. How fast depends on how the product is asked for. With the article's layout,
`x @ W` and W of shape (inputs, outputs), the CPU BLAS in PyTorch's CPU build (MKL) reads W
at about 11-14 GB/s on a 2-core machine. Asked as `W.T @ x.T`, with `W.T` stored
row-major (outputs, inputs) and at least two columns in x.T, it reads at about 25 GB/s:
the same numbers, computed up to 2x sooner (benchmarks/generation.py measures it).

So the first one-token step keeps a row-major copy of each layer's `W.T` on the layer
(`packed`; query, key and value joined in one), and remakes it when a parameter changes:
a training step or a load writes into it in place, which bumps the tensor's version;
`model.to(...)` gives it a new storage.
The copies double the weights' memory while the model lives. A tied output needs none:
the token embedding (vocab, n_embd) is already `W.T` of the output layer.

Generation opts in (`decoding()`: the runners of chalklm/generation/runners.py enter it);
everywhere else (training, evaluation, the explain page, a learner calling `model(x)`)
every layer multiplies the plain way of models/nn.py. Inside `decoding()` it applies
(`applies`) in float32 on a CPU, without gradients, for at most MAX_ROWS rows (a batch of
up to 16 sequences, or a short prompt). Checking costs a few microseconds a
layer, and compiled code cannot check at all, so generation checks once a call: its first
step runs eagerly and checks every copy, and the steps after it (compiled or not) run
inside `checked()`, which reads the copies as they are. Within a call the weights do not
change (the KV cache assumes as much).
Everywhere else layers multiply as usual: in bf16 and for more rows the ordinary product
is as fast or faster. Generating one sequence in float32, the C step (models/fused_step.py) reads
the same copies, made by it in one buffer (`adopt`).
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager

import torch

MAX_ROWS = 16  # measured: at 32 rows the ordinary product catches up (small model)


def applies(x: torch.Tensor) -> bool:
    """True inside `decoding()` for a few float32 rows on a CPU with gradients off (a
    decode step)."""
    return (
        getattr(_state, "decoding", False)
        and x.dtype == torch.float32
        and x.numel() <= MAX_ROWS * x.shape[-1]
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
    )


def packed(owner: torch.nn.Module, layers) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The `layers`' weights transposed and stacked row-major, (their outputs, inputs),
    and their biases as one column (or None); kept on `owner` until a parameter changes.
    Several layers that read the same input (query, key, value) become one product."""
    kept = owner.__dict__.get("_decode_weights")
    if getattr(_state, "checked", False) and kept is not None:  # the caller checked them all
        return kept[1], kept[2]
    if torch.compiler.is_compiling():
        # Compiled code cannot check a copy: outside `checked()` it makes the copy in every
        # step (correct, but slow).
        return stacked(layers)
    params = parameters(layers)
    if kept is None or not unchanged(kept[0], params):
        kept = (fingerprint(params), *stacked(layers))
        owner.__dict__["_decode_weights"] = kept
    return kept[1], kept[2]


# `decoding` is True inside `decoding()` and `checked` inside `checked()`, for this thread
# only: another thread generating with another model (a web server answers several at
# once) still checks its copies, and a thread training beside it multiplies the plain way.
# Compiled code is traced once for each value, and guards on this thread's.
_state = threading.local()


@contextmanager
def decoding():
    """Inside, a one-token step may read the copies (`applies`): how generation opts in.
    For this thread only, as `checked()`."""
    before, _state.decoding = getattr(_state, "decoding", False), True
    try:
        yield
    finally:
        _state.decoding = before


@contextmanager
def checked():
    """Inside, layers read the copies without checking them. For callers that have just
    checked every copy (generation: the eager first step of each call)."""
    before, _state.checked = getattr(_state, "checked", False), True
    try:
        yield
    finally:
        _state.checked = before


def adopt(owner: torch.nn.Module, layers, weight_t: torch.Tensor,
          bias_column: torch.Tensor | None) -> None:
    """Keep `weight_t` and `bias_column`, copies made elsewhere (models/fused_step.py makes
    them all in one buffer), as `packed(owner, layers)`'s until a parameter changes."""
    owner.__dict__["_decode_weights"] = (fingerprint(parameters(layers)), weight_t, bias_column)


def parameters(layers) -> list[torch.Tensor]:
    """The layers' weights and biases: what a copy is made from, and checked against."""
    return [p for layer in layers for p in (layer.weight, layer.bias) if p is not None]


def stacked(layers, out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`packed`'s copy of the layers (outputs, inputs) and their bias column (or None); the
    copy written into `out` when given (models/fused_step.py: memory of its own)."""
    weights = [layer.weight.detach().t() for layer in layers]
    weight_t = torch.cat(weights).contiguous() if out is None else torch.cat(weights, out=out)
    if layers[0].bias is None:
        return weight_t, None
    return weight_t, torch.cat([layer.bias.detach() for layer in layers])[:, None]


def fingerprint(params) -> list:
    """What `unchanged` compares: each parameter's storage, place and version."""
    return [(weakref.ref(p.untyped_storage()), p.data_ptr(), p._version) for p in params]


def unchanged(key, params) -> bool:
    """True if every parameter still has the storage, place and version the copy was made
    from (`key`, its `fingerprint`). The storage is held by a weak reference: a new
    storage that happens to reuse a freed one's address (`model.to(...)` and back) is
    still a different object."""
    if len(key) != len(params):
        return False
    for (storage, ptr, version), p in zip(key, params):  # a loop: this runs every step
        if version != p._version or ptr != p.data_ptr() or storage() is not p.untyped_storage():
            return False
    return True


def product(x: torch.Tensor, weight_t: torch.Tensor, bias_column: torch.Tensor | None = None):
    """`x @ weight_t.T + bias` for a few rows of x, computed as `weight_t @ x.T`.

    weight_t: (outputs, inputs), row-major. One row is sent as two equal columns: MKL's
    matrix-vector path is the slow one, its two-column path the fast one. The result is
    copied back to row-major (a few rows: cheap); the operations after it are faster so."""
    flat = x.reshape(-1, x.shape[-1])
    rows = flat.shape[0]
    columns = torch.cat([flat, flat]).t() if rows == 1 else flat.contiguous().t()
    if bias_column is None:
        out = weight_t @ columns
    else:
        out = torch.addmm(bias_column, weight_t, columns)
    return out[:, :rows].t().contiguous().view(*x.shape[:-1], weight_t.shape[0])
