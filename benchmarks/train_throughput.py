"""Training tokens/s: chalklm's fast engine against Hugging Face GPT2LMHeadModel.

Both models are built with the identical configuration (layers, heads, width, context,
vocabulary; tied embeddings, no dropout; GELU-tanh, or with --activation gelu_exact the
erf form on both sides), trained on the same random batch
in the same process, the settings taking turns round by round so a change in machine load
hits them all alike. A step is forward + backward + clip + AdamW: for chalklm a step of
its trainer (TorchEngine.train_step), for HF the same with torch.optim.AdamW(fused=True).

    python benchmarks/train_throughput.py [--configs small,large] [--rounds 5] [--steps 10]
        [--activation gelu|gelu_exact]

Settings: chalklm fp32 / bf16 autocast, each with torch.compile off and on; HF fp32 /
bf16 autocast, each with its fused (sdpa) and its eager attention. Reports tokens/s (best
round), the ratio to HF's best setting, and MFU against this machine's measured matmul
rate in that dtype (6N + 12LHQT FLOPs per token). chalklm's CPU engine tells glibc's
malloc to keep freed memory (chalklm/training/memory.py); that is a setting of the process,
so every side here, HF's included, runs with it. `--glibc-default-malloc` keeps glibc's
defaults instead, for every side.
Writes benchmarks/results/train_throughput.json (with --activation gelu_exact:
train_throughput_gelu_exact.json). Measure on an idle machine only.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from chalklm.config import GPTConfig
from chalklm.interop.gpt2 import TO_HF_ACTIVATION
from chalklm.training.config import TrainConfig
from chalklm.training.distributed import Distributed
from chalklm.training.engines import TorchEngine
from chalklm.training.report import measured_peak_flops

# (layers, heads, width, context, batch, vocab), as the issue names them
CONFIGS = {"small": (4, 4, 128, 64, 12, 65), "large": (6, 6, 384, 256, 8, 65)}


def hf_model(layers, heads, width, context, vocab, attention: str, activation: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab, n_positions=context, n_embd=width, n_layer=layers,
                        n_head=heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        activation_function=TO_HF_ACTIVATION[activation],
                        tie_word_embeddings=True)
    config._attn_implementation = attention  # "sdpa" (fused) or "eager" (explicit)
    model = GPT2LMHeadModel(config)
    model.config.use_cache = False

    def loss_of(x, y):
        return model(input_ids=x, labels=None).logits

    return model, loss_of


def chalklm_step(layers, heads, width, context, vocab, dtype: str, compile_: bool,
                 activation: str):
    """A step of chalklm's trainer itself (TorchEngine.train_step: its attention path for
    the dtype, its flat-parameter AdamW and clipping), on one micro-batch."""
    config = GPTConfig(vocab_size=vocab, block_size=context, n_layer=layers, n_head=heads,
                       n_embd=width, activation=activation)
    train = TrainConfig(dtype=dtype, compile=compile_, learning_rate=1e-4, grad_clip=1.0)
    engine = TorchEngine(config, train, "cpu", dtype, Distributed())
    return lambda x, y: engine.train_step([(x.numpy(), y.numpy())], 1e-4)


def make_step(model, logits_of, dtype: str):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16"
                else nullcontext())

    def step(x, y):
        with autocast:
            logits = logits_of(x, y)
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]),
                                                 y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def flops_per_token(layers, heads, width, context, vocab) -> float:
    n = 12 * layers * width**2 + 13 * layers * width + vocab * width + 2 * width
    return 6 * n + 12 * layers * width * context


def bench(name, shape, rounds, steps, compile_, activation):
    layers, heads, width, context, batch, vocab = shape
    torch.manual_seed(0)
    x = torch.randint(0, vocab, (batch, context))
    y = torch.randint(0, vocab, (batch, context))
    settings = {}
    for dtype in ("fp32", "bf16"):
        for comp in ([False, True] if compile_ else [False]):
            settings[f"chalklm {dtype}{' compile' if comp else ''}"] = chalklm_step(
                layers, heads, width, context, vocab, dtype, comp, activation)
        for attention in ("sdpa", "eager"):  # HF at its best: both of its attention paths
            model, fn = hf_model(layers, heads, width, context, vocab, attention, activation)
            settings[f"hf {dtype} {attention}"] = make_step(model, fn, dtype)
    for step in settings.values():  # warm up (and compile) outside the timing
        for _ in range(3):
            step(x, y)
    best = {label: float("inf") for label in settings}
    for _ in range(rounds):
        for label, step in settings.items():
            start = time.perf_counter()
            for _ in range(steps):
                step(x, y)
            best[label] = min(best[label], (time.perf_counter() - start) / steps)
    fpt = flops_per_token(layers, heads, width, context, vocab)
    peaks = {d: measured_peak_flops("cpu", d) for d in ("fp32", "bf16")}
    rows = {}
    for label, seconds in best.items():
        tok_s = batch * context / seconds
        dtype = "bf16" if "bf16" in label else "fp32"
        rows[label] = {"tokens_per_s": tok_s, "mfu": fpt * tok_s / peaks[dtype]}
    hf_best = max(r["tokens_per_s"] for k, r in rows.items() if k.startswith("hf"))
    print(f"\n{name} config (layers, heads, width, context, batch, vocab) = {shape}")
    print(f"{'setting':<24}{'tokens/s':>12}{'x HF best':>11}{'MFU':>8}")
    for label, r in rows.items():
        r["vs_hf_best"] = r["tokens_per_s"] / hf_best
        print(f"{label:<24}{r['tokens_per_s']:>12,.0f}{r['vs_hf_best']:>10.2f}x"
              f"{100 * r['mfu']:>7.1f}%")
    return {"shape": shape, "results": rows, "peak_flops": peaks}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="small,large")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile runs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--activation", choices=["gelu", "gelu_exact"], default="gelu",
                        help="the MLP's GELU on both sides: tanh form (GPT-2's) or erf form")
    parser.add_argument("--glibc-default-malloc", action="store_true",
                        help="leave malloc as glibc sets it (for every side), instead of the "
                             "kept freed memory chalklm's engine asks for")
    args = parser.parse_args()
    if args.glibc_default_malloc:
        import chalklm.training.memory

        chalklm.training.memory.keep_freed_memory = lambda: False
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "rounds": args.rounds, "steps": args.steps, "activation": args.activation,
              "malloc": "glibc default" if args.glibc_default_malloc else "kept freed memory",
              "configs": {}}
    print(f"malloc: {report['malloc']} (every side)")
    for name in args.configs.split(","):
        report["configs"][name] = bench(name, CONFIGS[name], args.rounds, args.steps,
                                        not args.no_compile, args.activation)
    suffix = "" if args.activation == "gelu" else f"_{args.activation}"
    suffix += "_glibc_default_malloc" if args.glibc_default_malloc else ""
    out = Path(__file__).parent / "results" / f"train_throughput{suffix}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
