"""BatchNormalization, LayerNormalization, Softmax and LogSoftmax."""

from __future__ import annotations

import numpy as np

from openqnn.frontends.onnx.context import ConversionContext, channel_last_perm
from openqnn.frontends.onnx.registry import onnx_op
from openqnn.frontends.onnx.translations.common import ir_axis, norm_axis


@onnx_op("BatchNormalization")
def batch_norm(ctx: ConversionContext) -> None:
    if int(ctx.attr("training_mode", 0)) == 1 or any(o for o in ctx.node.output[1:]):
        raise ctx.fail("training-mode BatchNormalization (running statistics outputs) is not supported")
    x = ctx.input(0)
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
    else:  # statistics computed at run time: (x - mean) * scale / sqrt(var + eps) + bias
        s_t, b_t, m_t, v_t = (ctx.src(i) for i in range(1, 5))
        eps_t = ctx.add_static("epsilon", np.array(eps, dtype=x.dtype.numpy))
        std = ctx.emit("ElementWiseSquareRoot", [ctx.emit("ElementWiseAdd", [v_t, eps_t])[0]])[0]
        w = ctx.emit("ElementWiseDivide", [s_t, std])[0]
        centered = ctx.emit("ElementWiseSubtract", [xin, m_t])[0]
        out = ctx.emit("ElementWiseAdd", [ctx.emit("ElementWiseMultiply", [centered, w])[0], b_t])[0]
    ctx.bind(0, out, perm)


@onnx_op("LayerNormalization")
def layer_norm(ctx: ConversionContext) -> None:
    if any(o for o in ctx.node.output[1:]):
        raise ctx.fail("LayerNormalization's Mean/InvStdDev outputs are not supported")
    x = ctx.input(0)
    axis = norm_axis(int(ctx.attr("axis", -1)), x.rank)
    eps = float(ctx.attr("epsilon", 1e-5))
    out = ctx.emit("LayerNorm", [ctx.src(0), ctx.src(1), ctx.src(2)],
                   {"axes": tuple(range(axis, x.rank)), "epsilon": eps})[0]
    ctx.bind(0, out)


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
