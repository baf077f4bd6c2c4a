"""Choosing where models run: cuda > mps > cpu, half precision on GPUs, sane CPU threads."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from visextract.errors import UsageError

if TYPE_CHECKING:
    import torch


def pick_device(requested: str = "auto") -> torch.device:
    """The device to run on: `requested`, or the best available when it is "auto"."""
    import torch

    if requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise UsageError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps") from None
        if device.type not in ("cpu", "cuda", "mps"):
            raise UsageError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"device {requested!r} asked for, but CUDA is not available here: use --device cpu")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {requested!r}: there are {torch.cuda.device_count()} CUDA devices here")
        mps = getattr(torch.backends, "mps", None)
        if device.type == "mps" and not (mps is not None and mps.is_available()):
            raise UsageError(f"device {requested!r} asked for, but MPS (Apple GPU) is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that support it, fp16 on other GPUs and MPS, fp32 on CPU."""
    import torch

    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def use_cpu_threads(count: int) -> int:
    """Make torch operations called from this thread use `count` intra-op threads; returns the count.

    With torch's OpenMP backend (the Linux and Windows wheels) the count belongs to the calling thread:
    each batcher worker sets its own, and they do not change each other's. This thread's count is
    settled first (`get_num_threads`), so a later call from another thread cannot change it; threads that
    have not run torch yet start from the last count set anywhere. With other backends the count is
    process-wide: the last one set wins.
    """
    import torch

    count = max(1, count)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks and container CPU sets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
