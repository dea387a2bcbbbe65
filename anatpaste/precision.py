"""Which number format the network runs in: bf16 autocast where the device runs it natively, fp32 elsewhere.

Measured on this project's 2-core x86-64 CPU with avx512_bf16: a ResNet-18 training step at 128 px is 2.25x as
fast under bf16 autocast as in fp32 (``bench/results/cpu_train_throughput.json``). CPUs without native bf16
emulate it and are slower than fp32, so ``auto`` asks oneDNN before it chooses.
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "bf16", "fp32")


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX-512 BF16 / AMX); else they are emulated and slow."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def use_bf16(precision: str, device: torch.device) -> bool:
    """``auto``: bf16 on CUDA and on CPUs with native bf16, fp32 otherwise; ``bf16``/``fp32`` force it."""
    check_precision(precision)
    if precision == "fp32":
        return False
    if precision == "bf16" or device.type == "cuda":
        return True
    return cpu_bf16_supported()


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """The one way the network is put under bf16 autocast (a no-op context when ``bf16`` is False)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)
