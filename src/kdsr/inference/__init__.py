"""Inference: tiled upscaling of tensors, numpy images and files. Light to import (the planning of a run,
:mod:`kdsr.inference.planning`, needs no torch); the rest loads on first use."""

from __future__ import annotations

from kdsr._lazy import lazy_getattr

_LAZY = {
    "upscale_files": "kdsr.inference.files",
    "estimate_idr": "kdsr.inference.tiling",
    "tiled_super_resolve": "kdsr.inference.tiling",
    "Upscaler": "kdsr.inference.upscaler",
    "upscale": "kdsr.inference.opening",
    "open_upscaler": "kdsr.inference.opening",
    "UpscaleSettings": "kdsr.inference.settings",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
