"""Weights laid out for one-token steps on a CPU (generating, float32).

A decode step multiplies each weight matrix by one row per sequence, so it reads every
weight once for very little arithmetic: its speed is the speed of reading weights from
memory. How fast depends on how the product is asked for. With the article's layout,
`x @ W` and W of shape (inputs, outputs), the CPU BLAS in PyTorch's CPU build (MKL) reads W
at about 11-14 GB/s on a 2-core machine. Asked as `W.T @ x.T`, with `W.T` stored
row-major (outputs, inputs) and at least two columns in x.T, it reads at about 25 GB/s:
the same numbers, computed up to 2x sooner (benchmarks/generation.py measures it).

So the first one-token step keeps a row-major copy of each layer's `W.T` on the layer
(`transposed`), and remakes it when the weight changes: a training step or a load writes
into the weight in place, which bumps the tensor's version. The copies double the weights'
memory while the model lives. A tied output needs none: the token embedding
(vocab, n_embd) is already `W.T` of the output layer.

It applies (`applies`) in float32 on a CPU, without gradients, for at most MAX_ROWS rows,
outside torch.compile. Everywhere else layers multiply as usual: in bf16 and for more rows
the ordinary product is as fast or faster.
"""

from __future__ import annotations

import torch

MAX_ROWS = 4  # measured: beyond 4 rows the ordinary product is as fast (or faster)


def applies(x: torch.Tensor) -> bool:
    """True for a few float32 rows on a CPU with gradients off (a decode step)."""
    return (
        x.dtype == torch.float32
        and x.numel() <= MAX_ROWS * x.shape[-1]
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    )


def transposed(layer: torch.nn.Module) -> torch.Tensor:
    """`layer.weight.T` as a row-major copy, kept on the layer until the weight changes."""
    weight = layer.weight
    key = (weight.data_ptr(), weight._version)
    kept = layer.__dict__.get("_decode_weight")
    if kept is None or kept[0] != key:
        kept = (key, weight.detach().t().contiguous())
        layer.__dict__["_decode_weight"] = kept
    return kept[1]


def rows_times(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None = None):
    """`x @ weight_t.T + bias` for a few rows of x, computed as `weight_t @ x.T`.

    weight_t: (outputs, inputs), row-major. One row is sent as two equal columns: MKL's
    matrix-vector path is the slow one, its two-column path the fast one."""
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    rows = flat.shape[0]
    columns = torch.cat([flat, flat]).t() if rows == 1 else flat.t()
    if bias is None:
        out = weight_t @ columns
    else:
        out = torch.addmm(bias[:, None], weight_t, columns)
    return out[:, :rows].t().contiguous().view(*x.shape[:-1], weight_t.shape[0])
