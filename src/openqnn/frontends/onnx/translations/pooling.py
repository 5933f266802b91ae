"""MaxPool, AveragePool, LpPool and their global forms (1-D and 2-D)."""

from __future__ import annotations

from openqnn.frontends.onnx.context import ConversionContext, channel_last_perm
from openqnn.frontends.onnx.registry import onnx_op
from openqnn.frontends.onnx.translations.common import conv_pads
from openqnn.frontends.onnx.translations.conv import _bind_out, _to_2d
from openqnn.ops.pooling import ROUNDING_CEIL, ROUNDING_FLOOR


def _pool(ctx: ConversionContext, op_type: str, extra: dict) -> None:
    x = ctx.input(0)
    n = x.rank - 2
    kernel = list(ctx.attr("kernel_shape"))
    strides = list(ctx.attr("strides", [1] * n))
    dilations = list(ctx.attr("dilations", [1] * n))
    pads = conv_pads(ctx, x.shape[2:], kernel, strides, dilations)
    ceil = int(ctx.attr("ceil_mode", 0)) == 1
    xin, was_1d = _to_2d(ctx, x.rank)
    if was_1d:
        kernel, strides, dilations, pads = [1, *kernel], [1, *strides], [1, *dilations], [(0, 0), *pads]
    attrs = {"filter_size": kernel, "stride": strides, "dilation": dilations, "pad_amount": pads,
             "rounding_mode": ROUNDING_CEIL if ceil else ROUNDING_FLOOR, **extra}
    out = ctx.emit(op_type, [xin], attrs)[0]
    _bind_out(ctx, out, was_1d)


@onnx_op("MaxPool")
def max_pool(ctx: ConversionContext) -> None:
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        raise ctx.fail("MaxPool's Indices output is not supported")
    if int(ctx.attr("storage_order", 0)) != 0:
        raise ctx.fail("MaxPool storage_order=1 is not supported")
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
