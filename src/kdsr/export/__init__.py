"""Writing a model into files for other tools: ONNX (one graph, or split encoder/head/generator graphs for tiled
runs; the split graphs of our own model files also without torch, :mod:`.onnx_writer`) and OpenVINO IR. The
runtimes that run them are :mod:`kdsr.inference`'s. Attributes import their module on first use, so that the
torch-free writer does not import torch."""

from kdsr._lazy import lazy_getattr

__all__ = ["export_onnx", "export_onnx_split", "export_openvino", "write_split_graphs"]
__getattr__ = lazy_getattr(
    __name__,
    {
        "export_onnx": "kdsr.export.onnx",
        "export_onnx_split": "kdsr.export.onnx",
        "export_openvino": "kdsr.export.openvino",
        "write_split_graphs": "kdsr.export.onnx_writer",
    },
)
