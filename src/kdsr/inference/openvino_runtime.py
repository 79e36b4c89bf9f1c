"""OpenVINO runtime for the split graphs (the ``openvino`` extra): the same tiling path as torch and ONNX, with
OpenVINO's CPU plugin, which reaches a larger share of the CPU's peak.

A model given by name or file is exported to split ONNX graphs once and cached under ``$KDSR_CACHE`` (default
``~/.cache/kdsr``), keyed by the model file's SHA-256, so the next run starts at once. The precision is pinned with
``INFERENCE_PRECISION_HINT``, so that fp32 means fp32 (the CPU plugin's default on bf16-capable CPUs is bf16).
``int8`` runs the generator quantised by :mod:`kdsr.inference.int8` (built on first use and cached).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from kdsr.atomic import atomic_folder
from kdsr.errors import KDSRError
from kdsr.inference.onnx_runtime import SPLIT_CONFIG, SPLIT_GRAPHS, SplitGraphs, read_split_folder
from kdsr.models.kdsr import KDSRConfig

#: precision name -> OpenVINO inference precision hint (int8: the float layers at the plugin's default)
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": None}


def cache_root() -> Path:
    return Path(os.environ.get("KDSR_CACHE") or Path.home() / ".cache" / "kdsr")


def split_graphs_for(source: str | os.PathLike) -> Path:
    """The split ONNX folder of a model: ``source`` itself when it is one, else a cached export of the bundled
    model or checkpoint file (built on first use, atomically: a temp folder renamed into place)."""
    from kdsr.bundled import model_file

    if Path(source).is_dir():
        return read_split_folder(source)[0]
    path = model_file(source)
    if not path.is_file():
        raise KDSRError(f"unknown model '{source}': not a bundled model, checkpoint or split ONNX folder")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    folder = cache_root() / "onnx-split" / f"{path.stem}-{digest}"
    if not all((folder / name).is_file() for name in (*SPLIT_GRAPHS, SPLIT_CONFIG)):
        from kdsr.checkpoint import load_model
        from kdsr.inference.onnx_runtime import export_onnx_split

        with atomic_folder(folder) as building:
            export_onnx_split(load_model(path), building)
    return folder


def openvino_module():
    """The openvino package, or a one-line error saying how to install it."""
    try:
        import openvino as ov
    except ImportError:
        raise KDSRError("the openvino backend needs OpenVINO: pip install 'kdsr[openvino]'") from None
    return ov


def as_infer(compiled):
    """A compiled OpenVINO model as a :class:`SplitGraphs` ``infer`` callable (feeds -> outputs in order)."""
    return lambda feeds: list(compiled(feeds).values())


def compile_graph(core, model, precision: str):
    hint = PRECISION_HINTS[precision]
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint} if hint else {})


#: An OpenVINO export (``kdsr export --format openvino``): the split graphs as IR, and the architecture.
IR_GRAPHS = tuple(name.replace(".onnx", ".xml") for name in SPLIT_GRAPHS)
#: What an OpenVINO export holds beyond the graphs: {"int8": whether the generator is quantised}.
IR_INFO = "openvino.json"


def _graph_files(source: str | os.PathLike) -> tuple[list[Path], object, bool]:
    """(the three graph files, the architecture, whether the generator is already INT8) of an OpenVINO export
    folder, a split ONNX folder, or a bundled model / checkpoint (exported to split ONNX on first use)."""
    folder = Path(source)
    if folder.is_dir() and any((folder / name).is_file() for name in IR_GRAPHS):
        missing = [name for name in (*IR_GRAPHS, SPLIT_CONFIG, IR_INFO) if not (folder / name).is_file()]
        if missing:
            raise KDSRError(f"{folder}: not an OpenVINO export (missing {', '.join(missing)})")
        try:
            kdsr_config = KDSRConfig(**json.loads((folder / SPLIT_CONFIG).read_text()))
            quantized = bool(json.loads((folder / IR_INFO).read_text())["int8"])
        except (ValueError, TypeError, KeyError) as e:
            raise KDSRError(f"{folder}: unreadable OpenVINO export ({type(e).__name__}: {e})") from None
        return [folder / name for name in IR_GRAPHS], kdsr_config, quantized
    folder, kdsr_config = read_split_folder(split_graphs_for(source))
    return [folder / name for name in SPLIT_GRAPHS], kdsr_config, False


class OpenVinoGraphs(SplitGraphs):
    """Split graphs compiled by OpenVINO for the CPU at a pinned precision (``fp32`` or ``bf16``), or with the
    generator quantised to INT8 (``int8``; built on first use and cached, see :func:`quantize_generator`). An
    OpenVINO export whose generator is INT8 runs as it is, with its float layers at ``precision``."""

    def __init__(
        self,
        source: str | os.PathLike,
        precision: str = "fp32",
        calibration: str | os.PathLike | None = None,
        max_drop: float | None = None,
    ) -> None:
        ov = openvino_module()
        if precision not in PRECISION_HINTS:
            raise KDSRError(f"the openvino backend runs {', '.join(PRECISION_HINTS)}, not {precision}")
        core = ov.Core()
        models, kdsr_config, quantized = read_graphs(core, source, precision == "int8", calibration, max_drop)
        super().__init__(*(as_infer(compile_graph(core, model, precision)) for model in models), kdsr_config)
        self.precision = "int8" if quantized else precision


def read_graphs(core, source, int8: bool, calibration, max_drop: float | None) -> tuple[list, KDSRConfig, bool]:
    """(the three ``ov.Model`` graphs, the architecture, whether the generator is INT8) of a source as
    :func:`_graph_files` takes it; with ``int8`` a float generator is replaced by its cached INT8 version."""
    files, kdsr_config, quantized = _graph_files(source)
    models = [core.read_model(str(path)) for path in files]
    if int8 and not quantized:
        from kdsr.inference.int8 import int8_generator

        models[2] = core.read_model(str(int8_generator(files, kdsr_config, calibration, max_drop)))
    return models, kdsr_config, int8 or quantized
