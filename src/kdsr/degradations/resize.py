"""MATLAB-style bicubic resizing (``imresize(x, scale, 'bicubic')``) for batched tensors.

Keys cubic with a = -0.5; when shrinking, the kernel is stretched by 1/scale (antialiasing, 4/scale taps); the
source coordinate of output pixel x (1-based) is ``u = x/scale + (1 - 1/scale)/2``; weights are renormalised per
output pixel. Out-of-range taps are clamped to the edge (``border="replicate"``, what the official KDSR code does)
or mirrored (``border="symmetric"``, true MATLAB). Separable: along H, then along W.
"""

from __future__ import annotations

import math

import torch

BORDERS = ("replicate", "symmetric")


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel with a = -0.5."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return inner + outer


def contributions(in_length: int, out_length: int, scale: float, border: str = "replicate", device=None):
    """(indices, weights), both (out_length, taps): the source pixels and weights of each output pixel."""
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    antialias = scale < 1
    kernel_width = 4.0 / scale if antialias else 4.0
    x = torch.arange(1, out_length + 1, dtype=torch.float64, device=device)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64, device=device)[None] - 1  # 0-based
    distance = u[:, None] - indices - 1
    weights = scale * cubic(distance * scale) if antialias else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    if border == "replicate":
        indices = indices.clamp(0, in_length - 1)
    else:
        period = 2 * in_length
        indices = torch.remainder(indices, period)
        indices = torch.where(indices >= in_length, period - 1 - indices, indices)
    return indices.long(), weights.float()


def _resize_last_dim(x: torch.Tensor, out_length: int, scale: float, border: str) -> torch.Tensor:
    indices, weights = contributions(x.shape[-1], out_length, scale, border, x.device)
    gathered = x[..., indices]  # (..., out, taps)
    return (gathered * weights.to(x.dtype)).sum(dim=-1)


def imresize(x: torch.Tensor, scale: float, border: str = "replicate") -> torch.Tensor:
    """Resize (B, C, H, W) by ``scale`` (e.g. 1/4 or 4); output size ``ceil(H*scale) x ceil(W*scale)``."""
    height, width = x.shape[-2:]
    out_h, out_w = math.ceil(height * scale - 1e-9), math.ceil(width * scale - 1e-9)
    x = _resize_last_dim(x.transpose(-1, -2), out_h, scale, border).transpose(-1, -2)
    return _resize_last_dim(x, out_w, scale, border)
