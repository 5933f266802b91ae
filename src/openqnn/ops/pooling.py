"""Pooling (channel-last): PoolMax2d, PoolAvg2d. Global pools use a filter the size of the input."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from openqnn.errors import InvalidModelError
from openqnn.ops.schema import Attr, TType, op

ROUNDING_FLOOR, ROUNDING_CEIL = 0, 1

_POOL_ATTRS = (
    Attr("filter_size", "ints"),
    Attr("stride", "ints", (1, 1)),
    Attr("pad_amount", "ints2d", ((0, 0), (0, 0))),
    Attr("dilation", "ints", (1, 1)),
    Attr("rounding_mode", "int", ROUNDING_FLOOR, "0 floor, 1 ceil (a window must start inside input + left pad)"),
)


def pool_out_dim(size: int, k: int, s: int, pad: Sequence[int], d: int, ceil: bool) -> int:
    span = size + pad[0] + pad[1] - d * (k - 1) - 1
    if not ceil:
        return span // s + 1
    out = math.ceil(span / s) + 1
    if (out - 1) * s >= size + pad[0]:  # last window would start in the right padding
        out -= 1
    return out


def _pool(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    x = ins[0]
    if len(x.shape) != 4:
        raise InvalidModelError(f"2-D pooling needs an NHWC input, got shape {x.shape}")
    ceil = attrs["rounding_mode"] == ROUNDING_CEIL
    dims = [
        pool_out_dim(x.shape[1 + i], attrs["filter_size"][i], attrs["stride"][i], attrs["pad_amount"][i],
                     attrs["dilation"][i], ceil)
        for i in range(2)
    ]
    if min(dims) <= 0:
        raise InvalidModelError(f"pooling output would be empty: input {x.shape}, filter {attrs['filter_size']}")
    return [TType((x.shape[0], dims[0], dims[1], x.shape[3]), x.dtype)]


op("PoolMax2d", ["in"], attrs=_POOL_ATTRS)(_pool)
op("PoolAvg2d", ["in"], attrs=(*_POOL_ATTRS, Attr("count_pad_for_edges", "bool", False)))(_pool)
op("PoolLp2d", ["in"], attrs=(*_POOL_ATTRS, Attr("p", "int", 2)))(_pool)
