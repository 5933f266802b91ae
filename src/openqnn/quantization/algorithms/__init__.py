"""Quantization algorithms: range setting from calibration statistics."""

from openqnn.quantization.algorithms.ranges import (
    HISTOGRAM_METHODS,
    METHODS,
    compute_range,
    compute_ranges_per_channel,
    normalize_method,
    range_from_array,
)

__all__ = [
    "HISTOGRAM_METHODS",
    "METHODS",
    "compute_range",
    "compute_ranges_per_channel",
    "normalize_method",
    "range_from_array",
]
