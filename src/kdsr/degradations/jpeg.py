"""Batched JPEG compression on tensors (the DiffJPEG used by BasicSR/Real-ESRGAN), with a per-image quality.

Pipeline: RGB x255 -> YCbCr (JPEG full range) -> 2x2 average chroma subsampling -> 8x8 blocks -> DCT -> divide by
the quantisation table times the quality factor, round, multiply back -> IDCT -> chroma upsampling by repetition ->
RGB, clamped, /255. Images are zero-padded to multiples of 16 and cropped back. As in BasicSR, the luminance table is
the standard table *transposed* (kept so that training data matches the official pipeline). ``differentiable=True``
replaces rounding by the cubic approximation ``round(x) + (x - round(x))^3`` so that gradients flow.

:func:`libjpeg` is the real encoder (OpenCV's libjpeg) on the same tensors, for the everyday cases and the mixture.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

_LUMA_TABLE = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
).T
_CHROMA_TABLE = torch.full((8, 8), 99.0)
_CHROMA_TABLE[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]])

_RGB_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=torch.float32
)
_YCBCR_TO_RGB = torch.tensor([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], dtype=torch.float32)


def _dct_basis() -> torch.Tensor:
    """(8, 8, 8, 8) basis ``cos((2x+1) u pi/16) cos((2y+1) v pi/16)`` indexed [x, y, u, v]."""
    i = torch.arange(8, dtype=torch.float64)
    c = torch.cos((2 * i[:, None] + 1) * i[None, :] * math.pi / 16)  # [x, u]
    return (c[:, None, :, None] * c[None, :, None, :]).float()


_BASIS = _dct_basis()
_ALPHA = torch.tensor([1 / math.sqrt(2)] + [1.0] * 7)
_SCALE = torch.outer(_ALPHA, _ALPHA) * 0.25


def quality_to_factor(quality: torch.Tensor) -> torch.Tensor:
    """libjpeg's quality scaling: 50/q below 50, (200 - 2q)/100 from 50 on."""
    return torch.where(quality < 50, 5000.0 / quality, 200.0 - 2 * quality) / 100.0


def _blocks(channel: torch.Tensor) -> torch.Tensor:
    b, h, w = channel.shape
    return channel.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(b, -1, 8, 8)


def _merge(blocks: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b = blocks.shape[0]
    return blocks.reshape(b, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(b, h, w)


def _round(x: torch.Tensor, differentiable: bool) -> torch.Tensor:
    r = torch.round(x)
    return r + (x - r) ** 3 if differentiable else r


def _code(channel: torch.Tensor, table: torch.Tensor, factor: torch.Tensor, differentiable: bool) -> torch.Tensor:
    """Quantise one (B, h, w) channel through the DCT and back."""
    basis, scale = _BASIS.to(channel), _SCALE.to(channel)
    h, w = channel.shape[-2:]
    blocks = _blocks(channel) - 128
    coeffs = scale * torch.tensordot(blocks, basis, dims=2)
    q = (table.to(channel) * factor[:, None, None, None]).clamp_min(1e-4)  # quality 100 gives factor 0
    coeffs = _round(coeffs / q, differentiable) * q
    pixels = 0.25 * torch.tensordot(coeffs * torch.outer(_ALPHA, _ALPHA).to(channel), basis.permute(2, 3, 0, 1), dims=2)
    return _merge(pixels + 128, h, w)


def jpeg(images: torch.Tensor, quality: torch.Tensor | float, differentiable: bool = False) -> torch.Tensor:
    """JPEG-compress (B, 3, H, W) images in [0, 1] at ``quality`` (scalar or (B,), 1-100, may be fractional)."""
    b, _, h, w = images.shape
    quality = torch.as_tensor(quality, dtype=images.dtype, device=images.device).reshape(-1).expand(b)
    factor = quality_to_factor(quality)
    pad_h, pad_w = (-h) % 16, (-w) % 16
    x = F.pad(images, (0, pad_w, 0, pad_h)) * 255
    ycc = torch.einsum("bchw,dc->bdhw", x, _RGB_TO_YCBCR.to(x))
    ycc = ycc + torch.tensor([0.0, 128.0, 128.0]).to(x)[None, :, None, None]
    y = ycc[:, 0]
    chroma = F.avg_pool2d(ycc[:, 1:], kernel_size=2, stride=2, count_include_pad=False)
    y = _code(y, _LUMA_TABLE, factor, differentiable)
    cb = _code(chroma[:, 0], _CHROMA_TABLE, factor, differentiable)
    cr = _code(chroma[:, 1], _CHROMA_TABLE, factor, differentiable)
    chroma = torch.stack([cb, cr], 1).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    ycc = torch.cat([y[:, None], chroma - 128], dim=1)
    rgb = torch.einsum("bchw,dc->bdhw", ycc, _YCBCR_TO_RGB.to(x))
    return rgb.clamp(0, 255)[:, :, :h, :w] / 255


def libjpeg(images: torch.Tensor, quality: torch.Tensor | float) -> torch.Tensor:
    """Round-trip (B, 3, H, W) images in [0, 1] through libjpeg (OpenCV: 4:2:0 chroma, standard tables) at a
    per-image quality; the result is on the 8-bit grid, on the input's device and dtype."""
    quality = torch.as_tensor(quality).flatten().expand(images.shape[0])
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(pixels)
    for i, (image, q) in enumerate(zip(pixels, quality.tolist(), strict=True)):
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, round(q)])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out[i] = cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(images.device, images.dtype) / 255
