"""keep_freed_memory: steps that allocate and free the same tensors stop faulting pages in.

Each case runs in a fresh interpreter, since malloc's settings belong to the process."""

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                reason="the setting is glibc's (elsewhere it changes nothing)")

# A step's worth of activations: tensors of several sizes (1-12 MB) kept for the backward
# pass, a temporary beside each, all freed in the end. Prints the page faults of 20 rounds
# (after 5 rounds in which the heap may grow to its size) and the peak resident memory.
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
for _ in range(5):
    round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    round_()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(usage.ru_minflt - before, usage.ru_maxrss)
"""
PAGES_A_ROUND = 54 * 2**20 // 4096  # 36 MB kept and 18 MB of temporaries


def run_rounds(mode: str) -> tuple[int, int]:
    """(page faults in 20 rounds, peak resident kB) in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True,
                         check=True)
    faults, peak = out.stdout.split()
    return int(faults), int(peak)


def test_kept_memory_is_reused_without_page_faults_and_without_growing():
    kept_faults, kept_peak = run_rounds("keep")
    default_faults, default_peak = run_rounds("default")
    # the baseline that gives the assertions below their meaning: glibc's defaults give
    # memory back and fault it in again, every few rounds (measured: 20-31 thousand faults
    # in 20 rounds; fails if another allocator or a MALLOC_* setting already keeps it)
    assert default_faults > PAGES_A_ROUND
    # kept: none, or one 6 MB growth of the heap where a freed block was split (measured
    # 0-1,536)
    assert kept_faults < PAGES_A_ROUND / 4
    # and the heap does not grow round after round (peaks measured within 10% either way)
    assert kept_peak < default_peak * 1.25


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
