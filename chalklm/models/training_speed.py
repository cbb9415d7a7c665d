"""Training speed-ups: the layers' arithmetic, cheaper per step on a small model.

A small model's training step is mostly per-operation cost, and on a CPU dropout's
random numbers cost more than its arithmetic. Three tricks save time and keep the
numbers (up to float rounding; dropout draws other random numbers):

- `joint_linear`: layers that read the same input (query, key and value; SwiGLU's gate
  and fc) multiply as one product, their weights side by side;
- `dropout`: on a CPU, one 64-bit random draw gives four 16-bit ones;
- `causal_halves`: causal attention spelled out (`fused=False`) from HALVES_FROM tokens
  never computes the hidden quarter of the scores.

The trainer opts in (`enabled()` around its steps, chalklm/training/engines.py), as
generation opts into models/decode_weights.py. Everywhere else (a learner calling
`model.train(); model(x)`, the tests that compare the engines) the layers of
models/ compute the plain way. The flag holds for the thread that set it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

HALVES_FROM = 256  # from this many tokens, causal attention in halves (measured: see there)

_state = threading.local()


@contextmanager
def enabled():
    """Inside, this thread's layers take the speed-ups (the trainer's steps)."""
    before, _state.on = getattr(_state, "on", False), True
    try:
        yield
    finally:
        _state.on = before


def active() -> bool:
    """True inside `enabled()`. Compiled code is traced for each value, guarded on it."""
    return getattr(_state, "on", False)


def joint_linear(layers, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """`tuple(layer(x) for layer in layers)` as one matrix product: the weights joined
    column-wise, the result split back. Gradients flow to each layer's own weights. One
    product (one cast of x to bf16, one backward) costs less than three; evaluating would
    pay for a copy of the weights each time, so only training joins them."""
    weight = torch.cat([layer.weight for layer in layers], dim=1)
    flat = x.reshape(-1, x.shape[-1])
    if layers[0].bias is None:
        out = flat @ weight
    else:
        out = torch.addmm(torch.cat([layer.bias for layer in layers]), flat, weight)
    out = out.view(*x.shape[:-1], weight.shape[1])
    return out.split([layer.weight.shape[1] for layer in layers], dim=-1)


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """F.dropout's arithmetic with a cheaper mask on a CPU: there F.dropout draws one random
    number per element (bernoulli_, single-threaded), which cost more than a tenth of a
    Transformer training step. Here one 64-bit draw gives four 16-bit ones, and an element
    survives when its 16-bit draw is at least p * 65536: the drop rate is p rounded to a
    multiple of 1/65536 (0.1 becomes 0.1000061), and the scale uses that rounded rate.
    The draws come from torch's generator, so seeding and exact resume work as before."""
    if x.device.type != "cpu":
        return torch.nn.functional.dropout(x, p, True)  # GPUs fuse mask and product
    threshold = round(p * 65536)
    words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    draws = words.view(torch.int16)[: x.numel()].view(x.shape)
    keep = draws >= threshold - 32768  # int16 runs from -32768: shift the threshold alike
    return x * (keep * (65536 / (65536 - threshold))).to(x.dtype)


def halves_apply(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether causal attention of q over k goes in halves: opted in, as many queries as
    keys, at least HALVES_FROM of them, an even number."""
    T = q.shape[-2]
    return active() and k.shape[-2] == T and T >= HALVES_FROM and T % 2 == 0


def causal_halves(causal_attention, q, k, v) -> torch.Tensor:
    """`causal_attention(q, k, v)` (the mask aligned bottom-right) with the queries in two
    halves. The first half may look only at the first half of the keys, so the top-right
    quarter of the scores, all hidden, is never computed: 3/4 of the products and of the
    softmax. Measured on a 2-core CPU, bf16, compiled: 445 against 460 ms a training step
    of a 6-layer, 384-wide model on 8 x 256 tokens; no faster at 64 tokens, where the
    smaller products cost as much."""
    h = q.shape[-2] // 2
    first = causal_attention(q[..., :h, :], k[..., :h, :], v[..., :h, :])
    second = causal_attention(q[..., h:, :], k, v)
    return torch.cat([first, second], dim=-2)
