"""Shape and data-movement ONNX ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat,
Identity, Dropout, Constant, Shape, Size, Cast, CastLike."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from openqnn.frontends.onnx.context import ConversionContext
from openqnn.frontends.onnx.registry import onnx_op
from openqnn.frontends.onnx.translations.common import as_ints, norm_axis
from openqnn.ir.dtype import DType


def _reshape_to(ctx: ConversionContext, shape: tuple[int, ...]) -> None:
    out = ctx.emit("Reshape", [ctx.src(0)], {"shape": shape})[0]
    ctx.bind(0, out)


@onnx_op("Reshape")
def reshape(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    target = as_ints(ctx.attr("shape")) if ctx.opset < 5 else as_ints(ctx.const(1, "shape"))
    allow_zero = int(ctx.attr("allowzero", 0))
    shape = [x.shape[i] if (d == 0 and not allow_zero) else d for i, d in enumerate(target)]
    if shape.count(-1) > 1:
        raise ctx.fail(f"shape {target} has more than one -1")
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
        total = int(np.prod(x.shape, dtype=np.int64))
        if known == 0 or total % known:
            raise ctx.fail(f"cannot reshape {x.shape} to {target}")
        shape[shape.index(-1)] = total // known
    _reshape_to(ctx, tuple(shape))


@onnx_op("Flatten")
def flatten(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    axis = norm_axis(int(ctx.attr("axis", 1)), x.rank)
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    _reshape_to(ctx, (lead, int(np.prod(x.shape[axis:], dtype=np.int64))))


def _axes(ctx: ConversionContext) -> list[int] | None:
    if ctx.opset < 13:
        a = ctx.attr("axes")
        return None if a is None else [int(v) for v in a]
    return as_ints(ctx.const(1, "axes")) if ctx.has(1) else None


@onnx_op("Squeeze")
def squeeze(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    axes = _axes(ctx)
    drop = {i for i, d in enumerate(x.shape) if d == 1} if axes is None else {norm_axis(a, x.rank) for a in axes}
    _reshape_to(ctx, tuple(d for i, d in enumerate(x.shape) if i not in drop))


@onnx_op("Unsqueeze")
def unsqueeze(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    axes = _axes(ctx)
    if axes is None:
        raise ctx.fail("Unsqueeze needs axes")
    rank = x.rank + len(axes)
    pos = sorted(norm_axis(a, rank) for a in axes)
    shape, it = [], iter(x.shape)
    for i in range(rank):
        shape.append(1 if i in pos else next(it))
    _reshape_to(ctx, tuple(shape))


@onnx_op("Transpose")
def transpose(ctx: ConversionContext) -> None:
    v = ctx.input(0)
    t = [int(p) for p in ctx.attr("perm", list(range(v.rank))[::-1])]
    have = v.perm or tuple(range(v.rank))
    q = tuple(have.index(p) for p in t)
    if q == tuple(range(v.rank)):
        ctx.bind(0, ctx.tensor(v, v.perm))
        return
    ctx.bind(0, ctx.emit("Transpose", [ctx.tensor(v, v.perm)], {"perm": q})[0])


@onnx_op("Concat")
def concat(ctx: ConversionContext) -> None:
    values = [ctx.value(x) for x in ctx.node.input if x]
    values = [v for v in values if 0 not in v.shape] or values[:1]
    axis = int(ctx.attr("axis"))
    dynamic = [v for v in values if v.const is None]
    perms = {v.perm for v in dynamic}
    perm = next(iter(perms)) if len(perms) == 1 else None
    ins = [ctx.tensor(v, perm) for v in values]
    ax = norm_axis(axis, values[0].rank)
    ir_ax = ax if perm is None else perm.index(ax)
    out = ctx.emit("Concat", ins, {"axis": ir_ax})[0]
    ctx.bind(0, out, perm)


@onnx_op("Identity", "Dropout")
def identity(ctx: ConversionContext) -> None:
    v = ctx.input(0)
    ctx.alias(0, v)
    if len(ctx.node.output) > 1 and ctx.node.output[1]:  # Dropout's mask: all kept at inference
        ctx.bind_const(1, np.ones(v.shape, dtype=bool))


@onnx_op("Constant")
def constant(ctx: ConversionContext) -> None:
    node = ctx.node
    a = node.attribute[0]
    if a.name == "value":
        data = numpy_helper.to_array(a.t)
    elif a.name == "sparse_value":
        data = numpy_helper.to_array(a.sparse_tensor)
    elif a.name == "value_float":
        data = np.array(a.f, dtype=np.float32)
    elif a.name == "value_floats":
        data = np.array(list(a.floats), dtype=np.float32)
    elif a.name == "value_int":
        data = np.array(a.i, dtype=np.int64)
    elif a.name == "value_ints":
        data = np.array(list(a.ints), dtype=np.int64)
    else:
        raise ctx.fail(f"Constant attribute {a.name} is not supported")
    ctx.bind_const(0, data)


@onnx_op("Shape")
def shape(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    start, end = int(ctx.attr("start", 0)), ctx.attr("end", None)
    dims = list(x.shape)[slice(start, None if end is None else int(end))]
    ctx.bind_const(0, np.array(dims, dtype=np.int64))


@onnx_op("Size")
def size(ctx: ConversionContext) -> None:
    ctx.bind_const(0, np.array(int(np.prod(ctx.input(0).shape, dtype=np.int64)), dtype=np.int64))


def _cast(ctx: ConversionContext, to: DType) -> None:
    v = ctx.input(0)
    if to is v.dtype:
        ctx.alias(0, v)
        return
    out = ctx.emit("Cast", [ctx.tensor(v, v.perm)], {"dtype": to})[0]
    ctx.bind(0, out, v.perm)


@onnx_op("Cast")
def cast(ctx: ConversionContext) -> None:
    from openqnn.frontends.onnx.frontend import onnx_dtype

    _cast(ctx, onnx_dtype(int(ctx.attr("to")), ctx.where()))


@onnx_op("CastLike")
def cast_like(ctx: ConversionContext) -> None:
    _cast(ctx, ctx.input(1).dtype)




@onnx_op("Gather")
def gather(ctx: ConversionContext) -> None:
    x, idx = ctx.input(0), ctx.input(1)
    axis = norm_axis(int(ctx.attr("axis", 0)), x.rank)
    indices = ctx.tensor(idx)
    if idx.const is not None:  # negative indices made positive once
        data = np.where(idx.const < 0, idx.const + x.shape[axis], idx.const).astype(np.int32)
        indices = ctx.add_static(idx.hint or "indices", data)
    if idx.rank == 0 and x.perm is not None:  # a scalar index drops one axis: the layout survives
        ir_ax = x.perm.index(axis)
        out = ctx.emit("Gather", [ctx.tensor(x, x.perm), indices], {"axis": ir_ax})[0]
        rest = [p for p in x.perm if p != axis]
        perm = tuple(p - (p > axis) for p in rest)
        ctx.bind(0, out, perm)
        return
    ctx.bind(0, ctx.emit("Gather", [ctx.src(0), indices], {"axis": axis})[0])
