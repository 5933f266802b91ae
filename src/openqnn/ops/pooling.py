"""Pooling (channel-last): PoolMax2d, PoolAvg2d, PoolLp2d, PoolMax3d, PoolAvg3d, PoolMax2dWithIndices.

2-D pools take NHWC, 3-D pools NDHWC. Global pools use a filter the size of the input.
``pad_amount`` holds one ``[begin, end]`` pair per spatial axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from openqnn.errors import InvalidModelError
from openqnn.ir.dtype import DType
from openqnn.ops.schema import Attr, TType, op

ROUNDING_FLOOR, ROUNDING_CEIL = 0, 1

_ROUNDING_DOC = "0 floor, 1 ceil (a window must start inside input + left pad)"

_POOL_ATTRS = (
    Attr("filter_size", "ints"),
    Attr("stride", "ints", (1, 1)),
    Attr("pad_amount", "ints2d", ((0, 0), (0, 0))),
    Attr("dilation", "ints", (1, 1)),
    Attr("rounding_mode", "int", ROUNDING_FLOOR, _ROUNDING_DOC),
)

_POOL3D_ATTRS = (
    Attr("filter_size", "ints"),
    Attr("stride", "ints", (1, 1, 1)),
    Attr("pad_amount", "ints2d", ((0, 0), (0, 0), (0, 0))),
    Attr("dilation", "ints", (1, 1, 1)),
    Attr("rounding_mode", "int", ROUNDING_FLOOR, _ROUNDING_DOC),
)


def pool_out_dim(size: int, k: int, s: int, pad: Sequence[int], d: int, ceil: bool) -> int:
    span = size + pad[0] + pad[1] - d * (k - 1) - 1
    if not ceil:
        return span // s + 1
    out = math.ceil(span / s) + 1
    if (out - 1) * s >= size + pad[0]:  # last window would start in the right padding
        out -= 1
    return out


def _pool_dims(attrs: dict[str, Any], x: TType, n: int) -> list[int]:
    if len(x.shape) != n + 2:
        layout = "NHWC" if n == 2 else "NDHWC"
        raise InvalidModelError(f"{n}-D pooling needs an {layout} input, got shape {x.shape}")
    for a in ("filter_size", "stride", "dilation", "pad_amount"):
        if len(attrs[a]) != n:
            raise InvalidModelError(f"{n}-D pooling: {a} has {len(attrs[a])} entries, expected {n}")
    if any(len(p) != 2 for p in attrs["pad_amount"]):
        raise InvalidModelError(f"{n}-D pooling: pad_amount must hold one [begin, end] pair per spatial axis")
    if min(attrs["filter_size"]) <= 0 or min(attrs["stride"]) <= 0 or min(attrs["dilation"]) <= 0:
        raise InvalidModelError(f"pooling: filter_size {attrs['filter_size']}, stride {attrs['stride']} and "
                                f"dilation {attrs['dilation']} must be positive")
    if min(v for p in attrs["pad_amount"] for v in p) < 0:
        raise InvalidModelError(f"pooling: pad_amount {attrs['pad_amount']} must not be negative")
    if attrs["rounding_mode"] not in (ROUNDING_FLOOR, ROUNDING_CEIL):
        raise InvalidModelError(f"pooling: rounding_mode {attrs['rounding_mode']} must be 0 (floor) or 1 (ceil)")
    ceil = attrs["rounding_mode"] == ROUNDING_CEIL
    dims = [
        pool_out_dim(x.shape[1 + i], attrs["filter_size"][i], attrs["stride"][i], attrs["pad_amount"][i],
                     attrs["dilation"][i], ceil)
        for i in range(n)
    ]
    if min(dims) <= 0:
        raise InvalidModelError(f"pooling output would be empty: input {x.shape}, filter {attrs['filter_size']}")
    return dims


def _pool(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    x = ins[0]
    dims = _pool_dims(attrs, x, 2)
    return [TType((x.shape[0], *dims, x.shape[3]), x.dtype)]


def _pool3d(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    x = ins[0]
    dims = _pool_dims(attrs, x, 3)
    return [TType((x.shape[0], *dims, x.shape[4]), x.dtype)]


op("PoolMax2d", ["in"], attrs=_POOL_ATTRS)(_pool)
op("PoolAvg2d", ["in"], attrs=(*_POOL_ATTRS, Attr("count_pad_for_edges", "bool", False)))(_pool)
op("PoolLp2d", ["in"], attrs=(*_POOL_ATTRS, Attr("p", "int", 2)))(_pool)
op("PoolMax3d", ["in"], attrs=_POOL3D_ATTRS)(_pool3d)
op("PoolAvg3d", ["in"], attrs=(*_POOL3D_ATTRS, Attr("count_pad_for_edges", "bool", False)))(_pool3d)


@op(
    "PoolMax2dWithIndices",
    ["in"],
    outputs=("out", "indices"),
    attrs=(*_POOL_ATTRS, Attr("storage_order", "int", 0, "0 row major (N, C, H, W), 1 column major (N, C, W, H)")),
)
def _pool_with_indices(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """PoolMax2d that also returns, for each output, where its maximum is in the input (openqnn op).

    ``indices`` (INT_64, NHWC like ``out``) holds the position of the maximum as a flat index into the
    input laid out channel-first, ONNX MaxPool's Indices: ``((n * C + c) * H + h) * W + w`` with
    ``storage_order`` 0, ``((n * C + c) * W + w) * H + h`` with 1. Padding is not counted; ties go to
    the first position in row-major window order.
    """
    if attrs["storage_order"] not in (0, 1):
        raise InvalidModelError(f"PoolMax2dWithIndices: storage_order must be 0 or 1, got {attrs['storage_order']}")
    (out,) = _pool(attrs, ins)
    return [out, TType(out.shape, DType.INT_64)]
