"""Upscaling numpy images with a KDSR student: device and precision choice, grey/RGBA/16-bit handling, tiling."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from kdsr.constants import BORDER_PAD, DEFAULT_IDR_VIEW, OPENVINO_ONLY_PRECISIONS, TILE_OVERLAP, TILE_PAD
from kdsr.detail import with_detail
from kdsr.devices import resolve_device
from kdsr.errors import KDSRError
from kdsr.image_tensor import image_to_tensor
from kdsr.inference.backends import Backend, TiledBackend, Tiling, build_backend, tile_bar
from kdsr.inference.fidelity import color_fix, pad_border
from kdsr.inference.layout import upscale_array
from kdsr.inference.onnx_runtime import OnnxGraphs
from kdsr.inference.settings import UpscaleSettings
from kdsr.inference.streaming import Emit, Layout, stream_upscale
from kdsr.inference.tile_plan import count_tiles
from kdsr.models import KDSRStudent
from kdsr.readout.steering import SteeredIDR, Steerer, Steering


def auto_backend(model, device, precision: str) -> str:
    """The fastest installed backend for this device and precision: OpenVINO on an x86 CPU when installed (fp32,
    bf16 or int8, a bundled model, checkpoint or export; not a preset's name), torch otherwise."""
    import importlib.util

    from kdsr.bundled import default_model_name, model_file
    from kdsr.inference.fastpath import OPENVINO_CPU_PRECISIONS, openvino_on_x86

    on_cpu = resolve_device(device).type == "cpu"
    is_file = not isinstance(model, nn.Module) and model_file(model or default_model_name()).exists()
    if on_cpu and precision in OPENVINO_CPU_PRECISIONS and is_file and openvino_on_x86():
        if importlib.util.find_spec("onnx") is not None:  # the graphs are exported through ONNX
            return "openvino"
    return "torch"


def run_pipeline(
    backend: Backend,
    lr: torch.Tensor,
    border_pad: int = BORDER_PAD,
    fix_color: bool = True,
    progress: bool = False,
    idr: torch.Tensor | None = None,
) -> torch.Tensor:
    """kdsr's inference on (B, 3, H, W) float in [0, 1]: edge replication around the border, the IDR (``idr``, or
    the backend's estimate), the network, the border cropped, the colour fix; float32 in [0, 1] on ``lr``'s device.
    Shared by :class:`Upscaler` and the spandrel integration."""
    pad, s = border_pad, backend.scale
    d = idr if idr is not None else backend.estimate_idr(lr)
    sr = backend.super_resolve(pad_border(lr, pad), d, progress)
    if pad:
        sr = sr[:, :, pad * s : sr.shape[2] - pad * s, pad * s : sr.shape[3] - pad * s]
    if fix_color:
        sr = color_fix(sr, lr.to(sr.device, torch.float32))
    return sr.clamp_(0, 1)


def steered_idr(backend: TiledBackend, steerer: Steerer, lr: torch.Tensor) -> tuple[torch.Tensor, list[SteeredIDR]]:
    """The IDR of each image of ``lr`` moved by ``steerer`` (:mod:`kdsr.readout.steering`), on the IDR's device and
    dtype, and each image's reading. Shared by :class:`Upscaler` and the spandrel integration."""
    idr = backend.estimate_full_idr(lr)
    steered, readings = steerer.steer_rows(idr.d.float().cpu().numpy(), idr.d_prime.float().cpu().numpy())
    return torch.from_numpy(steered).to(idr.d.device, idr.d.dtype), readings


class Upscaler:
    """A loaded student model plus inference settings; :meth:`upscale` maps a numpy image to its upscaled copy.

    ``tile`` is the LR tile size in pixels (0: whole image; ``None``: 512 on CUDA, 256 elsewhere), ``tile_pad`` the
    context each tile sees beyond its borders, ``tile_overlap`` the blended band between adjacent tiles.
    ``idr_view`` > 0 bounds the pixels the IDR is estimated from to ``idr_view`` x ``idr_view``, sampled as grid
    cells spread over larger images (see :func:`~kdsr.inference.tile_plan.view_regions`); 0 uses the whole image.
    The default (256) leaves images up to 256x256 untouched and caps the encoder's cost on large ones.
    ``border_pad`` LR pixels of edge replication go around the image before the network and are cropped after, and
    ``fix_color`` keeps the output's low frequencies on the input's (:mod:`kdsr.inference.fidelity`), so that borders
    are not smudged and flat colours stay flat. ``assume`` (e.g. ``{"noise": 10, "jpeg": 60}`` or
    ``"noise=10,jpeg=60"``; keys noise, jpeg, blur) states what is known of the degradation and ``denoise`` how
    strongly to restore it (1: as estimated; 0: keep noise and JPEG; up to 2: stronger); they steer the IDR through
    the model's estimator and IDR map (:mod:`kdsr.readout.steering`), and :attr:`last_steering` tells what was
    estimated and used for the last image. ``detail`` (0-1) blends a bundled model with its sharp GAN partner
    (:mod:`kdsr.detail`; 0: the model itself, 1: the partner).
    """

    def __init__(
        self,
        model: str | nn.Module | None = None,
        *,
        device: str | torch.device | None = None,
        precision: str = "auto",
        tile: int | None = None,
        tile_pad: int = TILE_PAD,
        tile_overlap: int = TILE_OVERLAP,
        alpha_upsampler: str = "kdsr",
        backend: str = "torch",
        idr_view: int = DEFAULT_IDR_VIEW,
        border_pad: int = BORDER_PAD,
        fix_color: bool = True,
        calibration: str | os.PathLike | None = None,
        assume: str | Mapping[str, float] | None = None,
        denoise: float | None = None,
        detail: float = 0.0,
    ) -> None:
        UpscaleSettings(  # the checks of every setting, in one place
            precision=precision, backend=backend, tile=tile, tile_pad=tile_pad, tile_overlap=tile_overlap,
            idr_view=idr_view, border_pad=border_pad, alpha_upsampler=alpha_upsampler, assume=assume,
            denoise=denoise, detail=detail,
        )  # fmt: skip
        steering = Steering.from_options(assume, denoise)
        if detail:
            if isinstance(model, nn.Module):
                raise KDSRError("detail blends model files (a bundled model and its sharp partner), not a module")
            model = with_detail(model, detail)
        if backend == "auto":
            backend = auto_backend(model, device, precision)
        if precision in OPENVINO_ONLY_PRECISIONS and backend != "openvino":
            raise KDSRError(f"--precision {precision} runs on the OpenVINO backend: add --backend openvino")
        tiling = Tiling(tile, tile_pad, tile_overlap, idr_view)
        self.backend, self.device, self.dtype = build_backend(model, backend, device, precision, tiling, calibration)
        self.backend_name = backend
        #: the precision the network runs in (OpenVINO's own when it runs it)
        self.precision = getattr(self.model, "precision", None) or str(self.dtype).removeprefix("torch.")
        self.alpha_upsampler = alpha_upsampler
        self.border_pad = border_pad
        self.fix_color = fix_color
        self.steerer = _steerer(model, steering, self.backend)
        #: what the last steered image's estimator read and what it was restored as (None when not steering)
        self.last_steering: SteeredIDR | None = None

    @property
    def scale(self) -> int:
        return self.backend.scale

    @property
    def device_name(self) -> str:
        return self.device.type

    # The tiling settings are the backend's (0 for a one-graph onnx file, which runs whole images).
    tile = property(lambda self: getattr(self.backend, "tile", 0))
    tile_pad = property(lambda self: getattr(self.backend, "tile_pad", 0))
    tile_overlap = property(lambda self: getattr(self.backend, "tile_overlap", 0))
    idr_view = property(lambda self: getattr(self.backend, "idr_view", 0))

    @property
    def model(self) -> KDSRStudent | OnnxGraphs | None:
        """The network that runs (None for a one-graph onnx file)."""
        return getattr(self.backend, "model", None)

    @torch.inference_mode()
    def estimate_idr(self, image: np.ndarray) -> torch.Tensor:
        """The compact IDR ``d`` (1, C) of an (H, W, 3) uint8/uint16 RGB image, as :meth:`upscale` would estimate it;
        pass it back as ``idr=`` to upscale other images with it (the frames of one video)."""
        lr = image_to_tensor(image)
        d = self._steered_idr(lr) if self.steerer else self.backend.estimate_idr(lr)
        if d is None:
            raise KDSRError("the onnx backend estimates the IDR inside its graph; a fixed IDR needs the torch backend")
        return d

    def _steered_idr(self, lr: torch.Tensor) -> torch.Tensor:
        d, readings = steered_idr(self.backend, self.steerer, lr)
        self.last_steering = readings[-1]
        return d

    @torch.inference_mode()
    def upscale_tensor(self, lr: torch.Tensor, progress: bool = False, idr: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> (B, 3, sH, sW) float32 in [0, 1] on ``lr``'s device; ``idr`` (B or 1, C)
        replaces the IDR estimated from ``lr`` (and the steering)."""
        if idr is None and self.steerer:
            idr = self._steered_idr(lr)
        return run_pipeline(self.backend, lr, self.border_pad, self.fix_color, progress, idr)

    def upscale(
        self,
        image: np.ndarray | str | os.PathLike,
        outscale: float | None = None,
        progress: bool = False,
        idr: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Upscale an (H, W, C) uint8/uint16 array (grey, RGB or RGBA) or an image file; same layout and dtype out.

        ``outscale`` resizes the model output to another final factor, ``size`` (width, height) to a final size
        (Lanczos up, area down); ``idr`` (from :meth:`estimate_idr`) is used instead of the image's own for the
        colour channels.
        """

        def stream_rgb(lr: np.ndarray, own_idr: bool, emit: Emit) -> None:
            tensor = torch.from_numpy(lr)[None]
            with torch.inference_mode():
                if own_idr:  # the alpha channel: its own IDR, not steered
                    d = self.backend.estimate_idr(tensor)
                elif idr is not None:
                    d = idr
                else:
                    d = self._steered_idr(tensor) if self.steerer else self.backend.estimate_idr(tensor)
                self._stream(lr, d, emit, progress)

        return upscale_array(image, stream_rgb, self.scale, self.alpha_upsampler, outscale, size)

    def _stream(self, lr: np.ndarray, d: torch.Tensor | None, emit: Emit, progress: bool) -> None:
        """The pipeline of :func:`run_pipeline` on (3, H, W) float32 ``lr``, in bounded memory
        (:func:`~kdsr.inference.streaming.stream_upscale`)."""
        backend = self.backend
        tile, pad = getattr(backend, "tile", 0), self.border_pad
        height, width = lr.shape[1] + 2 * pad, lr.shape[2] + 2 * pad

        def run_tile(crop: np.ndarray) -> np.ndarray:
            return backend.generate(torch.from_numpy(crop), d).numpy()

        with tile_bar(count_tiles(height, width, tile, self.tile_overlap), progress) as bar:
            layout = Layout(self.scale, tile, self.tile_pad, self.tile_overlap, pad, self.fix_color)
            stream_upscale(lr, run_tile, emit, layout, on_tile=bar.update if bar else None)


def _steerer(model, steering: Steering, backend: Backend) -> Steerer | None:
    """The steerer of the model's file when ``steering`` asks for anything, else None."""
    if not steering.active:
        return None
    if isinstance(model, nn.Module):
        raise KDSRError("assume/denoise read the estimator and IDR map of a model file: pass its name or path")
    if not hasattr(backend, "estimate_full_idr"):
        raise KDSRError("assume/denoise steer the IDR, which a one-graph onnx file computes inside: use split graphs")
    from kdsr.bundled import default_model_name

    return Steerer.for_model(model or default_model_name(), steering)
