"""2-D pooling on NHWC activations (channels_last NCHW views, as for convolutions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from openqnn.backends.cpu.kernels.registry import BuildContext, Step, Unsupported, kernel
from openqnn.ir.graph import Node


@kernel("PoolMax2d", "PoolAvg2d", "PoolLp2d")
def pool2d(node: Node, ctx: BuildContext) -> Step:
    k = tuple(node.attrs["filter_size"])
    s = tuple(node.attrs["stride"])
    d = tuple(node.attrs["dilation"])
    (pt, pb), (pl, pr) = node.attrs["pad_amount"]
    oh, ow = ctx.shape(node.outputs[0])[1:3]
    ih, iw = ctx.shape(node.inputs[0])[1:3]
    # Explicit padding to exactly the extent the output windows read, so ceil mode and asymmetric
    # pads need no special cases: windows that run past the input see pad values (-inf / 0).
    need_h = (oh - 1) * s[0] + d[0] * (k[0] - 1) + 1
    need_w = (ow - 1) * s[1] + d[1] * (k[1] - 1) + 1
    extra_b, extra_r = max(0, need_h - ih - pt), max(0, need_w - iw - pl)
    pad = (pl, extra_r, pt, extra_b)
    op = node.op_type

    if op == "PoolMax2d":
        def run(x: torch.Tensor) -> torch.Tensor:
            x = x.permute(0, 3, 1, 2)
            if any(pad):
                x = F.pad(x, pad, value=float("-inf") if x.dtype.is_floating_point else int(torch.iinfo(x.dtype).min))
            return F.max_pool2d(x, k, s, 0, d)[:, :, :oh, :ow].permute(0, 2, 3, 1)
        return Step(run, [node.inputs[0]])

    if op == "PoolLp2d":
        if d != (1, 1):
            raise Unsupported("dilated PoolLp2d")
        p = float(node.attrs["p"])

        def run_lp(x: torch.Tensor) -> torch.Tensor:
            x = F.pad(x.permute(0, 3, 1, 2), pad)
            y = F.avg_pool2d(x.abs().pow(p), k, s, 0) * (k[0] * k[1])
            return y.pow(1.0 / p)[:, :, :oh, :ow].permute(0, 2, 3, 1)
        return Step(run_lp, [node.inputs[0]])

    if d != (1, 1):
        raise Unsupported(f"dilated {op}")
    count_pad = node.attrs["count_pad_for_edges"]
    # divisor: taps inside the input (count_pad False) or inside input + declared pads (True)
    ones = torch.zeros(1, 1, ih + pt + extra_b, iw + pl + extra_r)
    if count_pad:
        ones[:, :, : pt + ih + pb, : pl + iw + pr] = 1
    else:
        ones[:, :, pt:pt + ih, pl:pl + iw] = 1
    counts = (F.avg_pool2d(ones, k, s, 0, divisor_override=1)[:, :, :oh, :ow]).to(ctx.torch_dtype(node.inputs[0]))

    def run_avg(x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x.permute(0, 3, 1, 2), pad)
        sums = F.avg_pool2d(x, k, s, 0, divisor_override=1)
        return (sums[:, :, :oh, :ow] / counts).permute(0, 2, 3, 1)

    return Step(run_avg, [node.inputs[0]])
