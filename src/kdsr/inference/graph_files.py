"""Where the split graphs of a model live, found without torch: an exported folder (split ONNX or OpenVINO IR), the
graphs shipped in the package beside the bundled models (``kdsr/graphs/NAME``, written by
``scripts/build_graphs.py``), or the cache of any other model file (``$KDSR_CACHE``, default ``~/.cache/kdsr``, keyed
by the model file's SHA-256). Building a missing cache needs torch
(:func:`kdsr.inference.graph_cache.split_graphs_for`); finding graphs does not, which is what lets
:mod:`kdsr.inference.fastpath` run where torch is not installed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

from kdsr.errors import CheckpointError, KDSRError

SPLIT_GRAPHS = ("features.onnx", "head.onnx", "generator.onnx")
#: the architecture, beside the graphs, so that any runtime can read it
SPLIT_CONFIG = "kdsr_config.json"
#: An OpenVINO export (``kdsr export --format openvino``): the split graphs as IR, and the architecture.
IR_GRAPHS = tuple(name.replace(".onnx", ".xml") for name in SPLIT_GRAPHS)
#: What an OpenVINO export holds beyond the graphs: {"int8": whether the generator is quantised}.
IR_INFO = "openvino.json"
#: Beside a bundled model's shipped graphs: {"weights": the :func:`file_digest` of the model file they were built from}
SHIPPED_SOURCE = "source.json"


def cache_root() -> Path:
    return Path(os.environ.get("KDSR_CACHE") or Path.home() / ".cache" / "kdsr")


def read_split_config(folder: str | os.PathLike) -> tuple[Path, dict]:
    """The folder of a split ONNX export and the architecture it holds (a dict of ``KDSRConfig`` fields); a
    one-line error when it is not one."""
    folder = Path(folder)
    missing = [name for name in (*SPLIT_GRAPHS, SPLIT_CONFIG) if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder}: not a split ONNX export (missing {', '.join(missing)})")
    try:
        config = json.loads((folder / SPLIT_CONFIG).read_text())
    except ValueError as e:
        raise CheckpointError(f"{folder / SPLIT_CONFIG}: unreadable ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{folder / SPLIT_CONFIG}: unreadable (not a JSON object)")
    return folder, config


#: In a split export's config beside the architecture: what a runtime must do to the input before the features
#: graph (the architecture's encoder variant decides it; older exports lack the key, and their variant says it)
STANDARDISE_KEY = "standardise_input"


def split_config_json(config) -> bytes:
    """A :class:`~kdsr.architecture.KDSRConfig` as a split export writes it: its fields and what the runtime does."""
    import dataclasses

    return json.dumps({**dataclasses.asdict(config), STANDARDISE_KEY: config.variant.standardised_input}).encode()


def standardises_input(config: dict) -> bool:
    """Whether the split export's features graph expects the standardised image (see :data:`STANDARDISE_KEY`)."""
    from kdsr.architecture import ENCODER_VARIANTS

    variant = ENCODER_VARIANTS.get(config.get("encoder", "official"))
    return bool(config.get(STANDARDISE_KEY, variant is not None and variant.standardised_input))


def architecture_fields(config: dict) -> dict:
    """The :class:`~kdsr.architecture.KDSRConfig` fields of a split export's config (without what the runtime does)."""
    return {key: value for key, value in config.items() if key != STANDARDISE_KEY}


def file_digest(path: Path, length: int = 16) -> str:
    """The first ``length`` hex digits of a file's SHA-256: what kdsr's caches are keyed by."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:length]


def cached_split_folder(model_path: Path) -> Path:
    """Where the split ONNX export of a model file is cached (it may not exist yet)."""
    return cache_root() / "onnx-split" / f"{model_path.stem}-{file_digest(model_path)}"


def shipped_graphs_root() -> Path:
    """Where the package keeps the bundled models' split graphs (one folder per model name)."""
    return Path(__file__).resolve().parent.parent / "graphs"


def shipped_split_folder(model_path: Path) -> Path | None:
    """The split graphs shipped for a bundled model file, when they were built from exactly this file; else None
    (another file, or a bundled model changed without ``scripts/build_graphs.py`` run again)."""
    from kdsr.bundled import bundled_models

    bundled = bundled_models().get(model_path.stem)
    if bundled is None or bundled.resolve() != model_path.resolve():
        return None
    folder = shipped_graphs_root() / model_path.stem
    try:
        built_from = json.loads((folder / SHIPPED_SOURCE).read_text())["weights"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return folder if built_from == file_digest(model_path) and is_complete_split(folder) else None


def is_complete_split(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (*SPLIT_GRAPHS, SPLIT_CONFIG))


def is_openvino_export(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).is_file() for name in IR_GRAPHS)


class GraphFiles(NamedTuple):
    """The three graph files of a model (features, head, generator), its architecture (``KDSRConfig`` fields) and
    whether the generator is INT8 already."""

    files: list[Path]
    config: dict
    int8: bool


def read_openvino_export(folder: Path) -> GraphFiles:
    missing = [name for name in (*IR_GRAPHS, SPLIT_CONFIG, IR_INFO) if not (folder / name).is_file()]
    if missing:
        raise KDSRError(f"{folder}: not an OpenVINO export (missing {', '.join(missing)})")
    try:
        config = json.loads((folder / SPLIT_CONFIG).read_text())
        int8 = bool(json.loads((folder / IR_INFO).read_text())["int8"])
    except (ValueError, TypeError, KeyError) as e:
        raise KDSRError(f"{folder}: unreadable OpenVINO export ({type(e).__name__}: {e})") from None
    return GraphFiles([folder / name for name in IR_GRAPHS], config, int8)


def find_graph_files(source: str | os.PathLike) -> GraphFiles | None:
    """The graphs of an OpenVINO export folder, a split ONNX folder, a bundled model (shipped with the package), or a
    model file whose split graphs are cached; None when a model file's graphs are not cached yet
    (:mod:`kdsr.inference.graph_cache` builds them)."""
    from kdsr.bundled import model_file

    folder = Path(source)
    if is_openvino_export(folder):
        return read_openvino_export(folder)
    if folder.is_dir():
        folder, config = read_split_config(folder)
        return GraphFiles([folder / name for name in SPLIT_GRAPHS], config, False)
    path = model_file(source)
    if not path.is_file():
        raise KDSRError(f"unknown model '{source}': not a bundled model, checkpoint or split ONNX folder")
    folder = shipped_split_folder(path.resolve()) or cached_split_folder(path)
    if not is_complete_split(folder):
        return None
    folder, config = read_split_config(folder)
    return GraphFiles([folder / name for name in SPLIT_GRAPHS], config, False)


def onnxruntime_session(path: str | os.PathLike, threads: int = 0):
    """An onnxruntime CPU session of one of our graphs (``threads`` 0: onnxruntime's choice), for the torch and the
    torch-free runners alike; a missing onnxruntime or an unloadable file is a one-line error."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise KDSRError("the ONNX backend needs onnxruntime: pip install 'kdsr[onnx]'") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise CheckpointError(f"{path}: not a loadable ONNX model ({type(e).__name__})") from None
