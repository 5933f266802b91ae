"""htp integer kernel: Resize (see registry.py for the conventions).

Resize nearest is pure movement (common.py's requantization, then indexing). Resize linear / cubic
(and antialias) use fixed-point separable filters: per resized axis the float interpolation matrix
(the cpu kernel's, ORT's coordinates) is quantized to Q.20 weights whose rows keep their exact sums,
values carry 8 extra fraction bits (v = (q - z_in) << 8), each axis computes v = rdbpot(sum_t W_t *
v[idx_t], 20) in int64, and the result is requantized once: q_out = clamp(z_out + mbqm(v,
quantize_multiplier(s_in / (s_out * 2^8)))). tf_crop_and_resize fills outputs sampled outside the
input with ``extrapolation_value`` quantized in the output encoding.

With ``arithmetic: "qnn"`` on v68 / v73, an 8-bit linear Resize (no antialias, no extrapolation) is what QNN
EP makes of openqnn's export of it, a float op (``htp.resize_float``, spec/qnn_resize.py): float32
dequantization and interpolation (QNN's float32 coordinates from the axis' sizes, ``qnn_resize.linear_taps``,
where probed), float16 quantization; a 16-bit one (uint16 codes in and out) the same route quantized by a float32
product (99.87% of probed codes: QNN's float arithmetic is open to the last bit).

The builder does the analysis (coordinates, fixed-point weights, multipliers) into a StepPlan
(``htp.resize_nearest``: per-axis index arrays; ``htp.resize_filter``: per-axis index and weight
arrays and the requantization's integers); the binders rebuild both paths from the plan alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from openqnn.backends.htp.fixedpoint import mbqm_np, mbqm_t, quantize_multiplier, rdbpot_np, rdbpot_t
from openqnn.backends.htp.kernels.common import (
    act_q,
    c_array,
    flow,
    move_kernel,
    movement_plan,
    to_storage,
)
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    Unsupported,
    bind_step,
    htp_binder,
    htp_kernel,
)
from openqnn.backends.htp.spec import qnn_resize
from openqnn.backends.plan import StepPlan
from openqnn.ir.graph import Node

__all__ = ["RESIZE_EXTRA_BITS", "RESIZE_WEIGHT_BITS", "resize"]


RESIZE_WEIGHT_BITS = 20  # fraction bits of the fixed-point interpolation weights
RESIZE_EXTRA_BITS = 8  # fraction bits values carry between the axes of a filtered resize
_MAX_TAPS = 16


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _fixed_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An [out, in] float filter matrix -> (idx [out, T], W [out, T]) with Q.20 integer weights; each
    row's integer sum is its float sum rounded (the largest weight takes the difference)."""
    one = 1 << RESIZE_WEIGHT_BITS
    nz = m != 0
    taps = max(1, int(nz.sum(axis=1).max()))
    if taps > _MAX_TAPS:
        raise Unsupported(f"Resize filter of {taps} taps (at most {_MAX_TAPS})")
    n_out = m.shape[0]
    idx = np.zeros((n_out, taps), dtype=np.int64)
    w = np.zeros((n_out, taps), dtype=np.int64)
    for r in range(n_out):
        cols = np.nonzero(nz[r])[0]
        wf = m[r, cols]
        wq = _round_half_away(wf * one).astype(np.int64)
        if cols.size:
            target = int(_round_half_away(np.array(wf.sum() * one)))
            wq[int(np.argmax(np.abs(wf)))] += target - int(wq.sum())
        idx[r, :cols.size] = cols
        w[r, :cols.size] = wq
    return idx, w


@htp_kernel("Resize")
def resize(node: Node, ctx: HtpBuildContext) -> HtpStep:
    from openqnn.backends.geometry import resize_plan

    a = node.attrs
    x, out = node.inputs[0], node.outputs[0]
    in_shape, out_shape = ctx.shape(x), tuple(int(v) for v in a["output_shape"])
    rank = len(in_shape)
    interp = a["interpolation_mode"]
    if interp not in ("nearest", "linear", "cubic"):
        raise Unsupported(f"Resize interpolation_mode {interp!r}")
    if ctx.is_static(x):
        raise Unsupported("Resize of a static tensor")
    fl = flow(ctx, x, out)
    if tuple(in_shape) == out_shape:
        return movement_plan(node, ctx, "htp.copy")
    if interp != "nearest" and not fl.quantized:
        raise Unsupported(f"Resize {interp} of an unquantized {ctx.graph.tensors[x].dtype.name} tensor")
    axes, mask = resize_plan(a, tuple(in_shape), out_shape)
    plan: list[tuple[int, np.ndarray, np.ndarray | None]] = []  # (axis, idx [out] or [out, T], W or None)
    float_weights: dict[str, np.ndarray] = {}  # the float32 weights of each tap (QNN's float route)
    for r in axes:
        if r.index is not None:
            plan.append((r.axis, r.index, None))
        else:
            assert r.matrix is not None
            idx, w = _fixed_rows(r.matrix)
            plan.append((r.axis, idx, w))
            used = np.arange(idx.shape[1])[None, :] < (r.matrix != 0).sum(axis=1)[:, None]  # not padding taps
            float_weights[f"fweight{r.axis}"] = np.where(used, np.take_along_axis(r.matrix, idx, axis=1),
                                                         0.0).astype(np.float32)

    qi, qo = act_q(ctx, x), act_q(ctx, out)
    fill: int | float = 0
    if mask is not None:
        value = float(a["extrapolation_value"])
        fill = (int(qo.codes(value))
                if qo is not None else value)
    arrays: dict[str, np.ndarray] = {f"index{ax}": np.asarray(idx) for ax, idx, _ in plan}
    arrays.update({f"weight{ax}": w for ax, _, w in plan if w is not None})
    if mask is not None:
        arrays["mask"] = c_array(mask)
    attrs: dict[str, Any] = {"axes": [ax for ax, _, _ in plan], "fill": fill}

    if interp == "nearest":
        return movement_plan(node, ctx, "htp.resize_nearest", attrs, arrays)

    assert qi is not None and qo is not None
    if (ctx.arithmetic == "qnn" and ctx.arch.name in qnn_resize.ARCHS and interp == "linear"
            and not a["antialias"] and mask is None and ((qi.bitwidth, qo.bitwidth) == (8, 8)
                 or ((qi.bitwidth, qo.bitwidth) == (16, 16) and qi.qmin == 0 and qo.qmin == 0))):
        # QNN EP runs openqnn's exported linear Resize on floats: float32 in, float16 out for 8-bit codes, a
        # float32 quantization for 16-bit ones (spec/qnn_resize.py)
        attrs.update({"rank": rank, "z_in": int(qi.zero_point[0]), "z_out": int(qo.zero_point[0]),
                      "s_in": float(qi.scale[0]), "s_out": float(qo.scale[0]), "qmax": qo.qmax,
                      "bitwidth": qo.bitwidth})
        arrays.update(float_weights)
        for ax, _, wq in plan:  # QNN's float32 coordinates from the axis' sizes (qnn_resize.linear_taps)
            taps = qnn_resize.linear_taps(a["transformation_mode"], int(in_shape[ax]), int(out_shape[ax]))
            if wq is not None and taps is not None:
                arrays[f"index{ax}"], arrays[f"fweight{ax}"] = taps
        return bind_step(StepPlan("htp.resize_float", node.name, node.op_type, (x,), (out,), attrs, arrays),
                         ctx.device)

    # filtered: fixed-point separable filter in the (q - z_in) << 8 domain, one requantization
    mult, shift = quantize_multiplier(float(qi.scale[0]) / (float(qo.scale[0]) * (1 << RESIZE_EXTRA_BITS)))
    bound = (qi.qmax - qi.qmin) << RESIZE_EXTRA_BITS
    for _, _, wq in plan:
        assert wq is not None
        bound = int(bound * max(1.0, float(np.abs(wq).sum(axis=1).max()) / (1 << RESIZE_WEIGHT_BITS))) + 1
    if bound >= 1 << 31:
        raise Unsupported("Resize filter overshoot too large for a 32-bit requantization")
    attrs.update({"rank": rank, "z_in": int(qi.zero_point[0]), "z_out": int(qo.zero_point[0]), "multiplier": int(mult),
                  "shift": int(shift), "qmin": qo.qmin, "qmax": qo.qmax, "bitwidth": qo.bitwidth})
    return bind_step(StepPlan("htp.resize_filter", node.name, node.op_type, (x,), (out,), attrs, arrays), ctx.device)


def _mask(arrays: Mapping[str, np.ndarray], device: torch.device) -> tuple[np.ndarray | None, torch.Tensor | None]:
    mask = arrays.get("mask")
    return mask, (torch.from_numpy(c_array(mask)).to(device) if mask is not None else None)


@move_kernel("htp.resize_nearest")
def _nearest_moves(attrs: Mapping[str, Any], arrays: Mapping[str, np.ndarray], device: torch.device
                   ) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[torch.Tensor], torch.Tensor]]:
    plan = [(ax, np.asarray(arrays[f"index{ax}"])) for ax in attrs["axes"]]
    plan_t = [(ax, torch.from_numpy(c_array(idx)).to(device)) for ax, idx in plan]
    mask, mask_t = _mask(arrays, device)
    fill = attrs["fill"]

    def move_np(v: np.ndarray) -> np.ndarray:
        for ax, idx in plan:
            v = np.take(v, idx, axis=ax)
        return np.where(mask, fill, v).astype(v.dtype) if mask is not None else v

    def move_t(t: torch.Tensor) -> torch.Tensor:
        for ax, idx_t in plan_t:
            t = torch.index_select(t, ax, idx_t)
        return torch.where(mask_t, torch.tensor(fill, dtype=t.dtype, device=t.device), t) if mask_t is not None else t

    return move_np, move_t


@htp_binder("htp.resize_filter")
def _bind_filter(plan_: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    a = plan_.attrs
    rank, fill = int(a["rank"]), a["fill"]
    z_in, z_out, mult, shift = int(a["z_in"]), int(a["z_out"]), int(a["multiplier"]), int(a["shift"])
    qmin, qmax, bits = int(a["qmin"]), int(a["qmax"]), int(a["bitwidth"])
    plan = [(ax, np.asarray(plan_.arrays[f"index{ax}"]), np.asarray(plan_.arrays[f"weight{ax}"])) for ax in a["axes"]]
    mask, mask_t = _mask(plan_.arrays, device)
    plan_w = [(ax, torch.from_numpy(c_array(idx)).to(device), torch.from_numpy(c_array(w)).to(device))
              for ax, idx, w in plan]

    def bshape(ax: int, n_out: int) -> list[int]:
        sh = [1] * rank
        sh[ax] = n_out
        return sh

    def reference(q: np.ndarray) -> np.ndarray:
        v = (np.asarray(q, dtype=np.int64) - z_in) << RESIZE_EXTRA_BITS
        for ax, idx, w in plan:
            acc = np.zeros([idx.shape[0] if i == ax else d for i, d in enumerate(v.shape)], dtype=np.int64)
            for t in range(idx.shape[1]):
                acc = acc + np.take(v, idx[:, t], axis=ax) * w[:, t].reshape(bshape(ax, idx.shape[0]))
            v = rdbpot_np(acc, RESIZE_WEIGHT_BITS)
        y = np.clip(z_out + mbqm_np(v, mult, shift), qmin, qmax)
        if mask is not None:
            y = np.where(mask, fill, y)
        return c_array(y)

    def fast(q: torch.Tensor) -> torch.Tensor:
        v = (q.to(torch.int64) - z_in) << RESIZE_EXTRA_BITS
        for ax, idx_t, w_t in plan_w:
            wsh = bshape(ax, idx_t.shape[0])
            acc = torch.index_select(v, ax, idx_t[:, 0]) * w_t[:, 0].reshape(wsh)
            for t in range(1, idx_t.shape[1]):
                acc = acc + torch.index_select(v, ax, idx_t[:, t]) * w_t[:, t].reshape(wsh)
            v = rdbpot_t(acc, RESIZE_WEIGHT_BITS)
        y = torch.clamp(mbqm_t(v, mult, shift) + z_out, qmin, qmax)
        if mask_t is not None:
            y = torch.where(mask_t, torch.tensor(fill, dtype=y.dtype, device=y.device), y)
        return to_storage(y, bits).contiguous()

    return reference, fast


@htp_binder("htp.resize_float")
def _bind_float(plan_: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """QNN's linear Resize on floats (spec/qnn_resize.py): float32 dequantization and interpolation, float16
    quantization."""
    a = plan_.attrs
    z_in, z_out, s_in, s_out = int(a["z_in"]), int(a["z_out"]), float(a["s_in"]), float(a["s_out"])
    qmax, bits = int(a["qmax"]), int(a["bitwidth"])
    plan = [(int(ax), np.asarray(plan_.arrays[f"index{ax}"]), np.asarray(plan_.arrays[f"fweight{ax}"], np.float32))
            for ax in a["axes"]]
    plan_t = [(ax, torch.from_numpy(c_array(idx)).to(device), torch.from_numpy(c_array(w)).to(device))
              for ax, idx, w in plan]

    quantize, quantize_t = ((qnn_resize.quantize16, qnn_resize.quantize16_t) if bits == 16
                            else (qnn_resize.quantize, qnn_resize.quantize_t))

    def reference(q: np.ndarray) -> np.ndarray:
        y = qnn_resize.filter_axes(qnn_resize.dequantize(q, s_in, z_in), plan)
        return c_array(quantize(y, s_out, z_out, qmax))

    def fast(q: torch.Tensor) -> torch.Tensor:
        y = qnn_resize.filter_axes_t(qnn_resize.dequantize_t(q, s_in, z_in), plan_t)
        return to_storage(quantize_t(y, s_out, z_out, qmax), bits).contiguous()

    return reference, fast
