"""keep_freed_memory: glibc's malloc is told to serve a step's large tensors from its heap
and to keep freed memory, so the next step does not fault it in again.

What the setting does is checked through malloc's own accounting (mallinfo2), which says
the same on every glibc machine. How many page faults it saves depends on the machine:
that is measured by benchmarks/training_memory.py, not asserted here. Each case runs in a
fresh interpreter, since malloc's settings belong to the process."""

import platform
import subprocess
import sys

import pytest

glibc = platform.libc_ver()[0] == "glibc"

# One 24 MiB block (a large activation) allocated and freed. Prints whether it was mmapped
# apart from the heap (hblks: mmapped blocks), how much the heap grew to hold it, and how
# much of that growth the heap kept after the free.
ALLOCATE_AND_FREE = """
import ctypes, sys
libc = ctypes.CDLL(None)
NAMES = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in NAMES.split()]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "keep":
    from chalklm.training.memory import keep_freed_memory
    assert keep_freed_memory()
before = libc.mallinfo2()
block = libc.malloc(24 << 20)
during = libc.mallinfo2()
libc.free(block)
after = libc.mallinfo2()
print(during.hblks - before.hblks, during.arena - before.arena, after.arena - before.arena)
"""
MIB = 1 << 20


def allocate_and_free(mode: str) -> tuple[int, int, int]:
    """(mmapped blocks added, heap growth, heap growth kept after the free), fresh process."""
    out = subprocess.run([sys.executable, "-c", ALLOCATE_AND_FREE, mode], capture_output=True,
                         text=True, check=True).stdout.split()
    return tuple(int(x) for x in out)


@pytest.mark.skipif(not glibc, reason="mallinfo2 and the setting are glibc's")
def test_a_large_block_comes_from_the_heap_and_stays_there():
    # glibc's defaults: a block above 128 kB gets an mmap of its own, unmapped on free
    mapped, grown, kept = allocate_and_free("default")
    assert mapped == 1 and grown == kept == 0
    # kept: the block is cut from the heap, and the heap keeps it after the free
    mapped, grown, kept = allocate_and_free("keep")
    assert mapped == 0 and grown >= 24 * MIB and kept == grown


@pytest.mark.skipif(glibc, reason="on glibc the setting applies (the test above)")
def test_elsewhere_it_changes_nothing_and_says_so():
    from chalklm.training.memory import keep_freed_memory

    assert keep_freed_memory() is False


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
