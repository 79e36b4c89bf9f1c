"""Parameters, FLOPs and latency of a model at a given LR size (``kdsr profile``).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``, which works at the dispatcher level and so sees
the dynamic grouped convolution; it counts 2 FLOPs per multiply-accumulate of convolutions and matrix products and
ignores element-wise ops (activations, additions, pooling). ``macs`` is half of ``flops``.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from kdsr.models import KDSRStudent, KDSRTeacher


def _inputs(model: KDSRStudent | KDSRTeacher, height: int, width: int, device, dtype) -> tuple[torch.Tensor, ...]:
    lr = torch.rand(1, 3, height, width, device=device, dtype=dtype)
    if isinstance(model, KDSRTeacher):
        s = model.scale
        return lr, torch.zeros(1, 3, height * s, width * s, device=device, dtype=dtype)
    return (lr,)


def count_flops(model: KDSRStudent | KDSRTeacher, height: int, width: int) -> int:
    """FLOPs of one forward pass at LR size ``height`` x ``width``, counted on meta tensors (no compute): the
    network's own arithmetic, with the tail whole (not the context rows that banded inference computes twice)."""
    meta_model = copy.deepcopy(model).to("meta")
    meta_model.G.tail_band = 0
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_model(*_inputs(meta_model, height, width, "meta", torch.float32))
    return int(counter.get_total_flops())


def measure_latency(
    model: KDSRStudent | KDSRTeacher,
    height: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype,
    runs: int = 5,
    warmup: int = 1,
) -> list[float]:
    """Wall-clock milliseconds of ``runs`` forward passes after ``warmup`` untimed ones."""
    # a copy in channels_last, as the upscaler runs it (faster with oneDNN and cuDNN); the caller's model is untouched
    model = copy.deepcopy(model).to(device, dtype).to(memory_format=torch.channels_last).eval()
    inputs = _inputs(model, height, width, device, dtype)
    inputs = tuple(x.contiguous(memory_format=torch.channels_last) for x in inputs)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(*inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return times


def profile_model(
    model: KDSRStudent | KDSRTeacher,
    height: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype,
    runs: int = 5,
) -> dict:
    """The ``kdsr profile`` report as a dict (JSON keys: params, trainable_params, flops, macs, latency_ms, ...)."""
    flops = count_flops(model, height, width)
    times = measure_latency(model, height, width, device, dtype, runs) if runs > 0 else []
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "frozen_buffers": sum(b.numel() for b in model.buffers()),
        "flops": flops,
        "macs": flops // 2,
        "latency_ms": statistics.median(times) if times else None,
        "lr_size": [height, width],
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "runs": runs,
    }
