"""Spatial kernels: Resize, InstanceNorm, GroupNorm, Lrn, L2Norm, LpNorm (channel-last: channels last).

Resize is separable: for every resized axis the builder computes, once, either the source index of
each output position (nearest) or an interpolation matrix ``[out, in]`` (linear, cubic, antialiased
filters), and the kernel applies them axis by axis. The coordinate arithmetic follows ONNX Runtime's
CPU kernel step for step (float32 coordinates, the same rounding and edge rules), so the results
match it, not just the ONNX text.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from openqnn.backends.cpu.kernels.registry import BuildContext, Step, Unsupported, kernel, simple
from openqnn.backends.geometry import resize_plan
from openqnn.ir.graph import Node

_F32 = np.float32


# -- Resize ------------------------------------------------------------------------------------------

@kernel("Resize")
def resize(node: Node, ctx: BuildContext) -> Step:
    a = node.attrs
    x_name = node.inputs[0]
    in_shape, out_shape = ctx.shape(x_name), tuple(a["output_shape"])
    interp = a["interpolation_mode"]
    if interp not in ("nearest", "linear", "cubic"):
        raise Unsupported(f"Resize interpolation_mode {interp!r}")
    if interp != "nearest" and not ctx.dtype(x_name).is_float:
        raise Unsupported(f"Resize {interp} on {ctx.dtype(x_name).name} input")
    if tuple(in_shape) == out_shape:  # nothing is resized (ORT copies, whatever the scales say)
        return simple(lambda x: x, node)
    dtype = ctx.torch_dtype(x_name)
    axes, mask_np = resize_plan(a, tuple(in_shape), out_shape)
    plan: list[tuple[int, str, torch.Tensor]] = [  # (axis, "index" or "matrix", data)
        (r.axis, "index", torch.from_numpy(r.index).to(ctx.device)) if r.index is not None
        else (r.axis, "matrix", torch.from_numpy(r.matrix).to(ctx.device, dtype))
        for r in axes
    ]
    mask = torch.from_numpy(np.ascontiguousarray(mask_np)).to(ctx.device) if mask_np is not None else None
    fill = a["extrapolation_value"]

    def run(t: torch.Tensor) -> torch.Tensor:
        for ax, kind, data in plan:
            if kind == "index":
                t = torch.index_select(t, ax, data)
            else:
                t = torch.tensordot(t, data, dims=([ax], [1])).movedim(-1, ax)
        if mask is not None:
            t = torch.where(mask, torch.tensor(fill, dtype=t.dtype, device=t.device), t)
        return t.contiguous()

    return simple(run, node)


# -- normalizations -----------------------------------------------------------------------------------

@kernel("InstanceNorm")
def instance_norm(node: Node, ctx: BuildContext) -> Step:
    eps = node.attrs["epsilon"]
    if len(ctx.shape(node.inputs[0])) < 3:
        raise Unsupported("InstanceNorm needs a rank >= 3 input (batch, spatial..., channels)")

    def run(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = F.instance_norm(x.movedim(-1, 1), weight=w.reshape(-1), bias=b.reshape(-1), eps=eps)
        return y.movedim(1, -1)

    return simple(run, node)


@kernel("GroupNorm")
def group_norm(node: Node, ctx: BuildContext) -> Step:
    eps, groups = node.attrs["epsilon"], node.attrs["group"]
    shape = ctx.shape(node.inputs[0])
    if len(shape) < 2 or shape[-1] % groups:
        raise Unsupported(f"GroupNorm of {shape} in {groups} groups")

    def run(x: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = F.group_norm(x.movedim(-1, 1), groups, g.reshape(-1), b.reshape(-1), eps)
        return y.movedim(1, -1)

    return simple(run, node)


@kernel("Lrn")
def lrn(node: Node, ctx: BuildContext) -> Step:
    """out = in / (bias + alpha * sum of in^2 over the 2*radius+1 channels around)^beta (channels last)."""
    alpha, beta, bias, r = (node.attrs[k] for k in ("alpha", "beta", "bias", "radius"))

    def run(x: torch.Tensor) -> torch.Tensor:
        sq = F.pad(x * x, (r, r))
        window = sq.unfold(-1, 2 * r + 1, 1).sum(-1)
        return x / (bias + alpha * window).pow(beta)

    return simple(run, node)


@kernel("L2Norm")
def l2_norm(node: Node, ctx: BuildContext) -> Step:
    """out = in / sqrt(max(sum(in^2), epsilon)) over axes."""
    rank = len(ctx.shape(node.inputs[0]))
    axes = sorted({a % rank for a in node.attrs["axes"]})
    eps = node.attrs["epsilon"]

    def run(x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.clamp_min((x * x).sum(dim=axes, keepdim=True), eps))

    return simple(run, node)


@kernel("LpNorm")
def lp_norm(node: Node, ctx: BuildContext) -> Step:
    """out = in / ||in||_p along axis (0 where the norm is 0)."""
    rank = len(ctx.shape(node.inputs[0]))
    axis, p = node.attrs["axis"] % rank, node.attrs["p"]
    if p not in (1, 2):
        raise Unsupported(f"LpNorm with p={p}")

    def run(x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, ord=p, dim=axis, keepdim=True)
        return torch.where(norm == 0, torch.zeros_like(x), x / norm)

    return simple(run, node)
