"""htp integer kernels: FullyConnected and MatMul (see registry.py and conv.py for the conventions).

Spec (``reference``, numpy int64)::

    acc[..., m, n] = sum_k (a[..., m, k] - za) * (b[..., k, n] - zb)  (+ bias[n] for FullyConnected)
    out = clamp(zo + mbqm(acc, M[n], shift[n]), 0, 2^bw_out - 1)

where an activation operand contributes ``q - zero_point`` and a static one its signed integers
``q + offset``; ``M[n], shift[n] = quantize_multiplier(s_a * s_b[n] / s_out)`` (per-channel scales only
on the static weight's output axis), mbqm64 when an operand is 16-bit. FullyConnected weights are
[units, k]; its bias follows gemm.py's ``op_bias``: ``bias_q`` (a 32-bit bias on the accumulator's scale as is,
any other requantized with round half away from zero), then QNN's conversion of it under QNN's arithmetic.

Fast path: FullyConnected, and MatMul with a static 2-D right operand, are 1x1 convolutions of the
flattened rows (gemm.py's int8 GEMM core, 16-bit activations as two int8 planes). MatMul of two 8-bit
activations: both as int8 (``q - 128``), ``torch._int_mm`` per batch, the zero points as row/column
sums: ``sum (A - a0)(B - b0) = A@B - b0 * rowsum(A) - a0 * colsum(B) + K * a0 * b0``. Everything else
(16-bit activation x activation, a static left operand, static operands with batch dimensions,
non-CPU devices) is one float64 matmul of the integers: exact, every value an integer below 2^53.

With ``htp_config.arithmetic: "qnn"`` a MatMul of two 8-bit activations follows QNN's arithmetic
(spec/qnn_matmul.py, kind ``qnn_act_act``): in[1]'s columns that do not fit int8 are requantized to int8 per
column first, then the convolutions' requantization per column factor; the plan stores the spec's table. Two
16-bit activations (spec/qnn_matmul16.py, kind ``qnn_act_act16``, v68 and v73): in[1] converted to uint8 and
taken as int8 columns the same way, in[0]'s bytes through int8 GEMMs apart (the low bytes' sums floored to
units of 256), then the arch's 16-bit requantization per column factor.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from openqnn.backends.htp.kernels.gemm import (
    ConvCore,
    FusedSetup,
    act_a0,
    act_coefs,
    act_planes,
    act_qparams,
    drop_derivable_plane,
    fused_gemm,
    gemm_mode,
    int8_kinds,
    lazy_int64,
    machine_mode,
    narrowest,
    op_bias,
    packing_for_plan,
    qparams_attrs,
    qparams_of,
    reference16,
    split_arrays,
    split_bounds,
    split_of,
    static_operand,
    stored_packing,
    with_derived_plane,
)
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    QParams,
    Unsupported,
    bind_step,
    htp_binder,
    htp_kernel,
)
from openqnn.backends.htp.kernels.requant import QnnConv16Requant, Requant, requant_for
from openqnn.backends.htp.kernels.scratch import scratch
from openqnn.backends.htp.spec.qnn_matmul import F_ONE, QnnMatMulSpec, matmul_spec_for
from openqnn.backends.htp.spec.qnn_matmul16 import QnnMatMul16Spec, matmul16_spec_for
from openqnn.backends.plan import StepPlan
from openqnn.ir.graph import Node

__all__ = ["fully_connected", "matmul"]

Fast = Callable[..., torch.Tensor]
Bound = tuple[Callable[..., Any], Callable[..., Any]]


def _rows_gemm(device: torch.device, xq: QParams, wkn: np.ndarray, rq: Requant, bias: np.ndarray, rows: int,
               mode: str, split: tuple[list[tuple[int, np.ndarray]], np.ndarray] | None = None,
               off: np.ndarray | None = None, bounds: Sequence[np.ndarray] | None = None
               ) -> Callable[[torch.Tensor], torch.Tensor]:
    """[rows, k] activations (storage) @ static [k, n] integers -> requantized [rows, n] (1x1 conv core)."""
    k, n = wkn.shape
    core = ConvCore(wkn.reshape(1, 1, k, n), xq, rq, bias, 1, rows, 1, rows, 1, (1, 1), (1, 1), 1, mode,
                    device, split, off, bounds)
    planes = len(act_coefs(xq.bitwidth))
    bw, run = xq.bitwidth, core.run

    def gemm(x2d: torch.Tensor) -> torch.Tensor:
        return run(act_planes(x2d, bw).reshape(planes, rows, 1, k)).reshape(rows, n)

    return gemm


def _gemm_plan(xq: QParams, wkn: np.ndarray, rq: Requant, bias: np.ndarray, mode: str, device: torch.device,
               fuse: bool = True) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The kernel choice of an activation @ static [k, n] GEMM and its operands: native/int8.c's fused
    GEMM where it applies on this machine (``fused``), else the 1x1 convolution core (``core``), whose
    int8 weight planes the plan always carries (a machine without the fused kernels falls back to it)."""
    k, n = wkn.shape
    split = ConvCore.weight_split(wkn.reshape(1, 1, k, n), 1)
    coefs, arrays = split_arrays(split)
    arrays["core_off"] = ConvCore.folded_offset(split, bias, xq, k)
    attrs: dict[str, Any] = {"gemm": "core", "mode": mode, "wcoefs": coefs}
    if fuse and FusedSetup.of(device, xq, wkn, rq, bias) is not None:
        data = FusedSetup.data(xq, wkn, rq)
        assert data is not None
        attrs.update(gemm="fused", fused_form=FusedSetup.key(rq, bias, data))
        arrays.update({f"fused_{key}": v for key, v in data.items()})
        packing, packed = packing_for_plan(wkn)
        attrs.update(packing)
        arrays.update(packed)
    return attrs, arrays


def _bind_gemm(attrs: Mapping[str, Any], arrays: Mapping[str, np.ndarray], xq: QParams, wkn: np.ndarray,
               requant: Callable[[], Requant], bias: np.ndarray, rows: int, device: torch.device
               ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``requant()``: the requantization, made only where the plan does not hold its C form (the fused GEMM's)."""
    gemm = None
    if attrs["gemm"] == "fused":
        fs = FusedSetup.for_plan(device, attrs, arrays, requant, bias)
        gemm = fused_gemm(device, xq, wkn, None, None, fs, stored_packing(attrs, arrays)) if fs is not None else None
    if gemm is None:  # "core", or this machine lacks the fused kernels: the same bits
        rq = requant()
        gemm = _rows_gemm(device, xq, wkn, rq, bias, rows, machine_mode(attrs["mode"], device),
                          split_of(attrs["wcoefs"], arrays), np.asarray(arrays["core_off"], dtype=np.int64),
                          split_bounds(attrs["wcoefs"], arrays))
    return gemm


@htp_kernel("FullyConnected")
def fully_connected(node: Node, ctx: HtpBuildContext) -> HtpStep:
    return build_fully_connected(node, ctx)


def build_fully_connected(node: Node, ctx: HtpBuildContext, mode: str | None = None) -> HtpStep:
    """FullyConnected with static weights [units, k]; ``mode`` forces the GEMM kind (tests)."""
    fuse = int8_kinds(mode, ctx)
    mode = mode or gemm_mode(ctx)
    x_name, w_name, y_name = node.inputs[0], node.inputs[1], node.outputs[0]
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    xq = act_qparams(ctx, x_name, "input")
    oq = act_qparams(ctx, y_name, "output")
    wc, w_scale, w_bits = static_operand(ctx, w_name, 0)
    units, k = wc.shape
    rows = math.prod(ctx.shape(x_name)[:-1])
    rq = requant_for(ctx, xq, oq, w_scale, units, w_bits)
    bias = op_bias(ctx, b_name, float(xq.scale[0]), w_scale, units, rq)
    gemm_attrs, arrays = _gemm_plan(xq, np.ascontiguousarray(wc.T), rq, bias, mode, ctx.device, fuse)
    drop_derivable_plane(arrays, gemm_attrs["wcoefs"], narrowest(wc))
    plan = StepPlan("htp.fully_connected", node.name, node.op_type, (x_name,), tuple(node.outputs),
                    {"x": qparams_attrs(xq), "rq": rq.to_attrs(), "rows": rows, "k": k,
                     "out_shape": list(ctx.shape(y_name)), **gemm_attrs},
                    {"w_kn": np.ascontiguousarray(narrowest(wc).T), "bias": bias, **arrays})
    return bind_step(plan, ctx.device)


@htp_binder("htp.fully_connected")
def _bind_fully_connected(plan: StepPlan, device: torch.device) -> Bound:
    a = plan.attrs
    xq = qparams_of(a["x"])
    # made on first use: where the plan keeps the fused GEMM's C form, by the reference alone
    requant = functools.cache(lambda: Requant.from_attrs(a["rq"], device))

    # stored [k, units], the layout the GEMMs take (the narrowest integer dtype holding the weights)
    wkn = plan.arrays["w_kn"]
    wc = wkn.T
    wc64 = lazy_int64(wc)
    bias = np.asarray(plan.arrays["bias"], dtype=np.int64)
    rows, k, out_shape = int(a["rows"]), int(a["k"]), tuple(a["out_shape"])
    zx = int(xq.zero_point[0])

    def reference(x: np.ndarray) -> np.ndarray:
        rq = requant()
        if isinstance(rq, QnnConv16Requant):
            w = wc64()
            return reference16(rq, np.asarray(x).reshape(rows, k), xq, lambda xc: xc @ w.T, w.sum(axis=1),
                               bias).reshape(out_shape)
        acc = (np.asarray(x, dtype=np.int64).reshape(rows, k) - zx) @ wc64().T
        return rq.reference(acc + bias).reshape(out_shape)

    gemm = _bind_gemm(a, with_derived_plane(plan.arrays, lambda: wkn), xq, wkn, requant, bias, rows, device)

    def fast(x: torch.Tensor) -> torch.Tensor:
        return gemm(x.reshape(rows, k)).reshape(out_shape)

    return reference, fast


# -- MatMul ---------------------------------------------------------------------------------------

class _Operand:
    """One MatMul operand: an activation (encoding) or static integers (``q + offset``)."""

    def __init__(self, ctx: HtpBuildContext, name: str, shape: tuple[int, ...], transposed: bool, right: bool):
        self.name, self.static = name, ctx.is_static(name)
        self.q: QParams | None = None
        self.values: np.ndarray | None = None
        rank = len(shape)
        if self.static:
            # per-channel scales only on the right operand's output axis (n)
            axis = (rank - 2 if transposed else rank - 1) if right else None
            wc, self.scale, self.bits = static_operand(ctx, name, axis, "operand")
            self.values = np.swapaxes(wc, -1, -2) if transposed else wc
            self.zero = 0
            self.maxabs = float(np.abs(self.values).max()) if self.values.size else 0.0
        else:
            self.q = act_qparams(ctx, name, "input")
            self.scale, self.bits = self.q.scale, self.q.bitwidth
            self.zero = int(self.q.zero_point[0])
            self.maxabs = float(max(self.zero, (1 << self.bits) - 1 - self.zero))
        self.transposed = transposed

    def to_attrs(self) -> dict[str, Any]:
        """The operand as plan attributes (its static integers, if any, go in the plan's arrays)."""
        return {"name": self.name, "static": self.static, "transposed": self.transposed, "zero": self.zero,
                "bits": self.bits, "q": qparams_attrs(self.q) if self.q is not None else None}

    @staticmethod
    def of(attrs: Mapping[str, Any], values: np.ndarray | None) -> _Operand:
        x = _Operand.__new__(_Operand)
        x.name, x.static, x.transposed = attrs["name"], bool(attrs["static"]), bool(attrs["transposed"])
        x.zero, x.bits = int(attrs["zero"]), int(attrs["bits"])
        x.q = qparams_of(attrs["q"]) if attrs["q"] is not None else None
        x.values = np.asarray(values, dtype=np.int64) if values is not None else None
        return x

    def np_int(self, x: np.ndarray | None) -> np.ndarray:
        """The operand's integers (zero point removed), [..., rows, cols] of the product."""
        if self.values is not None:
            return self.values
        assert x is not None
        v = np.asarray(x, dtype=np.int64) - self.zero
        return np.swapaxes(v, -1, -2) if self.transposed else v

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(-1, -2) if self.transposed else x


@htp_kernel("MatMul")
def matmul(node: Node, ctx: HtpBuildContext) -> HtpStep:
    return build_matmul(node, ctx)


def build_matmul(node: Node, ctx: HtpBuildContext, mode: str | None = None) -> HtpStep:
    """MatMul of an activation with a static operand or of two activations; ``mode`` as above.

    The fast kernel is chosen here: ``rows`` (a static 2-D right operand: the 1x1 convolution core),
    ``act_act`` (two 8-bit activations, int8 GEMMs), else ``float64`` (exact below 2^53, checked)."""
    mode = mode or gemm_mode(ctx)
    a_name, b_name, y_name = node.inputs[0], node.inputs[1], node.outputs[0]
    a = _Operand(ctx, a_name, ctx.shape(a_name), bool(node.attrs["transpose_in0"]), False)
    b = _Operand(ctx, b_name, ctx.shape(b_name), bool(node.attrs["transpose_in1"]), True)
    if a.static and b.static:
        raise Unsupported("MatMul of two static operands (constant-fold it)")
    oq = act_qparams(ctx, y_name, "output")
    out_shape = ctx.shape(y_name)
    n = out_shape[-1]
    a_shape = ctx.shape(a_name)
    k = a_shape[-2] if a.transposed else a_shape[-1]
    s_a = float(a.scale.reshape(-1)[0])
    real = s_a * np.broadcast_to(b.scale, (n,)).astype(np.float64) / float(oq.scale[0])
    wide = a.bits == 16 or b.bits == 16
    rq = Requant(real, int(oq.zero_point[0]), oq.bitwidth, wide, ctx.device)
    runtime = [x.name for x in (a, b) if not x.static]
    attrs: dict[str, Any] = {"a": a.to_attrs(), "b": b.to_attrs(), "rq": rq.to_attrs(), "k": k,
                             "out_shape": list(out_shape), "mode": mode}
    arrays = {key: x.values for key, x in (("a", a), ("b", b)) if x.values is not None}
    b_batch = b.values.shape[:-2] if b.values is not None else ()
    qspec = _qnn_act_act_spec(ctx, a, b, oq) if not a.static and not b.static else None
    if isinstance(qspec, QnnMatMulSpec):
        attrs.update(kind="qnn_act_act", qnn={"arch": qspec.arch, "zo": qspec.zero_point})
        arrays["qnn_mm"] = narrowest(qspec.consts())  # (int32 where the values allow: half the bytes)
    elif isinstance(qspec, QnnMatMul16Spec):
        attrs.update(kind="qnn_act_act16", qnn={"arch": qspec.arch, "zo": qspec.zero_point, "zb": qspec.zb,
                                                 "z8": qspec.z8})
        arrays["qnn_mm"] = narrowest(qspec.consts())
    elif b.static and a.q is not None and math.prod(b_batch) == 1 and len(b_batch) <= len(a_shape) - 2:
        assert b.values is not None
        gemm_attrs, gemm_arrays = _gemm_plan(a.q, np.ascontiguousarray(b.values.reshape(k, n)), rq,
                                             np.zeros(n, dtype=np.int64), mode, ctx.device, fuse=False)
        attrs.update(kind="rows", **gemm_attrs)
        arrays.update(gemm_arrays)
    else:
        # (act_act keeps the float64 form's bound too: a machine without int8 GEMMs falls back to it)
        bound = k * a.maxabs * b.maxabs
        attrs["bound"] = bound
        if not a.static and not b.static and mode == "int8" and not wide and k < 40000:
            attrs["kind"] = "act_act"
        elif not bound < 2.0**52:
            raise Unsupported(f"MatMul accumulator bound {bound:.3g} exceeds the exact float64 range")
        else:
            attrs["kind"] = "float64"
    plan = StepPlan("htp.matmul", node.name, node.op_type, tuple(runtime), tuple(node.outputs), attrs, arrays)
    return bind_step(plan, ctx.device)


def _qnn_act_act_spec(ctx: HtpBuildContext, a: _Operand, b: _Operand, oq: QParams
                      ) -> QnnMatMulSpec | QnnMatMul16Spec | None:
    """QNN's act x act MatMul spec where ``htp_config.arithmetic`` is "qnn" and it is established (8 or 16 bits)."""
    if ctx.arithmetic != "qnn":
        return None
    # QNN computes M from the float32 scales of the model it is given
    f32 = lambda v: float(np.float32(np.asarray(v).reshape(-1)[0]))  # noqa: E731
    if a.bits == 16:
        return matmul16_spec_for(ctx.arch.name, "qnn", f32(a.scale), f32(b.scale), b.zero, f32(oq.scale),
                                 int(oq.zero_point[0]), a.bits, b.bits, oq.bitwidth)
    real = f32(a.scale) * f32(b.scale) / f32(oq.scale)
    return matmul_spec_for(ctx.arch.name, "qnn", real, int(oq.zero_point[0]), a.bits, b.bits, oq.bitwidth)


@htp_binder("htp.matmul")
def _bind_matmul(plan: StepPlan, device: torch.device) -> Bound:
    at = plan.attrs
    a, b = _Operand.of(at["a"], plan.arrays.get("a")), _Operand.of(at["b"], plan.arrays.get("b"))
    k, out_shape = int(at["k"]), tuple(at["out_shape"])
    n = out_shape[-1]

    if at["kind"] == "qnn_act_act":  # (QNN's act x act kinds requantize by their own spec: no Requant made)
        # (the plan's constants widened once: the spec's tables and the fast path's tensor share them)
        c64 = np.ascontiguousarray(plan.arrays["qnn_mm"], dtype=np.int64)
        spec = QnnMatMulSpec.from_consts(str(at["qnn"]["arch"]), c64, int(at["qnn"]["zo"]))

        def reference_qnn(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
            return spec.apply_np(a.np_int(xa), b.np_int(xb)).reshape(out_shape)

        return reference_qnn, _qnn_act_act(a, b, spec, k, out_shape, device, torch.from_numpy(c64))

    if at["kind"] == "qnn_act_act16":
        q = at["qnn"]
        spec16 = QnnMatMul16Spec.from_consts(str(q["arch"]), plan.arrays["qnn_mm"], int(q["zo"]), int(q["zb"]),
                                             int(q["z8"]))

        def reference_qnn16(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
            qa, qb = a.np_int(xa) + a.zero, b.np_int(xb) + b.zero
            return spec16.apply_np(qa, a.zero, qb).reshape(out_shape)

        return reference_qnn16, _qnn_act_act16(a, b, spec16, k, out_shape, device)

    rq = Requant.from_attrs(at["rq"], device)

    def reference(*xs: np.ndarray) -> np.ndarray:
        it = iter(xs)
        av = a.np_int(None if a.static else next(it))
        bv = b.np_int(None if b.static else next(it))
        return rq.reference(np.matmul(av, bv)).reshape(out_shape)

    fast: Fast
    if at["kind"] == "rows":
        assert b.values is not None and a.q is not None
        rows = math.prod(out_shape[:-1])
        gemm = _bind_gemm(at, plan.arrays, a.q, np.ascontiguousarray(b.values.reshape(k, n)), lambda: rq,
                          np.zeros(n, dtype=np.int64), rows, device)

        def fast_static(x: torch.Tensor) -> torch.Tensor:
            return gemm(a.view(x).reshape(rows, k)).reshape(out_shape)

        fast = fast_static
    elif at["kind"] == "act_act" and machine_mode("int8", device) == "int8":
        fast = _act_act(a, b, rq, k, out_shape, device)
    else:  # "float64", or int8 GEMMs that this machine lacks
        fast = _float64_matmul(device, a, b, rq, float(at["bound"]), out_shape)
    return reference, fast


def _float64_matmul(device: torch.device, a: _Operand, b: _Operand, rq: Requant, bound: float,
                    out_shape: tuple[int, ...]) -> Fast:
    """Exact float64 matmul of the integers (|products summed| <= ``bound`` < 2^53, checked in the
    builder), then requantization."""
    run_rq = rq.fast(np.zeros(out_shape[-1], dtype=np.int64), [(1, np.full(out_shape[-1], bound))], torch.float64)
    consts = {x.name: torch.tensor(x.values, dtype=torch.float64, device=device)
              for x in (a, b) if x.values is not None}
    def operand(x: _Operand, it: Iterator[torch.Tensor]) -> torch.Tensor:
        if x.static:
            return consts[x.name]
        return x.view(next(it)).to(torch.float64).sub_(x.zero)

    def run(*xs: torch.Tensor) -> torch.Tensor:
        it = iter(xs)
        av = operand(a, it)
        bv = operand(b, it)
        return run_rq(torch.matmul(av, bv)).reshape(out_shape)

    return run


def _act_act(a: _Operand, b: _Operand, rq: Requant, k: int, out_shape: tuple[int, ...], device: torch.device
             ) -> Callable[..., torch.Tensor]:
    """8-bit activation x 8-bit activation: int8 GEMMs per batch (CPU), zero points as row/column sums."""
    assert a.q is not None and b.q is not None
    batch = out_shape[:-2]
    nb = math.prod(batch)
    m, n = out_shape[-2], out_shape[-1]
    a0, b0 = act_a0(a.q), act_a0(b.q)
    off = np.full(n, k * a0 * b0, dtype=np.int64)
    bound = 128.0 * k * (128.0 + abs(a0) + abs(b0))  # < 2^31 for k < 40000
    run_rq = rq.fast(off, [(1, np.full(n, bound))], torch.int32)

    def run(xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        av = torch.bitwise_xor(a.view(xa).view(torch.int8), -128).expand(*batch, m, k).reshape(nb, m, k)
        bv = torch.bitwise_xor(b.view(xb).view(torch.int8), -128).expand(*batch, k, n).reshape(nb, k, n)
        acc = scratch("mmacc", (nb, m, n), torch.int32, device)
        for j in range(nb):
            torch._int_mm(av[j], bv[j], out=acc[j])
        acc.add_(av.sum(dim=-1, dtype=torch.int32).unsqueeze(-1), alpha=-b0)
        acc.add_(bv.sum(dim=-2, dtype=torch.int32).unsqueeze(-2), alpha=-a0)
        return run_rq(acc).reshape(out_shape)

    return run


def _qnn_act_act(a: _Operand, b: _Operand, spec: QnnMatMulSpec, k: int, out_shape: tuple[int, ...],
                 device: torch.device, consts: torch.Tensor) -> Callable[..., torch.Tensor]:
    """QNN's 8-bit act x act MatMul (spec/qnn_matmul.py): in[1]'s columns as int8 (requantized per column where
    they do not fit), int8 GEMMs per batch (CPU; else one exact float64 matmul), the zero point of in[0] as
    column sums (``sum (A - za) W = (A - 128) @ W + (128 - za) * colsum(W)``), then the per-column spec
    (``consts``: its :meth:`~QnnMatMulSpec.consts` as an int64 tensor)."""
    batch = out_shape[:-2]
    nb = math.prod(batch)
    m, n = out_shape[-2], out_shape[-1]
    za, zb = a.zero, b.zero
    consts = consts.to(device)
    recip = consts[5]
    int8 = machine_mode("int8", device) == "int8"

    def run(xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        bv = b.view(xb).to(torch.int64) - zb
        f = torch.maximum((bv.amax(dim=-2).clamp_(min=127) * (2 * F_ONE) + 127) // 254,
                          bv.amin(dim=-2).neg_().clamp_(min=128) * (F_ONE // 128))
        w = torch.bitwise_right_shift(bv * recip[f - F_ONE].unsqueeze(-2) + (1 << 15), 16)
        w = w.expand(*batch, k, n).reshape(nb, k, n)
        f = f.expand(*batch, n).reshape(nb, n)
        if int8:
            av = torch.bitwise_xor(a.view(xa).view(torch.int8), -128).expand(*batch, m, k).reshape(nb, m, k)
            w8 = w.to(torch.int8)
            acc = scratch("mmacc", (nb, m, n), torch.int32, device)
            for j in range(nb):
                torch._int_mm(av[j], w8[j], out=acc[j])
            acc64 = acc.to(torch.int64).add_(w.sum(dim=-2).unsqueeze(-2), alpha=128 - za)
        else:
            af = a.view(xa).to(torch.float64).sub_(za).expand(*batch, m, k).reshape(nb, m, k)
            acc64 = torch.matmul(af, w.to(torch.float64)).to(torch.int64)  # |sums| < 2^53: exact
        return spec.apply_t(acc64, f, consts).to(torch.uint8).reshape(out_shape)

    return run


def _qnn_act_act16(a: _Operand, b: _Operand, spec: QnnMatMul16Spec, k: int, out_shape: tuple[int, ...],
                   device: torch.device) -> Callable[..., torch.Tensor]:
    """QNN's 16-bit act x act MatMul (spec/qnn_matmul16.py): in[1] converted to uint8 and taken as int8 columns,
    in[0]'s high and low bytes through int8 GEMMs per batch (CPU; else exact float64 matmuls), each byte as
    ``(x - 128) @ W + 128 colsum(W)``, the low bytes' sums floored to units of 256, then the per-column spec."""
    batch = out_shape[:-2]
    nb = math.prod(batch)
    m, n = out_shape[-2], out_shape[-1]
    za = a.zero
    consts = torch.from_numpy(spec.consts()).to(device)
    recip = consts[3]
    tz = (255 * spec.zb + 511) >> 9
    int8 = machine_mode("int8", device) == "int8"

    def byte_gemm(x: torch.Tensor, w: torch.Tensor, w8: torch.Tensor | None, ws: torch.Tensor) -> torch.Tensor:
        if w8 is None:  # |sums| < 2^53: exact
            return torch.matmul(x.to(torch.float64), w.to(torch.float64)).to(torch.int64)
        xv = x.sub(128).to(torch.int8)
        acc = scratch("mmacc", (nb, m, n), torch.int32, device)
        for j in range(nb):
            torch._int_mm(xv[j], w8[j], out=acc[j])
        return acc.to(torch.int64).add_(ws.unsqueeze(-2), alpha=128)

    def run(xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        qb = b.view(xb).to(torch.int64)
        v = torch.bitwise_right_shift(torch.bitwise_right_shift(qb * 255 + 511, 9) + (128 * spec.z8 + 64 - tz), 7)
        v = v.clamp_(0, 255).sub_(spec.z8)
        f = torch.maximum((v.amax(dim=-2).clamp(min=127) * (2 * F_ONE) + 127) // 254,
                          v.amin(dim=-2).neg_().clamp_(min=128) * (F_ONE // 128))
        w = torch.bitwise_right_shift(v * recip[f - F_ONE].unsqueeze(-2) + (1 << 15), 16)
        w = w.expand(*batch, k, n).reshape(nb, k, n)
        f = f.expand(*batch, n).reshape(nb, n)
        ws = w.sum(dim=-2)
        qa = a.view(xa).to(torch.int64).expand(*batch, m, k).reshape(nb, m, k)
        w8 = w.to(torch.int8) if int8 else None
        hi = byte_gemm(torch.bitwise_right_shift(qa, 8), w, w8, ws)
        lo = byte_gemm(torch.bitwise_and(qa, 255), w, w8, ws)
        acc = hi.add_(torch.bitwise_right_shift(lo, 8)).sub_(torch.bitwise_right_shift(ws * za + 128, 8).unsqueeze(-2))
        return spec.apply_t(acc, f, consts).to(torch.int32).reshape(out_shape)

    return run
