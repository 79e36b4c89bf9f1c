"""NIQE, the "completely blind" image quality evaluator (Mittal, Soundararajan and Bovik, IEEE SPL 2013): how far
the statistics of an image's normalised luminance are from those of pristine natural photos. Lower is more natural;
it needs no reference, which is what judges a GAN's sharpness where PSNR cannot.

The published method, as its MATLAB release computes it: the Y channel (BT.601, 0-255, rounded), mean-subtracted
contrast-normalised (MSCN) coefficients under a 7x7 Gaussian window (sigma 7/6), 96x96 blocks, 18 features per
block at two scales (the second a MATLAB bicubic half-size resize): an asymmetric generalised Gaussian fitted to the
coefficients (shape, mean scale) and to the products of horizontally, vertically and diagonally adjacent
coefficients (shape, mean, left and right scales). The quality is the distance between the multivariate Gaussian of
the image's blocks and the pristine one: sqrt((mu_p - mu)^T ((S_p + S) / 2)^-1 (mu_p - mu)).

The pristine model is fitted with :func:`fit_pristine` (blocks whose sharpness is above 0.75 of the image's
sharpest, as the release does): kdsr ships one fitted on its training HR photos (:func:`default_model`), since the
release's own parameters are not ours to ship; a test checks that with the release's parameters the implementation
gives the MATLAB value on Set14's baboon (5.7296).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from importlib import resources
from typing import NamedTuple

import cv2
import numpy as np

from kdsr.metrics.psnr_ssim import y_channel

BLOCK = 96
#: blocks kept for the pristine model: sharpness above this fraction of the image's sharpest block
SHARPNESS_THRESHOLD = 0.75
_SHAPES = np.arange(0.2, 10.001, 0.001)  # the grid the release searches the AGGD shape on
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, and the two diagonal neighbours


def _lgamma(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.lgamma)(x)


# the AGGD moment ratio Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) of every shape on the grid
_RATIOS = np.exp(2 * _lgamma(2 / _SHAPES) - _lgamma(1 / _SHAPES) - _lgamma(3 / _SHAPES))


class PristineModel(NamedTuple):
    """The multivariate Gaussian of pristine blocks' features: mean (36,) and covariance (36, 36)."""

    mean: np.ndarray
    cov: np.ndarray

    def to_json(self) -> str:
        return json.dumps({"mean": self.mean.tolist(), "cov": self.cov.tolist()})

    @classmethod
    def from_json(cls, text: str) -> PristineModel:
        data = json.loads(text)
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["cov"], np.float64))


def gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)``."""
    taps = np.arange(size) - (size - 1) / 2
    window = np.exp(-(taps[:, None] ** 2 + taps[None, :] ** 2) / (2 * sigma**2))
    return window / window.sum()


def mscn(image: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MSCN coefficients, local standard deviation) of a float64 luminance image, borders replicated."""
    mean = cv2.filter2D(image, -1, window, borderType=cv2.BORDER_REPLICATE)
    variance = cv2.filter2D(image * image, -1, window, borderType=cv2.BORDER_REPLICATE) - mean * mean
    sigma = np.sqrt(np.abs(variance))
    return (image - mean) / (sigma + 1), sigma


def _aggd(values: np.ndarray) -> tuple[float, float, float]:
    """(shape, left scale, right scale) of an asymmetric generalised Gaussian fitted by moment matching."""
    left = math.sqrt(np.mean(values[values < 0] ** 2))
    right = math.sqrt(np.mean(values[values > 0] ** 2))
    asymmetry = left / right
    ratio = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
    normalised = ratio * (asymmetry**3 + 1) * (asymmetry + 1) / (asymmetry**2 + 1) ** 2
    shape = float(_SHAPES[np.argmin((_RATIOS - normalised) ** 2)])
    factor = math.exp(0.5 * (math.lgamma(1 / shape) - math.lgamma(3 / shape)))
    return shape, left * factor, right * factor


def block_features(block: np.ndarray) -> list[float]:
    """The 18 features of one block of MSCN coefficients."""
    shape, left, right = _aggd(block.ravel())
    features = [shape, (left + right) / 2]
    for shift in _SHIFTS:
        shape, left, right = _aggd((block * np.roll(block, shift, axis=(0, 1))).ravel())
        mean = (right - left) * math.exp(math.lgamma(2 / shape) - math.lgamma(1 / shape))
        features += [shape, mean, left, right]
    return features


def _half_size(image: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(image, 0.5)`` (bicubic, antialiased) of a float64 image."""
    import torch

    from kdsr.degradations.resize import imresize

    return imresize(torch.from_numpy(image)[None, None], 0.5, border="symmetric")[0, 0].numpy()


def luminance(image: np.ndarray) -> np.ndarray:
    """The rounded 0-255 Y (BT.601) that NIQE reads, of an (H, W, 3) RGB image (uint8, or float in [0, 1]) or of an
    (H, W) luminance image."""
    return np.round(y_channel(image, "basicsr") if image.ndim == 3 else image.astype(np.float64))


def image_features(image: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """(features (blocks, 36), sharpness (blocks,)) of an image (see :func:`luminance`), cut into ``block``-pixel
    blocks (the rest of the border is dropped)."""
    y = luminance(image)
    rows, cols = y.shape[0] // block, y.shape[1] // block
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs an image of at least {block}x{block} pixels, got {y.shape[1]}x{y.shape[0]}")
    y = y[: rows * block, : cols * block]
    window = gaussian_window()
    per_scale, sharpness = [], []
    for scale in (1, 2):
        coefficients, sigma = mscn(y, window)
        size = block // scale
        cells = [(r * size, c * size) for r in range(rows) for c in range(cols)]
        per_scale.append([block_features(coefficients[r : r + size, c : c + size]) for r, c in cells])
        if scale == 1:
            sharpness = [sigma[r : r + size, c : c + size].sum() for r, c in cells]
            y = _half_size(y / 255) * 255
    return np.concatenate([np.asarray(f) for f in per_scale], axis=1), np.asarray(sharpness)


def fit_pristine(images: Iterable[np.ndarray], block: int = BLOCK) -> PristineModel:
    """The pristine model of a set of natural photos: the mean and covariance of the features of each photo's sharp
    blocks (sharpness above :data:`SHARPNESS_THRESHOLD` of its sharpest); photos smaller than a block are skipped."""
    kept = []
    for image in images:
        if min(image.shape[:2]) < block:
            continue
        features, sharpness = image_features(image, block)
        kept.append(features[sharpness > SHARPNESS_THRESHOLD * sharpness.max()])
    if not kept:
        raise ValueError(f"no photo of at least {block}x{block} pixels to fit a pristine model on")
    features = np.concatenate(kept)
    complete = features[~np.isnan(features).any(axis=1)]
    return PristineModel(np.nanmean(features, axis=0), np.cov(complete, rowvar=False))


def niqe(image: np.ndarray, model: PristineModel | None = None, block: int = BLOCK) -> float:
    """NIQE of an image (see :func:`luminance`) against ``model`` (default: :func:`default_model`); lower is more
    natural."""
    model = model or default_model()
    features = image_features(image, block)[0]
    complete = features[~np.isnan(features).any(axis=1)]
    cov = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros_like(model.cov)
    difference = model.mean - np.nanmean(features, axis=0)
    return float(np.sqrt(difference @ np.linalg.pinv((model.cov + cov) / 2) @ difference))


#: the pristine model kdsr ships (see scripts/fit_niqe.py)
DEFAULT_MODEL_FILE = "niqe-pristine.json"


def default_model() -> PristineModel:
    """The pristine model fitted on kdsr's training HR photos (T91 + BSD200 + BSDS500-test), shipped in the
    package."""
    text = resources.files("kdsr").joinpath("assets", DEFAULT_MODEL_FILE).read_text()
    return PristineModel.from_json(text)
