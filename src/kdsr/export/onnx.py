"""ONNX export of a student (LR -> SR, dynamic height and width, batch 1) and an onnxruntime runner.

The IDR-generated kernels export as ordinary ops: at batch 1 the dynamic depthwise convolution is a ``Conv`` with
``group = C`` whose weight input is computed in the graph. The whole student (encoder + generator) is one graph, so
the IDR is estimated from the image it is given: run it on whole images (tiling would estimate one IDR per tile).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import warnings

import numpy as np
import torch

from kdsr.atomic import atomic_path
from kdsr.errors import CheckpointError, KDSRError
from kdsr.models import KDSRConfig, KDSRStudent


def export_onnx(model: KDSRStudent, path: str | os.PathLike, opset: int = 17, sample_size: int = 32) -> None:
    """Write ``model`` as ONNX with input ``lr`` (1, 3, h, w) and output ``sr`` (1, 3, s*h, s*w), atomically."""
    import onnx

    if not isinstance(model, KDSRStudent):
        raise KDSRError("only student models export to ONNX (a teacher needs the HR image)")
    model = copy.deepcopy(model).float().eval().to("cpu", memory_format=torch.contiguous_format)  # caller's untouched
    sample = torch.rand(1, 3, sample_size, sample_size)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (sample,),
            tmp,
            input_names=["lr"],
            output_names=["sr"],
            dynamic_axes={"lr": {2: "height", 3: "width"}, "sr": {2: "out_height", 3: "out_width"}},
            opset_version=opset,
            dynamo=False,
        )
        graph = onnx.load(tmp)
        entry = graph.metadata_props.add()
        entry.key, entry.value = "kdsr_config", json.dumps(dataclasses.asdict(model.config))
        onnx.save(graph, tmp)


class OnnxStudent:
    """A student exported by :func:`export_onnx`, run with onnxruntime on (1, 3, h, w) float tensors."""

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise KDSRError("the ONNX backend needs onnxruntime: pip install 'kdsr[onnx]'") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise CheckpointError(f"{path}: not a loadable ONNX model ({type(e).__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "kdsr_config" not in meta:
            raise CheckpointError(f"{path}: not a kdsr ONNX export (no kdsr_config metadata)")
        self.config = KDSRConfig(**json.loads(meta["kdsr_config"]))

    @property
    def scale(self) -> int:
        return self.config.scale

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        outputs = [self.session.run(None, {"lr": np.ascontiguousarray(x[None].float().numpy())})[0] for x in lr]
        return torch.from_numpy(np.concatenate(outputs))
