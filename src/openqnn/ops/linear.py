"""Matrix products: FullyConnected and MatMul."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openqnn.errors import InvalidModelError
from openqnn.ops.schema import Attr, TType, broadcast_shapes, op


@op("FullyConnected", ["in", "weights", "bias?"], attrs=(Attr("keep_dims", "bool", False),))
def _fully_connected(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """out = in @ weights^T + bias; weights [units, k]. Without keep_dims, leading dims flatten."""
    x, w = ins[0], ins[1]
    if len(w.shape) != 2 or not x.shape:
        raise InvalidModelError(f"FullyConnected: weights must be [units, k] and the input rank >= 1, got "
                                f"{w.shape} and {x.shape}")
    units, k = w.shape
    if len(ins) > 2 and ins[2] is not None and tuple(ins[2].shape) != (units,):
        raise InvalidModelError(f"FullyConnected: bias has shape {ins[2].shape}, the {units} units need ({units},)")
    if x.shape[-1] != k:
        raise InvalidModelError(f"FullyConnected: input's last dim {x.shape[-1]} != weights' {k}")
    lead = x.shape[:-1]
    if attrs["keep_dims"]:
        return [TType((*lead, units), x.dtype)]
    n = 1
    for d in lead:
        n *= d
    return [TType((n, units), x.dtype)]


@op("MatMul", ["in0", "in1"], attrs=(Attr("transpose_in0", "bool", False), Attr("transpose_in1", "bool", False)))
def _matmul(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Batched matrix product of rank >= 2 operands with broadcast batch dims."""
    a, b = ins[0].shape, ins[1].shape
    if len(a) < 2 or len(b) < 2:
        raise InvalidModelError(f"MatMul operands must have rank >= 2, got {a} and {b}")
    m, ka = (a[-1], a[-2]) if attrs["transpose_in0"] else (a[-2], a[-1])
    kb, n = (b[-1], b[-2]) if attrs["transpose_in1"] else (b[-2], b[-1])
    if ka != kb:
        raise InvalidModelError(f"MatMul: inner dims differ ({a} x {b})")
    batch = broadcast_shapes(a[:-2], b[:-2])
    return [TType((*batch, m, n), ins[0].dtype)]
