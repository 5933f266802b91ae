"""Post-training quantization: encodings, calibration, range setting, simulation, export."""

from openqnn.quantization.config import QuantizerConfig
from openqnn.quantization.quantizer import QuantizationReport, calibrate, quantize
from openqnn.quantization.validate import validate_quantization_range

__all__ = ["QuantizationReport", "QuantizerConfig", "calibrate", "quantize", "validate_quantization_range"]
