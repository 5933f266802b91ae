"""The ONNX frontend: ONNX models -> IR graphs."""

from openqnn.frontends.onnx.frontend import convert_onnx, load_onnx

__all__ = ["convert_onnx", "load_onnx"]
