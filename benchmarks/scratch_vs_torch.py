"""How far is the glass box (NumPy) from PyTorch eager? Time one training step of the same
small models in both engines, in the same run, and print the ratios.

A step is forward + backward + AdamW update, float32, same thread count for both
(PyTorch's intra-op threads and NumPy's BLAS threads). Models:
  chars      the article's first language model (embeddings of the previous 8
             characters, a hidden layer of 256 tanh neurons, softmax over 65)
  mlp        Linear(w, 4w) -> GELU -> Linear(4w, w), cross-entropy over w classes
  attention  one causal multi-head attention layer (query/key/value/proj, softmax)
  gpt        the whole GPT (chalklm.scratch.models.GPT against chalklm.models.GPT)
each at a small and a medium size. Goal: glass box within 2x of PyTorch at medium.

    python benchmarks/scratch_vs_torch.py [--steps 20] [--threads N] [--sizes small,medium]

Writes benchmarks/results/scratch_vs_torch.json. Ratios, not absolute times, are the
point: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

SIZES = {  # name -> (batch, width for mlp, (B, T, C, heads) for attention)
    "small": dict(chars_batch=64, mlp=(32, 128), attention=(4, 32, 64, 4),
                  gpt=(8, dict(n_layer=2, n_head=2, n_embd=64, block_size=32))),
    "medium": dict(chars_batch=512, mlp=(256, 512), attention=(8, 128, 256, 8),
                   gpt=(12, dict(n_layer=4, n_head=4, n_embd=128, block_size=64))),
}  # gpt medium is chalklm/configs/shakespeare_char.toml's model and batch


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--sizes", default="small,medium")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                             / "scratch_vs_torch.json"))
    return parser.parse_args()


def time_pair(glass_step, torch_step, steps: int, warmup: int) -> tuple[float, float]:
    """Median seconds per step of each engine, timed turn about so that background load
    falls on both alike (the median shrugs off a stray slow step)."""
    for _ in range(warmup):
        glass_step()
        torch_step()
    times = {glass_step: [], torch_step: []}
    for _ in range(steps):
        for step, record in times.items():
            start = time.perf_counter()
            step()
            record.append(time.perf_counter() - start)
    g, t = (sorted(record)[steps // 2] for record in times.values())
    return g, t


# ---- the glass box ------------------------------------------------------------------------


def glass_step(model, optimizer, make_loss):
    def step():
        loss = make_loss(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def glass_models(size, rng):
    import numpy as np

    from chalklm.scratch import Tensor, cross_entropy, nn
    from chalklm.scratch.attention import MultiHeadAttention
    from chalklm.scratch.models import NextCharacterModel

    chars = NextCharacterModel(65, context=8, embedding_dim=16, hidden=256)
    ids = rng.integers(0, 65, size=(size["chars_batch"], 8))
    targets = rng.integers(0, 65, size=size["chars_batch"])
    yield "chars", chars, lambda m: m(ids, targets)[1]

    n, w = size["mlp"]
    mlp = nn.Sequential(nn.Linear(w, 4 * w), nn.GELU(), nn.Linear(4 * w, w))
    x = Tensor(rng.standard_normal((n, w)))
    labels = rng.integers(0, w, size=n)
    yield "mlp", mlp, lambda m: cross_entropy(m(x), labels)

    B, T, C, H = size["attention"]
    attn = MultiHeadAttention(C, H)
    xa = Tensor(rng.standard_normal((B, T, C)))
    ya = rng.standard_normal((B, T, C)).astype(np.float32)
    yield "attention", attn, lambda m: (m(xa) * ya).mean()

    from chalklm.config import GPTConfig
    from chalklm.scratch.models import GPT

    batch, shape = size["gpt"]
    gpt = GPT(GPTConfig(vocab_size=65, **shape))
    ids = rng.integers(0, 65, size=(batch, shape["block_size"]))
    yield "gpt", gpt, lambda m: m(ids, np.roll(ids, -1, axis=1))[1]


# ---- PyTorch eager, the same arithmetic ------------------------------------------------------


def torch_models(size, rng):
    import torch
    import torch.nn.functional as F

    def param(*shape, scale=0.05):
        return torch.nn.Parameter(torch.randn(*shape) * scale)

    c = size["chars_batch"]
    emb, w1, b1, w2, b2 = param(65, 16), param(128, 256), param(256), param(256, 65), param(65)
    ids = torch.from_numpy(rng.integers(0, 65, size=(c, 8)))
    targets = torch.from_numpy(rng.integers(0, 65, size=c))

    def chars(_):
        hidden = torch.tanh(emb[ids].reshape(c, -1) @ w1 + b1)
        return F.cross_entropy(hidden @ w2 + b2, targets)

    yield "chars", [emb, w1, b1, w2, b2], chars

    n, w = size["mlp"]
    m1, c1, m2, c2 = param(w, 4 * w), param(4 * w), param(4 * w, w), param(w)
    x = torch.from_numpy(rng.standard_normal((n, w)).astype("float32"))
    labels = torch.from_numpy(rng.integers(0, w, size=n))

    def mlp(_):
        h = F.gelu(x @ m1 + c1, approximate="tanh")
        return F.cross_entropy(h @ m2 + c2, labels)

    yield "mlp", [m1, c1, m2, c2], mlp

    B, T, C, H = size["attention"]
    ws = [param(C, C) for _ in range(4)]
    bs = [param(C) for _ in range(4)]
    xa = torch.from_numpy(rng.standard_normal((B, T, C)).astype("float32"))
    ya = torch.from_numpy(rng.standard_normal((B, T, C)).astype("float32"))
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)

    def attention(_):
        q, k, v = ((xa @ w + b).view(B, T, H, C // H).transpose(1, 2)
                   for w, b in zip(ws[:3], bs[:3]))
        scores = (q @ k.transpose(-1, -2)) / (C // H) ** 0.5
        y = torch.softmax(scores.masked_fill(mask, float("-inf")), -1) @ v
        out = y.transpose(1, 2).reshape(B, T, C) @ ws[3] + bs[3]
        return (out * ya).mean()

    yield "attention", ws + bs, attention

    from chalklm.config import GPTConfig
    from chalklm.models import GPT

    batch, shape = size["gpt"]
    gpt = GPT(GPTConfig(vocab_size=65, **shape))
    ids = torch.from_numpy(rng.integers(0, 65, size=(batch, shape["block_size"])))
    yield "gpt", list(gpt.parameters()), lambda _: gpt(ids, ids.roll(-1, dims=1))[1]


def torch_step(params, make_loss):
    import torch

    optimizer = torch.optim.AdamW(params, lr=1e-3)

    def step():
        loss = make_loss(None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def main():
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy loads its BLAS
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import numpy as np
    import torch

    from chalklm.scratch import manual_seed, optim

    torch.set_num_threads(args.threads)
    manual_seed(0)
    torch.manual_seed(0)
    rows = []
    for size_name in args.sizes.split(","):
        size = SIZES[size_name]
        glass = glass_models(size, np.random.default_rng(0))
        fast = torch_models(size, np.random.default_rng(0))
        for (name, model, g_loss), (_, params, t_loss) in zip(glass, fast):
            g, t = time_pair(glass_step(model, optim.AdamW(model.parameters(), lr=1e-3), g_loss),
                             torch_step(params, t_loss), args.steps, args.warmup)
            rows.append(dict(model=name, size=size_name, glass_ms=g * 1e3, torch_ms=t * 1e3,
                             ratio=g / t))
            print(f"{name:>10} {size_name:>7}  glass {g * 1e3:8.2f} ms  torch {t * 1e3:8.2f} ms"
                  f"  glass/torch {g / t:5.2f}x", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(threads=args.threads, steps=args.steps, rows=rows), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
