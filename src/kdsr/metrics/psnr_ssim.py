"""PSNR and SSIM on the Y channel, in the two conventions SR papers use.

``official`` (KDSR-classic ``utility.py``, the EDSR convention): both images are quantised to the
8-bit grid first; PSNR uses the Y *difference* with weights (65.738, 129.057, 25.064)/256 and a peak of 1; SSIM runs
on Y = 16 + (65.738 R + 129.057 G + 25.064 B)/255 computed from 0-255 values (this is the standard Y scaled by
256/255: a quirk kept for bit-equal numbers). ``basicsr`` (BasicSR ``psnr_ssim.py``, used by KDSR-GAN): Y = 16 +
65.481 R + 128.553 G + 24.966 B with R, G, B in [0, 1], PSNR with peak 255. Both crop ``border`` pixels (the scale)
from each side and use Wang et al.'s SSIM: 11x11 Gaussian window, sigma 1.5, valid region, C1 = (0.01 L)^2,
C2 = (0.03 L)^2, L = 255, in float64.

Inputs are (H, W, 3) RGB arrays: uint8, or float in [0, 1].
"""

from __future__ import annotations

import cv2
import numpy as np

from kdsr.constants import CONVENTIONS
from kdsr.errors import KDSRError

_OFFICIAL_Y = np.array([65.738, 129.057, 25.064])
_BT601_Y = np.array([65.481, 128.553, 24.966])


def _to_unit(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return image.astype(np.float64)


def _quantized(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(_to_unit(image), 0, 1) * 255) / 255


def _crop(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border > 0 else image


def _check(sr: np.ndarray, hr: np.ndarray, convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if sr.shape != hr.shape or sr.ndim != 3 or sr.shape[2] != 3:
        raise ValueError(f"expected two (H, W, 3) images of one shape, got {sr.shape} and {hr.shape}")


def y_channel(image: np.ndarray, convention: str = "official") -> np.ndarray:
    """Y on the 0-255 scale, float64, as each convention computes it for SSIM."""
    if convention == "official":
        rgb255 = np.round(np.clip(_to_unit(image), 0, 1) * 255)
        return rgb255 @ _OFFICIAL_Y / 255 + 16
    return np.round(np.clip(_to_unit(image), 0, 1) * 255) / 255 @ _BT601_Y + 16


def psnr(sr: np.ndarray, hr: np.ndarray, border: int = 4, convention: str = "official") -> float:
    """Y-channel PSNR in dB after cropping ``border`` pixels."""
    _check(sr, hr, convention)
    if convention == "official":
        diff = (_quantized(sr) - _quantized(hr)) @ (_OFFICIAL_Y / 256)
        mse = np.mean(_crop(diff, border) ** 2)
        return float("inf") if mse == 0 else float(-10 * np.log10(mse))
    diff = _crop(y_channel(sr, convention) - y_channel(hr, convention), border)
    mse = np.mean(diff**2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _ssim_gray(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    window = cv2.getGaussianKernel(11, 1.5)
    window = window @ window.T

    def filt(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, window)[5:-5, 5:-5]

    mu1, mu2 = filt(a), filt(b)
    mu1_sq, mu2_sq, mu12 = mu1**2, mu2**2, mu1 * mu2
    s1 = filt(a * a) - mu1_sq
    s2 = filt(b * b) - mu2_sq
    s12 = filt(a * b) - mu12
    ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return float(ssim_map.mean())


def ssim(sr: np.ndarray, hr: np.ndarray, border: int = 4, convention: str = "official") -> float:
    """Y-channel SSIM after cropping ``border`` pixels."""
    _check(sr, hr, convention)
    a, b = _crop(y_channel(sr, convention), border), _crop(y_channel(hr, convention), border)
    if min(a.shape) < 11:
        raise KDSRError(
            f"SSIM needs at least 11x11 pixels after the {border}-pixel border crop; the image is "
            f"{hr.shape[1]}x{hr.shape[0]}"
        )
    return _ssim_gray(a, b)
