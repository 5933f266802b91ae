"""htp integer kernels: reductions (see registry.py for the conventions).

- ReduceMean: TFLite's reference quantized mean (``QuantizedMeanOrSum``, compute_sum false). With
  (M0, s0) = quantize_multiplier(s_in / s_out) and n the number of reduced elements, the divisor is
  folded into the multiplier: sh = min(floor(log2 n), 32, 31 + s0), M = (M0 << sh) // n,
  shift = s0 - sh; then q_out = clamp(z_out + mbqm(sum(q - z_in), M, shift)). Global average
  pooling (a ReduceMean over H and W, keep_dims) is this too.
- ReduceSum: the same without the divisor: q_out = clamp(z_out + mbqm(sum(q - z_in), M0, s0)).
- With ``htp_config.arithmetic: "qnn"`` (v68, v73, 8-bit codes), ReduceMean and ReduceSum requantize the
  exact sum as QNN's HTP does (``spec/qnn_reduce.py``: a 15-bit multiplier of s_in / (s_out * n), rounded
  down, round half up), not with TFLite's 31-bit one; with uint16 codes QNN's 16-bit forms (the same
  spec: the multiplier rounded, the constant before the shift 2^k or 2^(k-1)).
- ReduceMax / ReduceMin: the integer maximum / minimum, then a requantization when the output
  encoding differs from the input's (normally they are shared).

Sums are exact (int64 in both paths). They are int32 in TFLite; where the largest possible sum
((qmax - qmin) * n) does not fit 32 bits, mbqm64 (the int64-input requantization) takes mbqm's place.
A reduction over no axes is a requantization.

- CumulativeSum of integer tensors (position ids counted from a mask): exact in int64, then the
  output's integer type; ``exclusive`` shifts by one (y[i] = sum(x[:i])), ``reverse`` sums from the end.
  Of quantized tensors: ``scan.py`` (QNN's scan with ``arithmetic: "qnn"``; else the cpu fallback).

The builders make a StepPlan (``htp.reduce_minmax``, ``htp.reduce_sum``, ``htp.cumsum``; a reduction
over no axes is ``htp.reshape``) holding the axes, shapes and the requantization's integers; the
binders rebuild both paths from the plan alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from openqnn.backends.dtypes import torch_dtype
from openqnn.backends.htp import native
from openqnn.backends.htp.fixedpoint import mbqm64_np, mbqm64_t, mbqm_np, mbqm_t, quantize_multiplier
from openqnn.backends.htp.kernels.common import Rescale, c_array, movement_plan, quantized_io, to_storage
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    Unsupported,
    bind_step,
    htp_binder,
    htp_kernel,
)
from openqnn.backends.htp.kernels.requant import Requant as RowRequant
from openqnn.backends.htp.kernels.scan import quantized_cumulative_sum
from openqnn.backends.htp.kernels.scratch import scratch
from openqnn.backends.htp.spec.qnn_reduce import QnnMeanSpec, mean_spec_for
from openqnn.backends.plan import StepPlan
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Node

__all__ = ["cumulative_sum", "mean_multiplier"]


def mean_multiplier(ratio: float, count: int) -> tuple[int, int]:
    """TFLite's multiplier of a quantized mean: quantize_multiplier(ratio) with 1/count folded in."""
    m0, s0 = quantize_multiplier(ratio)
    sh = min(count.bit_length() - 1, 32, 31 + s0)
    return int((m0 << sh) // count), s0 - sh


Bound = tuple[Callable[..., Any], Callable[..., Any]]


def _plan(node: Node, ctx: HtpBuildContext, kernel: str, attrs: dict[str, Any]) -> HtpStep:
    return bind_step(StepPlan(kernel, node.name, node.op_type, (node.inputs[0],), tuple(node.outputs), attrs),
                     ctx.device)


@htp_kernel("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin")
def reduce(node: Node, ctx: HtpBuildContext) -> HtpStep:
    x, y = node.inputs[0], node.outputs[0]
    qi, qo = quantized_io(node, ctx)
    in_shape = ctx.shape(x)
    rank = len(in_shape)
    axes = sorted({int(a) % rank for a in node.attrs["axes"]}) if rank else []
    keep = bool(node.attrs["keep_dims"])
    out_shape = list(ctx.shape(y))
    if not axes:  # each element reduced on its own
        return movement_plan(node, ctx, "htp.reshape", {"shape": out_shape})
    count = 1
    for a in axes:
        count *= in_shape[a]
    if count == 0:
        raise Unsupported(f"{node.op_type} over an empty axis")
    op = node.op_type
    shape_attrs = {"axes": axes, "keep": keep, "out_shape": out_shape}

    if op in ("ReduceMax", "ReduceMin"):
        return _plan(node, ctx, "htp.reduce_minmax",
                     {**shape_attrs, "max": op == "ReduceMax", "requant": Rescale.between(qi, qo).to_attrs()})

    ratio = float(qi.scale[0]) / float(qo.scale[0])
    mult, shift = mean_multiplier(ratio, count) if op == "ReduceMean" else quantize_multiplier(ratio)
    wide = (qi.qmax - qi.qmin) * count >= 1 << 31
    z_in = int(qi.zero_point[0])
    # a mean over axes 1 and 2 of a 4-D tensor (the pixels, channels last): QNN rounds its multiplier to nearest
    # (spec/qnn_reduce.py); with 16-bit codes its PoolAvg2d form, unless the input is a Transpose's (of a graph
    # input: ONNX Runtime pushes that Transpose through the mean and QNN reduces the innermost axes, the
    # ReduceSum form)
    nearest = op == "ReduceMean" and rank == 4 and axes == [1, 2]
    src = ctx.graph.producers().get(x) if nearest and qi.bitwidth == 16 else None
    qnn = mean_spec_for(ctx.arch.name, ctx.arithmetic, ratio / count if op == "ReduceMean" else ratio,
                        int(qo.zero_point[0]), qi.bitwidth, qo.bitwidth,
                        nearest=nearest and not (src is not None and src.op_type == "Transpose"), count=count,
                        signed=qi.qmin < 0 or qo.qmin < 0,
                        padded_bytes=math.prod(in_shape[:-1]) * -(-in_shape[-1] // 32) * 32 * qi.bitwidth // 8)
    if wide and shift > 14 and qnn is None:
        raise Unsupported(f"{op}: multiplier out of range for a 64-bit accumulator")
    return _plan(node, ctx, "htp.reduce_sum", {
        "qnn": None if qnn is None else {"mult": qnn.mult, "k": qnn.k, "one": qnn.one},
        **shape_attrs, "in_shape": list(in_shape), "count": count, "ratio": ratio, "multiplier": int(mult),
        "shift": int(shift), "wide": wide, "z_in": z_in, "z_out": int(qo.zero_point[0]), "qmin": qo.qmin,
        "qmax": qo.qmax, "bits": qo.bitwidth, "in_qmin": qi.qmin, "in_qmax": qi.qmax,
        "acc_int32": (qi.qmax + abs(z_in)) * count < 1 << 31,
        "rq_forms": {}})  # requant.py's forms, decided by this bind (prepare), read by later binds


@htp_binder("htp.reduce_minmax")
def _bind_minmax(plan: StepPlan, device: torch.device) -> Bound:
    at = plan.attrs
    axes, keep, out_shape = tuple(at["axes"]), bool(at["keep"]), tuple(at["out_shape"])
    rq = Rescale.from_attrs(at["requant"])
    np_fn = np.max if at["max"] else np.min
    t_fn = torch.amax if at["max"] else torch.amin

    def reference_mm(q: np.ndarray) -> np.ndarray:
        r = np_fn(np.asarray(q, dtype=np.int64), axis=axes, keepdims=keep)
        return c_array(rq.np(r).reshape(out_shape))

    def fast_mm(q: torch.Tensor) -> torch.Tensor:
        return rq.t(t_fn(q, dim=axes, keepdim=keep)).reshape(out_shape).contiguous()

    return reference_mm, fast_mm


@htp_binder("htp.reduce_sum")
def _bind_sum(plan: StepPlan, device: torch.device) -> Bound:
    at = plan.attrs
    axes, keep, out_shape = tuple(at["axes"]), bool(at["keep"]), tuple(at["out_shape"])
    in_shape, count, ratio = tuple(at["in_shape"]), int(at["count"]), float(at["ratio"])
    mult, shift, wide = int(at["multiplier"]), int(at["shift"]), bool(at["wide"])
    z_in, z_out, qmin, qmax, bits = int(at["z_in"]), int(at["z_out"]), int(at["qmin"]), int(at["qmax"]), int(at["bits"])
    in_qmin, in_qmax = int(at["in_qmin"]), int(at["in_qmax"])
    req_np: Callable[[np.ndarray], np.ndarray] = (
        (lambda s: mbqm64_np(s, mult, shift)) if wide else (lambda s: mbqm_np(s, mult, shift)))
    req_t: Callable[[torch.Tensor], torch.Tensor] = (
        (lambda s: mbqm64_t(s, mult, shift)) if wide else (lambda s: mbqm_t(s, mult, shift)))
    acc_dtype = torch.int32 if at["acc_int32"] else torch.int64
    # one run of axes of a uint8 input: [outer, count, inner], summed in C (a mean over H and W)
    outer, inner = math.prod(in_shape[:axes[0]]), math.prod(in_shape[axes[-1] + 1:])
    in_c = (native.library() is not None and device.type == "cpu" and axes == tuple(range(axes[0], axes[-1] + 1))
            and count * 255 < 1 << 31)

    def exact_sums(q: np.ndarray) -> np.ndarray:
        """The reference's sum(q - z_in) over the axes, int64."""
        return np.asarray(np.sum(np.asarray(q, dtype=np.int64) - z_in, axis=axes, keepdims=keep, dtype=np.int64))

    def code_sums(q: torch.Tensor) -> torch.Tensor:
        """The fast path's sum of the raw codes over the axes, one per output, as a column ([outputs, 1])."""
        if in_c and q.dtype == torch.uint8 and q.is_contiguous():
            return native.sum_mid(q, outer, count, inner, scratch("sum", (outer * inner, 1), torch.int32, device))
        return torch.sum(q, dim=axes, keepdim=keep, dtype=acc_dtype).reshape(-1, 1)

    if at.get("qnn") is not None:  # QNN's requantization of the exact sum (spec/qnn_reduce.py)
        spec = QnnMeanSpec(int(at["qnn"]["mult"]), int(at["qnn"]["k"]), z_out, qmax, bool(at["qnn"].get("one", False)))

        def reference_qnn(q: np.ndarray) -> np.ndarray:
            return c_array(spec.apply_np(exact_sums(q)).reshape(out_shape))

        def fast_qnn(q: torch.Tensor) -> torch.Tensor:
            s = code_sums(q).to(torch.int64).sub_(count * z_in)
            return to_storage(spec.apply_t(s), bits).reshape(out_shape).contiguous()

        if in_c and bits == 8 and count * 255 < 1 << 16:
            # every sum of uint8 codes is one of count * 255 + 1 values: their codes, one table (spec.apply_np
            # itself, so the same bits), read with one gather instead of half a dozen PyTorch ops per run (a
            # global pool's 1280 sums: ~0.1 ms -> ~10 us)
            table = torch.from_numpy(np.ascontiguousarray(
                spec.apply_np(np.arange(count * 255 + 1, dtype=np.int64) - count * z_in).astype(np.uint8)))

            def fast_table(q: torch.Tensor) -> torch.Tensor:
                if not (q.dtype == torch.uint8 and q.is_contiguous()):
                    return fast_qnn(q)
                sums = code_sums(q).numpy().reshape(-1)
                return torch.from_numpy(table.numpy()[sums]).reshape(out_shape)

            return reference_qnn, fast_table

        return reference_qnn, fast_qnn

    def reference(q: np.ndarray) -> np.ndarray:
        return c_array(np.clip(z_out + req_np(exact_sums(q)), qmin, qmax).reshape(out_shape))

    if not wide and acc_dtype == torch.int32 and qmin == 0 and qmax == (1 << bits) - 1:
        # requant.py's one-pass requantization (one channel) of the raw sum of codes
        row_rq = RowRequant(np.array([ratio]), z_out, bits, False, device,
                            multipliers=(np.array([mult]), np.array([shift])))
        if isinstance(at.get("rq_forms"), dict):
            row_rq.forms = at["rq_forms"]
        raw_bound = float(count * max(abs(in_qmin), abs(in_qmax)))  # of the sum of codes
        run_rq = row_rq.fast(np.array([-count * z_in]), [(1, np.array([raw_bound]))], torch.int32)

        def fast_sum(q: torch.Tensor) -> torch.Tensor:
            return run_rq(code_sums(q)).reshape(out_shape)

        return reference, fast_sum

    def fast(q: torch.Tensor) -> torch.Tensor:
        s = torch.sum(q, dim=axes, keepdim=keep, dtype=acc_dtype).sub_(count * z_in).to(torch.int64)
        return to_storage(torch.clamp(req_t(s) + z_out, qmin, qmax), bits).reshape(out_shape).contiguous()

    return reference, fast


@htp_kernel("CumulativeSum")
def cumulative_sum(node: Node, ctx: HtpBuildContext) -> HtpStep:
    x, y = node.inputs[0], node.outputs[0]
    tx, ty = ctx.graph.tensors[x], ctx.graph.tensors[y]
    if tx.encoding is not None:  # QNN's float32 scan through the quantized output (scan.py, spec/qnn_cumsum.py)
        return quantized_cumulative_sum(node, ctx)
    if tx.dtype.is_float or ty.dtype.is_float:
        raise Unsupported("CumulativeSum of an unquantized float tensor")
    rank = len(ctx.shape(x))
    if rank == 0:
        raise Unsupported("CumulativeSum of a scalar")
    axis = int(node.attrs["axis"]) % rank
    if ctx.is_static(x):
        raise Unsupported("CumulativeSum of a static tensor (constant folding handles this)")
    return _plan(node, ctx, "htp.cumsum", {"axis": axis, "exclusive": bool(node.attrs["exclusive"]),
                                           "reverse": bool(node.attrs["reverse"]), "dtype": ty.dtype.name})


@htp_binder("htp.cumsum")
def _bind_cumsum(plan: StepPlan, device: torch.device) -> Bound:
    axis, exclusive, reverse = int(plan.attrs["axis"]), bool(plan.attrs["exclusive"]), bool(plan.attrs["reverse"])
    dtype = DType[plan.attrs["dtype"]]
    out_np, out_t = dtype.numpy, torch_dtype(dtype)

    def reference(a: np.ndarray) -> np.ndarray:
        v = np.asarray(a).astype(np.int64)
        if reverse:
            v = np.flip(v, axis)
        s = np.cumsum(v, axis=axis, dtype=np.int64)
        if exclusive:
            s = s - v
        return c_array((np.flip(s, axis) if reverse else s).astype(out_np))

    def fast(t: torch.Tensor) -> torch.Tensor:
        v = t.to(torch.int64)
        if reverse:
            v = torch.flip(v, (axis,))
        s = torch.cumsum(v, axis, dtype=torch.int64)
        if exclusive:
            s = s - v
        return (torch.flip(s, (axis,)) if reverse else s).to(out_t).contiguous()

    return reference, fast
