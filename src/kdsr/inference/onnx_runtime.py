"""The onnxruntime runners of a student's ONNX forms (written by :mod:`kdsr.export.onnx`).

- One graph (a ``.onnx`` file, :class:`OnnxStudent`): LR -> SR, dynamic height and width, batch 1. The IDR is
  estimated inside it from the image it is given, so it runs on whole images only (tiling would estimate one IDR
  per tile).
- Split graphs (:func:`kdsr.export.onnx.export_onnx_split`, a folder; the graph cache builds them for a model on
  first use): the encoder's feature map (LR -> pre-pool features), its head
  (pooled features -> IDR) and the generator ((LR, IDR) -> SR). :class:`OnnxGraphs` runs them behind the same
  interface as a torch student, so the upscaler's one tiling path (IDR once from a bounded view, exact tiled encoder,
  blended generator tiles) serves both, and ONNX output equals torch's with the same tiles.

The IDR-generated kernels export as ordinary ops: at batch 1 the dynamic depthwise convolution is a ``Conv`` with
``group = C`` whose weight input is computed in the graph.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from kdsr.errors import CheckpointError
from kdsr.inference.graph_files import (
    SPLIT_CONFIG,
    SPLIT_GRAPHS,
    architecture_fields,
    onnxruntime_session,
    read_split_config,
)
from kdsr.models import IDR, KDSRConfig
from kdsr.models.encoder import standardise


def _session(path: str | os.PathLike, threads: int = 0):
    """(onnxruntime session, KDSRConfig) of one of our graphs."""
    session = onnxruntime_session(path, threads)
    meta = session.get_modelmeta().custom_metadata_map
    if "kdsr_config" not in meta:
        raise CheckpointError(f"{path}: not a kdsr ONNX export (no kdsr_config metadata)")
    return session, KDSRConfig(**json.loads(meta["kdsr_config"]))


def _run(infer, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """``infer`` (numpy inputs by name -> outputs in order) one batch item at a time (the graphs are batch 1), the
    outputs concatenated over the batch."""
    batch = next(iter(feeds.values())).shape[0]
    results = [
        infer({k: np.ascontiguousarray(v[i : i + 1].float().numpy()) for k, v in feeds.items()}) for i in range(batch)
    ]
    return [torch.from_numpy(np.concatenate(parts)) for parts in zip(*results, strict=True)]


class OnnxStudent:
    """A student exported by :func:`export_onnx`, run with onnxruntime on (1, 3, h, w) float tensors."""

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        self.session, self.config = _session(path, threads)

    @property
    def scale(self) -> int:
        return self.config.scale

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        return _run(lambda feeds: self.session.run(None, feeds), {"lr": lr})[0]


class _SplitEncoder:
    def __init__(self, features, head, config: KDSRConfig) -> None:
        self.features, self.head = features, head
        self.receptive_radius = 2 * config.n_resblocks + 4
        self.standardise_input = config.variant.standardised_input

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """As :meth:`kdsr.models.KDIDE.prepare` (outside the graphs: it needs the whole image's statistics)."""
        return standardise(x) if self.standardise_input else x

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.features, {"lr": x})[0]

    def from_pooled(self, pooled: torch.Tensor) -> IDR:
        d, d_prime = _run(self.head, {"pooled": pooled})
        return IDR(d, d_prime)

    def __call__(self, x: torch.Tensor) -> IDR:
        return self.from_pooled(self.feature_map(self.prepare(x)).mean(dim=(2, 3)))


def architecture(config: dict, where: str | os.PathLike) -> KDSRConfig:
    """A split export's architecture (``kdsr_config.json`` fields) as a :class:`KDSRConfig`."""
    try:
        return KDSRConfig(**architecture_fields(config))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: unreadable architecture ({e})") from None


def read_split_folder(folder: str | os.PathLike) -> tuple[Path, KDSRConfig]:
    """The folder of a split export and the architecture it holds; a one-line error when it is not one."""
    folder, config = read_split_config(folder)
    return folder, architecture(config, folder / SPLIT_CONFIG)


class SplitGraphs:
    """The three graphs of :func:`export_onnx_split`, each an ``infer`` callable (numpy inputs by name -> outputs in
    order), behind a student's interface (``encoder.feature_map``, ``encoder.from_pooled``, ``super_resolve``,
    ``scale``), so that :mod:`kdsr.inference.tiling` runs them as it runs a torch student (float32 tensors)."""

    def __init__(self, features, head, generator, config: KDSRConfig) -> None:
        self.config, self.generator = config, generator
        self.encoder = _SplitEncoder(features, head, config)

    @property
    def scale(self) -> int:
        return self.config.scale

    def super_resolve(self, lr: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return _run(self.generator, {"lr": lr, "d": d})[0]


class OnnxGraphs(SplitGraphs):
    """Split graphs run by onnxruntime on the CPU."""

    def __init__(self, folder: str | os.PathLike, threads: int = 0) -> None:
        folder, config = read_split_folder(folder)
        sessions = [_session(folder / name, threads)[0] for name in SPLIT_GRAPHS]
        super().__init__(*(lambda feeds, session=session: session.run(None, feeds) for session in sessions), config)
