"""Convolutions on NHWC activations.

A channel-last tensor permuted to NCHW is an NCHW tensor in channels_last memory, which PyTorch's
oneDNN convolutions run natively; the result permuted back is contiguous NHWC again. No copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from openqnn.backends.cpu.kernels.registry import BuildContext, Step, Unsupported, kernel
from openqnn.ir.graph import Node


def _padding(node: Node) -> tuple[tuple[int, int] | None, tuple[int, int, int, int] | None]:
    """Symmetric padding for the conv call, or an explicit F.pad (left, right, top, bottom)."""
    (pt, pb), (pl, pr) = node.attrs["pad_amount"]
    if pt == pb and pl == pr:
        return (pt, pl), None
    return (0, 0), (pl, pr, pt, pb)


def _weights(ctx: BuildContext, name: str, perm: tuple[int, ...]) -> torch.Tensor | None:
    if not ctx.is_static(name):
        return None
    return ctx.static(name).permute(*perm).contiguous(memory_format=torch.channels_last)


@kernel("Conv2d", "DepthWiseConv2d")
def conv2d(node: Node, ctx: BuildContext) -> Step:
    x_name, w_name = node.inputs[0], node.inputs[1]
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    if not ctx.dtype(x_name).is_float:
        raise Unsupported(f"{node.op_type} on {ctx.dtype(x_name).name} input")
    stride, dilation = tuple(node.attrs["stride"]), tuple(node.attrs["dilation"])
    groups = ctx.shape(x_name)[3] if node.op_type == "DepthWiseConv2d" else node.attrs["group"]
    padding, explicit = _padding(node)
    w_static = _weights(ctx, w_name, (3, 2, 0, 1))  # [kh, kw, cin/g, cout] -> [cout, cin/g, kh, kw]
    b_static = ctx.static(b_name) if b_name and ctx.is_static(b_name) else None
    runtime = [x_name]
    if w_static is None:
        runtime.append(w_name)
    if b_name and b_static is None:
        runtime.append(b_name)

    def run(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        it = iter(rest)
        w = w_static if w_static is not None else next(it).permute(3, 2, 0, 1)
        b = b_static if b_static is not None else (next(it) if b_name else None)
        x = x.permute(0, 3, 1, 2)
        if explicit is not None:
            x = F.pad(x, explicit)
        return F.conv2d(x, w, b, stride, padding, dilation, groups).permute(0, 2, 3, 1)

    return Step(run, runtime)


@kernel("TransposeConv2d")
def transpose_conv2d(node: Node, ctx: BuildContext) -> Step:
    x_name, w_name = node.inputs[0], node.inputs[1]
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    stride, dilation = tuple(node.attrs["stride"]), tuple(node.attrs["dilation"])
    out_pad, groups = tuple(node.attrs["output_padding"]), node.attrs["group"]
    (pt, pb), (pl, pr) = node.attrs["pad_amount"]
    kh, kw, cin, cout_g = ctx.shape(w_name)
    oh, ow = ctx.graph.tensors[node.outputs[0]].shape[1:3]

    def torch_weight(w: torch.Tensor) -> torch.Tensor:  # [kh, kw, cin, cout/g] -> [cin, cout/g, kh, kw]
        return w.permute(2, 3, 0, 1).contiguous()

    w_static = torch_weight(ctx.static(w_name)) if ctx.is_static(w_name) else None
    b_static = ctx.static(b_name) if b_name and ctx.is_static(b_name) else None
    runtime = [x_name] + ([w_name] if w_static is None else []) + ([b_name] if b_name and b_static is None else [])

    def run(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        it = iter(rest)
        w = w_static if w_static is not None else torch_weight(next(it))
        b = b_static if b_static is not None else (next(it) if b_name else None)
        # the full (unpadded) transposed convolution, cropped by the pads; output_padding positions at
        # the end receive no contributions, only the bias
        y = F.conv_transpose2d(x.permute(0, 3, 1, 2), w, None, stride, 0, 0, groups, dilation)
        grow_h, grow_w = max(0, pt + oh - y.shape[2]), max(0, pl + ow - y.shape[3])
        if grow_h or grow_w:
            y = F.pad(y, (0, grow_w, 0, grow_h))
        y = y[:, :, pt:pt + oh, pl:pl + ow]
        if b is not None:
            y = y + b.view(1, -1, 1, 1)
        return y.permute(0, 2, 3, 1)

    del pb, pr, kh, kw, cin, cout_g, out_pad
    return Step(run, runtime)
