"""The TFLite frontend: ``.tflite`` flatbuffers -> IR graphs (float, float16-weight and quantized models)."""

from openqnn.frontends.tflite.frontend import convert_tflite, supported_ops
from openqnn.frontends.tflite.reader import read_tflite

__all__ = ["convert_tflite", "read_tflite", "supported_ops"]
