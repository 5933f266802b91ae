"""FullyConnected and MatMul."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from openqnn.backends.background import deferred
from openqnn.backends.cpu import native
from openqnn.backends.cpu.kernels.conv import NO_EPILOGUE, Epilogue, gemm_panels, mkldnn_ok, native_ok
from openqnn.backends.cpu.kernels.registry import BuildContext, LayerOperands, Source, Step, kernel
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Node


@kernel("FullyConnected")
def fully_connected(node: Node, ctx: BuildContext) -> Step:
    return build_fully_connected(node, ctx)


def _use_mkldnn(ctx: BuildContext, x_name: str, rows: int, k: int, n: int) -> bool:
    """oneDNN's inner product on prepacked weights is up to 2x faster than PyTorch's GEMM (MKL, which
    takes a slower path on AMD CPUs), but costs ~10 us more per call and does no better on one row."""
    return (mkldnn_ok(ctx) and ctx.dtype(x_name) is DType.FLOAT_32 and rows >= 2 and rows * k * n >= 2**19
            and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def build_fully_connected(node: Node, ctx: BuildContext, epilogue: Epilogue = NO_EPILOGUE) -> Step:
    """The step of a FullyConnected node (``y = x @ w.T + b``, weight [out, in]), then ``epilogue``.

    Run-time inputs: x, then the weight and bias when they are not static, then ``epilogue.add``.
    """
    x_name, w_name = node.inputs[0], node.inputs[1]
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    out_shape = ctx.graph.tensors[node.outputs[0]].shape
    if (ctx.is_static(w_name) and (not b_name or ctx.is_static(b_name)) and native_ok(ctx, x_name)
            and ctx.dtype(w_name) is DType.FLOAT_32):
        n, k = ctx.shape(w_name)
        gemm = native.Gemm.of_panels(gemm_panels(ctx, w_name, b_name, k, transposed=True), k, n, epilogue.clamp,
                                     epilogue.act)
        return Step(gemm.step(out_shape, add=bool(epilogue.add)), [x_name] + ([epilogue.add] if epilogue.add else []),
                    path="native", over=gemm.step_over(out_shape) if epilogue.add else None)
    ops = LayerOperands.of(ctx, w_name, b_name)
    runtime = [x_name, *ops.runtime] + ([epilogue.add] if epilogue.add else [])
    rows = math.prod(out_shape[:-1])
    if ops.static and ops.w is not None and _use_mkldnn(ctx, x_name, rows, *ops.w.shape[::-1]):
        return Step(_mkldnn_linear(ops.w, ops.b, rows, out_shape, epilogue), runtime, path="onednn")

    def run(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        it = iter(rest)
        w, b = ops.take(it)
        if x.dtype.is_floating_point:
            y = F.linear(x, w, b)
        else:
            y = torch.matmul(x, w.t()) + (b if b is not None else 0)
        return epilogue.apply(y.reshape(out_shape), next(it) if epilogue.add else None)

    return Step(run, runtime)


def _mkldnn_linear(w: torch.Tensor, b: torch.Tensor | None, rows: int, out_shape: tuple[int, ...],
                   epilogue: Epilogue):
    """oneDNN inner product on a weight reordered once (for ``rows`` rows), then the epilogue in place
    (oneDNN's binary-add post-op measured no faster than an in-place add here)."""
    linear = torch.ops.mkldnn._linear_pointwise.default
    packed = deferred("oneDNN inner product weights", torch.ops.mkldnn._reorder_linear_weight, w, rows)
    k = w.shape[1]

    def run(x: torch.Tensor, *other: torch.Tensor) -> torch.Tensor:
        y = linear(x.reshape(-1, k), packed[0], b, "none", [], "").reshape(out_shape)
        return epilogue.apply(y, other[0] if other else None)

    return run


@kernel("MatMul")
def matmul(node: Node, ctx: BuildContext) -> Step:
    ta, tb = node.attrs["transpose_in0"], node.attrs["transpose_in1"]

    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if ta:
            a = a.transpose(-1, -2)
        if tb:
            b = b.transpose(-1, -2)
        if not a.dtype.is_floating_point and a.dtype != torch.int64:
            return torch.matmul(a.to(torch.int64), b.to(torch.int64)).to(a.dtype)
        return torch.matmul(a, b)

    return Step(run, list(node.inputs))


def build_fully_connected_siblings(nodes: list[Node], ctx: BuildContext) -> Step:
    """One GEMM for FullyConnected nodes that read the same input with static weights (attention's
    query, key and value projections): the weights stacked, the result split into views per node.
    Every output element is the same dot product as in its own node; the call overhead is paid once.
    """
    x_name = nodes[0].inputs[0]

    def stack() -> tuple[torch.Tensor, torch.Tensor]:
        ws = [ctx.static(n.inputs[1]) for n in nodes]
        bs = [ctx.static(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else torch.zeros(w.shape[0], dtype=w.dtype)
              for n, w in zip(nodes, ws)]
        return torch.cat(ws), torch.cat(bs)

    sizes = [ctx.shape(n.inputs[1])[0] for n in nodes]
    shapes = [ctx.graph.tensors[n.outputs[0]].shape for n in nodes]
    units, k = sum(sizes), ctx.shape(nodes[0].inputs[1])[1]
    rows = math.prod(shapes[0][:-1])
    path = "native" if native_ok(ctx, x_name) else "onednn" if _use_mkldnn(ctx, x_name, rows, k, units) else ""
    if path == "native":
        def make() -> tuple[torch.Tensor, ...]:
            w, b = stack()
            return native.pack(w.t(), b)

        nr, at = native.panel_width(), 0
        names: list[str] = []
        sources: list[Source] = []
        for node, size in zip(nodes, sizes):
            names += node.inputs[1:3]
            sources.append(Source(node.inputs[1], 0, (k, nr), (at, at + size), transposed=True))
            if len(node.inputs) > 2 and node.inputs[2]:
                sources.append(Source(node.inputs[2], 1, cols=(at, at + size)))
            at += size
        packed, bias = ctx.prepared(f"sgemm{nr}:" + ",".join(f"{len(x)}:{x}" for x in names), make, sources)
        stacked = native.Gemm.of_panels((packed, bias), k, units)
        out_shape = (*shapes[0][:-1], units)
        if all(s[:-1] == out_shape[:-1] for s in shapes):  # (the common case: split the stacked output's last axis)

            def split(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
                return stacked.run(x, out_shape).split(sizes, -1)

            return Step(split, [x_name], path=path)

        def gemm(x: torch.Tensor) -> torch.Tensor:
            return stacked.run(x, out_shape).reshape(-1, units)
    elif path == "onednn":
        w, b = stack()
        linear = torch.ops.mkldnn._linear_pointwise.default
        cell = deferred("oneDNN inner product weights", torch.ops.mkldnn._reorder_linear_weight, w, rows)

        def gemm(x: torch.Tensor) -> torch.Tensor:
            return linear(x.reshape(-1, k), cell[0], b, "none", [], "")
    else:
        w, b = stack()

        def gemm(x: torch.Tensor) -> torch.Tensor:
            return F.linear(x.reshape(-1, k), w, b)

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        return [y.reshape(s) for y, s in zip(gemm(x).split(sizes, -1), shapes)]

    return Step(run, [x_name], path=path)


def can_share_gemm(node: Node, ctx: BuildContext) -> bool:
    """Whether ``node`` may join :func:`build_fully_connected_siblings` (float32, static weights)."""
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    return (node.op_type == "FullyConnected" and ctx.dtype(node.inputs[0]) is DType.FLOAT_32
            and ctx.is_static(node.inputs[1]) and (not b_name or ctx.is_static(b_name))
            and ctx.dtype(node.inputs[1]) is DType.FLOAT_32)
