"""How to upscale, said once: :class:`UpscaleSettings` (torch-free, frozen) carried from the CLI, the web page, Ray
and Python to :func:`open_upscaler`, which picks the torch-free path (:mod:`kdsr.inference.fastpath`) when the
model's graphs exist (always, for the bundled models: they ship with the package) and the settings allow it, and the
torch :class:`~kdsr.inference.upscaler.Upscaler` otherwise."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Mapping

from kdsr.constants import (
    ALPHA_UPSAMPLERS,
    BACKENDS,
    BORDER_PAD,
    DEFAULT_IDR_VIEW,
    OPENVINO_ONLY_PRECISIONS,
    TILE_OVERLAP,
    TILE_PAD,
)
from kdsr.errors import KDSRError

#: what a user without torch is told when a run needs it
TORCH_ADVICE = (
    "pip install 'kdsr[torch]' (on a machine without an NVIDIA GPU, the CPU build first: pip install torch "
    "--index-url https://download.pytorch.org/whl/cpu)"
)


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def needs_torch(what: str) -> KDSRError:
    """The one-line error for ``what`` (e.g. "training") where torch is not installed."""
    return KDSRError(f"{what} needs PyTorch, which is not installed: {TORCH_ADVICE}")


@dataclasses.dataclass(frozen=True)
class UpscaleSettings:
    """Every setting of an upscale run but the model (see :class:`~kdsr.inference.upscaler.Upscaler` for each).

    ``tile`` None picks the device's default (512 on CUDA, 256 elsewhere); ``backend`` ``auto`` the fastest
    installed runtime; ``assume`` / ``denoise`` steer the IDR (:mod:`kdsr.insight.steering`); ``detail`` blends a
    bundled model with its sharp partner (:mod:`kdsr.detail`)."""

    device: str | None = None
    precision: str = "auto"
    backend: str = "auto"
    tile: int | None = None
    tile_pad: int = TILE_PAD
    tile_overlap: int = TILE_OVERLAP
    idr_view: int = DEFAULT_IDR_VIEW
    border_pad: int = BORDER_PAD
    fix_color: bool = True
    alpha_upsampler: str = "kdsr"
    calibration: str | None = None
    assume: str | Mapping[str, float] | None = None
    denoise: float | None = None
    detail: float = 0.0

    def __post_init__(self) -> None:
        from kdsr.insight.steering import Steering

        if self.backend not in (*BACKENDS, "auto"):
            raise KDSRError(f"unknown backend '{self.backend}' (use auto, {', '.join(BACKENDS)})")
        if self.precision in OPENVINO_ONLY_PRECISIONS and self.backend not in ("openvino", "auto"):
            raise KDSRError(f"--precision {self.precision} runs on the OpenVINO backend: add --backend openvino")
        if (self.tile is not None and self.tile < 0) or min(
            self.tile_pad, self.tile_overlap, self.idr_view, self.border_pad
        ) < 0:
            raise KDSRError("tile, tile pad, tile overlap, IDR view and border pad must be >= 0")
        if self.alpha_upsampler not in ALPHA_UPSAMPLERS:
            raise KDSRError(f"unknown alpha upsampler '{self.alpha_upsampler}' (use {' or '.join(ALPHA_UPSAMPLERS)})")
        if not 0 <= self.detail <= 1:
            raise KDSRError(f"detail must be in 0-1, got {self.detail}")
        Steering.from_options(self.assume, self.denoise)  # a bad --assume / --denoise is answered here

    @classmethod
    def of(cls, **values) -> UpscaleSettings:
        """Settings from keyword arguments; an unknown name is a one-line error."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise KDSRError(f"unknown upscale setting(s): {', '.join(unknown)}")
        return cls(**values)

    def upscaler_arguments(self) -> dict:
        """The settings as :class:`~kdsr.inference.upscaler.Upscaler` keyword arguments."""
        return dataclasses.asdict(self)


def open_upscaler(model: str | os.PathLike | None = None, settings: UpscaleSettings | None = None, *, video=False):
    """The upscaler for ``model`` (a bundled model's name, a model file, an export folder, or an ``nn.Module``;
    default: the bundled default) and ``settings``: a torch-free
    :class:`~kdsr.inference.fastpath.FastUpscaler` when the backend is OpenVINO or onnxruntime on the CPU and the
    model's graphs exist, else the torch :class:`~kdsr.inference.upscaler.Upscaler` (a one-line error when torch is
    not installed). ``video``: the upscaler feeds a video (the torch path's per-video IDR)."""
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

    from kdsr.inference.graph_files import cache_root

    if model is not None and cache_root() / "detail" in Path(model).parents:
        return "the first run at this --detail (its blend's graphs are built once, with torch, then cached)"
    name = Path(model).name if model is not None else "the model"
    return f"the first run of {name} (its graphs are built once, with torch, then cached)"


def upscale(image, model: str | os.PathLike | None = None, *, outscale: float | None = None, **settings):
    """One-call API: upscale an (H, W, C) uint8/uint16 array or an image file with ``model`` (default: the bundled
    real-world model); same layout and dtype out. ``settings``: :class:`UpscaleSettings` fields (device, precision,
    tile, assume, denoise, detail, ...). Runs without torch for the bundled models. For many images, build one
    upscaler with :func:`open_upscaler` and reuse it."""
    return open_upscaler(model, UpscaleSettings.of(**settings)).upscale(image, outscale=outscale)
