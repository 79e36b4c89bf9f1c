"""Inference: tiled upscaling of tensors, numpy images and files. Light to import (the planning of a run,
:mod:`kdsr.inference.planning`, needs no torch); the rest loads on first use."""

from __future__ import annotations

_LAZY = {
    "upscale_files": "kdsr.inference.files",
    "estimate_idr": "kdsr.inference.tiling",
    "tiled_super_resolve": "kdsr.inference.tiling",
    "Upscaler": "kdsr.inference.upscaler",
    "upscale": "kdsr.inference.upscaler",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kdsr.inference' has no attribute {name!r}")
