"""The torch-free inference path: kdsr's pipeline (border padding, the IDR once per image from its bounded view,
tiled generator with blended overlaps, the colour fix) on numpy and a graph runtime (OpenVINO or onnxruntime)
alone, for split graphs that exist or can be written without torch (an export folder, the graphs shipped with the
wheel, or the cache: written from the weights of our model files, exported by the torch-aware path for other
checkpoints). ``import torch`` costs about 2 s on a small CPU; a one-image call through this path does not pay it.

The geometry is :mod:`kdsr.inference.tile_plan`'s, the same as the torch path's, so outputs agree with the torch
backend within rounding (the tests compare them on every bundled model).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kdsr.constants import (
    ALPHA_UPSAMPLERS,
    BORDER_PAD,
    DEFAULT_IDR_VIEW,
    STD_FLOOR,
    TILE_OVERLAP,
    TILE_PAD,
)
from kdsr.errors import KDSRError
from kdsr.inference.graph_files import standardises_input
from kdsr.inference.layout import upscale_array
from kdsr.inference.runtimes import Infer
from kdsr.inference.streaming import Emit, Layout, stream_upscale
from kdsr.inference.tile_plan import encoder_tiles, runs_whole, view_regions


def mean_and_scale(x: np.ndarray, band: int = 64) -> tuple[np.float64, np.float64]:
    """As :func:`kdsr.models.encoder.standardise` computes them for one image (1, C, H, W): its mean and its
    standard deviation (unbiased, over C, H, W) plus :data:`~kdsr.constants.STD_FLOOR`; summed in float64 over
    bands of ``band`` rows, so that no image-sized temporary is made."""
    height, count = x.shape[2], x.size
    mean = sum(x[:, :, top : top + band].sum(dtype=np.float64) for top in range(0, height, band)) / count
    squares = sum(np.square(x[:, :, top : top + band] - mean).sum(dtype=np.float64) for top in range(0, height, band))
    return mean, np.sqrt(squares / (count - 1)) + STD_FLOOR


class GraphPipeline:
    """kdsr's pipeline on the three split graphs (features, head, generator; see
    :func:`kdsr.export.onnx.export_onnx_split`), batch 1, float32 NCHW numpy."""

    def __init__(
        self,
        infers: list[Infer],
        config: dict,
        tile: int,
        tile_pad: int = TILE_PAD,
        tile_overlap: int = TILE_OVERLAP,
        idr_view: int = DEFAULT_IDR_VIEW,
        border_pad: int = BORDER_PAD,
        fix_color: bool = True,
    ) -> None:
        self.features, self.head, self.generator = infers
        self.scale = int(config["scale"])
        self.standardise_input = standardises_input(config)
        self.receptive_radius = 2 * int(config["n_resblocks"]) + 4
        self.tile, self.tile_pad, self.tile_overlap, self.idr_view = tile, tile_pad, tile_overlap, idr_view
        self.border_pad, self.fix_color = border_pad, fix_color

    def estimate_idr(self, lr: np.ndarray, view: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(d, d_prime) of (1, 3, H, W) ``lr``, from the bounded view (``view``, default the pipeline's), in exact
        encoder tiles (as the torch path)."""
        _, _, height, width = lr.shape
        mean, scale = mean_and_scale(lr) if self.standardise_input else (0.0, 1.0)  # each crop standardised alone
        total, count = 0.0, 0
        regions = view_regions(height, width, self.idr_view if view is None else view)
        tile = 0 if len(regions) == 1 and runs_whole(height, width, self.tile) else self.tile
        for part in encoder_tiles(height, width, regions, tile, self.receptive_radius):
            crop = lr[(..., *part.crop)]
            crop = ((crop - mean) / scale).astype(np.float32) if self.standardise_input else np.ascontiguousarray(crop)
            features = self.features({"lr": crop})[0][(..., *part.interior)]
            total = total + features.sum(axis=(2, 3), dtype=np.float32)
            count += part.pixels
        d, d_prime = self.head({"pooled": (total / count).astype(np.float32)})
        return d, d_prime

    def stream(self, lr: np.ndarray, d: np.ndarray, emit: Emit, on_tile: Callable[[], None] | None = None) -> None:
        """(3, H, W) float32 in [0, 1] upscaled with the IDR ``d``: border padding, generator tiles, the colour fix,
        final blocks handed to ``emit`` (:func:`~kdsr.inference.streaming.stream_upscale`)."""

        def run_tile(crop: np.ndarray) -> np.ndarray:
            return self.generator({"lr": crop, "d": d})[0]

        layout = Layout(self.scale, self.tile, self.tile_pad, self.tile_overlap, self.border_pad, self.fix_color)
        stream_upscale(lr, run_tile, emit, layout, on_tile)


class FastUpscaler:
    """:class:`~kdsr.inference.upscaler.Upscaler`'s ``upscale`` for numpy images, without torch: a
    :class:`GraphPipeline` on OpenVINO or onnxruntime. Build it with :func:`open_fast_upscaler`."""

    def __init__(
        self, pipeline: GraphPipeline, backend: str, precision: str, alpha_upsampler: str = "kdsr", steerer=None
    ) -> None:
        if alpha_upsampler not in ALPHA_UPSAMPLERS:
            raise KDSRError(f"unknown alpha upsampler '{alpha_upsampler}' (use {' or '.join(ALPHA_UPSAMPLERS)})")
        self.pipeline, self.backend_name, self.precision = pipeline, backend, precision
        self.alpha_upsampler = alpha_upsampler
        self.device_name = "cpu"
        #: a :class:`~kdsr.readout.steering.Steerer` (``assume`` / ``denoise``), or None
        self.steerer = steerer
        #: what the last steered image's estimator read and what it was restored as
        self.last_steering = None

    @property
    def scale(self) -> int:
        return self.pipeline.scale

    def estimate_idr(self, image: np.ndarray, view: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(d, d_prime) of an (H, W, 3) uint8/uint16 RGB image, as :meth:`upscale` estimates it (``view``: another
        bounded view than the upscaler's)."""
        from kdsr.image_io import to_float

        return self.pipeline.estimate_idr(_to_nchw(to_float(image)), view)

    def degradation_reader(self, model: str | os.PathLike):
        """``image -> estimate`` with the degradation estimator stored in ``model``'s file, the IDR computed by the
        graphs (as :func:`kdsr.insight.estimator.load_estimator` computes it with torch), or None when the file
        carries none."""
        from kdsr.constants import DEFAULT_IDR_VIEW, IDR_FEATURES
        from kdsr.readout.head import as_rgb, read_head

        head = read_head(model)
        if head is None:
            return None
        index = IDR_FEATURES.index(head.feature)
        return lambda image: head.read(self.estimate_idr(as_rgb(image), DEFAULT_IDR_VIEW)[index][0])

    def upscale(
        self,
        image: np.ndarray | str | os.PathLike,
        outscale: float | None = None,
        progress: bool = False,
        idr: np.ndarray | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """As :meth:`kdsr.inference.upscaler.Upscaler.upscale` (``idr``: a ``d`` from :meth:`estimate_idr`)."""

        def stream_rgb(lr: np.ndarray, own_idr: bool, emit: Emit) -> None:
            d = None if own_idr else idr  # the alpha channel: its own IDR, not steered
            if not own_idr and idr is None and self.steerer:
                d = self._steered_idr(lr[None])
            if d is None:
                d = self.pipeline.estimate_idr(lr[None])[0]
            self.pipeline.stream(lr, d, emit)

        return upscale_array(image, stream_rgb, self.scale, self.alpha_upsampler, outscale, size)

    def _steered_idr(self, lr: np.ndarray) -> np.ndarray:
        d, d_prime = self.pipeline.estimate_idr(lr)
        self.last_steering = self.steerer.steer(d[0], d_prime[0])
        return self.last_steering.d[None]


def _to_nchw(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)


#: precisions the OpenVINO runtime serves on a CPU ("auto" is fp32 there)
OPENVINO_CPU_PRECISIONS = ("auto", "fp32", "bf16", "int8")


def openvino_on_x86() -> bool:
    """An x86 CPU with OpenVINO installed: where OpenVINO is kdsr's fastest CPU runtime (both ``auto`` choices)."""
    import importlib.util
    import platform

    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686")
    return x86 and importlib.util.find_spec("openvino") is not None


def fast_backend(backend: str, device: str | None, precision: str) -> str | None:
    """The runtime the torch-free path would use for these options, or None when they need torch: ``openvino`` or
    ``onnx`` asked on the CPU; or ``auto``: OpenVINO on an x86 CPU where it is installed and no NVIDIA GPU is in
    sight (where the torch-aware ``auto`` would pick CUDA), onnxruntime where torch is not installed. fp16 and a
    non-CPU device always need torch."""
    import importlib.util

    from kdsr.inference.settings import torch_installed

    if precision not in OPENVINO_CPU_PRECISIONS or str(device or "auto") not in ("auto", "cpu"):
        return None
    if backend in ("openvino", "onnx"):
        return backend
    if backend != "auto":
        return None
    if not torch_installed():
        if openvino_on_x86():
            return "openvino"
        return "onnx" if importlib.util.find_spec("onnxruntime") is not None else None
    if Path("/proc/driver/nvidia").exists():
        return None
    return "openvino" if openvino_on_x86() else None


def open_fast_upscaler(
    model: str | os.PathLike | None,
    backend: str,
    precision: str,
    *,
    tile: int | None = None,
    alpha_upsampler: str = "kdsr",
    assume=None,
    denoise: float | None = None,
    **pipeline_settings,
) -> FastUpscaler | None:
    """A torch-free upscaler for ``model`` on ``backend`` (an entry of :data:`~kdsr.inference.runtimes.RUNTIMES`)
    when its graphs exist or can be written without torch; None when the torch-aware path must run instead (another
    checkpoint format, INT8 not quantised yet, a one-graph ``.onnx`` file). ``assume`` / ``denoise``: as
    :class:`~kdsr.inference.upscaler.Upscaler`'s. ``pipeline_settings``: :class:`GraphPipeline`'s."""
    from kdsr.bundled import default_model_name, model_file
    from kdsr.inference.runtimes import RUNTIMES
    from kdsr.inference.settings import default_tile
    from kdsr.readout.steering import Steerer, Steering

    source = model or default_model_name()
    steering = Steering.from_options(assume, denoise)
    if not model_file(source).exists():
        return None  # a preset's name (an untrained network): torch builds it
    opened = RUNTIMES[backend].open(source, precision)
    if opened is None:
        return None
    infers, config, precision = opened
    pipeline = GraphPipeline(infers, config, default_tile("cpu") if tile is None else tile, **pipeline_settings)
    steerer = Steerer.for_model(source, steering) if steering.active else None
    return FastUpscaler(pipeline, backend, precision, alpha_upsampler, steerer)
