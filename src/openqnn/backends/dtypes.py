"""IR element types as PyTorch dtypes, for every backend that runs on PyTorch."""

from __future__ import annotations

import torch

from openqnn.ir.dtype import DType

__all__ = ["torch_dtype"]

_TORCH = {
    DType.FLOAT_32: torch.float32,
    DType.FLOAT_16: torch.float16,
    DType.FLOAT_64: torch.float64,
    DType.INT_8: torch.int8,
    DType.INT_16: torch.int16,
    DType.INT_32: torch.int32,
    DType.INT_64: torch.int64,
    DType.UINT_8: torch.uint8,
    DType.UINT_16: torch.uint16,
    DType.UINT_32: torch.uint32,
    DType.UINT_64: torch.uint64,
    DType.BOOL_8: torch.bool,
    DType.UFIXED_POINT_8: torch.uint8,
    DType.UFIXED_POINT_16: torch.uint16,
    DType.SFIXED_POINT_8: torch.int8,
    DType.SFIXED_POINT_16: torch.int16,
    DType.SFIXED_POINT_32: torch.int32,
}


def torch_dtype(dt: DType, float_dtype: torch.dtype | None = None) -> torch.dtype:
    """The torch dtype holding ``dt``; ``float_dtype`` replaces float32/float16 (a float16 plan)."""
    if float_dtype is not None and dt in (DType.FLOAT_32, DType.FLOAT_16):
        return float_dtype
    return _TORCH[dt]
