"""Image quality metrics with explicit conventions: ``official`` (KDSR/EDSR code) and ``basicsr``."""

from kdsr.metrics.psnr_ssim import CONVENTIONS, psnr, ssim

__all__ = ["CONVENTIONS", "psnr", "ssim"]
