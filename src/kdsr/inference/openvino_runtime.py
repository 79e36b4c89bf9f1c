"""OpenVINO runtime for the split graphs (the ``openvino`` extra): the same tiling path as torch and ONNX, with
OpenVINO's CPU plugin, which reaches a larger share of the CPU's peak.

Nothing here imports torch, so the torch-free path (:mod:`kdsr.inference.fastpath`) runs on it; a model's graphs come
from :mod:`kdsr.inference.graph_cache` (shipped with the package, cached, or exported once with torch). The precision is
pinned with ``INFERENCE_PRECISION_HINT``, so that fp32 means fp32 (the CPU plugin's default on bf16-capable CPUs is
bf16). ``int8`` runs the generator quantised by :mod:`kdsr.export.int8` (built on first use and cached).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kdsr.constants import TAIL_BAND, TAIL_CONTEXT
from kdsr.errors import KDSRError
from kdsr.inference.graph_cache import graph_files, int8_generator_for
from kdsr.inference.graph_files import (
    GraphFiles,
    cache_root,
)
from kdsr.inference.openvino_core import PRECISION_HINTS, as_infer, compile_graph, openvino_module


def _tail_cut(model):
    """The output the generator's upsampling tail starts from (the body's features, feeding the convolution before
    the first pixel shuffle, through its INT8 quantiser if any) and the inputs that read it; None if the graph has no
    such shape."""
    shuffles = [op for op in model.get_ordered_ops() if op.get_type_name() == "DepthToSpace"]
    if not shuffles:
        return None
    node = shuffles[0].input(0).get_source_output().get_node()
    while node.get_type_name() in ("Add", "Convert", "FakeQuantize"):  # the convolution's bias, its INT8 output
        node = node.input(0).get_source_output().get_node()
    if node.get_type_name() != "Convolution":
        return None
    entry = node.input(0)
    if entry.get_source_output().get_node().get_type_name() == "FakeQuantize":
        entry = entry.get_source_output().get_node().input(0)
    cut = entry.get_source_output()
    return cut, list(cut.get_target_inputs())


def split_generator(ov, model):
    """(body, tail) ``ov.Model`` s of a generator graph cut where its upsampling tail begins, or None: the tail can
    then run in bands of rows (:func:`banded_generator`), which bounds the memory of its large feature maps."""
    found = _tail_cut(model)
    if found is None:
        return None
    cut, readers = found
    body = ov.Model([cut], model.get_parameters(), "body")
    features = ov.opset13.parameter(cut.get_partial_shape(), cut.get_element_type(), "features")
    for reader in readers:
        reader.replace_source_output(features.output(0))
    return body, ov.Model(model.get_results(), [features], "tail")


def banded_generator(body: Callable[[dict], list], tail: Callable[[list], list], scale: int) -> Callable[[dict], list]:
    """An ``infer`` for the generator from its compiled body and tail: the tail run on :data:`TAIL_BAND` rows of the
    body's features at a time, each with :data:`TAIL_CONTEXT` rows of context (more than the tail's receptive
    radius: the same result as the whole graph, as ``KDSRGenerator._upsample``)."""

    def infer(feeds: dict) -> list:
        features = body(feeds)[0]
        height = features.shape[2]
        if height <= TAIL_BAND + 2 * TAIL_CONTEXT:
            return tail([features])
        out = None
        for top in range(0, height, TAIL_BAND):
            bottom = min(top + TAIL_BAND, height)
            first, last = max(top - TAIL_CONTEXT, 0), min(bottom + TAIL_CONTEXT, height)
            band = tail([np.ascontiguousarray(features[:, :, first:last])])[0]
            if out is None:
                out = np.empty((*band.shape[:2], height * scale, band.shape[3]), band.dtype)
            out[:, :, top * scale : bottom * scale] = band[:, :, (top - first) * scale : (bottom - first) * scale]
        return [out]

    return infer


class CompiledSplit(NamedTuple):
    """The three graphs compiled for the CPU as ``infer`` callables (numpy feeds by name -> outputs in order), the
    architecture (``KDSRConfig`` fields) and the precision they run at."""

    infers: list[Callable[[dict], list]]
    config: dict
    precision: str


def compile_split(
    source: str | os.PathLike,
    precision: str = "fp32",
    calibration: str | os.PathLike | None = None,
    max_drop: float | None = None,
) -> CompiledSplit:
    """A source's split graphs compiled by OpenVINO at a pinned precision (``fp32`` or ``bf16``), or with the
    generator quantised to INT8 (``int8``; built on first use and cached, see :mod:`kdsr.export.int8`). An
    OpenVINO export whose generator is INT8 runs as it is, with its float layers at ``precision``."""
    ov = openvino_module()
    if precision not in PRECISION_HINTS:
        raise KDSRError(f"the openvino backend runs {', '.join(PRECISION_HINTS)}, not {precision}")
    core = ov.Core()
    # OpenVINO keeps what it compiled (keyed by graph, device and precision): later starts load it instead.
    core.set_property({"CACHE_DIR": str(cache_root() / "openvino-compiled")})
    models, config, quantized = read_graphs(core, source, precision == "int8", calibration, max_drop)
    infers = [as_infer(compile_graph(core, model, precision)) for model in models[:2]]
    parts = split_generator(ov, models[2])
    if parts is None:
        infers.append(as_infer(compile_graph(core, models[2], precision)))
    else:
        body, tail = (as_infer(compile_graph(core, part, precision)) for part in parts)
        infers.append(banded_generator(body, tail, config["scale"]))
    return CompiledSplit(infers, config, "int8" if quantized else precision)


class DamagedGraphs(KDSRError):
    """Graph files that OpenVINO cannot read (truncated, overwritten); ``cached``: they are kdsr's own cache."""

    def __init__(self, folder: Path, cause: str) -> None:
        self.folder = folder
        self.cached = cache_root().resolve() in folder.resolve().parents
        advice = "a damaged cache, rebuilt" if self.cached else "export them again (kdsr export)"
        super().__init__(f"{folder}: graph files that cannot be read ({cause}): {advice}")


def _read_models(core, found: GraphFiles) -> list:
    try:
        return [core.read_model(str(path)) for path in found.files]
    except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError and others for unreadable graphs
        raise DamagedGraphs(found.files[0].parent, str(e).strip().splitlines()[0][:120]) from None


def read_graphs(core, source, int8: bool, calibration, max_drop: float | None) -> tuple[list, dict, bool]:
    """(the three ``ov.Model`` graphs, the architecture, whether the generator is INT8) of a source as
    :func:`graph_files` takes it; with ``int8`` a float generator is replaced by its cached INT8 version."""
    found = graph_files(source)
    try:
        models = _read_models(core, found)
    except DamagedGraphs as damaged:
        if not damaged.cached:
            raise
        warnings.warn(str(damaged), stacklevel=2)
        shutil.rmtree(damaged.folder, ignore_errors=True)  # a cache: rebuilt from the model file
        if Path(source).resolve() == damaged.folder.resolve():
            raise  # the caller named the cache itself (the torch-free path): the model's path rebuilds it
        found = graph_files(source)
        models = _read_models(core, found)
    if int8 and not found.int8:
        models[2] = core.read_model(str(int8_generator_for(found, calibration, max_drop)))
    return models, found.config, int8 or found.int8
