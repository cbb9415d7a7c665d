"""How fast does chalklm generate? Against transformers' generate(), same weights, same run.

For each model shape, one random chalklm GPT is saved as a checkpoint and exported with
`chalklm.interop.export_hf`; transformers loads the export (GPT2LMHeadModel), so both
sides compute with identical weights, in the same dtype, with the same thread count.
Shapes: `small` (6 layers, 6 heads, 384 wide, context 256, vocab 65), `gpt2` (GPT-2
small: 12, 12, 768, 1024, 50257) and `smollm2-135m` (the Llama design of SmolLM2-135M: 30
layers, 9 heads sharing 3 key/value heads, 576 wide, SwiGLU 1536, vocab 49152, tied;
exported as a LlamaForCausalLM folder). Tasks:

  greedy   one prompt of 16 tokens, 256 new tokens, temperature 0 (both sides cached)
  batch    8 prompts of 8..16 tokens (left-padded on both sides), 256 new tokens each,
           sampled (temperature 1, top_k 50)
  glass    the glass box (NumPy) on the greedy task, fewer tokens (it is the slow one)

Each measurement runs in its own process (so peak memory is its own), each side once per
repeat, turn about between the sides so background load falls on all alike; the best
repeat counts. Sides: chalklm as it generates by default (one sequence in float32: each
token one call to C, models/fused_step.py), chalklm's PyTorch step (`eager`, as with
CHALKLM_PURE_PYTHON=1), the same with compile=True (`compiled`: torch.compile of the
one-token step; its compile time is reported, not counted), transformers.
A last row, `floor`, only reads every weight matrix of the model once per token with
PyTorch (sums it: no attention, no norms, no sampling): the speed at which PyTorch reads
the weights, which bounds a batch-1 decoder built from PyTorch operations. It is not the
memory's own limit: the C step's loops (models/_decode.c) read faster than `sum` does.
Reported: tokens/s (new tokens over the whole call, prompt included), time to first
token, peak resident memory above the process's size before loading the model, and
whether greedy tokens agree. Then, for greedy decoding, the share of the memory-bandwidth
limit: a token must read every weight matrix once, so tokens/s can be at most the
machine's copy bandwidth (measured in the same run: a 256 MB copy, bytes read plus bytes
written) over the weight bytes per token.

    python benchmarks/generation.py [--shapes small,gpt2] [--dtypes float32,bfloat16]
        [--new-tokens 256] [--repeats 3] [--threads N] [--glass-tokens 32] [--llamacpp]

--llamacpp (Llama-family shapes, greedy): llama.cpp as a side too, through
llama-cpp-python (`pip install chalklm[bench]`, built from its source package), on a GGUF
file written from the same exported folder (benchmarks/gguf_from_hf.py), float32 or
bfloat16 as the row says. The issue's run:

    python benchmarks/generation.py --shapes smollm2-135m --tasks greedy --new-tokens 128 \
        --llamacpp

Writes benchmarks/results/generation.json. Ratios, not absolute times, are the point:
run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
    "smollm2-135m": dict(n_layer=30, n_head=9, n_kv_head=3, n_embd=576, block_size=2048,
                         vocab_size=49152, ffn_dim=1536, norm="rmsnorm", positional="rope",
                         mlp="swiglu", bias=False, rope_theta=100000.0),
}
TASKS = ("greedy", "batch")
BATCH = 8
TOP_K = 50


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="small,gpt2")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--tasks", default="greedy,batch")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-compile", action="store_true",
                        help="skip chalklm with compile=True (torch.compile of the step)")
    parser.add_argument("--no-eager", action="store_true",
                        help="skip chalklm's PyTorch step (eager)")
    parser.add_argument("--glass-tokens", type=int, default=32,
                        help="new tokens for the glass box (0: skip it)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                             / "generation.json"))
    parser.add_argument("--llamacpp", action="store_true",
                        help="llama.cpp as a side (llama-cpp-python; Llama-family shapes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one measurement, as JSON
    return parser.parse_args()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak() -> None:
    """Start the peak-memory count afresh (Linux: writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def prompts(vocab: int, n_tokens: int, task: str) -> list[list[int]]:
    import numpy as np

    rng = np.random.default_rng(0)
    if task == "batch":
        lengths = rng.integers(max(1, n_tokens // 2), n_tokens + 1, size=BATCH)
        return [rng.integers(0, vocab, size=int(n)).tolist() for n in lengths]
    return [rng.integers(0, vocab, size=n_tokens).tolist()]


# ---- one measurement (in a child process) ---------------------------------------------------


def child(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    side, task, n = spec["side"], spec["task"], spec["new_tokens"]
    rows = prompts(spec["vocab"], spec["prompt_tokens"], task)
    if side == "transformers":
        import transformers  # noqa: F401  (its import is not the model's memory)
    elif side == "llama.cpp":
        import llama_cpp  # noqa: F401
    else:
        import chalklm.generation  # noqa: F401
    reset_peak()
    base = rss_mb()
    if side == "transformers":
        run, load_s = hf_runner(spec, rows)
    elif side == "floor":
        run, load_s = floor_runner(spec, rows)
    elif side == "llama.cpp":
        run, load_s = llamacpp_runner(spec, rows)
    else:
        run, load_s = chalklm_runner(spec, rows)
    started = time.perf_counter()
    run(min(4, n))  # warm up: first calls allocate and pick kernels (and compile)
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    ids, first = run(n)
    seconds = time.perf_counter() - started
    peak = peak_mb()
    return {"seconds": seconds, "new_tokens": n * len(rows), "first_token_s": first,
            "tokens_per_s": n * len(rows) / seconds, "peak_mb": peak - base,
            "load_s": load_s, "warmup_s": warmup_s, "ids": ids[0][:64]}


def chalklm_runner(spec, rows):
    import chalklm

    started = time.perf_counter()
    engine = "scratch" if spec["side"] == "glass" else "torch"
    model, _ = chalklm.load(spec["ckpt"], engine=engine, dtype=spec["dtype"])
    load_s = time.perf_counter() - started
    controls = (dict(temperature=0) if spec["task"] != "batch"
                else dict(temperature=1.0, top_k=TOP_K, seed=0))
    controls["compile"] = spec["side"] == "compiled"

    def run(n):
        out = [[] for _ in rows]
        start, first = time.perf_counter(), None
        for step in chalklm.stream(model, rows, n, **controls):
            first = first or time.perf_counter() - start
            for row, i in zip(out, step.ids):
                row.append(i)
        return out, first

    return run, load_s


def floor_runner(spec, rows):
    """Every weight matrix read once per token, and nothing else: each is summed (the
    cheapest full read torch has). No batch-1 decoder made of PyTorch operations can go
    faster."""
    import torch

    import chalklm

    started = time.perf_counter()
    model, _ = chalklm.load(spec["ckpt"], engine="torch", dtype=spec["dtype"])
    load_s = time.perf_counter() - started
    matrices = [p for name, p in model.named_parameters()
                if p.dim() == 2 and "position" not in name]

    def run(n):
        start, first = time.perf_counter(), None
        with torch.inference_mode():
            for _ in range(n):
                for m in matrices:
                    m.sum()
                first = first or time.perf_counter() - start
        return [[0] * n for _ in rows], first

    return run, load_s


def hf_runner(spec, rows):
    import torch
    from transformers import AutoModelForCausalLM  # GPT2LMHeadModel or LlamaForCausalLM

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(spec["hf"],
                                                 dtype=getattr(torch, spec["dtype"]))
    model.eval()
    load_s = time.perf_counter() - started
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for b, row in enumerate(rows):  # left padding, as generate() wants for decoder-only
        ids[b, width - len(row):] = torch.tensor(row)
        mask[b, width - len(row):] = 1
    sampled = spec["task"] == "batch"
    controls = (dict(do_sample=True, temperature=1.0, top_k=TOP_K) if sampled
                else dict(do_sample=False))

    def generate(n):
        with torch.inference_mode():
            return model.generate(ids, attention_mask=mask, max_new_tokens=n,
                                  min_new_tokens=n, pad_token_id=0, eos_token_id=None,
                                  **controls)

    def run(n):
        torch.manual_seed(0)
        start = time.perf_counter()
        generate(1)
        first = time.perf_counter() - start
        out = generate(n)
        return out[:, width:].tolist(), first

    return run, load_s


def llamacpp_runner(spec, rows):
    """llama.cpp on the GGUF of the same weights: greedy, one row (llama-cpp-python)."""
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(model_path=spec["gguf"], n_ctx=spec["prompt_tokens"] + spec["new_tokens"] + 8,
                n_threads=spec["threads"], n_threads_batch=spec["threads"], verbose=False)
    load_s = time.perf_counter() - started

    def run(n):
        out, start, first = [], time.perf_counter(), None
        for token in llm.generate(rows[0], top_k=1, top_p=1.0, min_p=0.0, temp=0.0,
                                  repeat_penalty=1.0, reset=True):
            first = first or time.perf_counter() - start
            out.append(token)
            if len(out) == n:
                break
        return [out], first

    return run, load_s


# ---- the parent: models, turn-about runs, the table -----------------------------------------


def make_gguf(hf: Path, dtype: str) -> Path:
    from gguf_from_hf import write_gguf

    return write_gguf(hf, hf.parent / f"{hf.name}-{dtype}.gguf", dtype)


def make_model(shape: str, folder: Path) -> tuple[Path, Path]:
    import torch

    from chalklm.checkpoint import save_checkpoint
    from chalklm.config import GPTConfig
    from chalklm.interop import export_hf
    from chalklm.models import GPT

    torch.manual_seed(0)
    config = GPTConfig(**SHAPES[shape])
    model = GPT(config)
    ckpt = save_checkpoint(folder / f"{shape}-chalklm", model.state_dict(), config)
    export_hf(ckpt, folder / f"{shape}-hf")
    return ckpt, folder / f"{shape}-hf"


def copy_bandwidth() -> float:
    """Bytes per second a 256 MB copy moves (read plus written), the best of five."""
    import torch

    source, target = torch.ones(64 << 20), torch.empty(64 << 20)
    best_s = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        target.copy_(source)
        best_s = min(best_s, time.perf_counter() - started)
    return 2 * source.numel() * 4 / best_s


def weight_bytes(shape: str, dtype: str) -> int:
    """What one token reads: every weight matrix once (position tables excepted)."""
    import torch

    from chalklm.config import GPTConfig
    from chalklm.models import GPT

    with torch.device("meta"):
        model = GPT(GPTConfig(**SHAPES[shape]))
    size = 4 if dtype == "float32" else 2
    return sum(p.numel() for n, p in model.named_parameters()
               if p.dim() == 2 and "position" not in n) * size


def measure(spec: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    env = dict(os.environ)
    if spec["side"] in ("eager", "compiled"):  # chalklm's PyTorch step, not the C one
        env["CHALKLM_PURE_PYTHON"] = "1"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"measurement {spec['side']} {spec['task']} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def best(results: list[dict]) -> dict:
    return max(results, key=lambda r: r["tokens_per_s"])


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    # The models written below take about 1 GB; a stop by `timeout` or `kill` (SIGTERM)
    # unwinds like Ctrl-C, so the temporary folder goes with it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rows = []
    sides = (["chalklm"] + ([] if args.no_eager else ["eager"])
             + ([] if args.no_compile else ["compiled"])
             + (["llama.cpp"] if args.llamacpp else []) + ["transformers"])
    print(f"tok/s of {' | '.join(sides)}; speedups over transformers; first token and peak"
          " memory in the same order")
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s (read + written)")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            ckpt, hf = make_model(shape, Path(tmp))
            # transformers cannot go past the context, so neither side does: on the small
            # model (context 256) a 16-token prompt leaves room for 240 new tokens.
            room = SHAPES[shape]["block_size"] - args.prompt_tokens
            base = dict(ckpt=str(ckpt), hf=str(hf), vocab=SHAPES[shape]["vocab_size"],
                        threads=args.threads, prompt_tokens=args.prompt_tokens,
                        new_tokens=min(args.new_tokens, room))
            for dtype in args.dtypes.split(","):
                if args.llamacpp:
                    base["gguf"] = str(make_gguf(hf, dtype))
                for task in args.tasks.split(","):
                    spec = dict(base, dtype=dtype, task=task)
                    these = [s for s in sides if s != "llama.cpp" or task == "greedy"]
                    runs = {side: [] for side in these}
                    for rep in range(args.repeats):
                        for side in these if rep % 2 == 0 else these[::-1]:
                            runs[side].append(measure(dict(spec, side=side)))
                    row = dict(shape=shape, dtype=dtype, task=task)
                    row.update({side: best(r) for side, r in runs.items()})
                    hf_tok_s = row["transformers"]["tokens_per_s"]
                    row["speedup"] = {side: row[side]["tokens_per_s"] / hf_tok_s
                                      for side in these}
                    if "llama.cpp" in row:
                        row["chalklm_vs_llamacpp"] = (row["chalklm"]["tokens_per_s"]
                                                      / row["llama.cpp"]["tokens_per_s"])
                    row["same_tokens"] = (row["chalklm"]["ids"] == row["transformers"]["ids"]
                                          if task == "greedy" else None)
                    if task == "greedy":
                        limit = bandwidth / weight_bytes(shape, dtype)
                        row["bandwidth_limit_tokens_per_s"] = limit
                        row["share_of_limit"] = {side: row[side]["tokens_per_s"] / limit
                                                 for side in these}
                    rows.append(row)
                    print_row(row, these)
            for dtype in args.dtypes.split(","):
                runs = [measure(dict(base, dtype=dtype, task="greedy", side="floor"))
                        for _ in range(args.repeats)]
                floor = best(runs)
                rows.append(dict(shape=shape, dtype=dtype, task="floor", chalklm=floor))
                print(f"{shape:6} {dtype:9} floor   {floor['tokens_per_s']:7.1f} tok/s: every "
                      f"weight read once per token by torch.sum, nothing else "
                      f"(PyTorch's batch-1 bound)",
                      flush=True)
            if args.glass_tokens > 0:
                glass = measure(dict(base, dtype="float32", task="greedy", side="glass",
                                     new_tokens=args.glass_tokens))
                rows.append(dict(shape=shape, dtype="float32", task="glass", chalklm=glass))
                print(f"{shape:6} float32  glass box greedy: {glass['tokens_per_s']:.1f} tok/s "
                      f"({args.glass_tokens} new tokens), first token "
                      f"{glass['first_token_s'] * 1e3:.0f} ms, peak +{glass['peak_mb']:.0f} MB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


def print_row(row: dict, sides: list[str]) -> None:
    def each(fmt, key, scale=1.0):
        return " | ".join(fmt.format(row[side][key] * scale) for side in sides)

    ours = [s for s in sides if s != "transformers"]
    same = "" if row["same_tokens"] is None else \
        f"  same tokens: {'yes' if row['same_tokens'] else 'no'}"
    compiled = (f" (compiling: {row['compiled']['warmup_s']:.0f} s once)"
                if "compiled" in row else "")
    speedups = " | ".join(f"{row['speedup'][side]:.2f}x" for side in ours)
    print(f"{row['shape']:6} {row['dtype']:9} {row['task']:6}  "
          f"tok/s {each('{:7.1f}', 'tokens_per_s')}  = {speedups}"
          f"   first token ms {each('{:.0f}', 'first_token_s', 1e3)}"
          f"   peak MB {each('+{:.0f}', 'peak_mb')}{same}{compiled}", flush=True)
    if "chalklm_vs_llamacpp" in row:
        print(f"{'':24}chalklm / llama.cpp: {row['chalklm_vs_llamacpp']:.2f}x", flush=True)
    if "share_of_limit" in row:
        shares = " | ".join(f"{100 * row['share_of_limit'][side]:.0f}%" for side in sides)
        print(f"{'':24}bandwidth limit {row['bandwidth_limit_tokens_per_s']:.1f} tok/s; "
              f"share reached {shares}", flush=True)


if __name__ == "__main__":
    main()
