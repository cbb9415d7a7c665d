"""Which device and number format a run uses, when the user says "auto" (or names one)."""

from __future__ import annotations

from chalklm.errors import ConfigError


def resolve_device(device: str) -> str:
    """auto -> cuda when PyTorch sees a GPU, else cpu; cuda without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but PyTorch sees no CUDA GPU; "
                          "use --device cpu")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """auto -> bf16 where the hardware computes it natively, else fp32."""
    import torch

    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
