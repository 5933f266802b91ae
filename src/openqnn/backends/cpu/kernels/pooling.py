"""Pooling on channel-last activations: 2-D (NHWC) here, 3-D (NDHWC) in ``volumetric``.

A channel-last tensor permuted to channel-first is a channels_last view, as for the convolutions.
Every pool pads its input explicitly to exactly the extent the output windows read, so ceil mode and
asymmetric pads need no special cases: taps past the input see the pad value (-inf for max, 0 for
the sums). Average pools divide by a per-window count computed once, at prepare time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from openqnn.backends.cpu.kernels.registry import BuildContext, Step, Unsupported, kernel
from openqnn.backends.geometry import (
    PoolGeometry,
    spatial_index,
    to_channel_first,
    to_channel_last,
    window_sum,
)
from openqnn.ir.graph import Node

__all__ = ["build_pool", "pool2d", "pool_max2d_with_indices"]

_MAX_POOL: dict[int, Callable[..., torch.Tensor]] = {2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL: dict[int, Callable[..., torch.Tensor]] = {2: F.avg_pool2d, 3: F.avg_pool3d}


def _min_value(dtype: torch.dtype) -> float | int:
    return float("-inf") if dtype.is_floating_point else int(torch.iinfo(dtype).min)


def _counts(g: PoolGeometry, count_pad: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Divisors of an average pool: taps inside the input, or inside input + declared pads."""
    ones = torch.zeros(1, 1, *g.padded_size, dtype=torch.float64)
    if count_pad:
        region = tuple(slice(0, p[0] + i + p[1]) for p, i in zip(g.pads, g.in_size))
    else:
        region = tuple(slice(p[0], p[0] + i) for p, i in zip(g.pads, g.in_size))
    ones[spatial_index(region)] = 1
    return window_sum(ones, g).clamp_min(1).to(dtype=dtype, device=device)


def _implicit_pads(g: PoolGeometry) -> tuple[tuple[int, ...], bool] | None:
    """PyTorch's own padding (and ceil mode) that gives exactly ``g``'s windows, where there is one: the same pads
    on both sides of each axis, each at most half the window (PyTorch's limit), and the same output size."""
    pads = tuple(b for b, _ in g.pads)
    if any(b != e or 2 * b > d * (k - 1) + 1 for (b, e), k, d in zip(g.pads, g.k, g.d)):
        return None
    for ceil in (False, True):
        sizes = []
        for i, k, s, d, p in zip(g.in_size, g.k, g.s, g.d, pads):
            span = i + 2 * p - d * (k - 1) - 1
            o = (-(-span // s) if ceil else span // s) + 1
            if ceil and (o - 1) * s >= i + p:  # (PyTorch's rule: the last window starts inside)
                o -= 1
            sizes.append(o)
        if tuple(sizes) == g.out_size:
            return pads, ceil
    return None


def build_pool(node: Node, ctx: BuildContext, kind: str) -> Step:
    """An n-D pool step, ``kind`` one of max, avg, lp; the layout is channel-last in and out."""
    g = PoolGeometry.of(node, ctx.graph)
    pad = g.f_pad

    if kind == "max":
        max_pool = _MAX_POOL[g.n]
        direct = _implicit_pads(g) if ctx.dtype(node.inputs[0]).is_float else None
        if direct is not None:
            padding, ceil = direct

            def run_max_padded(x: torch.Tensor) -> torch.Tensor:  # (no padded copy of the input)
                return to_channel_last(max_pool(to_channel_first(x), g.k, g.s, padding, g.d, ceil))
            return Step(run_max_padded, [node.inputs[0]])

        def run_max(x: torch.Tensor) -> torch.Tensor:
            x = to_channel_first(x)
            if any(pad):
                x = F.pad(x, pad, value=_min_value(x.dtype))
            return to_channel_last(g.crop(max_pool(x, g.k, g.s, 0, g.d)))
        return Step(run_max, [node.inputs[0]])

    if not ctx.dtype(node.inputs[0]).is_float:
        raise Unsupported(f"{node.op_type} on {ctx.dtype(node.inputs[0]).name} input")

    if kind == "lp":
        p = float(node.attrs["p"])

        def run_lp(x: torch.Tensor) -> torch.Tensor:
            x = F.pad(to_channel_first(x), pad)
            return to_channel_last(window_sum(x.abs().pow(p), g).pow(1.0 / p))
        return Step(run_lp, [node.inputs[0]])

    counts = _counts(g, bool(node.attrs["count_pad_for_edges"]), ctx.torch_dtype(node.inputs[0]), ctx.device)

    def run_avg(x: torch.Tensor) -> torch.Tensor:
        x = F.pad(to_channel_first(x), pad)
        return to_channel_last(window_sum(x, g) / counts)

    return Step(run_avg, [node.inputs[0]])


_KINDS = {"PoolMax2d": "max", "PoolAvg2d": "avg", "PoolLp2d": "lp"}


@kernel("PoolMax2d", "PoolAvg2d", "PoolLp2d")
def pool2d(node: Node, ctx: BuildContext) -> Step:
    return build_pool(node, ctx, _KINDS[node.op_type])


@kernel("PoolMax2dWithIndices")
def pool_max2d_with_indices(node: Node, ctx: BuildContext) -> Step:
    """Max pool and, per output, the flat channel-first index of its maximum in the (unpadded) input."""
    g = PoolGeometry.of(node, ctx.graph)
    pad = g.f_pad
    (pt, _), (pl, _) = g.pads
    h, w = g.in_size
    wp = g.padded_size[1]
    column_major = node.attrs["storage_order"] == 1
    nb, _, _, c = ctx.shape(node.inputs[0])
    # offset of each (n, c) plane in the flattened N, C, H, W input
    plane = (torch.arange(nb * c, dtype=torch.int64, device=ctx.device) * (h * w)).view(nb, c, 1, 1)

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_channel_first(x)
        if any(pad):
            x = F.pad(x, pad, value=_min_value(x.dtype))
        y, idx = F.max_pool2d(x, g.k, g.s, 0, g.d, return_indices=True)
        y, idx = g.crop(y), g.crop(idx)
        row, col = idx // wp - pt, idx % wp - pl  # position in the unpadded input
        flat = col * h + row if column_major else row * w + col
        return to_channel_last(y), to_channel_last(flat + plane)

    return Step(run, [node.inputs[0]])
