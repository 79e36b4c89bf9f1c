"""Device and precision choice for inference and training: one place for ``--device`` and ``--precision``."""

from __future__ import annotations

import torch

from kdsr.constants import PRECISION_NAMES
from kdsr.errors import KDSRError

PRECISIONS = dict(zip(PRECISION_NAMES, (torch.float32, torch.float16, torch.bfloat16), strict=True))


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA, then MPS, then CPU. Otherwise the named device, which must be available."""
    if name is None or str(name) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise KDSRError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise KDSRError("CUDA was requested but is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise KDSRError("MPS was requested but is not available")
    return device


def resolve_dtype(precision: str, device: torch.device, capabilities=None) -> torch.dtype:
    """``auto`` is fp16 on CUDA for a model whose ``capabilities`` support half precision (all KDSR networks; the
    default when none is given) and fp32 elsewhere; ``fp32``, ``fp16`` and ``bf16`` are taken as asked."""
    if precision == "auto":
        half = capabilities is None or capabilities.supports_half
        return torch.float16 if device.type == "cuda" and half else torch.float32
    if precision not in PRECISIONS:
        raise KDSRError(f"unknown precision '{precision}' (use auto, {', '.join(PRECISIONS)})")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise KDSRError("bf16 is not supported on this GPU; use fp16 or fp32")
    return PRECISIONS[precision]
