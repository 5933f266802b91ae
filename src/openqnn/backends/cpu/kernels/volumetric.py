"""3-D (volumetric) ops on NDHWC activations: Conv3d, TransposeConv3d, PoolMax3d, PoolAvg3d.

As in 2-D, a channel-last tensor permuted to NCDHW is a channels_last_3d view that PyTorch's
convolutions and pools run without copies; the result permuted back is NDHWC again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from openqnn.backends.cpu.kernels.pooling import build_pool
from openqnn.backends.cpu.kernels.registry import BuildContext, LayerOperands, Step, Unsupported, kernel
from openqnn.backends.geometry import to_channel_first, to_channel_last
from openqnn.ir.graph import Node

__all__ = ["conv3d", "pool3d", "transpose_conv3d"]


def _inputs(node: Node, ctx: BuildContext) -> tuple[str, str, str]:
    x_name, w_name = node.inputs[0], node.inputs[1]
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    if not ctx.dtype(x_name).is_float:
        raise Unsupported(f"{node.op_type} on {ctx.dtype(x_name).name} input")
    return x_name, w_name, b_name


@kernel("Conv3d")
def conv3d(node: Node, ctx: BuildContext) -> Step:
    x_name, w_name, b_name = _inputs(node, ctx)
    stride, dilation, groups = tuple(node.attrs["stride"]), tuple(node.attrs["dilation"]), node.attrs["group"]
    pads = [tuple(p) for p in node.attrs["pad_amount"]]
    symmetric = all(a == b for a, b in pads)
    padding = tuple(a for a, _ in pads) if symmetric else (0, 0, 0)
    explicit = None if symmetric else tuple(v for a, b in reversed(pads) for v in (a, b))

    # [kd, kh, kw, cin/g, cout] -> [cout, cin/g, kd, kh, kw]
    ops = LayerOperands.of(ctx, w_name, b_name, lambda t: t.permute(4, 3, 0, 1, 2).contiguous(
        memory_format=torch.channels_last_3d))

    def run(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        w, b = ops.take(iter(rest))
        x = to_channel_first(x)
        if explicit is not None:
            x = F.pad(x, explicit)
        return to_channel_last(F.conv3d(x, w, b, stride, padding, dilation, groups))

    return Step(run, [x_name, *ops.runtime])


@kernel("TransposeConv3d")
def transpose_conv3d(node: Node, ctx: BuildContext) -> Step:
    x_name, w_name, b_name = _inputs(node, ctx)
    stride, dilation, groups = tuple(node.attrs["stride"]), tuple(node.attrs["dilation"]), node.attrs["group"]
    begin = [int(p[0]) for p in node.attrs["pad_amount"]]
    out_size = ctx.shape(node.outputs[0])[1:4]

    # [kd, kh, kw, cin, cout/g] -> [cin, cout/g, kd, kh, kw]
    ops = LayerOperands.of(ctx, w_name, b_name, lambda t: t.permute(3, 4, 0, 1, 2).contiguous())

    def run(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        w, b = ops.take(iter(rest))
        # the full (unpadded) transposed convolution, cropped by the begin pads to the output size;
        # output_padding positions past its end receive no contributions, only the bias
        y = F.conv_transpose3d(to_channel_first(x), w, None, stride, 0, 0, groups, dilation)
        grow = [max(0, p + o - s) for p, o, s in zip(begin, out_size, y.shape[2:])]
        if any(grow):
            y = F.pad(y, (0, grow[2], 0, grow[1], 0, grow[0]))
        y = y[:, :, begin[0]:begin[0] + out_size[0], begin[1]:begin[1] + out_size[1],
              begin[2]:begin[2] + out_size[2]]
        if b is not None:
            y = y + b.view(1, -1, 1, 1, 1)
        return to_channel_last(y)

    return Step(run, [x_name, *ops.runtime])


@kernel("PoolMax3d", "PoolAvg3d")
def pool3d(node: Node, ctx: BuildContext) -> Step:
    return build_pool(node, ctx, "max" if node.op_type == "PoolMax3d" else "avg")
