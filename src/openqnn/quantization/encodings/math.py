"""Encoding arithmetic: ranges to (scale, offset) and back, quantize and dequantize.

QNN's convention: ``real = scale * (q + offset)`` with ``offset = -zero_point``. Unsigned
asymmetric encodings hold q in [0, 2^bw - 1]; zero is always exactly representable, and a range is
never narrower than 1e-4. Symmetric encodings (weights) use ``offset = -2^(bw-1)``, scale
``absmax / (2^(bw-1) - 1)``, so q - 2^(bw-1) is the signed integer the hardware stores.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_RANGE", "asymmetric", "dequantize", "fake_quantize", "qrange", "quantize", "symmetric"]

MIN_RANGE = 1e-4


def qrange(bitwidth: int, signed: bool = False) -> tuple[int, int]:
    """The integer range of a ``bitwidth``-bit encoding: [0, 2^bw - 1], or signed [-2^(bw-1), 2^(bw-1) - 1]."""
    if signed:
        return -(1 << (bitwidth - 1)), (1 << (bitwidth - 1)) - 1
    return 0, (1 << bitwidth) - 1


def asymmetric(lo: np.ndarray | float, hi: np.ndarray | float, bitwidth: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) of unsigned asymmetric encodings covering [lo, hi] (elementwise for per-axis).

    The range is widened to include 0 and to at least MIN_RANGE, then nudged so that 0 falls on an
    integer (offset is an integer in [-(2^bw - 1), 0])."""
    lo = np.minimum(np.asarray(lo, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), 0.0)
    hi = np.maximum(hi, lo + MIN_RANGE)
    steps = (1 << bitwidth) - 1
    scale = (hi - lo) / steps
    offset = np.clip(np.round(lo / scale), -steps, 0)
    return scale, offset.astype(np.int64)


def symmetric(absmax: np.ndarray | float, bitwidth: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) of symmetric encodings covering [-absmax, absmax]: offset -2^(bw-1)."""
    absmax = np.maximum(np.asarray(absmax, dtype=np.float64), MIN_RANGE / 2)
    half = (1 << (bitwidth - 1)) - 1
    scale = absmax / half
    return scale, np.full(np.shape(scale), -(1 << (bitwidth - 1)), dtype=np.int64)


def quantize(x: np.ndarray, scale: np.ndarray | float, offset: np.ndarray | int, bitwidth: int,
             signed: bool = False) -> np.ndarray:
    """Integers q = clamp(round(x / scale) - offset) (round half to even, as numpy)."""
    lo, hi = qrange(bitwidth, signed)
    q = np.round(np.asarray(x, dtype=np.float64) / scale) - offset
    return np.clip(q, lo, hi).astype(np.int64)


def dequantize(q: np.ndarray, scale: np.ndarray | float, offset: np.ndarray | int) -> np.ndarray:
    return (np.asarray(q, dtype=np.float64) + offset) * scale


def fake_quantize(x: np.ndarray, scale: np.ndarray | float, offset: np.ndarray | int, bitwidth: int,
                  signed: bool = False) -> np.ndarray:
    """Quantize then dequantize, in float64, returned in x's dtype."""
    return dequantize(quantize(x, scale, offset, bitwidth, signed), scale, offset).astype(np.asarray(x).dtype)
