"""Model export (ONNX: one graph, or split encoder/head/generator graphs for tiled runs)."""

from kdsr.export.onnx import OnnxGraphs, OnnxStudent, export_onnx, export_onnx_split

__all__ = ["OnnxGraphs", "OnnxStudent", "export_onnx", "export_onnx_split"]
