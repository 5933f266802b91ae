"""Calibration: observers that collect tensor statistics, mergeable across processes."""

from openqnn.quantization.calibration.observers import (
    HistogramObserver,
    MinMaxObserver,
    observer_from_dict,
    rebin_histogram,
)

__all__ = ["HistogramObserver", "MinMaxObserver", "observer_from_dict", "rebin_histogram"]
