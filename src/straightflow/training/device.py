"""Device choice and mixed precision, so that no `.cuda()` appears anywhere else."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

__all__ = ["pick_device", "autocast", "to_device"]

PRECISIONS = ("fp32", "bf16")


def pick_device(spec: str = "auto") -> torch.device:
    """"auto" -> CUDA if present, else Apple MPS, else CPU. An explicit CUDA request without CUDA is an error."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} was asked for but this machine has no CUDA GPU; use auto or cpu")
    return device


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """x on `device`. A CPU tensor bound for CUDA goes through pinned memory without blocking: a plain copy
    from pageable memory would wait for the GPU to finish everything queued before it (a host-device sync)."""
    if x.device.type == "cpu" and device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on request; fp32 is a no-op context."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
