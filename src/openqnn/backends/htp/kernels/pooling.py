"""htp integer kernels: pooling (see registry.py for the conventions).

Channel-last, 2-D (PoolMax2d, PoolAvg2d: NHWC) and 3-D (PoolMax3d, PoolAvg3d: NDHWC), with the cpu
kernel's window geometry (explicit pads, ceil mode, dilation).

- Max pools: the maximum of q over the window's taps inside the input (padding is never chosen; a
  window entirely in the padding gives the encoding's qmin), then a requantization when the output encoding differs from the input's (normally they are shared).
- Average pools: S = sum over the window of (q - z_in), padding counting as real 0; n = the taps
  inside the input, or inside input + declared pads with ``count_pad_for_edges`` (the cpu kernel's
  divisor). With equal encodings the average is rounded half away from zero in the signed storage
  domain of TFLite's int8 / int16 models (values q - c, c = 2^(bitwidth - 1)), as TFLite's reference
  AveragePool does: T = S + n * (z - c); q_out = c + (T >= 0 ? (T + n/2) / n : -((-T + n/2) / n)),
  clamped. With different encodings: one rounding, q_out = clamp(z_out + mbqm(S, M_n, shift_n)),
  (M_n, shift_n) = quantize_multiplier(s_in / (s_out * n)).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from openqnn.backends.geometry import PoolGeometry, to_channel_first, to_channel_last, window_sum
from openqnn.backends.htp import native
from openqnn.backends.htp.fixedpoint import mbqm_np, mbqm_t, quantize_multiplier
from openqnn.backends.htp.kernels.common import Requant, c_array, quantized_io, to_storage
from openqnn.backends.htp.kernels.registry import HtpBuildContext, HtpStep, QParams, Unsupported, htp_kernel
from openqnn.backends.htp.kernels.scratch import scratch, step_buffer
from openqnn.ir.graph import Node


def _geometry(node: Node, ctx: HtpBuildContext) -> PoolGeometry:
    n = len(node.attrs["filter_size"])
    return PoolGeometry(
        tuple(int(v) for v in node.attrs["filter_size"]), tuple(int(v) for v in node.attrs["stride"]),
        tuple(int(v) for v in node.attrs["dilation"]), tuple((int(a), int(b)) for a, b in node.attrs["pad_amount"]),
        tuple(ctx.shape(node.inputs[0])[1:1 + n]), tuple(ctx.shape(node.outputs[0])[1:1 + n]))


def _pad_widths(g: PoolGeometry) -> list[tuple[int, int]]:
    """Per spatial axis: the padding before and after the input that the windows read."""
    return [(p[0], e) for p, e in zip(g.pads, g.end_pads)]


def _tap_slices(g: PoolGeometry) -> list[tuple[slice, ...]]:
    """Per window tap: the spatial slices of the padded input that it reads for every output."""
    return [tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(tap, g.d, g.out_size, g.s))
            for tap in itertools.product(*(range(k) for k in g.k))]


def _pad_np(x: np.ndarray, g: PoolGeometry, value: int) -> np.ndarray:
    """Channel-last x padded on its spatial axes to exactly what the windows read."""
    return np.pad(x, [(0, 0), *_pad_widths(g), (0, 0)], constant_values=value)


def _taps_np(xp: np.ndarray, g: PoolGeometry) -> Iterator[np.ndarray]:
    """The window taps of a padded channel-last array: one [N, *out, C] slice per tap."""
    everything = slice(None)
    for sl in _tap_slices(g):
        index = (everything, *sl)
        yield xp[index]


def _counts(g: PoolGeometry, count_pad: bool) -> np.ndarray:
    """Divisor of every output window (int64, shape out_size)."""
    ones = np.zeros(g.padded_size, dtype=np.int64)
    if count_pad:
        region = tuple(slice(0, p[0] + i + p[1]) for p, i in zip(g.pads, g.in_size))
    else:
        region = tuple(slice(p[0], p[0] + i) for p, i in zip(g.pads, g.in_size))
    ones[region] = 1
    total = np.zeros(g.out_size, dtype=np.int64)
    for sl in _tap_slices(g):
        total = total + ones[sl]
    return np.maximum(total, 1)


def _check(node: Node, ctx: HtpBuildContext, n: int) -> tuple[QParams, QParams, Requant, PoolGeometry]:
    qi, qo = quantized_io(node, ctx)
    rank = len(ctx.shape(node.inputs[0]))
    if rank != n + 2:
        raise Unsupported(f"{node.op_type} of a rank-{rank} input")
    return qi, qo, Requant.between(qi, qo), _geometry(node, ctx)


def _build_max(node: Node, ctx: HtpBuildContext, n: int) -> HtpStep:
    qi, _, rq, g = _check(node, ctx, n)
    low = qi.qmin - 1  # below every value: never the maximum

    def reference(q: np.ndarray) -> np.ndarray:
        xp = _pad_np(np.asarray(q, dtype=np.int64), g, low)
        y: np.ndarray | None = None
        for tap in _taps_np(xp, g):
            y = tap if y is None else np.maximum(y, tap)
        assert y is not None  # a window entirely in the padding gives qmin
        return c_array(rq.np(np.maximum(y, qi.qmin)))

    widths = _pad_widths(g)
    padded = any(a or b for a, b in widths)
    everything = slice(None)
    inner = (everything, *(slice(a, a + i) for (a, _), i in zip(widths, g.in_size)))
    taps = [(everything, *sl) for sl in _tap_slices(g)]

    def fast(q: torch.Tensor) -> torch.Tensor:
        # the maximum over the taps of the input padded with qmin (the same as never choosing padding,
        # since the result is at least qmin), in the storage type, channels last
        if padded:
            xp = scratch("maxpad", (q.shape[0], *(a + i + b for (a, b), i in zip(widths, g.in_size)), q.shape[-1]),
                         q.dtype, q.device).fill_(qi.qmin)
            xp[inner] = q
        else:
            xp = q
        y = xp[taps[0]].clone(memory_format=torch.contiguous_format)
        for sl in taps[1:]:
            torch.maximum(y, xp[sl], out=y)
        return rq.t(y).contiguous()

    if n != 2 or not rq.identity or qi.bitwidth != 8 or ctx.device.type != "cpu" or native.library() is None:
        return HtpStep(reference, fast, [node.inputs[0]], list(node.outputs), node.name, node.op_type)
    # 8-bit codes, 2-D, the output encoding the input's: in C
    (kh, kw), (sh, sw), (dh, dw), ((pt, _), (pl, _)) = g.k, g.s, g.d, g.pads
    nb, c = ctx.shape(node.inputs[0])[0], ctx.shape(node.inputs[0])[-1]
    pool = native.MaxPool2d((nb, *g.in_size, c, kh, kw, sh, sw, dh, dw, pt, pl, *g.out_size), qi.qmin)
    output = step_buffer((nb, *g.out_size, c), ctx.device)

    def fast_native(q: torch.Tensor) -> torch.Tensor:
        return pool.run(q, output()) if pool.accepts(q) else fast(q)

    return HtpStep(reference, fast_native, [node.inputs[0]], list(node.outputs), node.name, node.op_type)


def _build_avg(node: Node, ctx: HtpBuildContext, n: int) -> HtpStep:
    qi, qo, rq, g = _check(node, ctx, n)
    z_in = int(qi.zero_point[0])
    counts = _counts(g, bool(node.attrs["count_pad_for_edges"]))
    cshape = (1, *g.out_size, 1)
    counts_b = counts.reshape(cshape)
    counts_t = torch.from_numpy(counts_b).to(ctx.device)
    qmin, qmax = qo.qmin, qo.qmax

    if rq.identity:
        c = 1 << (qi.bitwidth - 1)
        bias_b = counts_b * (z_in - c)
        bias_t = torch.from_numpy(bias_b).to(ctx.device)

        def finish_np(s: np.ndarray) -> np.ndarray:
            t = s + bias_b
            r = np.where(t >= 0, (t + counts_b // 2) // counts_b, -((-t + counts_b // 2) // counts_b))
            return np.clip(r + c, qmin, qmax)

        def finish_t(s: torch.Tensor) -> torch.Tensor:
            t = s + bias_t
            half = counts_t // 2
            r = torch.where(t >= 0, torch.div(t + half, counts_t, rounding_mode="floor"),
                            -torch.div(-t + half, counts_t, rounding_mode="floor"))
            return torch.clamp(r + c, qmin, qmax)
    else:
        ratio = float(qi.scale[0]) / float(qo.scale[0])
        pairs = {int(k): quantize_multiplier(ratio / int(k)) for k in np.unique(counts)}
        mult_b = np.vectorize(lambda k: pairs[int(k)][0], otypes=[np.int64])(counts_b)
        shift_b = np.vectorize(lambda k: pairs[int(k)][1], otypes=[np.int64])(counts_b)
        if (qi.qmax - qi.qmin) * int(counts.max()) >= 1 << 31:
            raise Unsupported(f"{node.op_type}: window sums overflow 32 bits")
        mult_t, shift_t = torch.from_numpy(mult_b).to(ctx.device), torch.from_numpy(shift_b).to(ctx.device)
        z_out = int(qo.zero_point[0])

        def finish_np(s: np.ndarray) -> np.ndarray:
            return np.clip(z_out + mbqm_np(s, mult_b, shift_b), qmin, qmax)

        def finish_t(s: torch.Tensor) -> torch.Tensor:
            return torch.clamp(mbqm_t(s, mult_t, shift_t) + z_out, qmin, qmax)

    def reference(q: np.ndarray) -> np.ndarray:
        xp = _pad_np(np.asarray(q, dtype=np.int64) - z_in, g, 0)
        s = np.zeros(xp.shape[:1] + g.out_size + xp.shape[-1:], dtype=np.int64)
        for tap in _taps_np(xp, g):
            s = s + tap
        return c_array(finish_np(s))

    def fast(q: torch.Tensor) -> torch.Tensor:
        # float64 sums of integers below 2^53 are exact
        x = to_channel_first(q).to(torch.float64) - z_in
        x = F.pad(x, g.f_pad) if any(g.f_pad) else x
        s = to_channel_last(window_sum(x, g)).round().to(torch.int64)
        return to_storage(finish_t(s), qo.bitwidth).contiguous()

    return HtpStep(reference, fast, [node.inputs[0]], list(node.outputs), node.name, node.op_type)


@htp_kernel("PoolMax2d")
def pool_max2d(node: Node, ctx: HtpBuildContext) -> HtpStep:
    return _build_max(node, ctx, 2)


@htp_kernel("PoolMax3d")
def pool_max3d(node: Node, ctx: HtpBuildContext) -> HtpStep:
    return _build_max(node, ctx, 3)


@htp_kernel("PoolAvg2d")
def pool_avg2d(node: Node, ctx: HtpBuildContext) -> HtpStep:
    return _build_avg(node, ctx, 2)


@htp_kernel("PoolAvg3d")
def pool_avg3d(node: Node, ctx: HtpBuildContext) -> HtpStep:
    return _build_avg(node, ctx, 3)
