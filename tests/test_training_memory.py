"""keep_freed_memory: steps that allocate and free the same tensors stop faulting pages in.

Each case runs in a fresh interpreter, since malloc's settings belong to the process."""

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                reason="the setting is glibc's (elsewhere it changes nothing)")

# A step's worth of activations: tensors of several sizes (1-12 MB) kept for the backward
# pass, a temporary beside each, all freed in the end. Prints page faults per round (after
# a first round, which may fault freely) and the peak resident memory.
ROUNDS = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from chalklm.training.memory import keep_freed_memory
    assert keep_freed_memory()
def round_():
    kept = []
    for mb in (1, 4, 2, 8, 3, 6, 12):
        kept.append(torch.empty(mb << 18).fill_(1.0))
        temporary = torch.empty(mb << 17).fill_(2.0)
        del temporary
    del kept
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round_()
usage = resource.getrusage(resource.RUSAGE_SELF)
print((usage.ru_minflt - before) / 10, usage.ru_maxrss)
"""
PAGES_WRITTEN = 54 * 2**20 // 4096  # per round: 36 MB kept and 18 MB of temporaries


def run_rounds(mode: str) -> tuple[float, int]:
    """(page faults per round, peak resident kB) in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True,
                         check=True)
    faults, peak = out.stdout.split()
    return float(faults), int(peak)


def test_kept_memory_is_reused_without_page_faults_and_without_growing():
    kept_faults, kept_peak = run_rounds("keep")
    default_faults, default_peak = run_rounds("default")
    assert kept_faults < PAGES_WRITTEN / 100
    # the baseline that gives the assertion above its meaning: glibc's defaults give the
    # memory back and fault much of it in again (fails if something else already keeps it)
    assert default_faults > PAGES_WRITTEN / 20
    assert kept_peak < default_peak * 1.1


def test_the_cpu_engine_sets_it(monkeypatch):
    from chalklm.config import GPTConfig
    from chalklm.training import engines
    from chalklm.training.config import TrainConfig
    from chalklm.training.distributed import Distributed

    calls = []
    monkeypatch.setattr("chalklm.training.memory.keep_freed_memory",
                        lambda: calls.append(1) or True)
    config = GPTConfig(vocab_size=8, block_size=4, n_layer=1, n_head=1, n_embd=4)
    engines.TorchEngine(config, TrainConfig(compile=False), "cpu", "fp32", Distributed())
    assert calls == [1]
