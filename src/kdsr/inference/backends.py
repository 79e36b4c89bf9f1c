"""What runs the network for :class:`~kdsr.inference.upscaler.Upscaler`: estimate the IDR of an image, and
super-resolve a (border-padded) image given that IDR; :func:`build_backend` makes one from (model, backend,
device, precision). Border padding, the colour fix, alpha and resizing are the upscaler's and shared by every
backend."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

import torch
from torch import nn

from kdsr.bundled import default_model_name
from kdsr.checkpoint import load_model
from kdsr.devices import resolve_device, resolve_dtype
from kdsr.errors import KDSRError
from kdsr.inference.onnx_runtime import SplitGraphs, architecture
from kdsr.inference.runtimes import RUNTIMES
from kdsr.inference.settings import default_tile
from kdsr.inference.tile_plan import count_tiles
from kdsr.inference.tiling import estimate_idr, tiled_super_resolve
from kdsr.models import KDSRStudent
from kdsr.models.encoder import IDR


class Backend(Protocol):
    scale: int

    def estimate_idr(self, lr: torch.Tensor) -> torch.Tensor | None:
        """The compact IDR ``d`` (B, C) of ``lr`` (B, 3, H, W) in [0, 1]; None when the backend's graph estimates
        it internally and cannot take one from outside."""

    def super_resolve(self, padded: torch.Tensor, d: torch.Tensor | None, progress: bool) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, sH, sW) float32 on ``padded``'s device, conditioned on ``d``."""

    def generate(self, crop: torch.Tensor, d: torch.Tensor | None) -> torch.Tensor:
        """The network's output for one CPU tile (1, 3, h, w) -> (1, 3, sh, sw) float32 on the CPU, conditioned on
        ``d`` (what :func:`kdsr.inference.streaming.stream_upscale` calls per tile)."""


class Tiling(NamedTuple):
    """LR tile size (0: whole image; None: 512 on CUDA, 256 elsewhere), context and blended overlap per tile, and
    the bounded view the IDR is estimated from (0: whole image)."""

    tile: int | None
    pad: int
    overlap: int
    idr_view: int


class TiledBackend:
    """A student (a torch module already on ``device`` in ``dtype``, or split ONNX / OpenVINO graphs such as
    :class:`~kdsr.inference.onnx_runtime.OnnxGraphs`): the IDR once per image (bounded view, exact tiled encoder),
    then the generator tile by tile with blended overlaps. ``on_tile`` is called after each generator tile of
    :meth:`super_resolve` (a host's progress bar and interrupt check)."""

    def __init__(
        self,
        network: KDSRStudent | SplitGraphs,
        device: torch.device,
        dtype: torch.dtype,
        tile: int,
        tile_pad: int,
        tile_overlap: int,
        idr_view: int,
        on_tile: Callable[[], object] | None = None,
    ) -> None:
        self.model = network
        self.device, self.dtype = device, dtype
        self.tile, self.tile_pad, self.tile_overlap, self.idr_view = tile, tile_pad, tile_overlap, idr_view
        self.scale = network.scale
        self.on_tile = on_tile

    def estimate_idr(self, lr: torch.Tensor) -> torch.Tensor:
        return self.estimate_full_idr(lr).d

    def estimate_full_idr(self, lr: torch.Tensor) -> IDR:
        """The IDR (d and d_prime) as :meth:`estimate_idr` computes it: what steering reads."""
        lr = lr.contiguous(memory_format=torch.channels_last)
        return estimate_idr(self.model, lr, self.tile, self.device, self.dtype, view=self.idr_view)

    def generate(self, crop: torch.Tensor, d: torch.Tensor | None) -> torch.Tensor:
        crop = crop.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        return self.model.super_resolve(crop, d.to(self.device, self.dtype)).float().cpu()

    def super_resolve(self, padded: torch.Tensor, d: torch.Tensor | None, progress: bool) -> torch.Tensor:
        padded = padded.contiguous(memory_format=torch.channels_last)
        _, _, height, width = padded.shape
        d = d.to(self.device, self.dtype).expand(padded.shape[0], -1)
        with tile_bar(count_tiles(height, width, self.tile, self.tile_overlap), progress) as bar:

            def on_tile() -> None:
                if bar:
                    bar.update()
                if self.on_tile:
                    self.on_tile()

            return tiled_super_resolve(
                self.model,
                padded,
                d,
                self.tile,
                self.tile_pad,
                self.tile_overlap,
                self.device,
                self.dtype,
                on_tile=on_tile,
            )


class OnnxBackend:
    """A one-graph ``kdsr export`` file run by onnxruntime on the CPU: the whole student in one graph, so whole images
    only and the IDR is estimated inside it (split graphs run as a :class:`TiledBackend`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        from kdsr.inference.onnx_runtime import OnnxStudent

        self.student = OnnxStudent(path)
        self.scale = self.student.scale

    def estimate_idr(self, lr: torch.Tensor) -> None:
        return None

    def super_resolve(self, padded: torch.Tensor, d: torch.Tensor | None, progress: bool) -> torch.Tensor:
        return self.generate(padded, d)

    def generate(self, crop: torch.Tensor, d: torch.Tensor | None) -> torch.Tensor:
        if d is not None:
            raise KDSRError("the onnx backend estimates the IDR inside its graph; a fixed IDR needs the torch backend")
        return self.student(crop)


@contextlib.contextmanager
def tile_bar(total: int, enabled: bool) -> Iterator[object | None]:
    if not enabled or total <= 1:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc="tiles", unit="tile", leave=False) as bar:
        yield bar


def build_backend(
    model, backend: str, device, precision: str, tiling: Tiling, calibration=None
) -> tuple[Backend, torch.device, torch.dtype]:
    """(backend, device, dtype of the tensors it takes) for a model (bundled name, checkpoint, module, ONNX file or
    folder, OpenVINO export) on ``backend`` ("torch", "onnx" or "openvino"; "auto" resolved by the caller)."""
    if backend in RUNTIMES:
        if isinstance(model, nn.Module):
            raise KDSRError(f"the {backend} backend runs a model file or an export, not a module")
        source = str(model or default_model_name())
        if backend == "onnx" and source.endswith(".onnx"):  # one graph: the IDR is estimated inside it
            if tiling.tile:
                raise KDSRError(
                    "a one-graph .onnx runs whole images (it estimates the IDR per input); use -t 0, or export with "
                    "--split to tile"
                )
            return OnnxBackend(source), torch.device("cpu"), torch.float32
        opened = RUNTIMES[backend].open(source, precision, calibration, build=True)
        if opened is None:
            raise KDSRError(f"the {backend} backend needs a model file or an export of split graphs (-n)")
        graphs = SplitGraphs(*opened.infers, architecture(opened.config, source))
        graphs.precision = opened.precision  # what runs (OpenVINO's own precision, int8 included)
        tile = default_tile("cpu") if tiling.tile is None else tiling.tile
        device, dtype = torch.device("cpu"), torch.float32  # tensors in fp32; the runtime runs its own precision
        return TiledBackend(graphs, device, dtype, tile, tiling.pad, tiling.overlap, tiling.idr_view), device, dtype
    device = resolve_device(device)
    tile = default_tile(device.type) if tiling.tile is None else tiling.tile
    settings = (tile, tiling.pad, tiling.overlap, tiling.idr_view)
    # A caller's module is copied: converting dtype and memory format in place would change their model.
    loaded = copy.deepcopy(model) if isinstance(model, nn.Module) else load_model(model or default_model_name())
    if not isinstance(loaded, KDSRStudent):
        raise KDSRError("a teacher model needs the HR image; upscaling needs a student model")
    dtype = resolve_dtype(precision, device, loaded.capabilities)
    # channels_last: oneDNN (CPU) and cuDNN (GPU) run these convolutions markedly faster in NHWC.
    network = loaded.to(device, dtype).to(memory_format=torch.channels_last).eval()
    return TiledBackend(network, device, dtype, *settings), device, dtype


class OpenVinoGraphs(SplitGraphs):
    """Split graphs compiled by OpenVINO (``fp32``, ``bf16`` or ``int8``, the generator quantised first where
    needed); ``precision`` is what runs (``int8`` for an export whose generator is INT8)."""

    def __init__(
        self, source: str | os.PathLike, precision: str = "fp32", calibration: str | os.PathLike | None = None
    ) -> None:
        opened = RUNTIMES["openvino"].open(source, precision, calibration, build=True)
        super().__init__(*opened.infers, architecture(opened.config, source))
        self.precision = opened.precision
