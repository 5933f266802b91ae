"""What a node costs, as data: multiply-accumulates of its weight product.

A weight product of ``W`` weights making ``out`` elements over ``C`` output channels does ``out * W / C``
multiply-accumulates (``kh*kw*cin/groups`` per output element of a convolution, ``cin`` per output of a fully
connected layer); shapes are the IR's, channels last. A MatMul of two activations does ``out * k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["GEMM_OPS", "estimate_macs"]

GEMM_OPS = frozenset({"Conv2d", "DepthWiseConv2d", "TransposeConv2d", "Conv3d", "FullyConnected", "MatMul"})


def estimate_macs(op_type: str, in_shape: Sequence[int], out_shape: Sequence[int], weight_elems: int) -> int:
    """Multiply-accumulates of one execution of a node (0 for ops that are not weight products).
    ``weight_elems``: its weights' element count (0: no static weight)."""
    if op_type not in GEMM_OPS or not out_shape:
        return 0
    if weight_elems:
        if op_type == "TransposeConv2d" and in_shape:  # each input element scatters through kh*kw*cout weights
            return math.prod(in_shape) * weight_elems // max(int(in_shape[-1]), 1)
        return math.prod(out_shape) * weight_elems // max(int(out_shape[-1]), 1)
    if op_type == "MatMul" and in_shape:
        return math.prod(out_shape) * int(in_shape[-1])
    return 0
