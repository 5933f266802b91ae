"""Quantization simulation on float kernels: quantize-dequantize at every encoded tensor.

This is the float reference of what a fixed-point backend computes: each encoded tensor is
rounded to its grid (``q = clamp(round(x / scale) - offset, 0, 2^bw - 1)``, round half to even)
and mapped back (``(q + offset) * scale``); the ops between run in float.
"""

from __future__ import annotations

import numpy as np
import torch

from openqnn.ir.tensor import Encoding

__all__ = ["FakeQuant", "fake_quantize_array"]


class FakeQuant:
    """A prepared quantize-dequantize for one encoding (per-tensor or along an axis of a rank)."""

    def __init__(self, enc: Encoding, rank: int, device: torch.device, dtype: torch.dtype = torch.float32):
        shape = [1] * rank
        if enc.axis is not None and rank:
            shape[enc.axis] = len(enc.scale)
        self.scale = torch.tensor(enc.scale, dtype=dtype, device=device).reshape(shape)
        self.offset = torch.tensor(enc.offset, dtype=dtype, device=device).reshape(shape)
        from openqnn.quantization.encodings.math import qrange

        lo, hi = qrange(enc.bitwidth, enc.is_signed)
        self.qmin, self.qmax = float(lo), float(hi)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not x.dtype.is_floating_point:
            return x
        q = torch.clamp(torch.round(x / self.scale.to(x.dtype)) - self.offset.to(x.dtype), self.qmin, self.qmax)
        return (q + self.offset.to(x.dtype)) * self.scale.to(x.dtype)


def fake_quantize_array(data: np.ndarray, enc: Encoding) -> np.ndarray:
    """Quantize-dequantize static data in float64 (exact for 32-bit biases), returned in its dtype."""
    from openqnn.quantization.encodings import math as qmath

    shape = [1] * data.ndim
    if enc.axis is not None and data.ndim:
        shape[enc.axis] = len(enc.scale)
    scale = np.asarray(enc.scale, dtype=np.float64).reshape(shape)
    offset = np.asarray(enc.offset, dtype=np.float64).reshape(shape)
    return qmath.fake_quantize(data.astype(np.float64), scale, offset, enc.bitwidth, enc.is_signed).astype(data.dtype)
