"""The runtimes of the split graphs, as a table (torch-free): each opens a model's graphs as ``infer`` callables
(numpy feeds by name -> outputs in order) for both pipelines, the torch-free one (:mod:`kdsr.inference.fastpath`:
graphs that exist, nothing built) and the torch one (:func:`kdsr.inference.backends.build_backend`: graphs exported
or quantised first where missing). A new runtime is a function that opens graphs (in its own module where it needs
one) and an entry in :data:`RUNTIMES`; its name is then a ``--backend`` choice (``constants.BACKENDS``, held to this
table by a test) for both pipelines.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import NamedTuple

from kdsr.errors import KDSRError
from kdsr.inference.graph_files import GraphFiles, find_graph_files, onnxruntime_session

#: numpy inputs by name -> outputs in order (a compiled OpenVINO model or an onnxruntime session's run)
Infer = Callable[[dict], list]


class OpenedGraphs(NamedTuple):
    """The features, head and generator graphs as ``infer`` callables, the architecture (``KDSRConfig`` fields) and
    the precision they run at."""

    infers: list[Infer]
    config: dict
    precision: str


@dataclasses.dataclass(frozen=True)
class Runtime:
    """``open(source, precision, calibration=None, build=False, threads=0)`` -> :class:`OpenedGraphs`, or None when
    these graphs or this precision need the torch pipeline (``build`` False: graphs that exist only)."""

    name: str
    open: Callable[..., OpenedGraphs | None]


def _graphs(source: str | os.PathLike, build: bool) -> GraphFiles | None:
    """The graphs of ``source``: found, or written into the cache where that needs no torch (our model files) or
    ``build`` allows torch; None where only the torch pipeline can make them."""
    found = find_graph_files(source)
    if found is None:
        from kdsr.inference.graph_cache import graph_files, writes_without_torch

        if build or writes_without_torch(source):
            found = graph_files(source)
    return found


def open_onnxruntime(source, precision: str, calibration=None, build: bool = False, threads: int = 0):
    """onnxruntime on the CPU, fp32, split ONNX graphs."""
    found = _graphs(source, build)
    if found is None or found.files[0].suffix != ".onnx":
        return None
    if precision not in ("auto", "fp32"):
        if build:
            raise KDSRError(f"the onnx backend runs fp32, not {precision}")
        return None
    sessions = [onnxruntime_session(path, threads) for path in found.files]
    return OpenedGraphs([lambda feeds, s=session: s.run(None, feeds) for session in sessions], found.config, "fp32")


def open_openvino(source, precision: str, calibration=None, build: bool = False, threads: int = 0):
    """OpenVINO's CPU plugin at a pinned precision (fp32, bf16; int8 with the generator quantised, which only
    ``build`` does when it is not cached yet)."""
    from kdsr.inference.openvino_runtime import DamagedGraphs, compile_split

    precision = "fp32" if precision == "auto" else precision
    if build:
        compiled = compile_split(source, precision, calibration)
        return OpenedGraphs(compiled.infers, compiled.config, compiled.precision)
    found = _graphs(source, False)
    if found is None or (precision == "int8" and not found.int8):
        return None
    try:  # the folder found: compiling from it does not hash the model file a second time
        compiled = compile_split(found.files[0].parent, "fp32" if precision == "int8" else precision)
    except DamagedGraphs as damaged:
        if not damaged.cached:
            raise
        return None  # a damaged cache, now removed (and said so): the torch pipeline rebuilds it
    return OpenedGraphs(compiled.infers, compiled.config, compiled.precision)


#: The runtimes of the split graphs by ``--backend`` name
RUNTIMES = {
    runtime.name: runtime for runtime in (Runtime("onnx", open_onnxruntime), Runtime("openvino", open_openvino))
}
