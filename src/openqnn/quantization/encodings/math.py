"""Encoding arithmetic: ranges to (scale, offset) and back, quantize and dequantize.

QNN's convention: ``real = scale * (q + offset)`` with ``offset = -zero_point``. Unsigned
asymmetric encodings hold q in [0, 2^bw - 1]; zero is always exactly representable, and a range is
never narrower than 1e-4. Symmetric encodings (weights) use ``offset = -2^(bw-1)``, scale
``absmax / (2^(bw-1) - 1)``, so q - 2^(bw-1) is the signed integer the hardware stores.

``steps`` (``--restrict_quantization_steps MIN MAX``, signed: e.g. (-127, 127)) narrows the integers
an encoding may use to [MIN, MAX] + 2^(bw-1) of the unsigned domain: the range is spread over
MAX - MIN steps (symmetric: absmax over min(MAX, -MIN)), and q is clamped to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeGuard, cast, overload

import numpy as np

from openqnn.ir.tensor import qrange

if TYPE_CHECKING:
    import torch

    Array = np.ndarray | torch.Tensor

__all__ = ["MIN_RANGE", "asymmetric", "dequantize", "fake_quantize", "qrange", "quantize", "restricted_qrange",
           "symmetric"]

MIN_RANGE = 1e-4


def restricted_qrange(bitwidth: int, steps: tuple[int, int]) -> tuple[int, int]:
    """The unsigned q range of the signed steps [MIN, MAX]: [MIN + 2^(bw-1), MAX + 2^(bw-1)]."""
    half = 1 << (bitwidth - 1)
    return steps[0] + half, steps[1] + half


def asymmetric(lo: np.ndarray | float, hi: np.ndarray | float, bitwidth: int,
               steps: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) of unsigned asymmetric encodings covering [lo, hi] (elementwise for per-axis).

    The range is widened to include 0 and to at least MIN_RANGE, then nudged so that 0 falls on an
    integer (offset is an integer in [-(2^bw - 1), 0]). With ``steps``, [lo, hi] maps onto the q
    range of :func:`restricted_qrange` instead of [0, 2^bw - 1]."""
    lo = np.minimum(np.asarray(lo, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), 0.0)
    hi = np.maximum(hi, lo + MIN_RANGE)
    qlo, qhi = qrange(bitwidth) if steps is None else restricted_qrange(bitwidth, steps)
    n = qhi - qlo
    scale = (hi - lo) / n
    offset = np.clip(np.round(lo / scale), -n, 0) - qlo
    return scale, offset.astype(np.int64)


def symmetric(absmax: np.ndarray | float, bitwidth: int,
              steps: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) of symmetric encodings covering [-absmax, absmax]: offset -2^(bw-1). With
    ``steps`` (signed [MIN, MAX]) the scale is absmax / min(MAX, -MIN)."""
    absmax = np.maximum(np.asarray(absmax, dtype=np.float64), MIN_RANGE / 2)
    half = (1 << (bitwidth - 1)) - 1 if steps is None else min(steps[1], -steps[0])
    scale = absmax / half
    return scale, np.full(np.shape(scale), -(1 << (bitwidth - 1)), dtype=np.int64)


@overload
def quantize(x: np.ndarray | float, scale: np.ndarray | float, offset: np.ndarray | int, bitwidth: int,
             signed: bool = False, bounds: tuple[int, int] | None = None) -> np.ndarray: ...
@overload
def quantize(x: torch.Tensor, scale: Array | float, offset: Array | int, bitwidth: int, signed: bool = False,
             bounds: tuple[int, int] | None = None) -> torch.Tensor: ...
def quantize(x: Array | float, scale: Array | float, offset: Array | int, bitwidth: int, signed: bool = False,
             bounds: tuple[int, int] | None = None) -> Array:
    """Integers q = clamp(round(x / scale) - offset) (round half to even), clamped to ``bounds`` (a
    restricted range) when given, else to the bitwidth's range.

    The one copy of the formula for every part (the quantizer, the cpu simulation, htp's conversions
    and the QDQ export). A numpy ``x`` is computed in float64 and returned as int64; a PyTorch tensor
    is computed in its own floating dtype (float64 gives numpy's result, float32 ONNX Runtime's) and
    the integers are returned in that dtype, for the caller to store as it needs."""
    lo, hi = bounds if bounds is not None else qrange(bitwidth, signed)
    if _is_tensor(x):
        t: Any = x / scale  # (PyTorch's in-place ops on a new tensor: one allocation)
        return t.round_().sub_(offset).clamp_(lo, hi)
    q = np.round(np.asarray(x, dtype=np.float64) / scale) - offset
    return np.clip(q, lo, hi).astype(np.int64)


@overload
def dequantize(q: np.ndarray, scale: np.ndarray | float, offset: np.ndarray | int) -> np.ndarray: ...
@overload
def dequantize(q: torch.Tensor, scale: Array | float, offset: Array | int) -> torch.Tensor: ...
def dequantize(q: Array, scale: Array | float, offset: Array | int) -> Array:
    """Reals ``(q + offset) * scale``: numpy in float64; a PyTorch tensor in its own (floating) dtype."""
    if _is_tensor(q):
        t: Any = q + offset
        return t.mul_(scale)
    return (np.asarray(q, dtype=np.float64) + offset) * scale


@overload
def fake_quantize(x: np.ndarray, scale: np.ndarray | float, offset: np.ndarray | int, bitwidth: int,
                  signed: bool = False, bounds: tuple[int, int] | None = None) -> np.ndarray: ...
@overload
def fake_quantize(x: torch.Tensor, scale: Array | float, offset: Array | int, bitwidth: int,
                  signed: bool = False, bounds: tuple[int, int] | None = None) -> torch.Tensor: ...
def fake_quantize(x: Array, scale: Array | float, offset: Array | int, bitwidth: int,
                  signed: bool = False, bounds: tuple[int, int] | None = None) -> Array:
    """Quantize then dequantize: numpy in float64, returned in x's dtype; a PyTorch tensor in its dtype."""
    q: Any = quantize(cast(Any, x), scale, offset, bitwidth, signed, bounds)
    out: Any = dequantize(q, scale, offset)
    return out if _is_tensor(x) else out.astype(np.asarray(x).dtype)


def _is_tensor(x: object) -> TypeGuard[torch.Tensor]:
    """Whether ``x`` is a PyTorch tensor (without importing PyTorch where nothing uses it)."""
    return type(x).__module__.startswith("torch")
