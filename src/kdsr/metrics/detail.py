"""Sharpness and faithfulness without a reference network: what PSNR/SSIM cannot tell apart (a soft output and a
sharp one that invents texture) and LPIPS would need downloaded weights for.

- :func:`high_frequency_ratio`: the output's fine-detail energy over the HR's (1: as detailed as the photo; below 1
  softer, above 1 grainier or oversharpened).
- :func:`lr_consistency`: the output downscaled back the way its LR was made, against that LR (PSNR, dB): a
  faithful output explains its input; a GAN that invents content need not.
- :func:`colour_error`: mean absolute difference of the coarse colours of output and HR, in 8-bit levels (a
  colour or brightness shift, which a GAN can add and a per-pixel error would blur with detail).
- :func:`subpixel_grid`: how much the output's fine detail depends on the position within an LR pixel (a photo's
  does not; a regular grid or cross-hatch drawn by a sub-pixel upsampler does).
- :func:`flat_region_grid`: the same question asked only where the HR is flattest, where a pattern locked to the LR
  grid (a herringbone on a smooth surface) shows and real texture cannot hide it.
"""

from __future__ import annotations

import cv2
import numpy as np

from kdsr.metrics.psnr_ssim import psnr, y_channel

#: Gaussian sigma (HR pixels) whose residual is the "fine detail" of :func:`high_frequency_ratio`
DETAIL_SIGMA = 1.5


def _as_float255(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) if image.dtype == np.uint8 else np.asarray(image, np.float64) * 255


def _crop(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border > 0 else image


def detail_energy(image: np.ndarray, border: int = 4) -> float:
    """Mean square of the Y channel minus its Gaussian low-pass (sigma :data:`DETAIL_SIGMA`), ``border`` cropped."""
    y = y_channel(image, "basicsr")
    residual = y - cv2.GaussianBlur(y, (0, 0), DETAIL_SIGMA, borderType=cv2.BORDER_REFLECT)
    return float(np.mean(_crop(residual, border) ** 2))


def high_frequency_ratio(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """:func:`detail_energy` of the output over that of the HR (same size, (H, W, 3) RGB)."""
    return detail_energy(sr, border) / max(detail_energy(hr, border), 1e-12)


def lr_consistency(sr: np.ndarray, lr: np.ndarray, scale: int) -> float:
    """PSNR (dB, Y, 1-pixel border) between the output downscaled by MATLAB bicubic (how kdsr's clean LRs are
    made) and the LR it came from."""
    from kdsr.degradations.resize import imresize
    from kdsr.image_tensor import image_to_tensor, tensor_to_image

    down = tensor_to_image(imresize(image_to_tensor(sr), 1 / scale))
    h, w = min(down.shape[0], lr.shape[0]), min(down.shape[1], lr.shape[1])
    return psnr(down[:h, :w], lr[:h, :w], border=1)


def colour_error(sr: np.ndarray, hr: np.ndarray, scale: int = 4) -> float:
    """Mean absolute difference (8-bit levels, over pixels and RGB) of the Gaussian low-passes (sigma 2 x ``scale``
    HR pixels) of output and HR."""
    sigma = 2.0 * scale

    def coarse(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(_as_float255(image), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)

    return float(np.mean(np.abs(coarse(sr) - coarse(hr))))


def subpixel_unevenness(images, scale: int, eps: float):
    """Per image of ``images`` (a (B, H, W) torch tensor, one channel): the mean squares of the horizontal and
    vertical differences at each of the ``scale`` x ``scale`` positions within an LR pixel (the size cut to a
    multiple of ``scale``; the missing last column / row of differences counts as zero), each over their mean across
    positions (+ ``eps``); the mean absolute deviation of these ratios from 1, averaged over the two directions: a
    (B,) tensor, differentiable. The one computation behind :func:`subpixel_grid` and the GAN stage's sub-pixel
    loss (:func:`kdsr.train.losses.subpixel_uniformity_loss`)."""
    import torch.nn.functional as F

    b, h, w = images.shape
    h, w = h - h % scale, w - w % scale
    y = images[:, :h, :w]
    terms = []
    for diff in (y[:, :, 1:] - y[:, :, :-1], y[:, 1:, :] - y[:, :-1, :]):
        padded = F.pad(diff, (0, w - diff.shape[2], 0, h - diff.shape[1]))
        per_position = padded.square().reshape(b, h // scale, scale, w // scale, scale).mean(dim=(1, 3))
        ratio = per_position / (per_position.mean(dim=(1, 2), keepdim=True) + eps)
        terms.append((ratio - 1).abs().mean(dim=(1, 2)))
    return sum(terms) / len(terms)


def subpixel_grid(sr: np.ndarray, scale: int = 4, border: int = 4) -> float:
    """:func:`subpixel_unevenness` of the output's Y (8-bit scale, float64), ``border`` cropped (a multiple of
    ``scale`` kept so positions stay aligned). HR photos score about 0.03; a visible grid 0.2 and up. The GAN
    stage's ``gan.subpixel_weight`` loss is the same quantity on the RGB mean."""
    import torch

    border -= border % scale
    y = _crop(y_channel(sr, "basicsr"), border)
    return float(subpixel_unevenness(torch.from_numpy(np.ascontiguousarray(y))[None], scale, 1e-12)[0])


#: HR side (pixels) of the blocks :func:`flat_region_grid` ranks by flatness, and the share of them it keeps
FLAT_BLOCK, FLAT_SHARE = 16, 0.25


def flat_region_grid(sr: np.ndarray, hr: np.ndarray, scale: int = 4) -> float:
    """In the flattest quarter of the HR's 16x16 blocks (by the HR's fine-detail energy), the unevenness of the
    output's fine-detail energy (Y minus its Gaussian low-pass, sigma :data:`DETAIL_SIGMA`) over the ``scale`` x
    ``scale`` positions within an LR pixel: the standard deviation of the position energies over their mean. A
    photo's detail does not care where an LR pixel's border falls (HR photos score about 0.1); an upsampler's grid
    pattern does."""

    def residual(image: np.ndarray) -> np.ndarray:
        y = y_channel(image, "basicsr")
        return y - cv2.GaussianBlur(y, (0, 0), DETAIL_SIGMA, borderType=cv2.BORDER_REFLECT)

    b = FLAT_BLOCK
    rows, cols = (min(a, c) // b for a, c in zip(sr.shape[:2], hr.shape[:2], strict=True))
    if rows * cols == 0:
        raise ValueError(f"images smaller than one {b}x{b} block")

    def blocks(values: np.ndarray) -> np.ndarray:  # (blocks, b, b)
        return values[: rows * b, : cols * b].reshape(rows, b, cols, b).swapaxes(1, 2).reshape(-1, b, b)

    flatness = (blocks(residual(hr)) ** 2).mean(axis=(1, 2))
    flattest = np.argsort(flatness, kind="stable")[: max(1, round(FLAT_SHARE * len(flatness)))]
    energy = blocks(residual(sr))[flattest] ** 2
    per_position = energy.reshape(-1, b // scale, scale, b // scale, scale).mean(axis=(0, 1, 3))
    return float(per_position.std() / max(per_position.mean(), 1e-12))
