"""The ONNX forms of a student and their onnxruntime runners (the one-graph export itself is
:func:`kdsr.export.onnx.export_onnx`).

- One graph (a ``.onnx`` file, :class:`OnnxStudent`): LR -> SR, dynamic height and width, batch 1. The IDR is
  estimated inside it from the image it is given, so it runs on whole images only (tiling would estimate one IDR
  per tile).
- Split graphs (``export_onnx_split``, a folder, written here because the OpenVINO runtime builds them on first
  use): the encoder's feature map (LR -> pre-pool features), its head
  (pooled features -> IDR) and the generator ((LR, IDR) -> SR). :class:`OnnxGraphs` runs them behind the same
  interface as a torch student, so the upscaler's one tiling path (IDR once from a bounded view, exact tiled encoder,
  blended generator tiles) serves both, and ONNX output equals torch's with the same tiles.

The IDR-generated kernels export as ordinary ops: at batch 1 the dynamic depthwise convolution is a ``Conv`` with
``group = C`` whose weight input is computed in the graph.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from kdsr.atomic import atomic_path, atomic_write_bytes
from kdsr.errors import CheckpointError, KDSRError
from kdsr.inference.graph_files import (
    SPLIT_CONFIG,
    SPLIT_GRAPHS,
    architecture_fields,
    onnxruntime_session,
    read_split_config,
    split_config_json,
)
from kdsr.models import IDR, KDSRConfig, KDSRStudent
from kdsr.models.encoder import standardise


def student_copy(model: KDSRStudent) -> KDSRStudent:
    if not isinstance(model, KDSRStudent):
        raise KDSRError("only student models export to ONNX (a teacher needs the HR image)")
    return copy.deepcopy(model).float().eval().to("cpu", memory_format=torch.contiguous_format)  # caller's untouched


def export_graph(
    module: torch.nn.Module, args: tuple, path, names: tuple[list, list], axes: dict, config, opset
) -> None:
    """One graph, atomically, with the model's config in its metadata."""
    import onnx

    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, tmp, input_names=names[0], output_names=names[1], dynamic_axes=axes, opset_version=opset,
            dynamo=False,
        )  # fmt: skip
        graph = onnx.load(tmp)
        entry = graph.metadata_props.add()
        entry.key, entry.value = "kdsr_config", json.dumps(dataclasses.asdict(config))
        onnx.save(graph, tmp)


class _Head(torch.nn.Module):
    def __init__(self, encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, pooled):
        idr = self.encoder.from_pooled(pooled)
        return idr.d, idr.d_prime


class _Features(torch.nn.Module):
    def __init__(self, encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, lr):
        return self.encoder.feature_map(lr)


class _Generator(torch.nn.Module):
    def __init__(self, model: KDSRStudent) -> None:
        super().__init__()
        self.model = model

    def forward(self, lr, d):
        return self.model.super_resolve(lr, d)


def export_onnx_split(
    model: KDSRStudent,
    folder: str | os.PathLike,
    opset: int = 17,
    sample_size: int = 32,
    on_graph: Callable[[], object] | None = None,
) -> None:
    """Write the encoder's feature map, its head and the generator as three graphs into ``folder``
    (:data:`SPLIT_GRAPHS`), for :class:`OnnxGraphs`; ``on_graph`` is called after each."""
    on_graph = on_graph or (lambda: None)
    model = student_copy(model)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise KDSRError(f"{folder}: exists and is not a folder (split graphs go into a folder)")
    c, sample = model.config.n_feats, torch.rand(1, 3, sample_size, sample_size)
    spatial = {2: "height", 3: "width"}
    export_graph(_Features(model.encoder), (sample,), folder / SPLIT_GRAPHS[0], (["lr"], ["features"]),
            {"lr": spatial, "features": spatial}, model.config, opset)  # fmt: skip
    on_graph()
    pooled = torch.rand(1, 4 * c)
    export_graph(_Head(model.encoder), (pooled,), folder / SPLIT_GRAPHS[1], (["pooled"], ["d", "d_prime"]),
            {}, model.config, opset)  # fmt: skip
    on_graph()
    export_graph(_Generator(model), (sample, torch.rand(1, c)), folder / SPLIT_GRAPHS[2], (["lr", "d"], ["sr"]),
            {"lr": spatial, "sr": {2: "out_height", 3: "out_width"}}, model.config, opset)  # fmt: skip
    on_graph()
    atomic_write_bytes(folder / SPLIT_CONFIG, split_config_json(model.config))


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
