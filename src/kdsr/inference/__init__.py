"""Inference: tiled upscaling of tensors, numpy images and files."""

from kdsr.inference.files import upscale_files
from kdsr.inference.tiling import estimate_idr, tiled_super_resolve
from kdsr.inference.upscaler import Upscaler, upscale

__all__ = ["Upscaler", "estimate_idr", "tiled_super_resolve", "upscale", "upscale_files"]
