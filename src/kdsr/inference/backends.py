"""What runs the network for :class:`~kdsr.inference.upscaler.Upscaler`: estimate the IDR of an image, and
super-resolve a (border-padded) image given that IDR. Border padding, the colour fix, alpha and resizing are the
upscaler's and shared by every backend."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Protocol

import torch

from kdsr.errors import KDSRError
from kdsr.export.onnx import OnnxGraphs
from kdsr.inference.tiling import count_tiles, estimate_idr, tiled_super_resolve
from kdsr.models import KDSRStudent


class Backend(Protocol):
    scale: int

    def estimate_idr(self, lr: torch.Tensor) -> torch.Tensor | None:
        """The compact IDR ``d`` (B, C) of ``lr`` (B, 3, H, W) in [0, 1]; None when the backend's graph estimates
        it internally and cannot take one from outside."""

    def super_resolve(self, padded: torch.Tensor, d: torch.Tensor | None, progress: bool) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, sH, sW) float32 on ``padded``'s device, conditioned on ``d``."""


class TiledBackend:
    """A student (a torch module already on ``device`` in ``dtype``, or the split ONNX graphs of
    :class:`~kdsr.export.onnx.OnnxGraphs`): the IDR once per image (bounded view, exact tiled encoder), then the
    generator tile by tile with blended overlaps."""

    def __init__(
        self,
        network: KDSRStudent | OnnxGraphs,
        device: torch.device,
        dtype: torch.dtype,
        tile: int,
        tile_pad: int,
        tile_overlap: int,
        idr_view: int,
    ) -> None:
        self.model = network
        self.device, self.dtype = device, dtype
        self.tile, self.tile_pad, self.tile_overlap, self.idr_view = tile, tile_pad, tile_overlap, idr_view
        self.scale = network.scale

    def estimate_idr(self, lr: torch.Tensor) -> torch.Tensor:
        lr = lr.contiguous(memory_format=torch.channels_last)
        return estimate_idr(self.model, lr, self.tile, self.device, self.dtype, view=self.idr_view).d

    def super_resolve(self, padded: torch.Tensor, d: torch.Tensor | None, progress: bool) -> torch.Tensor:
        padded = padded.contiguous(memory_format=torch.channels_last)
        _, _, height, width = padded.shape
        d = d.to(self.device, self.dtype).expand(padded.shape[0], -1)
        with _tile_bar(count_tiles(height, width, self.tile, self.tile_overlap), progress) as bar:
            return tiled_super_resolve(
                self.model,
                padded,
                d,
                self.tile,
                self.tile_pad,
                self.tile_overlap,
                self.device,
                self.dtype,
                on_tile=bar.update if bar else None,
            )


class OnnxBackend:
    """A one-graph ``kdsr export`` file run by onnxruntime on the CPU: the whole student in one graph, so whole images
    only and the IDR is estimated inside it (split graphs run as a :class:`TiledBackend`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        from kdsr.export.onnx import OnnxStudent

        self.student = OnnxStudent(path)
        self.scale = self.student.scale

    def estimate_idr(self, lr: torch.Tensor) -> None:
        return None

    def super_resolve(self, padded: torch.Tensor, d: torch.Tensor | None, progress: bool) -> torch.Tensor:
        if d is not None:
            raise KDSRError("the onnx backend estimates the IDR inside its graph; a fixed IDR needs the torch backend")
        return self.student(padded)


@contextlib.contextmanager
def _tile_bar(total: int, enabled: bool) -> Iterator[object | None]:
    if not enabled or total <= 1:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc="tiles", unit="tile", leave=False) as bar:
        yield bar
