"""The ONNX exports of a student (``kdsr export``): LR -> SR in one ``.onnx`` file, the IDR estimated inside it; or
split into the encoder's feature map, its head and the generator (a folder: what the tiled runtimes and the graph
cache use). Their runners are :mod:`kdsr.inference.onnx_runtime`'s."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from kdsr.atomic import atomic_path, atomic_write_bytes
from kdsr.errors import KDSRError
from kdsr.inference.graph_files import SPLIT_CONFIG, SPLIT_GRAPHS, split_config_json
from kdsr.models import KDSRStudent


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


def export_onnx(model: KDSRStudent, path: str | os.PathLike, opset: int = 17, sample_size: int = 32) -> None:
    """Write ``model`` as ONNX with input ``lr`` (1, 3, h, w) and output ``sr`` (1, 3, s*h, s*w), atomically."""
    model = student_copy(model)
    axes = {"lr": {2: "height", 3: "width"}, "sr": {2: "out_height", 3: "out_width"}}
    sample = torch.rand(1, 3, sample_size, sample_size)
    export_graph(model, (sample,), path, (["lr"], ["sr"]), axes, model.config, opset)
