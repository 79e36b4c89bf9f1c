"""Writing a model into files for other tools: ONNX (one graph, or split encoder/head/generator graphs for tiled
runs) and OpenVINO IR. The runtimes that run them are :mod:`kdsr.inference`'s."""

from kdsr.export.onnx import export_onnx, export_onnx_split
from kdsr.export.openvino import export_openvino

__all__ = ["export_onnx", "export_onnx_split", "export_openvino"]
