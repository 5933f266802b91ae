"""Helpers shared by the translations: layout choice for element-wise ops, padding arithmetic."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from openqnn.frontends.onnx.context import ConversionContext, Perm, Value


def shared_layout(values: Sequence[Value], out_rank: int) -> Perm | None:
    """The layout an element-wise op can run in: the one all its run-time inputs share, when they
    all have the output's rank; otherwise the ONNX layout (None)."""
    dynamic = [v for v in values if v.const is None]
    perms = {v.perm for v in dynamic}
    if len(perms) == 1:
        perm = next(iter(perms))
        if perm is not None and all(v.rank == out_rank for v in dynamic):
            return perm
    return None


def operand(ctx: ConversionContext, v: Value, perm: Perm | None, out_rank: int) -> str:
    """IR tensor of ``v`` laid out to broadcast against an output of rank ``out_rank`` in ``perm``."""
    if perm is None:
        return ctx.tensor(v)
    if v.const is not None and v.rank < out_rank:
        if v.const.size == 1:  # scalars broadcast in any layout
            return ctx.tensor(v)
        data = v.const.reshape((1,) * (out_rank - v.rank) + v.const.shape)
        return ctx.tensor(Value(None, data.shape, v.dtype, None, data, v.hint), perm)
    return ctx.tensor(v, perm)


def elementwise(ctx: ConversionContext, op_type: str, indices: Sequence[int] = (0, 1), attrs: dict | None = None) -> None:
    """Translate an element-wise ONNX node into one IR node, in the layout its inputs share."""
    values = [ctx.input(i) for i in indices]
    out_rank = max(v.rank for v in values)
    perm = shared_layout(values, out_rank)
    out = ctx.emit(op_type, [operand(ctx, v, perm, out_rank) for v in values], attrs)[0]
    ctx.bind(0, out, perm)


def norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def ir_axis(v: Value, axis: int) -> int:
    """Where ONNX axis ``axis`` of ``v`` sits in its IR tensor."""
    axis = norm_axis(axis, v.rank)
    return axis if v.perm is None else v.perm.index(axis)


def conv_pads(ctx: ConversionContext, in_spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
              dilations: Sequence[int]) -> list[tuple[int, int]]:
    """[(begin, end)] per spatial dim from ONNX's pads / auto_pad attributes (which are checked:
    kernel_shape, strides and dilations have one positive entry per spatial dim, pads two per dim)."""
    n = len(in_spatial)
    if len(kernel) != n or len(strides) != n or len(dilations) != n:
        raise ctx.fail(f"kernel_shape {list(kernel)}, strides {list(strides)} and dilations {list(dilations)} must "
                       f"have {n} entries for a {n}-D input")
    if min(kernel, default=1) <= 0 or min(strides, default=1) <= 0 or min(dilations, default=1) <= 0:
        raise ctx.fail(f"kernel_shape {list(kernel)}, strides {list(strides)} and dilations {list(dilations)} must "
                       "be positive")
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(in_spatial, kernel, strides, dilations):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small = total // 2
            pads.append((small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small))
        return pads
    if auto_pad == "VALID":
        return [(0, 0)] * n
    if auto_pad != "NOTSET":
        raise ctx.fail(f"auto_pad={auto_pad!r} is not valid; use NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    return explicit_pads(ctx, n)


def explicit_pads(ctx: ConversionContext, n: int) -> list[tuple[int, int]]:
    """ONNX ``pads`` [b1, ..., bn, e1, ..., en] as [(b1, e1), ...]: 2n non-negative entries."""
    p = [int(v) for v in ctx.attr("pads", [0] * (2 * n))]
    if len(p) != 2 * n or min(p, default=0) < 0:
        raise ctx.fail(f"pads {p} must hold {2 * n} non-negative entries (all begins, then all ends) for a "
                       f"{n}-D input")
    return [(p[i], p[i + n]) for i in range(n)]


def as_ints(a: np.ndarray | Sequence[int]) -> list[int]:
    return [int(x) for x in np.asarray(a).reshape(-1)]
