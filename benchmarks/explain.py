"""How fast `chalklm explain` answers: the forward pass with every intermediate.

    python benchmarks/explain.py [--checkpoint DIR] [--requests 20] [--tokens 64]

Sends --requests POSTs to /api/forward (the page's own request: float16 arrays) for a
--tokens-token prompt of Tiny Shakespeare, through the real HTTP server on a local port,
for each engine, and prints the median time and the payload size. Goal: under 150 ms
for 64 tokens on the default Shakespeare model (6 layers, 384 wide) on a 2-core CPU,
fast engine. The peer, in the same run: the model's own forward pass (`model(ids)`, no
intermediates kept), so the ratio says what tracing and sending everything costs.
Without --checkpoint the default config's model is built with random weights (the same
shapes and arithmetic as a trained one). Writes benchmarks/results/explain.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import torch

from chalklm import generation
from chalklm.checkpoint import save_checkpoint
from chalklm.config import GPTConfig
from chalklm.data.registry import load_text
from chalklm.explain.serve import running_server
from chalklm.explain.session import Explainer
from chalklm.models import GPT
from chalklm.tokenizers.char import CharTokenizer

RESULTS = Path(__file__).parent / "results" / "explain.json"


def default_checkpoint(folder: Path, text: str) -> Path:
    tokenizer = CharTokenizer(text)
    config = GPTConfig(vocab_size=tokenizer.vocab_size)  # the default: 6 layers, 384 wide
    save_checkpoint(folder, GPT(config).state_dict(), config, tokenizer)
    return folder


def time_requests(url: str, prompt: str, engine: str, count: int) -> tuple[float, int]:
    times, size = [], 0
    with httpx.Client(timeout=60) as client:
        for i in range(count + 1):
            began = time.perf_counter()
            response = client.post(url + "api/forward", json={"prompt": prompt, "engine": engine})
            response.raise_for_status()
            if i:  # the first request loads the engine's model: not timed
                times.append(time.perf_counter() - began)
            size = len(response.content)
    return statistics.median(times), size


def time_plain_forward(folder: Path, prompt: str, count: int) -> float:
    model, tokenizer = generation.load(folder)
    ids = torch.tensor([tokenizer.encode(prompt)])
    times = []
    with torch.inference_mode():
        for _ in range(count + 1):
            began = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a GPT checkpoint (default: the default config)")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    text = load_text("shakespeare")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.checkpoint) if args.checkpoint else \
            default_checkpoint(Path(tmp) / "model", text)
        explainer = Explainer(folder)
        prompt = explainer.tokenizer.decode(explainer.tokenizer.encode(text)[:args.tokens])
        plain = time_plain_forward(explainer.folder, prompt, args.requests)
        rows = []
        with running_server(explainer) as url:
            for engine in ("torch", "scratch"):
                median, size = time_requests(url, prompt, engine, args.requests)
                rows.append({"engine": engine, "median_ms": round(1000 * median, 1),
                             "payload_bytes": size, "vs_plain_forward": round(median / plain, 1)})
    print(f"{args.tokens}-token prompt, {explainer.config.n_layer} layers, "
          f"{explainer.config.n_embd} wide; model(ids) alone: {1000 * plain:.1f} ms (median)")
    print(f"{'engine':<8} {'median ms':>10} {'payload':>10} {'x model(ids)':>13}")
    for row in rows:
        print(f"{row['engine']:<8} {row['median_ms']:>10} "
              f"{row['payload_bytes'] / 1e6:>8.2f}MB {row['vs_plain_forward']:>13}")
    goal = rows[0]["median_ms"] < 150
    print(f"goal (fast engine under 150 ms): {'met' if goal else 'not met'}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"tokens": args.tokens, "requests": args.requests,
                                   "plain_forward_ms": round(1000 * plain, 2), "rows": rows,
                                   "threads": torch.get_num_threads(),
                                   "cpu_count": os.cpu_count()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
