"""Writing a model into files for other tools: ONNX (one graph, or split encoder/head/generator graphs for tiled
runs) and OpenVINO IR. The runtimes that run them are :mod:`kdsr.inference`'s."""

from kdsr.export.onnx import export_onnx
from kdsr.export.openvino import export_openvino
from kdsr.inference.onnx_runtime import export_onnx_split

__all__ = ["export_onnx", "export_onnx_split", "export_openvino"]
