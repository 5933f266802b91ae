"""Reductions, arg-reductions, scans and TopK."""

from __future__ import annotations

import torch

from openqnn.backends.cpu.kernels.registry import BuildContext, Step, kernel, simple
from openqnn.ir.graph import Node


@kernel("ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSumExp", "ReduceSumSquare")
def reduce(node: Node, ctx: BuildContext) -> Step:
    rank = len(ctx.shape(node.inputs[0]))
    axes = tuple(sorted(a % rank for a in node.attrs["axes"])) if rank else ()
    keep = node.attrs["keep_dims"]
    out_shape = ctx.shape(node.outputs[0])
    op = node.op_type

    def run(x: torch.Tensor) -> torch.Tensor:
        if not axes:
            y = x
        elif op == "ReduceMax":
            y = torch.amax(x, dim=axes, keepdim=keep)
        elif op == "ReduceMin":
            y = torch.amin(x, dim=axes, keepdim=keep)
        elif op == "ReduceMean":
            y = torch.mean(x, dim=axes, keepdim=keep)
        elif op == "ReduceSum":
            y = torch.sum(x, dim=axes, keepdim=keep, dtype=x.dtype)
        elif op == "ReduceProd":
            y = x
            for a in sorted(axes, reverse=True):
                y = torch.prod(y, dim=a, keepdim=keep, dtype=x.dtype)
        elif op == "ReduceL1":
            y = torch.sum(x.abs(), dim=axes, keepdim=keep, dtype=x.dtype)
        elif op == "ReduceL2":
            y = torch.sqrt(torch.sum(x * x, dim=axes, keepdim=keep, dtype=x.dtype))
        elif op == "ReduceSumSquare":
            y = torch.sum(x * x, dim=axes, keepdim=keep, dtype=x.dtype)
        else:
            y = torch.logsumexp(x, dim=axes, keepdim=keep)
        return y.reshape(out_shape)

    return simple(run, node)


@kernel("Argmax", "Argmin")
def arg_reduce(node: Node, ctx: BuildContext) -> Step:
    axis, keep, last = node.attrs["axis"], node.attrs["keep_dims"], node.attrs["select_last_index"]
    largest = node.op_type == "Argmax"

    def run(x: torch.Tensor) -> torch.Tensor:
        if last:
            x = torch.flip(x, (axis,))
        idx = torch.argmax(x, axis, keep) if largest else torch.argmin(x, axis, keep)
        if last:
            idx = x.shape[axis] - 1 - idx
        return idx.to(torch.int32)

    return simple(run, node)


@kernel("CumulativeSum")
def cumsum(node: Node, ctx: BuildContext) -> Step:
    axis, exclusive, reverse = node.attrs["axis"], node.attrs["exclusive"], node.attrs["reverse"]

    def run(x: torch.Tensor) -> torch.Tensor:
        if reverse:
            x = torch.flip(x, (axis,))
        y = torch.cumsum(x, axis, dtype=x.dtype)
        if exclusive:
            y = y - x
        return torch.flip(y, (axis,)) if reverse else y

    return simple(run, node)


@kernel("TopK")
def topk(node: Node, ctx: BuildContext) -> Step:
    k, axis, largest, srt = node.attrs["k"], node.attrs["axis"], node.attrs["largest"], node.attrs["sorted"]

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, i = torch.topk(x, k, axis, largest, True)
        return v, i.to(torch.int32)

    return simple(run, node)
