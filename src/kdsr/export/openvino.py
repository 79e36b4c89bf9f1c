"""``kdsr export --format openvino``: a model's split graphs written as OpenVINO IR into a folder, the generator
optionally quantised to INT8 (:mod:`kdsr.export.int8`); the OpenVINO runtime
(:mod:`kdsr.inference.openvino_runtime`) runs such a folder as it runs a model."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kdsr.atomic import atomic_folder
from kdsr.errors import KDSRError
from kdsr.inference.graph_files import IR_GRAPHS, IR_INFO, SPLIT_CONFIG
from kdsr.inference.openvino_core import openvino_module
from kdsr.inference.openvino_runtime import read_graphs


def export_openvino(
    source: str | os.PathLike,
    folder: str | os.PathLike,
    int8: bool = False,
    calibration: str | os.PathLike | None = None,
    max_drop: float | None = None,
) -> Path:
    """Write a model's split graphs as OpenVINO IR (``features.xml``, ``head.xml``, ``generator.xml`` with their
    ``.bin`` weights in fp32, ``kdsr_config.json``, ``openvino.json``) into ``folder``, the generator quantised to INT8
    when ``int8``; the folder appears whole or not at all. ``kdsr upscale --backend openvino -n FOLDER`` runs it."""
    ov = openvino_module()
    folder = Path(folder)
    if folder.exists():
        raise KDSRError(f"{folder}: already exists (an OpenVINO export is written as a new folder)")
    models, config, quantized = read_graphs(ov.Core(), source, int8, calibration, max_drop)
    with atomic_folder(folder, replace=False) as building:
        for model, name in zip(models, IR_GRAPHS, strict=True):
            ov.save_model(model, str(building / name), compress_to_fp16=False)
        (building / SPLIT_CONFIG).write_text(json.dumps(config))
        (building / IR_INFO).write_text(json.dumps({"int8": quantized}))
    return folder
