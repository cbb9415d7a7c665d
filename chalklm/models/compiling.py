"""torch.compile with the inductor settings these models train and generate faster with.

One setting so far. GELU (the tanh form, GPT-2's) spends its time in tanh, and inductor's
CPU tanh costs about twice an exp. Its `cpp.use_decompose_tanh` option writes
tanh(a) = 2 / (1 + exp(-2a)) - 1 instead: the same function (differences at fp32 rounding,
~5e-7), one exp. Measured on a 2-core AVX-512 CPU, GELU forward + backward on (768, 512)
bf16 numbers: 0.93 ms -> 0.49 ms; a training step of the small benchmark model (4 layers,
128 wide, batch 12 x 64): 23.6 -> 21.7 ms. GPUs compile with Triton, which the option
does not touch.
"""

from __future__ import annotations

INDUCTOR_OPTIONS = {"cpp.use_decompose_tanh": True}


def unavailable(device: str) -> str | None:
    """Why torch.compile cannot run on `device`, or None when it can. Inductor writes C++
    for a CPU, which needs a C++ compiler (g++ or clang++; $CXX names another), and Triton
    for a GPU."""
    if device.startswith("cuda"):
        from torch.utils._triton import has_triton

        return None if has_triton() else "torch.compile on a GPU needs Triton (not installed)"
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception:  # inductor's own "no compiler" error, or a broken one
        return ("torch.compile on a CPU needs a C++ compiler (g++ or clang++, or one named "
                "by $CXX), and none was found")
    return None


def compiled(fn, **kwargs):
    """`torch.compile(fn, **kwargs)` with INDUCTOR_OPTIONS."""
    import torch

    return torch.compile(fn, options=INDUCTOR_OPTIONS, **kwargs)
