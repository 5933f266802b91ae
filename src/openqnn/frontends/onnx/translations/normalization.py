"""BatchNormalization, LayerNormalization, RMSNormalization, Softmax and LogSoftmax."""

from __future__ import annotations

import numpy as np

from openqnn.frontends.onnx.context import ConversionContext, channel_last_perm
from openqnn.frontends.onnx.registry import onnx_op
from openqnn.frontends.onnx.translations.common import ir_axis, norm_axis


@onnx_op("BatchNormalization")
def batch_norm(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    if int(ctx.attr("training_mode", 0)) == 1:
        _batch_norm_training(ctx)
        return
    if any(o for o in ctx.node.output[1:]):
        raise ctx.fail("BatchNormalization outputs beyond Y need training_mode=1")
    eps = float(ctx.attr("epsilon", 1e-5))
    perm = channel_last_perm(x.rank) if x.rank > 2 else None
    xin = ctx.tensor(x, perm)
    params = [ctx.input(i).const for i in range(1, 5)]
    if all(p is not None for p in params):
        scale, bias, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
        weight = scale / np.sqrt(var + eps)
        shift = bias - mean * weight
        dt = x.dtype.numpy
        name = ctx.node.name or ctx.node.output[0]
        out = ctx.emit("Batchnorm", [xin, ctx.add_static(f"{name}_weight", weight.astype(dt)),
                                     ctx.add_static(f"{name}_bias", shift.astype(dt))])[0]
    else:  # statistics computed at run time
        out = _normalize(ctx, xin, ctx.src(3), ctx.src(4), ctx.src(1), ctx.src(2), eps, x.dtype.numpy)
    ctx.bind(0, out, perm)


def _normalize(ctx: ConversionContext, x: str, mean: str, var: str, scale: str, bias: str, eps: float,
               dt: np.dtype) -> str:
    """(x - mean) * scale / sqrt(var + eps) + bias, parameters broadcasting over the last axis."""
    eps_t = ctx.add_static("epsilon", np.array(eps, dtype=dt))
    std = ctx.emit("ElementWiseSquareRoot", [ctx.emit("ElementWiseAdd", [var, eps_t])[0]])[0]
    w = ctx.emit("ElementWiseDivide", [scale, std])[0]
    centered = ctx.emit("ElementWiseSubtract", [x, mean])[0]
    return ctx.emit("ElementWiseAdd", [ctx.emit("ElementWiseMultiply", [centered, w])[0], bias])[0]


def _batch_norm_training(ctx: ConversionContext) -> None:
    """training_mode=1: normalize with the batch's own statistics; outputs 1 and 2 are the updated
    running mean and variance (momentum-weighted), as ONNX defines them."""
    x = ctx.input(0)
    eps, momentum = float(ctx.attr("epsilon", 1e-5)), float(ctx.attr("momentum", 0.9))
    dt = x.dtype.numpy
    perm = channel_last_perm(x.rank) if x.rank > 2 else None
    xin = ctx.tensor(x, perm)
    axes = tuple(range(x.rank - 1))  # every axis but the (last) channel axis
    mean = ctx.emit("ReduceMean", [xin], {"axes": axes, "keep_dims": False})[0]
    centered = ctx.emit("ElementWiseSubtract", [xin, mean])[0]
    var = ctx.emit("ReduceMean", [ctx.emit("ElementWiseMultiply", [centered, centered])[0]],
                   {"axes": axes, "keep_dims": False})[0]
    y = _normalize(ctx, xin, mean, var, ctx.src(1), ctx.src(2), eps, dt)
    ctx.bind(0, y, perm)
    keep = ctx.add_static("momentum", np.array(momentum, dtype=dt))
    new = ctx.add_static("one_minus_momentum", np.array(1.0 - momentum, dtype=dt))
    for index, (running, batch) in enumerate(((ctx.src(3), mean), (ctx.src(4), var)), start=1):
        if len(ctx.node.output) > index and ctx.node.output[index]:
            old = ctx.emit("ElementWiseMultiply", [running, keep])[0]
            ctx.bind(index, ctx.emit("ElementWiseAdd", [old, ctx.emit("ElementWiseMultiply", [batch, new])[0]])[0])


@onnx_op("RMSNormalization")
def rms_norm(ctx: ConversionContext) -> None:
    """Opset 23's RMSNormalization (what the dynamo exporter writes for F.rms_norm at opset >= 23):
    X / sqrt(mean(X^2 over axis..rank) + epsilon) * scale."""
    x = ctx.input(0)
    axis = norm_axis(int(ctx.attr("axis", -1)), x.rank)
    eps = float(ctx.attr("epsilon", 1e-5))
    out = ctx.emit("RmsNorm", [ctx.src(0), ctx.src(1)], {"axes": tuple(range(axis, x.rank)), "epsilon": eps})[0]
    ctx.bind(0, out)


@onnx_op("LayerNormalization")
def layer_norm(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    axis = norm_axis(int(ctx.attr("axis", -1)), x.rank)
    eps = float(ctx.attr("epsilon", 1e-5))
    axes = tuple(range(axis, x.rank))
    wants_stats = any(o for o in ctx.node.output[1:])
    if not wants_stats:
        out = ctx.emit("LayerNorm", [ctx.src(0), ctx.src(1), ctx.src(2)], {"axes": axes, "epsilon": eps})[0]
        ctx.bind(0, out)
        return
    # Mean and InvStdDev requested: spell the normalization out, statistics in the stash type
    from openqnn.frontends.onnx.frontend import onnx_dtype

    stash = onnx_dtype(int(ctx.attr("stash_type", 1)), ctx.where())
    src = ctx.src(0)
    xs = src if stash is x.dtype else ctx.emit("Cast", [src], {"dtype": stash})[0]
    mean = ctx.emit("ReduceMean", [xs], {"axes": axes, "keep_dims": True})[0]
    d = ctx.emit("ElementWiseSubtract", [xs, mean])[0]
    var = ctx.emit("ReduceMean", [ctx.emit("ElementWiseMultiply", [d, d])[0]], {"axes": axes, "keep_dims": True})[0]
    eps_t = ctx.add_static("epsilon", np.array(eps, dtype=stash.numpy))
    inv = ctx.emit("ElementWiseRsqrt", [ctx.emit("ElementWiseAdd", [var, eps_t])[0]])[0]
    y = ctx.emit("ElementWiseMultiply", [d, inv])[0]
    if stash is not x.dtype:
        y = ctx.emit("Cast", [y], {"dtype": x.dtype})[0]
    y = ctx.emit("ElementWiseMultiply", [y, ctx.src(1)])[0]
    if ctx.has(2):
        y = ctx.emit("ElementWiseAdd", [y, ctx.src(2)])[0]
    ctx.bind(0, y)
    for index, stat in ((1, mean), (2, inv)):
        if len(ctx.node.output) > index and ctx.node.output[index]:
            ctx.bind(index, ctx.emit("Reshape", [stat], {"shape": ctx.graph.tensors[stat].shape})[0])


def _softmax(ctx: ConversionContext, op_type: str) -> None:
    x = ctx.input(0)
    if ctx.opset < 13:
        axis = norm_axis(int(ctx.attr("axis", 1)), x.rank)
        if axis != x.rank - 1:  # opsets < 13 flatten to 2-D at axis
            src = ctx.src(0)
            lead = int(np.prod(x.shape[:axis], dtype=np.int64))
            flat = ctx.emit("Reshape", [src], {"shape": (lead, int(np.prod(x.shape[axis:], dtype=np.int64)))})[0]
            y = ctx.emit(op_type, [flat], {"axis": 1})[0]
            ctx.bind(0, ctx.emit("Reshape", [y], {"shape": x.shape})[0])
            return
    else:
        axis = int(ctx.attr("axis", -1))
    out = ctx.emit(op_type, [ctx.tensor(x, x.perm)], {"axis": ir_axis(x, axis)})[0]
    ctx.bind(0, out, x.perm)


@onnx_op("Softmax")
def softmax(ctx: ConversionContext) -> None:
    _softmax(ctx, "Softmax")


@onnx_op("LogSoftmax")
def log_softmax(ctx: ConversionContext) -> None:
    _softmax(ctx, "LogSoftmax")
