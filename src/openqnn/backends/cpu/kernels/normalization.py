"""Normalizations and softmax."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from openqnn.backends.cpu import native
from openqnn.backends.cpu.kernels.conv import native_ok
from openqnn.backends.cpu.kernels.registry import BuildContext, Step, kernel, simple
from openqnn.ir.graph import Node


@kernel("Batchnorm")
def batchnorm(node: Node, ctx: BuildContext) -> Step:
    return simple(lambda x, w, b: torch.addcmul(b, x, w), node)  # channel-last: params broadcast on the last axis


def row_norm_size(node: Node, ctx: BuildContext) -> int:
    """The row size ``n`` when LayerNorm ``node`` normalizes its input's trailing axes with static (or no) scale and
    bias of ``n`` elements each (what the native kernel takes, alone or in place after a GEMM); else 0."""
    shape = ctx.shape(node.inputs[0])
    rank = len(shape)
    axes = sorted(a % rank for a in node.attrs["axes"]) if rank else []
    n = math.prod(shape[a] for a in axes)
    params = [x for x in node.inputs[1:3] if x]
    ok = (bool(axes) and axes == list(range(rank - len(axes), rank)) and n > 0
          and all(ctx.is_static(p) and math.prod(ctx.shape(p)) == n for p in params))
    return n if ok else 0


def native_layer_norm(node: Node, ctx: BuildContext) -> native.LayerNorm | None:
    """The native kernel for LayerNorm ``node`` where it runs there (float32 on the CPU, :func:`row_norm_size`)."""
    n = row_norm_size(node, ctx)
    if not n or not native_ok(ctx, node.inputs[0]):
        return None
    g = ctx.static(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
    b = ctx.static(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    return native.LayerNorm(n, g, b, float(node.attrs["epsilon"]))


@kernel("LayerNorm")
def layer_norm(node: Node, ctx: BuildContext) -> Step:
    axes = sorted(a % len(ctx.shape(node.inputs[0])) for a in node.attrs["axes"])
    rank = len(ctx.shape(node.inputs[0]))
    eps = node.attrs["epsilon"]
    trailing = axes == list(range(rank - len(axes), rank))
    norm_shape = tuple(ctx.shape(node.inputs[0])[a] for a in axes)
    has_g = len(node.inputs) > 1 and bool(node.inputs[1])
    has_b = len(node.inputs) > 2 and bool(node.inputs[2])
    fast = native_layer_norm(node, ctx)
    if fast is not None:
        kernel_ = fast

        def run_native(x: torch.Tensor) -> torch.Tensor:
            if x.dtype is torch.float32:
                return kernel_.run(x)
            # (another dtype handed to the step, as a float64 reference does: PyTorch's own)
            g, b = kernel_.g, kernel_.b
            return F.layer_norm(x, norm_shape, None if g is None else g.reshape(norm_shape).to(x.dtype),
                                None if b is None else b.reshape(norm_shape).to(x.dtype), eps)

        return Step(run_native, [node.inputs[0]], path="native")

    def run(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        it = iter(params)
        g = next(it) if has_g else None
        b = next(it) if has_b else None
        if trailing and (g is None or tuple(g.shape) == norm_shape) and (b is None or tuple(b.shape) == norm_shape):
            return F.layer_norm(x, norm_shape, g, b, eps)
        mean = x.mean(dim=axes, keepdim=True)
        var = (x - mean).square().mean(dim=axes, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + eps)
        if g is not None:
            y = y * g
        if b is not None:
            y = y + b
        return y

    return Step(run, [x for x in node.inputs if x])


@kernel("RmsNorm")
def rms_norm(node: Node, ctx: BuildContext) -> Step:
    rank = len(ctx.shape(node.inputs[0]))
    axes = sorted(a % rank for a in node.attrs["axes"])
    eps = node.attrs["epsilon"]
    has_g = len(node.inputs) > 1 and bool(node.inputs[1])
    has_b = len(node.inputs) > 2 and bool(node.inputs[2])

    def run(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        it = iter(params)
        y = x * torch.rsqrt(x.square().mean(dim=axes, keepdim=True) + eps)
        if has_g:
            y = y * next(it)
        if has_b:
            y = y + next(it)
        return y

    return Step(run, [x for x in node.inputs if x])


@kernel("Softmax", "LogSoftmax")
def softmax(node: Node, ctx: BuildContext) -> Step:
    axis, beta = node.attrs["axis"], node.attrs["beta"]
    fn = F.softmax if node.op_type == "Softmax" else F.log_softmax
    if beta == 1.0:
        return simple(lambda x: fn(x, dim=axis), node)
    return simple(lambda x: fn(x * beta, dim=axis), node)
