"""FullyConnected and MatMul."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from openqnn.backends.cpu.kernels.registry import BuildContext, Step, kernel
from openqnn.ir.graph import Node


@kernel("FullyConnected")
def fully_connected(node: Node, ctx: BuildContext) -> Step:
    x_name, w_name = node.inputs[0], node.inputs[1]
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    out_shape = ctx.graph.tensors[node.outputs[0]].shape
    w_static = ctx.static(w_name).contiguous() if ctx.is_static(w_name) else None
    b_static = ctx.static(b_name) if b_name and ctx.is_static(b_name) else None
    runtime = [x_name] + ([w_name] if w_static is None else []) + ([b_name] if b_name and b_static is None else [])

    def run(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        it = iter(rest)
        w = w_static if w_static is not None else next(it)
        b = b_static if b_static is not None else (next(it) if b_name else None)
        if x.dtype.is_floating_point:
            y = F.linear(x, w, b)
        else:
            y = torch.matmul(x, w.t()) + (b if b is not None else 0)
        return y.reshape(out_shape)

    return Step(run, runtime)


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
