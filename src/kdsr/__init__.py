"""kdsr: blind image super-resolution with KDSR (Xia et al., ICLR 2023).

Light to import: the networks and inference helpers load on first use.
"""

from __future__ import annotations

from kdsr._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "create_model": "kdsr.models",
    "list_models": "kdsr.models",
    "KDSRConfig": "kdsr.models",
    "load_model": "kdsr.checkpoint",
    "save_model": "kdsr.checkpoint",
    "upscale": "kdsr.inference.opening",
    "open_upscaler": "kdsr.inference.opening",
    "UpscaleSettings": "kdsr.inference.settings",
    "Upscaler": "kdsr.inference.upscaler",
    "read_image": "kdsr.image_io",
    "write_image": "kdsr.image_io",
}

__all__ = ["__version__", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)
