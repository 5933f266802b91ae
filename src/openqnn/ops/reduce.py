"""Reductions and scans: Reduce{Max,Min,Mean,Sum,Prod,...}, Argmax/Argmin, CumulativeSum, TopK."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openqnn.errors import InvalidModelError
from openqnn.ir.dtype import DType
from openqnn.ops.schema import Attr, TType, norm_axis, op

REDUCTIONS = (
    "ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "ReduceProd",
    "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare",
)
OPENQNN_PACKAGE = frozenset({"ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare"})


def reduced_shape(shape: Sequence[int], axes: Sequence[int], keep: bool) -> tuple[int, ...]:
    ax = {norm_axis(a, len(shape)) for a in axes}
    if keep:
        return tuple(1 if i in ax else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in ax)


def _reduce(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    return [TType(reduced_shape(ins[0].shape, attrs["axes"], attrs["keep_dims"]), ins[0].dtype)]


for _name in REDUCTIONS:
    op(_name, ["in"], attrs=(Attr("axes", "ints"), Attr("keep_dims", "bool", False)))(_reduce)


def _arg(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    shape = reduced_shape(ins[0].shape, (attrs["axis"],), attrs["keep_dims"])
    return [TType(shape, DType.INT_32)]


_ARG_ATTRS = (Attr("axis", "int", 0), Attr("keep_dims", "bool", False), Attr("select_last_index", "bool", False))
op("Argmax", ["in"], attrs=_ARG_ATTRS)(_arg)
op("Argmin", ["in"], attrs=_ARG_ATTRS)(_arg)


@op("CumulativeSum", ["in"], attrs=(Attr("axis", "int", 0), Attr("exclusive", "bool", False), Attr("reverse", "bool", False)))
def _cumsum(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Running sum along axis."""
    norm_axis(attrs["axis"], len(ins[0].shape))
    return [ins[0]]


@op("TopK", ["in"], outputs=("values", "indices"),
    attrs=(Attr("k", "int"), Attr("axis", "int", -1), Attr("largest", "bool", True), Attr("sorted", "bool", True)))
def _topk(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """The k largest (or smallest) values along axis and their int32 indices."""
    x = ins[0]
    ax = norm_axis(attrs["axis"], len(x.shape))
    if not 0 <= attrs["k"] <= x.shape[ax]:
        raise InvalidModelError(f"TopK: k={attrs['k']} exceeds axis size {x.shape[ax]}")
    shape = tuple(attrs["k"] if i == ax else d for i, d in enumerate(x.shape))
    return [TType(shape, x.dtype), TType(shape, DType.INT_32)]
