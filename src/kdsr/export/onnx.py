"""The one-graph ONNX export of a student (``kdsr export``): LR -> SR in one ``.onnx`` file, the IDR estimated inside
it. The split form and the runners are :mod:`kdsr.inference.onnx_runtime`'s."""

from __future__ import annotations

import os

import torch

from kdsr.inference.onnx_runtime import export_graph, student_copy
from kdsr.models import KDSRStudent


def export_onnx(model: KDSRStudent, path: str | os.PathLike, opset: int = 17, sample_size: int = 32) -> None:
    """Write ``model`` as ONNX with input ``lr`` (1, 3, h, w) and output ``sr`` (1, 3, s*h, s*w), atomically."""
    model = student_copy(model)
    axes = {"lr": {2: "height", 3: "width"}, "sr": {2: "out_height", 3: "out_width"}}
    sample = torch.rand(1, 3, sample_size, sample_size)
    export_graph(model, (sample,), path, (["lr"], ["sr"]), axes, model.config, opset)
