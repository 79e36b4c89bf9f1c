"""Which upscaler runs: :func:`open_upscaler` picks the torch-free path (:mod:`kdsr.inference.fastpath`) when the
model's graphs exist or can be written without torch (shipped with the wheel for the bundled models; written from
the weights on first use for any of our model files) and the settings allow it, and the torch
:class:`~kdsr.inference.upscaler.Upscaler` otherwise; :func:`upscale` is the one-call API on it."""

from __future__ import annotations

import os

from kdsr.inference.settings import UpscaleSettings, needs_torch, torch_installed


def open_upscaler(model: str | os.PathLike | None = None, settings: UpscaleSettings | None = None, *, video=False):
    """The upscaler for ``model`` (a bundled model's name, a model file, an export folder, or an ``nn.Module``;
    default: the bundled default) and ``settings``: a torch-free
    :class:`~kdsr.inference.fastpath.FastUpscaler` when the backend is OpenVINO or onnxruntime on the CPU and the
    model's graphs exist or can be written without torch, else the torch :class:`~kdsr.inference.upscaler.Upscaler`
    (a one-line error when torch is not installed). ``video``: the upscaler feeds a video (the torch path's
    per-video IDR)."""
    from kdsr.detail import with_detail
    from kdsr.inference.fastpath import fast_backend, open_fast_upscaler

    settings = settings or UpscaleSettings()
    is_file = model is None or isinstance(model, (str, os.PathLike))
    if is_file and settings.detail:
        model = with_detail(model, settings.detail)  # D > 0: a blend of the model and its sharp partner, cached
    if is_file and not video:
        precision = settings.precision
        backend = fast_backend(settings.backend, settings.device, precision)
        if backend is not None:
            fast = open_fast_upscaler(
                model, backend, precision, tile=settings.tile, alpha_upsampler=settings.alpha_upsampler,
                tile_pad=settings.tile_pad, tile_overlap=settings.tile_overlap, idr_view=settings.idr_view,
                border_pad=settings.border_pad, fix_color=settings.fix_color, assume=settings.assume,
                denoise=settings.denoise,
            )  # fmt: skip
            if fast is not None:
                return fast
    if not torch_installed():
        raise needs_torch(_why_torch(model, settings, video))
    from kdsr.inference.upscaler import Upscaler

    arguments = settings.upscaler_arguments()
    if is_file:
        arguments["detail"] = 0.0  # blended above
    return Upscaler(model, **arguments)


def _why_torch(model, settings: UpscaleSettings, video: bool) -> str:
    """What in this run needs the torch path, for the error where torch is missing."""
    if video:
        return "upscaling a video"
    if settings.backend == "torch":
        return "the torch backend"
    if settings.precision == "fp16":
        return "fp16"
    if str(settings.device or "auto") not in ("auto", "cpu"):
        return f"device {settings.device}"
    from pathlib import Path

    from kdsr.bundled import default_model_name, model_file

    source = model or default_model_name()
    if not model_file(source).exists():
        return f"{source} (an architecture preset: torch builds it)"
    return f"{Path(source).name} (not one of kdsr's safetensors model files: torch reads it)"


def upscale(image, model: str | os.PathLike | None = None, *, outscale: float | None = None, **settings):
    """One-call API: upscale an (H, W, C) uint8/uint16 array or an image file with ``model`` (default: the bundled
    real-world model); same layout and dtype out. ``settings``: :class:`UpscaleSettings` fields (device, precision,
    tile, assume, denoise, detail, ...). Runs without torch for the bundled models. For many images, build one
    upscaler with :func:`open_upscaler` and reuse it."""
    return open_upscaler(model, UpscaleSettings.of(**settings)).upscale(image, outscale=outscale)
