"""What a run leaves behind for people: metrics.jsonl, a loss curve, a measured peak.

MFU (model FLOPs utilisation) compares the FLOPs training needs per second with what
this machine's matrix multiply actually reaches in the same dtype, measured once and
cached, so the figure says how much of the hardware the training loop really uses.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

from chalklm.data.registry import cache_dir
from chalklm.errors import ChalkError
from chalklm.files import append_line, write_atomic


class MetricsLog:
    """Appends one JSON object per line to `metrics.jsonl` (readable with any tool)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, record: dict) -> None:
        clean = {k: _json_number(v) for k, v in record.items() if v is not None}
        append_line(self.path, json.dumps(clean))

    def read(self) -> list[dict]:
        """The records. A last line without its newline was cut off by a kill mid-write:
        it is dropped (a resume rewrites it). Any other line that is not a record is an
        error that says which line."""
        if not self.path.is_file():
            return []
        text = self.path.read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines()
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif number < len(lines) or text.endswith("\n"):
                raise ChalkError(f"{self.path}: line {number} is not a JSON record; delete or "
                                 "mend that line, then run again")
        return records

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run rewrites them)."""
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep it readable
    return value


def plot_losses(records: list[dict], path: Path) -> None:
    """Train and validation loss against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["train_loss"]) for r in records
             if isinstance(r.get("train_loss"), (int, float))]
    val = [(r["step"], r["val_loss"]) for r in records
           if isinstance(r.get("val_loss"), (int, float))]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation (full split)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, png.getvalue())


def measured_peak_flops(device: str, dtype: str, size: int = 1024) -> float:
    """FLOP/s of a square matmul on this machine in this dtype: the best of this
    measurement (a fraction of a second) and those before it (kept in the user cache)."""
    import torch

    key = f"{device}-{dtype}-{torch.get_num_threads()}threads-{size}"
    cache = cache_dir() / "peak_flops.json"
    known = _read_peaks(cache)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    own = torch.Generator(device).manual_seed(0)  # leave the training RNG untouched
    a = torch.randn(size, size, device=device, dtype=torch_dtype, generator=own)
    b = torch.randn(size, size, device=device, dtype=torch_dtype, generator=own)
    for _ in range(3):
        a @ b
    best = math.inf
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        _sync(device)
        best = min(best, (time.perf_counter() - start) / 4)
    # A busy machine measures low, so keep the best rate this machine has ever shown.
    known[key] = max(known.get(key, 0.0), 2 * size**3 / best)
    write_atomic(cache, json.dumps(known, indent=1))
    return known[key]


def _read_peaks(cache: Path) -> dict:
    """The measured peaks so far; an unreadable cache counts as none (it is rewritten)."""
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
