"""openqnn: an open implementation of the QNN workflow.

convert -> quantize -> model library -> context binary -> run and profile, on cpu, gpu and htp.
"""

from openqnn._version import __version__
from openqnn.api import compile, convert, encodings_path, load, save
from openqnn.errors import (
    ConversionError,
    InputDataError,
    InvalidConfigError,
    InvalidModelError,
    OpenQnnError,
    UnsupportedOpError,
)
from openqnn.inference import QNNInference
from openqnn.ir import DType, Graph
from openqnn.profiling.guide import DynamicQuantization, QNNDebugger, QNNProfiler
from openqnn.quantization import QuantizerConfig, quantize, validate_quantization_range
from openqnn.runtime import BackendSelector, Selection, Session, TensorInfo

__all__ = [
    "BackendSelector",
    "ConversionError",
    "DType",
    "DynamicQuantization",
    "Graph",
    "InputDataError",
    "InvalidConfigError",
    "InvalidModelError",
    "OpenQnnError",
    "QNNDebugger",
    "QNNInference",
    "QNNProfiler",
    "QuantizerConfig",
    "Selection",
    "Session",
    "TensorInfo",
    "UnsupportedOpError",
    "__version__",
    "compile",
    "convert",
    "encodings_path",
    "load",
    "quantize",
    "save",
    "validate_quantization_range",
]
