"""What each Llama-family piece does to the default 5-minute CPU run, measured.

Trains the default config (Tiny Shakespeare, characters, `chalklm train` with its time
budget) once per variant and seed: the GPT-2 design, each modern piece alone
(RMSNorm, RoPE, SwiGLU, grouped-query attention, qk-norm) on it, and the whole Llama
combination (`preset = "llama"`) with its MLP widened to GPT-2's parameter count. The
figure is the validation loss the run reports at its end, over the whole validation
split. Each run is its own `chalklm train` process, one after another: measure on an
idle machine only (a busy one trains fewer steps in the same budget).

    python benchmarks/modern_ablation.py [--budget 5m] [--seeds 1,2] [--variants gpt2,rope,llama]

Writes benchmarks/results/modern_ablation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from chalklm.config import GPTConfig, preset_keys
from chalklm.training.config import load_run_config


def matching_ffn_dim(gpt2: GPTConfig, llama: GPTConfig) -> int:
    """The SwiGLU width that gives `llama` the parameters per block of `gpt2` (a multiple
    of 8): GPT-2's block is 12 C^2 + 13 C, the Llama block 2 C^2 + 2 C kv + 3 C h + 2 C."""
    C, kv = gpt2.n_embd, llama.kv_heads * llama.head_size
    gpt2_block = 12 * C * C + 13 * C
    rest = 2 * C * C + 2 * C * kv + 2 * C + (2 * llama.head_size if llama.qk_norm else 0)
    return round((gpt2_block - rest) / (3 * C) / 8) * 8


def variants() -> dict[str, list[str]]:
    """name -> the --set overrides of that variant, on the default config: each spells
    out its design (`preset`), so the table means the same whichever design is the default."""
    gpt2_keys, _ = load_run_config(overrides=['preset="gpt2"'])
    base = GPTConfig(vocab_size=65, **gpt2_keys)
    llama = preset_keys("llama", base.n_head)
    ffn_dim = matching_ffn_dim(base, base.replace(**llama))
    gpt2 = {"preset": "gpt2"}
    sets = {
        "gpt2": gpt2,
        "rmsnorm": {**gpt2, "norm": "rmsnorm"},
        "rope": {**gpt2, "positional": "rope"},
        "swiglu": {**gpt2, "mlp": "swiglu"},
        "gqa": {**gpt2, "n_kv_head": max(1, base.n_head // 2)},
        "qk_norm": {**gpt2, "qk_norm": True},
        "llama": {"preset": "llama", "ffn_dim": ffn_dim},
    }
    return {name: [f"{k}={json.dumps(v) if isinstance(v, str) else str(v).lower()}"
                   for k, v in keys.items()] for name, keys in sets.items()}


def parameters(overrides: list[str]) -> int:
    import torch  # noqa: F401  (the fast engine counts)

    from chalklm.models import GPT

    model, _ = load_run_config(overrides=overrides)
    return GPT(GPTConfig(vocab_size=65, **model)).num_params()


def final_val_loss(metrics: Path) -> tuple[float, int]:
    """(the last validation loss, its step) from a run's metrics.jsonl."""
    last = None
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        if "val_loss" in row:
            last = (row["val_loss"], row["step"])
    return last


def train(overrides: list[str], seed: int, budget: str, folder: Path) -> tuple[float, int]:
    command = [sys.executable, "-m", "chalklm", "train", "--out", str(folder), "--seed",
               str(seed), "--time-budget", budget, "--no-progress", "--force"]
    for text in overrides:
        command += ["--set", text]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return final_val_loss(folder / "metrics.jsonl")


def cpu_name() -> str:
    """The CPU's model name (what a reader compares machines by), else the architecture."""
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="5m", help="each run's time budget")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--variants", help="comma-separated names (default: all)")
    args = parser.parse_args()
    table = variants()
    names = args.variants.split(",") if args.variants else list(table)
    seeds = [int(s) for s in args.seeds.split(",")]
    report = {"budget": args.budget, "seeds": seeds, "cpu": cpu_name(), "runs": {}}
    out = Path(__file__).parent / "results" / "modern_ablation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{'variant':<16}{'params':>9}  " + "  ".join(f"seed {s:<4}" for s in seeds)
          + "    mean  steps")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            overrides = table[name]
            losses, steps = [], []
            for seed in seeds:
                loss, step = train(overrides, seed, args.budget, Path(tmp) / f"{name}-{seed}")
                losses.append(loss)
                steps.append(step)
            mean = sum(losses) / len(losses)
            report["runs"][name] = {"overrides": overrides, "params": parameters(overrides),
                                    "val_loss": losses, "steps": steps, "mean": mean}
            print(f"{name:<16}{report['runs'][name]['params']:>9,}  "
                  + "  ".join(f"{v:<9.4f}" for v in losses)
                  + f"  {mean:.4f}  {sum(steps) // len(steps)}", flush=True)
            out.write_text(json.dumps(report, indent=1))  # a row at a time: a long run
    print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
