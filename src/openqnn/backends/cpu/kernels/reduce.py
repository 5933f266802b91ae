"""Reductions, arg-reductions, scans and TopK."""

from __future__ import annotations

import math

import torch

from openqnn.backends.cpu import native
from openqnn.backends.cpu.kernels.conv import native_ok
from openqnn.backends.cpu.kernels.registry import BuildContext, Step, kernel, simple
from openqnn.ir.graph import Node


def _no_axes(op: str, x: torch.Tensor) -> torch.Tensor:
    """A reduction over no axes: each element reduced on its own."""
    if op in ("ReduceL1", "ReduceL2"):
        return x.abs()
    if op == "ReduceSumSquare":
        return x * x
    return x.clone()


def _empty_value(op: str, dtype: torch.dtype) -> float | int | bool:
    """What ONNX gives for a reduction over no elements."""
    if op in ("ReduceMax", "ReduceMin"):
        big = op == "ReduceMin"
        if dtype == torch.bool:
            return big
        if dtype.is_floating_point:
            return float("inf") if big else float("-inf")
        info = torch.iinfo(dtype)
        return info.max if big else info.min
    if op == "ReduceProd":
        return 1
    if op == "ReduceMean":
        return float("nan") if dtype.is_floating_point else 0
    if op == "ReduceLogSumExp":
        return float("-inf") if dtype.is_floating_point else 0
    return 0


@kernel("ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSumExp", "ReduceSumSquare")
def reduce(node: Node, ctx: BuildContext) -> Step:
    rank = len(ctx.shape(node.inputs[0]))
    axes = tuple(sorted({a % rank for a in node.attrs["axes"]})) if rank else ()
    keep = node.attrs["keep_dims"]
    in_shape = ctx.shape(node.inputs[0])
    count = 1
    for a in axes:
        count *= in_shape[a]
    out_shape = ctx.shape(node.outputs[0])
    op = node.op_type
    if op in ("ReduceMean", "ReduceSum") and count and axes and axes == tuple(range(axes[0], axes[-1] + 1)) \
            and native_ok(ctx, node.inputs[0]):
        # a middle block of axes of a contiguous float32 tensor: one native pass, [outer, rows, inner]
        sums = native.RowSum(math.prod(in_shape[:axes[0]]), count, math.prod(in_shape[axes[-1] + 1:]),
                             op == "ReduceMean", out_shape)
        return Step(sums.run, [node.inputs[0]], path="native")

    def run(x: torch.Tensor) -> torch.Tensor:
        if count == 0:  # a reduction over an empty set gives the reduction's identity
            return torch.full(out_shape, _empty_value(op, x.dtype), dtype=x.dtype, device=x.device)
        if not axes:
            y = _no_axes(op, x)
        elif op == "ReduceMax":
            y = torch.amax(x, dim=axes, keepdim=keep)
        elif op == "ReduceMin":
            y = torch.amin(x, dim=axes, keepdim=keep)
        elif op == "ReduceMean":
            if x.dtype.is_floating_point:
                y = torch.mean(x, dim=axes, keepdim=keep)
            else:  # integer mean: the integer sum divided, truncating, as ONNX Runtime does
                y = torch.div(torch.sum(x, dim=axes, keepdim=keep, dtype=x.dtype), count, rounding_mode="trunc")
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
    rank = len(ctx.shape(node.inputs[0]))
    axis = axis % rank if rank else 0
    size = ctx.shape(node.inputs[0])[axis] if rank else 1
    out_shape = ctx.shape(node.outputs[0])
    largest = node.op_type == "Argmax"

    def run(x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bool:
            x = x.to(torch.uint8)
        if last:  # the first extreme of the flipped tensor is the last one of x
            x = torch.flip(x, (axis,))
        idx = torch.argmax(x, axis, keep) if largest else torch.argmin(x, axis, keep)
        if last:
            idx = (size - 1) - idx
        return idx.to(torch.int32).reshape(out_shape)

    return simple(run, node)


@kernel("CumulativeSum")
def cumsum(node: Node, ctx: BuildContext) -> Step:
    axis, exclusive, reverse = node.attrs["axis"], node.attrs["exclusive"], node.attrs["reverse"]
    rank = len(ctx.shape(node.inputs[0]))
    axis = axis % rank if rank else 0

    def run(x: torch.Tensor) -> torch.Tensor:
        if rank == 0:
            return torch.zeros_like(x) if exclusive else x.clone()
        if reverse:
            x = torch.flip(x, (axis,))
        if exclusive:  # shift by one along axis: y[i] = sum(x[:i]), exact (no y - x rounding)
            n = x.shape[axis]
            x = torch.cat([torch.zeros_like(x.narrow(axis, 0, min(n, 1))), x.narrow(axis, 0, max(n - 1, 0))], axis)
        y = torch.cumsum(x, axis, dtype=x.dtype)
        return torch.flip(y, (axis,)) if reverse else y

    return simple(run, node)


@kernel("TopK")
def topk(node: Node, ctx: BuildContext) -> Step:
    k, axis, largest = node.attrs["k"], node.attrs["axis"], node.attrs["largest"]
    rank = len(ctx.shape(node.inputs[0]))
    axis = axis % rank if rank else 0

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # a stable sort: among equal values the lower index comes first, as ONNX requires (torch.topk
        # leaves the order of ties unspecified). Unsorted output (sorted=0) is returned sorted too.
        v, i = torch.sort(x, dim=axis, descending=largest, stable=True)
        return v.narrow(axis, 0, k).contiguous(), i.narrow(axis, 0, k).to(torch.int32)

    return simple(run, node)
