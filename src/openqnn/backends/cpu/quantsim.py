"""Quantization simulation on float kernels: quantize-dequantize at every encoded tensor.

This is the float reference of what a fixed-point backend computes: each encoded tensor is
rounded to its grid (``q = clamp(round(x / scale) - offset, 0, 2^bw - 1)``, round half to even)
and mapped back (``(q + offset) * scale``); the ops between run in float. Restricted encodings
(``qmin``/``qmax``) clamp q to their range; per-block encodings (static weights) take one scale and
offset per channel and block.
"""

from __future__ import annotations

import numpy as np
import torch

from openqnn.ir.tensor import Encoding
from openqnn.quantization.encodings import math as qmath

__all__ = ["FakeQuant", "fake_quantize_array"]


class FakeQuant:
    """A prepared quantize-dequantize for one encoding (per-tensor or along an axis of a rank)."""

    def __init__(self, enc: Encoding, rank: int, device: torch.device, dtype: torch.dtype = torch.float32):
        if enc.per_block:
            raise ValueError("per-block encodings apply to static tensors only")
        shape = [1] * rank
        if enc.axis is not None and rank:
            shape[enc.axis] = len(enc.scale)
        self.scale = torch.tensor(enc.scale, dtype=dtype, device=device).reshape(shape)
        self.offset = torch.tensor(enc.offset, dtype=dtype, device=device).reshape(shape)
        self.bitwidth, self.bounds = enc.bitwidth, enc.int_range

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not x.dtype.is_floating_point:
            return x
        return qmath.fake_quantize(x, self.scale.to(x.dtype), self.offset.to(x.dtype), self.bitwidth,
                                   bounds=self.bounds)


def fake_quantize_array(data: np.ndarray, enc: Encoding) -> np.ndarray:
    """Quantize-dequantize static data in float64 (exact for 32-bit biases), returned in its dtype:
    per-tensor, per-axis, or per-block (each block of ``block_size`` along ``block_axis`` of each
    channel with its own scale and offset)."""
    scale, offset = enc.arrays(tuple(data.shape))
    return qmath.fake_quantize(data.astype(np.float64), scale, offset.astype(np.float64), enc.bitwidth,
                               enc.is_signed, enc.int_range).astype(data.dtype)
