"""Unsharp masking of HR targets, as Real-ESRGAN sharpens the ground truth of its L1 and perceptual losses
(BasicSR ``USMSharp``): a 51x51 Gaussian blur (OpenCV's default sigma for that size, 8.0), half the residual added
back where it is larger than 10 levels, that mask itself blurred so the sharpening fades in smoothly."""

from __future__ import annotations

import torch

from kdsr.degradations.classic import blur
from kdsr.degradations.kernels import isotropic_gaussian

USM_KERNEL_SIZE = 51  # BasicSR's ``USMSharp(radius=50)`` rounds its "radius" up to an odd kernel size


def opencv_sigma(size: int) -> float:
    """The sigma OpenCV's ``getGaussianKernel(size, 0)`` uses."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def unsharp_mask(
    images: torch.Tensor, size: int = USM_KERNEL_SIZE, weight: float = 0.5, threshold: float = 10.0
) -> torch.Tensor:
    """Sharpen (B, C, H, W) images in [0, 1]: ``out = soft * clip(x + weight * (x - blur(x))) + (1 - soft) * x``
    where ``soft`` is the blurred mask of ``|x - blur(x)| * 255 > threshold``."""
    kernel = isotropic_gaussian(opencv_sigma(size), size).to(images.device, images.dtype)
    residual = images - blur(images, kernel)
    mask = (residual.abs() * 255 > threshold).to(images.dtype)
    soft = blur(mask, kernel)
    sharp = (images + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * images
