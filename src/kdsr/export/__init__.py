"""Model export (ONNX)."""

from kdsr.export.onnx import OnnxStudent, export_onnx

__all__ = ["OnnxStudent", "export_onnx"]
