"""What keep_freed_memory (chalklm/training/memory.py) saves: page faults of rounds that
allocate and free a training step's worth of tensors, with the setting and with glibc's
defaults, each in a fresh interpreter (malloc's settings belong to the process).

A round: tensors of several sizes (1-12 MB) kept as a forward pass keeps activations, a
temporary beside each, all freed in the end. Counted: minor page faults in `--rounds`
rounds after 5 rounds in which the heap may grow to its size, and the peak resident memory.
Measured on a 2-core CPU: glibc's defaults 20-31 thousand faults in 20 rounds, kept 0-1,536,
peaks within 10% of each other. The counts depend on the machine (its kernel, its glibc,
what else the process has allocated): that is why they are measured here and not asserted
in tests (tests/test_training_memory.py checks the setting itself).

    python benchmarks/training_memory.py [--rounds 20] [--repeats 3]

Writes benchmarks/results/training_memory.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

ROUNDS = """
import resource, sys, torch
if sys.argv[1] == "kept":
    from chalklm.training.memory import keep_freed_memory
    assert keep_freed_memory()
def round_():
    kept = []
    for mb in (1, 4, 2, 8, 3, 6, 12):
        kept.append(torch.empty(mb << 18).fill_(1.0))
        temporary = torch.empty(mb << 17).fill_(2.0)
        del temporary
    del kept
for _ in range(5):
    round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(int(sys.argv[2])):
    round_()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(usage.ru_minflt - before, usage.ru_maxrss)
"""
PAGES_A_ROUND = 54 * 2**20 // 4096  # 36 MB kept and 18 MB of temporaries


def run_rounds(mode: str, rounds: int) -> dict:
    """Page faults in `rounds` rounds and peak resident MB, in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode, str(rounds)],
                         capture_output=True, text=True, check=True)
    faults, peak_kb = out.stdout.split()
    return {"faults": int(faults), "peak_mb": round(int(peak_kb) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per mode")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                             / "training_memory.json"))
    args = parser.parse_args()
    if platform.libc_ver()[0] != "glibc":
        sys.exit("keep_freed_memory sets glibc's malloc; this C library is not glibc")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no results/
    rows = []
    print(f"{'malloc':>14} {'faults':>8} {'faults/round':>13} {'peak MB':>8}")
    for repeat in range(args.repeats):
        for mode in ("glibc_default", "kept"):  # taking turns, so drift hits both alike
            row = {"mode": mode, "repeat": repeat, **run_rounds(mode, args.rounds)}
            rows.append(row)
            print(f"{mode:>14} {row['faults']:>8,} {row['faults'] / args.rounds:>13,.0f} "
                  f"{row['peak_mb']:>8}")
    median = {m: sorted(r["faults"] for r in rows if r["mode"] == m)[args.repeats // 2]
              for m in ("glibc_default", "kept")}
    print(f"median faults: glibc defaults {median['glibc_default']:,}, kept "
          f"{median['kept']:,} (a round touches {PAGES_A_ROUND:,} pages)")
    out.write_text(json.dumps({"rounds": args.rounds, "pages_a_round": PAGES_A_ROUND,
                               "median_faults": median, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
