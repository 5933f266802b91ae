"""Gemm and MatMul -> FullyConnected (constant 2-D weights) or MatMul."""

from __future__ import annotations

import numpy as np

from openqnn.frontends.onnx.context import ConversionContext
from openqnn.frontends.onnx.registry import onnx_op


@onnx_op("Gemm")
def gemm(ctx: ConversionContext) -> None:
    a, b = ctx.input(0), ctx.input(1)
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    trans_a, trans_b = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    c = ctx.input(2) if ctx.has(2) else None
    x = ctx.src(0)
    if trans_a:
        x = ctx.emit("Transpose", [x], {"perm": (1, 0)})[0]
    n = b.shape[0] if trans_b else b.shape[1]
    c_ok = c is None or (c.const is not None and c.const.size in (1, n) and (c.rank < 2 or c.shape[0] == 1))
    if b.const is not None and c_ok:
        w = b.const if trans_b else b.const.T
        w = (w * alpha).astype(b.dtype.numpy) if alpha != 1.0 else w
        name = b.hint or "weight"
        bias = ""
        if c is not None and beta != 0.0:
            cb = np.broadcast_to(np.asarray(c.const).reshape(-1), (n,)) * beta
            bias = ctx.add_static(c.hint or "bias", cb.astype(c.dtype.numpy))
        out = ctx.emit("FullyConnected", [x, ctx.add_static(name, w), bias])[0]
        ctx.bind(0, out)
        return
    y = ctx.emit("MatMul", [x, ctx.src(1)], {"transpose_in1": bool(trans_b)})[0]
    dt = a.dtype.numpy
    if alpha != 1.0:
        y = ctx.emit("ElementWiseMultiply", [y, ctx.add_static("alpha", np.array(alpha, dtype=dt))])[0]
    if c is not None and beta != 0.0:
        cc = ctx.src(2)
        if beta != 1.0:
            cc = ctx.emit("ElementWiseMultiply", [cc, ctx.add_static("beta", np.array(beta, dtype=dt))])[0]
        y = ctx.emit("ElementWiseAdd", [y, cc])[0]
    ctx.bind(0, y)


@onnx_op("MatMul")
def matmul(ctx: ConversionContext) -> None:
    a, b = ctx.input(0), ctx.input(1)
    if b.const is not None and b.rank == 2 and a.rank >= 2 and a.dtype.is_float:
        w = ctx.add_static(b.hint or "weight", np.ascontiguousarray(b.const.T))
        ctx.bind(0, ctx.emit("FullyConnected", [ctx.src(0), w, ""], {"keep_dims": True})[0])
        return
    x, y = ctx.src(0), ctx.src(1)
    if a.rank == 1:
        x = ctx.emit("Reshape", [x], {"shape": (1, a.shape[0])})[0]
    if b.rank == 1:
        y = ctx.emit("Reshape", [y], {"shape": (b.shape[0], 1)})[0]
    out = ctx.emit("MatMul", [x, y])[0]
    if a.rank == 1 or b.rank == 1:
        shape = ctx.graph.tensors[out].shape
        drop = {len(shape) - 2} if a.rank == 1 else set()
        drop |= {len(shape) - 1} if b.rank == 1 else set()
        out = ctx.emit("Reshape", [out], {"shape": tuple(d for i, d in enumerate(shape) if i not in drop)})[0]
    ctx.bind(0, out)
