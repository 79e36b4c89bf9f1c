"""A model's split graphs, found or built: the graphs shipped with the package or cached
(:mod:`kdsr.inference.graph_files`, no torch), else written once into the cache: from the weights without torch for
our model files (:mod:`kdsr.export.onnx_writer`, milliseconds), exported with torch for other checkpoints
(:func:`kdsr.export.onnx.export_onnx_split`); and the INT8 generator, quantised once by :mod:`kdsr.export.int8`. The
one module of ``inference`` that imports ``export``, and only to build what is missing."""

from __future__ import annotations

import os
from pathlib import Path

from kdsr.atomic import atomic_folder
from kdsr.errors import CheckpointError, KDSRError
from kdsr.inference.graph_files import (
    SPLIT_GRAPHS,
    GraphFiles,
    cached_split_folder,
    find_graph_files,
    is_complete_split,
    read_split_config,
    shipped_split_folder,
)


def split_graphs_for(source: str | os.PathLike) -> Path:
    """The split ONNX folder of a model: ``source`` itself when it is one, else a cached export of the bundled
    model or checkpoint file (built on first use, atomically: a temp folder renamed into place)."""
    from kdsr.bundled import model_file

    if Path(source).is_dir():
        return read_split_config(source)[0]
    path = model_file(source)
    if not path.is_file():
        raise KDSRError(f"unknown model '{source}': not a bundled model, checkpoint or split ONNX folder")
    folder = shipped_split_folder(path.resolve()) or cached_split_folder(path)
    if not is_complete_split(folder):
        _build_split(path, folder)
    return folder


#: safetensors dtypes numpy reads (bfloat16 is not one: such files go through torch)
_NUMPY_DTYPES = frozenset({"F16", "F32", "F64"})


def writes_without_torch(source: str | os.PathLike) -> bool:
    """Whether a model's graphs can be written without torch: one of our safetensors model files (its header says
    its architecture) in float types numpy reads, which :mod:`kdsr.export.onnx_writer` turns into graphs."""
    from kdsr.bundled import model_file
    from kdsr.model_check import safetensors_header

    path = model_file(source)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return False
    try:
        header = safetensors_header(path)
    except (CheckpointError, OSError):
        return False  # the torch path reads it and says what is wrong
    tensors = [entry for name, entry in header.items() if name != "__metadata__"]
    ours = "kdsr_config" in header.get("__metadata__", {})
    return ours and all(entry["dtype"] in _NUMPY_DTYPES for entry in tensors)


def _build_split(path: Path, folder: Path) -> None:
    """Write a model file's split graphs into the cache, once per model: from its weights (ours, milliseconds, no
    torch), else exported with torch (seconds to a minute, said on a terminal: one line, and a bar of the three
    graphs; scripts and logs stay as quiet as other runs)."""
    import sys
    import time

    if writes_without_torch(path):
        from kdsr.export.onnx_writer import write_split_graphs

        with atomic_folder(folder) as building:
            write_split_graphs(path, building)
        return
    from kdsr.checkpoint import load_model
    from kdsr.export.onnx import export_onnx_split

    bar, start = None, time.perf_counter()
    if sys.stderr.isatty():
        from tqdm import tqdm

        print(f"kdsr: preparing {path.name} for its runtime (once; kept in {folder.parent})", file=sys.stderr)
        bar = tqdm(total=len(SPLIT_GRAPHS), desc="graphs", unit="graph", leave=False)
    try:
        with atomic_folder(folder) as building:
            export_onnx_split(load_model(path), building, on_graph=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
            print(f"kdsr: prepared in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def graph_files(source: str | os.PathLike) -> GraphFiles:
    """The graphs of a source (see :func:`~kdsr.inference.graph_files.find_graph_files`), exporting a model file's
    split graphs to the cache first when they are not there yet."""
    found = find_graph_files(source)
    if found is None:
        found = find_graph_files(split_graphs_for(source))
    return found


def int8_generator_for(found: GraphFiles, calibration, max_drop: float | None) -> Path:
    """The INT8 generator graph of a model's float graphs (quantised on first use and cached,
    :func:`kdsr.export.int8.int8_generator`)."""
    from kdsr.export.int8 import int8_generator

    return int8_generator(found.files, found.config, calibration, max_drop)


def build_shipped_graphs(name: str, path: Path) -> Path:
    """Write the bundled model ``name``'s graphs (from its file ``path``, no torch) into the package's graph folder,
    with the digest of the weights they were built from (what
    :func:`~kdsr.inference.graph_files.shipped_split_folder` checks). Generated, not kept in git:
    ``scripts/build_graphs.py`` runs it before a wheel is built (``.ci/run`` too); a clone without them writes them
    into the cache on first use instead."""
    import json

    from kdsr.export.onnx_writer import write_split_graphs
    from kdsr.inference.graph_files import SHIPPED_SOURCE, file_digest, shipped_graphs_root

    with atomic_folder(shipped_graphs_root() / name) as folder:
        write_split_graphs(path, folder)
        (folder / SHIPPED_SOURCE).write_text(json.dumps({"weights": file_digest(path)}) + "\n")
    return shipped_graphs_root() / name
