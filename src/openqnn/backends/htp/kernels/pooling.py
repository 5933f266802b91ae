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
- With ``htp_config.arithmetic: "qnn"`` (v68, v73, 2-D, 8-bit codes in and out) QNN's AveragePool
  (``spec/qnn_pool.py``): stride-1 square 3/5/7 windows with one divisor requantize ``S * 2^7`` as QNN's
  depthwise convolution does (per arch); every other window takes a 15-bit multiplier per divisor
  rounded to nearest, round half up, the zero point after. The plan stores the constants.
  With uint16 codes the depthwise route is QNN's W8A16 convolution (weight code 32, the input's byte
  planes summed per window, ``spec/qnn_conv16.py``); where measured (``qnn_pool.route16``, approximate)
  other windows round exactly (31-bit multiplier) or take the 15-bit form; the rest keep TFLite's.

The builders make a StepPlan (``htp.pool_max``, ``htp.pool_avg``: the window geometry, the
requantization's integers, the per-window divisors and multipliers as arrays); the binders rebuild
both paths from the plan alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from openqnn.backends.geometry import PoolGeometry, to_channel_first, to_channel_last, window_sum
from openqnn.backends.htp import native
from openqnn.backends.htp.fixedpoint import mbqm_np, mbqm_t, quantize_multiplier
from openqnn.backends.htp.kernels.common import Rescale, c_array, quantized_io, to_storage
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    QParams,
    Unsupported,
    bind_step,
    htp_binder,
    htp_kernel,
)
from openqnn.backends.htp.kernels.scratch import scratch, step_buffer
from openqnn.backends.htp.spec import qnn_pool
from openqnn.backends.htp.spec.qnn_conv16 import Conv16Spec
from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec, TensorConsts
from openqnn.backends.plan import StepPlan
from openqnn.ir.graph import Node


def _geometry(node: Node, ctx: HtpBuildContext) -> PoolGeometry:
    n = len(node.attrs["filter_size"])
    return PoolGeometry(
        tuple(int(v) for v in node.attrs["filter_size"]), tuple(int(v) for v in node.attrs["stride"]),
        tuple(int(v) for v in node.attrs["dilation"]), tuple((int(a), int(b)) for a, b in node.attrs["pad_amount"]),
        tuple(ctx.shape(node.inputs[0])[1:1 + n]), tuple(ctx.shape(node.outputs[0])[1:1 + n]))


def _geometry_attrs(g: PoolGeometry) -> dict[str, Any]:
    return {"k": list(g.k), "s": list(g.s), "d": list(g.d), "pads": [list(p) for p in g.pads],
            "in_size": list(g.in_size), "out_size": list(g.out_size)}


def _geometry_of(a: Mapping[str, Any]) -> PoolGeometry:
    return PoolGeometry(tuple(a["k"]), tuple(a["s"]), tuple(a["d"]), tuple((int(p), int(q)) for p, q in a["pads"]),
                        tuple(a["in_size"]), tuple(a["out_size"]))


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


def _check(node: Node, ctx: HtpBuildContext, n: int) -> tuple[QParams, QParams, Rescale, PoolGeometry]:
    qi, qo = quantized_io(node, ctx)
    rank = len(ctx.shape(node.inputs[0]))
    if rank != n + 2:
        raise Unsupported(f"{node.op_type} of a rank-{rank} input")
    return qi, qo, Rescale.between(qi, qo), _geometry(node, ctx)


def _plan(node: Node, ctx: HtpBuildContext, kernel: str, attrs: dict[str, Any],
          arrays: dict[str, np.ndarray] | None = None) -> HtpStep:
    plan = StepPlan(kernel, node.name, node.op_type, (node.inputs[0],), tuple(node.outputs), attrs, arrays or {})
    return bind_step(plan, ctx.device)


def _build_max(node: Node, ctx: HtpBuildContext, n: int) -> HtpStep:
    qi, _, rq, g = _check(node, ctx, n)
    in_shape = ctx.shape(node.inputs[0])
    return _plan(node, ctx, "htp.pool_max", {"geometry": _geometry_attrs(g), "requant": rq.to_attrs(),
                                             "in_qmin": qi.qmin, "in_bits": qi.bitwidth, "batch": in_shape[0],
                                             "channels": in_shape[-1]})


@htp_binder("htp.pool_max")
def _bind_max(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    pa = plan.attrs
    g, rq = _geometry_of(pa["geometry"]), Rescale.from_attrs(pa["requant"])
    qmin, n = int(pa["in_qmin"]), g.n
    low = qmin - 1  # below every value: never the maximum

    def reference(q: np.ndarray) -> np.ndarray:
        xp = _pad_np(np.asarray(q, dtype=np.int64), g, low)
        y: np.ndarray | None = None
        for tap in _taps_np(xp, g):
            y = tap if y is None else np.maximum(y, tap)
        assert y is not None  # a window entirely in the padding gives qmin
        return c_array(rq.np(np.maximum(y, qmin)))

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
                         q.dtype, q.device).fill_(qmin)
            xp[inner] = q
        else:
            xp = q
        y = xp[taps[0]].clone(memory_format=torch.contiguous_format)
        for sl in taps[1:]:
            torch.maximum(y, xp[sl], out=y)
        return rq.t(y).contiguous()

    if n != 2 or not rq.identity or int(pa["in_bits"]) != 8 or device.type != "cpu" or native.library() is None:
        return reference, fast
    # 8-bit codes, 2-D, the output encoding the input's: in C
    (kh, kw), (sh, sw), (dh, dw), ((pt, _), (pl, _)) = g.k, g.s, g.d, g.pads
    nb, c = int(pa["batch"]), int(pa["channels"])
    pool = native.MaxPool2d((nb, *g.in_size, c, kh, kw, sh, sw, dh, dw, pt, pl, *g.out_size), qmin)
    output = step_buffer((nb, *g.out_size, c), device)

    def fast_native(q: torch.Tensor) -> torch.Tensor:
        return pool.run(q, output()) if pool.accepts(q) else fast(q)

    return reference, fast_native


def _build_avg(node: Node, ctx: HtpBuildContext, n: int) -> HtpStep:
    qi, qo, rq, g = _check(node, ctx, n)
    count_pad = bool(node.attrs["count_pad_for_edges"])
    counts = _counts(g, count_pad)
    attrs: dict[str, Any] = {"geometry": _geometry_attrs(g), "z_in": int(qi.zero_point[0]), "in_bits": qi.bitwidth,
                             "qmin": qo.qmin, "qmax": qo.qmax, "bits": qo.bitwidth, "identity": rq.identity,
                             "z_out": int(qo.zero_point[0]), "qnn": None}
    arrays = {"counts": counts}
    ratio = float(qi.scale[0]) / float(qo.scale[0])
    if (ctx.arithmetic == "qnn" and ctx.arch.name in qnn_pool.ARCHS and n == 2 and qi.bitwidth == 8
            and qo.bitwidth == 8 and ratio < 2.0**12):
        # QNN's AveragePool (spec/qnn_pool.py); the plan keeps its integers
        padded = any(a or b for a, b in _pad_widths(g))
        if qnn_pool.conv_route(g.k, g.s, g.d, padded, count_pad) and np.unique(counts).size == 1:
            attrs["qnn"] = {"route": "conv", "arch": ctx.arch.name}
            arrays["qnn_consts"] = qnn_pool.conv_spec(ctx.arch.name, ratio / int(counts.flat[0]), attrs["z_out"]).consts()
        else:
            attrs["qnn"] = {"route": "mean"}
            pairs = {int(k): qnn_pool.pool_mean_consts(ratio / int(k)) for k in np.unique(counts)}
            arrays["qnn_mult"] = np.vectorize(lambda k: pairs[int(k)][0], otypes=[np.int64])(counts)
            arrays["qnn_k"] = np.vectorize(lambda k: pairs[int(k)][1], otypes=[np.int64])(counts)
            two_stage = qnn_pool.two_stage_route(g.k, g.s, padded, count_pad)
            rounds = {k: qnn_pool.pool_mean_round(ratio, sh, two_stage) for k, (_, sh) in pairs.items()}
            arrays["qnn_round"] = np.vectorize(lambda k: rounds[int(k)], otypes=[np.int64])(counts)
        return _plan(node, ctx, "htp.pool_avg", attrs, arrays)
    padded = any(a or b for a, b in _pad_widths(g))
    route = (qnn_pool.route16(g.k, g.s, g.d, padded, count_pad)
             if (ctx.arithmetic == "qnn" and ctx.arch.name in qnn_pool.ARCHS and n == 2 and qi.bitwidth == 16
                 and qo.bitwidth == 16 and not qi.signed and not qo.signed and ratio < 2.0**12) else None)
    if (route is None and ctx.arithmetic == "qnn" and ctx.arch.name in qnn_pool.ARCHS and n == 2
            and qi.bitwidth == 16 and qo.bitwidth == 16 and not qi.signed and not qo.signed
            and qnn_pool.conv_route(g.k, g.s, g.d, padded, count_pad) and np.unique(counts).size == 1):
        # QNN's depthwise route with 16-bit codes: the W8A16 convolution of weight code WEIGHT16 = 1 / n
        n_taps = int(counts.flat[0])
        real = np.array([ratio / n_taps / qnn_pool.WEIGHT16])
        try:
            spec = Conv16Spec.of(real, int(qo.zero_point[0]), ctx.arch.name)
        except ValueError:
            spec = None
        if spec is not None:
            qb = spec.bias(np.zeros(1, dtype=np.int64), float(np.float32(qi.scale[0])),
                           np.array([1.0 / (n_taps * qnn_pool.WEIGHT16)]), None, real)
            hoff, loff = spec.offsets(np.array([qnn_pool.WEIGHT16 * n_taps]), qb, int(qi.zero_point[0]),
                                      np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
            attrs["qnn"] = {"route": "conv16", "arch": ctx.arch.name}
            arrays.update(qnn_mult=spec.mult, qnn_shift=spec.shift, qnn_hoff=hoff, qnn_loff=loff)
            return _plan(node, ctx, "htp.pool_avg", attrs, arrays)
    if route is not None:
        # QNN's 16-bit AveragePool where measured (spec/qnn_pool.py, approximate): the 15-bit route's arrays
        attrs["qnn"] = {"route": "mean"}
        consts = {int(k): qnn_pool.pool16_consts(ratio / int(k), route) for k in np.unique(counts)}
        for i, name in enumerate(("qnn_mult", "qnn_k", "qnn_round")):
            arrays[name] = np.vectorize(lambda k, i=i: consts[int(k)][i], otypes=[np.int64])(counts)
        return _plan(node, ctx, "htp.pool_avg", attrs, arrays)
    if not rq.identity:
        pairs = {int(k): quantize_multiplier(ratio / int(k)) for k in np.unique(counts)}
        arrays["mult"] = np.vectorize(lambda k: pairs[int(k)][0], otypes=[np.int64])(counts)
        arrays["shift"] = np.vectorize(lambda k: pairs[int(k)][1], otypes=[np.int64])(counts)
        if (qi.qmax - qi.qmin) * int(counts.max()) >= 1 << 31:
            raise Unsupported(f"{node.op_type}: window sums overflow 32 bits")
    return _plan(node, ctx, "htp.pool_avg", attrs, arrays)


@htp_binder("htp.pool_avg")
def _bind_avg(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    a = plan.attrs
    g = _geometry_of(a["geometry"])
    z_in, qmin, qmax, bits = int(a["z_in"]), int(a["qmin"]), int(a["qmax"]), int(a["bits"])
    cshape = (1, *g.out_size, 1)
    counts_b = np.asarray(plan.arrays["counts"], dtype=np.int64).reshape(cshape)
    counts_t = torch.from_numpy(c_array(counts_b)).to(device)

    qnn = a.get("qnn")
    if qnn is not None and qnn["route"] == "conv16":
        return _bind_avg_conv16(plan, g, device)
    if qnn is not None and qnn["route"] == "conv":
        spec = QnnRequantSpec.from_consts(qnn["arch"], np.asarray(plan.arrays["qnn_consts"]), int(a["z_out"]))
        consts = TensorConsts.of(spec, device)

        def finish_np(s: np.ndarray) -> np.ndarray:
            return spec.apply_np(s * qnn_pool.WEIGHT)

        def finish_t(s: torch.Tensor) -> torch.Tensor:
            return spec.apply_t(s * qnn_pool.WEIGHT, consts)
    elif qnn is not None:
        qmult_b = np.asarray(plan.arrays["qnn_mult"], dtype=np.int64).reshape(cshape)
        qk_b = np.asarray(plan.arrays["qnn_k"], dtype=np.int64).reshape(cshape)
        qmult_t, qk_t = torch.from_numpy(c_array(qmult_b)).to(device), torch.from_numpy(c_array(qk_b)).to(device)
        # the rounding constant (plans written before it was stored round once, half up)
        qround = plan.arrays.get("qnn_round")
        qround_b = (np.left_shift(np.int64(1), qk_b - 1) if qround is None
                    else np.asarray(qround, dtype=np.int64).reshape(cshape))
        qhalf_t = torch.from_numpy(c_array(qround_b)).to(device)
        z_q = int(a["z_out"])

        def finish_np(s: np.ndarray) -> np.ndarray:
            return qnn_pool.pool_mean_np(s, qmult_b, qk_b, z_q, qmax, qround_b)

        def finish_t(s: torch.Tensor) -> torch.Tensor:
            return torch.bitwise_right_shift(s * qmult_t + qhalf_t, qk_t).add_(z_q).clamp_(0, qmax)
    elif a["identity"]:
        c = 1 << (int(a["in_bits"]) - 1)
        bias_b = counts_b * (z_in - c)
        bias_t = torch.from_numpy(bias_b).to(device)

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
        mult_b = np.asarray(plan.arrays["mult"], dtype=np.int64).reshape(cshape)
        shift_b = np.asarray(plan.arrays["shift"], dtype=np.int64).reshape(cshape)
        mult_t, shift_t = torch.from_numpy(c_array(mult_b)).to(device), torch.from_numpy(c_array(shift_b)).to(device)
        z_out = int(a["z_out"])

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
        return to_storage(finish_t(s), bits).contiguous()

    return reference, fast


def _bind_avg_conv16(plan: StepPlan, g: PoolGeometry, device: torch.device
                     ) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The 16-bit depthwise route: the input's byte planes summed per window (padding holds the zero point's bytes)
    with the weight code ``WEIGHT16``, then the W8A16 rule (spec/qnn_conv16.py)."""
    a, ar = plan.attrs, plan.arrays
    z_in, bits, w = int(a["z_in"]), int(a["bits"]), qnn_pool.WEIGHT16
    spec = Conv16Spec(np.asarray(ar["qnn_mult"], dtype=np.int64), np.asarray(ar["qnn_shift"], dtype=np.int64),
                      int(a["z_out"]), str(a["qnn"]["arch"]))
    hoff, loff = np.asarray(ar["qnn_hoff"], dtype=np.int64), np.asarray(ar["qnn_loff"], dtype=np.int64)
    consts = [torch.from_numpy(c_array(v)).to(device) for v in (hoff, loff, spec.mult, spec.shift)]

    def plane_np(x: np.ndarray, fill: int) -> np.ndarray:
        xp = _pad_np(x, g, fill)
        s = np.zeros(xp.shape[:1] + g.out_size + xp.shape[-1:], dtype=np.int64)
        for tap in _taps_np(xp, g):
            s = s + tap
        return s * w

    def plane_t(x: torch.Tensor, fill: int) -> torch.Tensor:
        x = F.pad(x.to(torch.float64), g.f_pad, value=float(fill)) if any(g.f_pad) else x.to(torch.float64)
        return to_channel_last(window_sum(x, g)).round().to(torch.int64) * w

    def reference(q: np.ndarray) -> np.ndarray:
        qa = np.asarray(q, dtype=np.int64)
        return c_array(spec.apply_np(plane_np(qa >> 8, z_in >> 8), plane_np(qa & 255, z_in & 255), hoff, loff))

    def fast(q: torch.Tensor) -> torch.Tensor:
        x = to_channel_first(q).to(torch.int64)
        th, tl = plane_t(x >> 8, z_in >> 8), plane_t(x & 255, z_in & 255)
        return to_storage(spec.apply_t(th, tl, *consts), bits).contiguous()

    return reference, fast


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
