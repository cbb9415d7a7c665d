"""Peak memory of opening a SmolLM2-135M-shaped model: chalklm against transformers.

A SmolLM2-135M-shaped LlamaForCausalLM with random weights is saved in bf16 (as the real
one ships) by transformers' save_pretrained, and imported once with chalklm import-hf.
Then, each in a fresh interpreter, after its imports:

- chalklm: `chalklm.load(checkpoint, dtype=...)`, which builds the model on the meta device
  and reads the safetensors file one tensor at a time, each cast to the asked dtype as it
  arrives (chalklm/checkpoint.py `read_safetensors_as`), so a bf16 load never holds an fp32
  copy of every weight;
- transformers: `AutoModelForCausalLM.from_pretrained(folder, dtype=...)`;
- and, once, `chalklm import-hf` itself (it writes an fp32 checkpoint).

Reported: resident memory after the imports, the peak (VmHWM) after loading, their
difference, and the peak after one forward pass of 8 tokens (which reads every weight: a
model whose weights still sit in a memory map of the file pays for them only then), in
MB, beside the model's own bytes in that dtype. Memory, not time: run it on a quiet
machine anyway, as other processes do not change it but may swap.

    python benchmarks/import_memory.py [--dtype bfloat16 float32] [--keep DIR]

Writes benchmarks/results/import_memory.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                    max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)

# Run in a fresh interpreter: argv = (what, folder, dtype). Prints one JSON line.
MEASURE = """
import json, sys
import torch

def rss_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

what, folder, dtype = sys.argv[1:4]
if what == "chalklm":  # and the modules load imports on its way
    import chalklm.models, chalklm.training.engines, chalklm.models.attention
    from chalklm.generation import load
elif what == "import":
    from chalklm.interop import import_hf
    import safetensors.torch
else:
    from transformers import AutoModelForCausalLM
    import transformers.models.llama.modeling_llama
before = rss_mb("VmRSS")
if what == "chalklm":
    model, _ = load(folder, dtype=dtype)
elif what == "import":
    import_hf(folder, sys.argv[4])
else:
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
peak = rss_mb("VmHWM")
params, used = 0, peak
if what != "import":  # one forward pass reads every weight (a memory map's pages too)
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        model(torch.tensor([[1, 17, 400, 9000, 49151, 3, 77, 12345]]))
    used = rss_mb("VmHWM")
print(json.dumps({"before_mb": before, "peak_mb": peak, "forward_peak_mb": used,
                  "params": params}))
"""


def build_folder(folder: Path) -> None:
    """The random SmolLM2-135M-shaped model, saved in bf16 by transformers."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMOLLM2_135M))
    model.to(torch.bfloat16).save_pretrained(folder)


def measure(what: str, folder: Path, dtype: str, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, what, str(folder), dtype, *extra],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["added_mb"] = result["peak_mb"] - result["before_mb"]
    result["forward_added_mb"] = result["forward_peak_mb"] - result["before_mb"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--keep", help="build the folders here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        hf, ck = root / "hf", root / "ck"
        if not (hf / "config.json").is_file():
            build_folder(hf)
        rows = []
        if not (ck / "model.safetensors").is_file():
            rows.append({"what": "chalklm import-hf (fp32 checkpoint)", "dtype": "float32",
                         **measure("import", hf, "float32", str(ck))})
        for dtype in args.dtype:
            for what, name in (("chalklm", "chalklm.load"),
                               ("transformers", "transformers from_pretrained")):
                rows.append({"what": name, "dtype": dtype, **measure(what, ck if
                             what == "chalklm" else hf, dtype)})
    width = {"bfloat16": 2, "float16": 2, "float32": 4}
    print(f"{'load':<38} {'dtype':<9} {'after imports':>13} {'peak':>6} {'added':>6} "
          f"{'+forward':>9} {'weights':>8}  (MB)")
    for row in rows:
        weights = row["params"] * width[row["dtype"]] / 2**20
        row["weights_mb"] = weights
        print(f"{row['what']:<38} {row['dtype']:<9} {row['before_mb']:>13.0f} "
              f"{row['peak_mb']:>6.0f} {row['added_mb']:>6.0f} "
              f"{row['forward_added_mb']:>9.0f} {weights if weights else float('nan'):>8.0f}")
    out = Path(__file__).parent / "results" / "import_memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                               "python": platform.python_version(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
