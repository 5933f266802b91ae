"""MaxPool (with its Indices output), AveragePool, LpPool and their global forms (1-D, 2-D, 3-D)."""

from __future__ import annotations

from openqnn.frontends.onnx.context import ConversionContext, channel_last_perm
from openqnn.frontends.onnx.registry import onnx_op
from openqnn.frontends.onnx.translations.common import conv_pads
from openqnn.frontends.onnx.translations.conv import _bind_out, _to_2d
from openqnn.ops.pooling import ROUNDING_CEIL, ROUNDING_FLOOR

_POOL_3D = {"PoolMax2d": "PoolMax3d", "PoolAvg2d": "PoolAvg3d"}


def _pool(ctx: ConversionContext, op_type: str, extra: dict) -> None:
    """One pooling node; ``op_type`` is the 2-D op (1-D inputs run as height-1 2-D, 3-D ones use its 3-D form)."""
    x = ctx.input(0)
    n = x.rank - 2
    if n not in (1, 2, 3):
        raise ctx.fail(f"{n}-D {ctx.node.op_type} is not supported (1-D, 2-D and 3-D are)")
    if ctx.attr("kernel_shape") is None:
        raise ctx.fail("attribute kernel_shape is required")
    kernel = [int(k) for k in ctx.attr("kernel_shape")]
    strides = [int(s) for s in ctx.attr("strides", [1] * n)]
    dilations = [int(d) for d in ctx.attr("dilations", [1] * n)]
    if not len(kernel) == len(strides) == len(dilations) == n:
        raise ctx.fail(f"kernel_shape, strides and dilations must have {n} entries for a {n}-D input")
    pads = conv_pads(ctx, x.shape[2:], kernel, strides, dilations)
    ceil = int(ctx.attr("ceil_mode", 0)) == 1
    rounding = ROUNDING_CEIL if ceil else ROUNDING_FLOOR
    with_indices = op_type == "PoolMax2dWithIndices"
    if n == 3:
        if op_type not in _POOL_3D:
            what = "MaxPool's Indices output" if with_indices else ctx.node.op_type
            raise ctx.fail(f"3-D {what} is not supported (QNN has no 3-D form of it)")
        attrs = {"filter_size": kernel, "stride": strides, "dilation": dilations, "pad_amount": pads,
                 "rounding_mode": rounding, **extra}
        out = ctx.emit(_POOL_3D[op_type], [ctx.channel_last(0)], attrs)[0]
        ctx.bind(0, out, channel_last_perm(5))
        return
    xin, was_1d = _to_2d(ctx, x.rank)
    if was_1d:
        kernel, strides, dilations, pads = [1, *kernel], [1, *strides], [1, *dilations], [(0, 0), *pads]
    attrs = {"filter_size": kernel, "stride": strides, "dilation": dilations, "pad_amount": pads,
             "rounding_mode": rounding, **extra}
    outs = ctx.emit(op_type, [xin], attrs)
    _bind_out(ctx, outs[0], was_1d)
    if with_indices:
        idx = outs[1]
        if was_1d:
            b, _, w, c = ctx.graph.tensors[idx].shape
            idx = ctx.emit("Reshape", [idx], {"shape": (b, w, c)}, name=f"{idx}_as1d")[0]
        ctx.bind(1, idx, channel_last_perm(x.rank))


@onnx_op("MaxPool")
def max_pool(ctx: ConversionContext) -> None:
    storage_order = int(ctx.attr("storage_order", 0))
    if storage_order not in (0, 1):
        raise ctx.fail(f"storage_order must be 0 or 1, got {storage_order}")
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        # storage_order only matters for the Indices output
        _pool(ctx, "PoolMax2dWithIndices", {"storage_order": storage_order})
    else:
        _pool(ctx, "PoolMax2d", {})


@onnx_op("AveragePool")
def average_pool(ctx: ConversionContext) -> None:
    _pool(ctx, "PoolAvg2d", {"count_pad_for_edges": bool(ctx.attr("count_include_pad", 0))})


@onnx_op("LpPool")
def lp_pool(ctx: ConversionContext) -> None:
    _pool(ctx, "PoolLp2d", {"p": int(ctx.attr("p", 2))})


def _global(ctx: ConversionContext, reduce_op: str) -> None:
    x = ctx.input(0)
    perm = channel_last_perm(x.rank)
    xin = ctx.tensor(x, perm)
    axes = tuple(range(1, x.rank - 1))  # the spatial axes of the channel-last tensor
    out = ctx.emit(reduce_op, [xin], {"axes": axes, "keep_dims": True})[0]
    ctx.bind(0, out, perm)


@onnx_op("GlobalAveragePool")
def global_average_pool(ctx: ConversionContext) -> None:
    _global(ctx, "ReduceMean")


@onnx_op("GlobalMaxPool")
def global_max_pool(ctx: ConversionContext) -> None:
    _global(ctx, "ReduceMax")
