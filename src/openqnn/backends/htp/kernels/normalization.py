"""htp integer kernels: softmax and normalizations (see registry.py for the conventions).

All arithmetic is on int64 (no float at run time); tables and constants are built once in float64
on the host. ``round_div(n, d)`` is integer division rounding half away from zero (d > 0).
Notation: input codes ``q`` with encoding (s_in, offset_in), output (s_out, offset_out).

Softmax (any axis, beta != 0 allowed)
    ``k = max(q) - q`` along the axis (``q - min(q)`` when beta < 0), in [0, 2^bw - 1];
    ``e = E[k]`` with the table ``E[k] = round(exp(-|beta| * s_in * k) * 2^30)`` (2^bw entries);
    ``S = sum(e)`` along the axis (int64). When ``s_out = 2^-f`` exactly (the fixed 1/2^bw output
    encoding): ``out = round_div(e << f, S) - offset_out``; otherwise ``p = round_div(e << 31, S)``
    (Q31 probability) and ``out = rdbpot(p * m, 62 - shift) - offset_out`` with
    ``(m, shift) = quantize_multiplier(1 / s_out)``. Clamped to the output range.
    With ``htp_config.arithmetic: "qnn"`` (v68, v73; 8-bit codes, output 1/256, rows of >= 17 elements,
    the last axis, beta 1) QNN's: ``E[k] = g(f16) >> n`` for ``k C' = n + f`` (``C' = s_in log2(e)`` truncated to 8
    significant bits, ``g`` the 4-segment quadratic 2^-f of the 16-bit route below with its own last segment,
    saturated: ``spec/qnn_softmax.long_pow2``; the plan's table), and
    ``out = (e r + 2^(b + 6)) >> (b + 7)`` with the sum's 16-bit reciprocal ``F = floor(2^(b + 15) / S)``, S of b bits,
    corrected once with the product ``S F`` truncated at 2^16: ``r = F + ((2^(b-1) - ((S F) >> 16)) F) >> (b - 1)``
    (``spec/qnn_softmax.long_recip``, ``long_codes_of``). Rows of two elements there (``htp.softmax_pair``):
    ``c1 = P[q1 - q0 + 255]``, ``c0 = 255 - c1`` with ``P[k] = floor(255 sigmoid(k s_in) + 1/2)``. Rows of 3 to
    16 there (``htp.softmax_short``, ``spec/qnn_softmax.short_codes``): ``e = E[k]`` with
    ``E[k] = (A[k >> 4] B[k & 15] + 2^14) >> 15``, ``A[i] = floor(32767 exp(-16 i s_in) + 1/2)``,
    ``B[j] = floor(32767 exp(-j s_in) + 1/2)``; ``S = sum(e)`` of ``b`` bits; the Q16 mantissa ``u``: for rows of
    5-16 ``(S - 2^(b-1)) >> (b - 17)``, for rows of 3-4 ``(d << 2) mod 2^16`` with ``d = (S + c) >> (b - 15)`` (``c``
    1/4 of d's last bit); ``r`` = nnlib's 4-segment quadratic reciprocal of ``2^16 + u`` (its coefficients in the
    plan), ``t = (e r + 2^15) >> 16``, ``out = (t + 2^(b-11)) >> (b - 10)``.
    Unsigned 16-bit codes there (output 1/65536, rows of 3 or more; ``htp.softmax16``,
    ``spec/qnn_softmax16.py``, the reciprocal approximated): ``e = E[k] = g(f16) >> n`` for
    ``k m = n 2^22 + f`` (``m = floor(2^22 s_in log2 e)``, ``g`` QNN's 4-segment quadratic 2^-f, the plan's
    table); ``S = sum(e)`` of ``b`` bits, ``R = 2^(b + 15) / S`` rounded to a multiple of ``2^max(0, 18 - b)``,
    ``out = (e R) >> (b - 1)``.

LogSoftmax
    ``k``, ``e``, ``S`` as for Softmax; ``lam = log2(S / 2^30)`` in Q24: ``b = floor(log2 S)``
    (integer bit search), 30-bit mantissa fraction ``f = (S >> (b - 30)) - 2^30`` split as
    ``i = f >> 14``, ``r = f & (2^14 - 1)``; table ``L[i] = round(log2(1 + i / 2^16) * 2^30)``
    (2^16 + 1 entries), linearly interpolated: ``l = L[i] + ((L[i+1] - L[i]) r + 2^13) >> 14``;
    ``lam = ((b - 30) << 24) + ((l + 2^5) >> 6)``. With ``A = round(|beta| s_in / s_out * 2^(F+24))``
    and ``B = round(ln 2 / s_out * 2^F)`` (F chosen so nothing overflows):
    ``out = -rdbpot(k A + lam B, F + 24) - offset_out``. With ``htp_config.arithmetic: "qnn"`` (v68, v73; 8-bit,
    last axis, rows of 3 or more, beta 1, ``s_in / s_out <= 2``) QNN's constants (``spec/qnn_logsoftmax.py``,
    partly established): ``A`` from ``T8(s_in) T16(1 / s_out)`` (the scales' mantissas truncated to 8 and 16 bits) in
    place of ``s_in / s_out``, the table ``E[k] = floor(2^(-k C') 2^30)`` with the Softmax's ``C'``, and ``lower``
    (0.035 of a code in the final fixed point) taken off before the rounding shift:
    ``out = -rdbpot(k A + lam B - lower, F + 24) - offset_out``.
    Unsigned 16-bit codes (v68, v73, "qnn", rows of 3 or more, beta 1; ``spec/qnn_logsoftmax16.py``, partly
    fitted): the same fixed point with a Q31 table ``E[k] = P(f) 2^(16 - n)`` (``n + f`` the 16-bit Exp's exponent
    of ``k``, ``P`` a fitted quartic 2^-f), ``lam`` less 31 in place of 30, the log2 table corrected by a fitted
    quintic in the mantissa, ``A = T16(s_in) T16(1 / s_out)``, ``B = T16(ln 2) T16(1 / s_out)``, ``lower`` 0.

LayerNorm / InstanceNorm / GroupNorm (normalized axes of N elements)
    ``S1 = sum(q)``, ``S2 = sum(q^2)`` (int64), ``D = N q - S1`` (= N (q - mean)) and
    ``V = N S2 - S1^2`` (= N^2 var, exact). With ``E(k) = round(eps N^2 4^k / s_in^2)`` (a table
    over k): per row ``k = floor((61 - bitlen(V + E(0))) / 2)`` (0..30), ``W = (V << 2k) + E(k)``
    (< 2^62) and ``R = max(isqrt(W), 1)`` (exact floor square root: float sqrt corrected by +-1
    steps), so ``D 2^k / R`` is the normalized value ``(x - mean) / sqrt(var + eps)``. With
    per-element constants ``G = round(gamma / s_out * 2^F)``, ``B = round(beta / s_out * 2^F)``
    (gamma, beta: the static operands dequantized; F <= 30 chosen so nothing overflows):
    ``out = round_div((D << k) * G + B * R, R << F) - offset_out``. LayerNorm with
    ``htp_config.arithmetic: "qnn"`` (v68, v73, 8/16-bit codes): ``B = round(beta / s_out) * 2^F``, beta rounded
    to the output's codes first, as QNN does (``spec/qnn_layernorm.py``). With 8-bit codes and gamma's
    per-tensor encoding (codes ``gq``, scale ``s_g``) QNN also scales gamma's codes by a per-row multiplier
    truncated to 16 fraction bits: ``m = floor(c * rsqrt_f32(float32(V / N^2 + eps / s_in^2)))`` with
    ``c = float32(s_g / s_out) 2^16`` and QNN's float32 fast inverse square root (``spec/qnn_layernorm.py``; about
    ``floor(2^16 s_g / (s_out sigma))``, up to 4.7e-6 low), ``out = round_div(gq D m + Bc N 2^16, N 2^16) - offset_out``
    with ``Bc = round(beta / s_out)`` (kernel ``htp.layernorm_qnn``). (The ``z + 1`` on nonzero multiples of 4
    that the simulator shows on large graph outputs is its output dequantization, not the LayerNorm's.)
    With unsigned 16-bit codes (``htp.layernorm_qnn16``, float64): the mean on HVX's qf32 grid
    (``mean16``), ``m 2^k`` = ``float32(s_g / s_out) / sigma`` rounded to 16 significant bits (``row_multipliers16``,
    sigma about that mean), ``out = round(gq m 2^k (q - mean') + Bc) - offset_out`` (half away from zero).

RmsNorm (no mean removed): the same with ``q`` replaced by ``q + offset_in`` (its signed value) and
    ``S1 = 0``: ``D = N (q + offset_in)``, ``V = N S2``.

Batchnorm (y = x * weight + bias per channel, static weight and bias)
    ``htp_config.arithmetic: "qnn"`` (v68, v73; 8- or 16-bit codes, 8-bit weight and bias): QNN's
    (``spec/qnn_batchnorm.py``): QNN EP re-quantizes the weight and the bias to fresh uint8 encodings over their
    values' range, then an integer form (15-bit multiplier, bias and output zero point folded into the accumulator
    in float32, a carry of 2^11 / 2^9) with 16-bit codes and on v68 with 8-bit ones of two or more channels, v73's
    convolution requantization on int8 weights for its 8-bit ones, exact rounding for one 8-bit channel; 8-bit
    codes as a table per channel ``[C, 256]`` in the plan (``htp.channel_table``, lut.py), 16-bit ones computed
    (``htp.batchnorm_qnn``). Otherwise
    TFLite's per-channel requantization: ``acc = (q - z_in) * (qw - zw) + bias_q`` with
    ``bias_q = round(bias / (s_in * s_w))``; ``out = R(acc, s_in * s_w / s_out) - offset_out``
    (multipliers per channel for a per-axis weight encoding; R = mbqm while |acc| fits int32, else
    mbqm64).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from openqnn.backends.htp.fixedpoint import (
    INT32_MAX,
    bitlen_np,
    bitlen_t,
    mbqm64_np,
    mbqm64_t,
    mbqm_np,
    mbqm_t,
    quantize_multiplier,
    rdbpot_np,
    rdbpot_t,
)
from openqnn.backends.htp.kernels.elementwise import (
    Codes,
    act_params,
    finish_np,
    finish_t,
    round_div_np,
    round_div_t,
    static_real,
)
from openqnn.backends.htp.kernels.lut import channel_table_step
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    QParams,
    Unsupported,
    bind_step,
    htp_binder,
    htp_kernel,
    plan_tensor,
)
from openqnn.backends.htp.spec.qnn_batchnorm import QnnBatchnormSpec, batchnorm_spec_for
from openqnn.backends.htp.spec.qnn_layernorm import (
    MULTIPLIER16_BITS,
    QF32_FRACTION_BITS,
    RSQRT_MAGIC,
    RSQRT_NEWTON_STEPS,
    beta_in_output_codes,
    gamma_codes_times_row_multiplier,
    gamma_codes_times_row_multiplier16,
    mean16,
    multiplier_constant,
    row_multipliers,
    row_multipliers16,
)
from openqnn.backends.htp.spec.qnn_logsoftmax import (
    LAM_BITS,
    fixed_log_softmax_np,
    fixed_point,
    logsoftmax_consts_for,
)
from openqnn.backends.htp.spec.qnn_logsoftmax16 import EXP_BITS as LS16_EXP_BITS
from openqnn.backends.htp.spec.qnn_logsoftmax16 import logsoftmax16_consts_for
from openqnn.backends.htp.spec.qnn_softmax import (
    RECIP16,
    RECIP_BITS,
    RECIP_PRODUCT_SHIFT,
    SHORT_LONGER_ROWS,
    pair_table_for,
    short_codes_of,
    short_sum_offset,
    short_table_for,
    softmax_table_for,
)
from openqnn.backends.htp.spec.qnn_softmax16 import codes_of as softmax16_codes_of
from openqnn.backends.htp.spec.qnn_softmax16 import softmax16_table_for
from openqnn.backends.htp.spec.qnn_unary import batchnorm_table_for
from openqnn.backends.plan import StepPlan
from openqnn.ir.graph import Node

__all__ = ["isqrt_np", "isqrt_t"]


# -- exact integer helpers -------------------------------------------------------------------

def isqrt_np(w: np.ndarray) -> np.ndarray:
    """floor(sqrt(w)) of int64s in [0, 2^62), exact: float sqrt corrected by +-1 steps."""
    w = np.asarray(w, dtype=np.int64)
    r = np.floor(np.sqrt(w.astype(np.float64))).astype(np.int64)
    for _ in range(2):
        r = r - (r * r > w)
    for _ in range(2):
        r = r + ((r + 1) * (r + 1) <= w)
    return r


def isqrt_t(w: torch.Tensor) -> torch.Tensor:
    r = torch.floor(torch.sqrt(w.to(torch.float64))).to(torch.int64)
    for _ in range(2):
        r = r - (r * r > w).to(torch.int64)
    for _ in range(2):
        r = r + ((r + 1) * (r + 1) <= w).to(torch.int64)
    return r


def _pow2_exponent(scale: float) -> int | None:
    """f with scale == 2^-f exactly, else None."""
    mant, exp = math.frexp(scale)
    return 1 - exp if mant == 0.5 else None


Fns = tuple[Callable[..., Any], Callable[..., Any]]


def _plan_step(node: Node, ctx: HtpBuildContext, kernel: str, attrs: dict[str, Any],
               arrays: dict[str, np.ndarray]) -> HtpStep:
    """A one-input step's plan (the output's codes in ``out``), bound."""
    attrs = {**attrs, "out": Codes.of(act_params(ctx, node.outputs[0])).to_attrs()}
    plan = StepPlan(kernel, node.name, node.op_type, (node.inputs[0],), tuple(node.outputs), attrs, arrays)
    return bind_step(plan, ctx.device)


def _on(device: torch.device, a: np.ndarray) -> torch.Tensor:
    """A plan's int64 array as a tensor on ``device`` (a copy: plan arrays may be read-only)."""
    return plan_tensor(np.asarray(a, dtype=np.int64), device)


# -- Softmax / LogSoftmax ----------------------------------------------------------------------

_EXP_BITS = 30


@htp_kernel("Softmax", "LogSoftmax")
def softmax(node: Node, ctx: HtpBuildContext) -> HtpStep:
    x_name, out_name = node.inputs[0], node.outputs[0]
    qi, qo = act_params(ctx, x_name), act_params(ctx, out_name)
    shape = ctx.shape(x_name)
    axis = int(node.attrs["axis"]) % max(len(shape), 1)
    beta = float(node.attrs["beta"])
    if not math.isfinite(beta):
        raise Unsupported(f"softmax beta {beta}")
    c = abs(beta) * float(qi.scale[0])
    ks = np.arange(1 << qi.bitwidth, dtype=np.float64)
    table = np.round(np.exp(-c * ks) * 2.0**_EXP_BITS).astype(np.int64)
    attrs: dict[str, Any] = {"axis": axis, "use_max": beta >= 0, "oo": int(qo.offset[0])}
    if node.op_type == "Softmax":  # QNN's exponentials where established (spec/qnn_softmax.py), same Q30 table
        case = (ctx.arch.name, ctx.arithmetic, shape[axis] if shape else 1, float(qi.scale[0]), float(qo.scale[0]),
                -int(qo.offset[0]), qi.bitwidth, qo.bitwidth, beta, axis == len(shape) - 1)
        t16 = softmax16_table_for(*case, not qi.signed and not qo.signed)
        if t16 is not None:  # 16-bit codes: Q15 exponentials, an even reciprocal (spec/qnn_softmax16.py)
            return _plan_step(node, ctx, "htp.softmax16", {}, {"exp": t16})
        pair = pair_table_for(*case)
        if pair is not None:  # QNN's rows of two: a sigmoid table of the difference (spec/qnn_softmax.py)
            return _plan_step(node, ctx, "htp.softmax_pair", {"oo": int(qo.offset[0])}, {"pair": pair})
        short = short_table_for(*case)
        if short is not None:  # rows of 3 to 16: nibble-table exponentials, nnlib's reciprocal (spec/qnn_softmax.py)
            return _plan_step(node, ctx, "htp.softmax_short", {},
                              {"exp": short, "recip": RECIP16})
        qnn = softmax_table_for(*case)
        if qnn is not None:  # QNN's Q15 exponentials and 16-bit reciprocal of their sum (spec/qnn_softmax.long_codes_of)
            return _plan_step(node, ctx, "htp.softmax", {**attrs, "f": 8, "recip_bits": RECIP_BITS,
                                                                "recip_product_shift": RECIP_PRODUCT_SHIFT}, {"exp": qnn})

    if node.op_type == "LogSoftmax":
        so = float(qo.scale[0])
        n = shape[axis] if shape else 1
        kmax = (1 << qi.bitwidth) - 1
        a_real, b_real = c / so, math.log(2.0) / so
        ls16 = logsoftmax16_consts_for(ctx.arch.name, ctx.arithmetic, n, float(qi.scale[0]), so, qi.bitwidth,
                                       qo.bitwidth, beta, axis == len(shape) - 1, not qi.signed and not qo.signed)
        if ls16 is not None:  # 16-bit codes: QNN's exponent, a fitted 2^-f and log (spec/qnn_logsoftmax16.py)
            t16, log2_16, a_fx, b_fx, total = ls16
            attrs.update(a_fx=a_fx, b_fx=b_fx, total=total, lower=0, exp_bits=LS16_EXP_BITS)
            return _plan_step(node, ctx, "htp.log_softmax", attrs, {"exp": t16, "log2": log2_16})
        qnn_ls = logsoftmax_consts_for(ctx.arch.name, ctx.arithmetic, n, float(qi.scale[0]), so, qi.bitwidth,
                                       qo.bitwidth, beta, axis == len(shape) - 1)
        lower = 0.0  # codes: the rounding's threshold lowered from 1/2
        if qnn_ls is not None:  # QNN's difference multiplier, exponentials and rounding (spec/qnn_logsoftmax.py)
            table, a_real, lower = qnn_ls
            b_real = math.log(2.0) / float(np.float32(so))
        fx = fixed_point(a_real, b_real, kmax, n)
        if fx is None:
            raise Unsupported("LogSoftmax encodings out of the fixed-point range")
        a_fx, b_fx, total = fx
        log2_table = np.round(np.log2(1.0 + np.arange((1 << 16) + 1, dtype=np.float64) / 2.0**16) * 2.0**30)
        attrs.update(a_fx=a_fx, b_fx=b_fx, total=total, lower=round(lower * 2.0**total))
        return _plan_step(node, ctx, "htp.log_softmax", attrs, {"exp": table, "log2": log2_table.astype(np.int64)})

    f = _pow2_exponent(float(qo.scale[0]))
    if f is not None and 0 <= f <= 32:
        attrs.update(f=f)
    else:
        m, shift = quantize_multiplier(1.0 / float(qo.scale[0]))
        if not 0 <= shift <= 30:
            raise Unsupported(f"softmax output scale {float(qo.scale[0]):g} cannot hold probabilities")
        attrs.update(m=m, shift=shift)
    return _plan_step(node, ctx, "htp.softmax", attrs, {"exp": table})


def _diffs(axis: int, use_max: bool) -> Fns:
    """``max(q) - q`` along ``axis`` (``q - min(q)`` for a negative beta): numpy and torch."""
    def diff_np(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        return (np.max(x, axis=axis, keepdims=True) - x) if use_max else (x - np.min(x, axis=axis, keepdims=True))

    def diff_t(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.int64)
        return (torch.amax(x, dim=axis, keepdim=True) - x) if use_max else (x - torch.amin(x, dim=axis, keepdim=True))

    return diff_np, diff_t


@htp_binder("htp.softmax")
def _bind_softmax(plan: StepPlan, device: torch.device) -> Fns:
    p = plan.attrs
    axis, oo, qo = int(p["axis"]), int(p["oo"]), Codes.from_attrs(p["out"])
    diff_np, diff_t = _diffs(axis, bool(p["use_max"]))
    table = np.asarray(plan.arrays["exp"], dtype=np.int64)
    table_t = _on(device, table)
    if "recip_bits" in p:  # QNN's rows of 17 and more: a (recip_bits + 1)-bit reciprocal of the sum, one rounding
        f, rb, ps = int(p["f"]), int(p["recip_bits"]), int(p["recip_product_shift"])

        def prob_np(e: np.ndarray, s: np.ndarray) -> np.ndarray:
            b = bitlen_np(s)
            r = (np.int64(1) << (b + rb)) // s
            r = r + ((((np.int64(1) << (b + rb - ps)) - ((s * r) >> ps)) * r) >> (b + rb - ps))  # long_recip
            sh = b + rb - f
            return (e * r + (np.int64(1) << (sh - 1))) >> sh

        def prob_t(e: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            b = bitlen_t(s)
            one = torch.ones_like(s)
            r = torch.bitwise_left_shift(one, b + rb) // s
            r = r + (((torch.bitwise_left_shift(one, b + rb - ps) - ((s * r) >> ps)) * r) >> (b + rb - ps))
            sh = b + rb - f
            return (e * r + (one << (sh - 1))) >> sh
    elif "f" in p:
        f = int(p["f"])

        def prob_np(e: np.ndarray, s: np.ndarray) -> np.ndarray:
            return round_div_np(e << f, s)

        def prob_t(e: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return round_div_t(e << f, s)
    else:
        m, shift = int(p["m"]), int(p["shift"])

        def prob_np(e: np.ndarray, s: np.ndarray) -> np.ndarray:
            return rdbpot_np(round_div_np(e << 31, s) * m, 62 - shift)

        def prob_t(e: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return rdbpot_t(round_div_t(e << 31, s) * m, 62 - shift)

    def reference(x: np.ndarray) -> np.ndarray:
        e = table[diff_np(x)]
        s = np.sum(e, axis=axis, keepdims=True)
        return finish_np(prob_np(e, s) - oo, qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        e = table_t[diff_t(x)]
        s = e.sum(dim=axis, keepdim=True)
        return finish_t(prob_t(e, s) - oo, qo)

    return reference, fast


@htp_binder("htp.softmax_pair")
def _bind_softmax_pair(plan: StepPlan, device: torch.device) -> Fns:
    oo, qo = int(plan.attrs["oo"]), Codes.from_attrs(plan.attrs["out"])
    pair = np.asarray(plan.arrays["pair"], dtype=np.int64)
    pair_t = _on(device, pair)

    def reference(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        c1 = pair[x[..., 1:] - x[..., :1] + 255]
        return finish_np(np.concatenate([255 - c1, c1], axis=-1) - oo, qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.int64)
        c1 = pair_t[x[..., 1:] - x[..., :1] + 255]
        return finish_t(torch.cat([255 - c1, c1], dim=-1) - oo, qo)

    return reference, fast


@htp_binder("htp.softmax_short")
def _bind_softmax_short(plan: StepPlan, device: torch.device) -> Fns:
    """Rows of 3 to 16 on the last axis, output 1/256 with zero point 0 (spec/qnn_softmax.short_codes)."""
    qo = Codes.from_attrs(plan.attrs["out"])
    table, coeffs = np.asarray(plan.arrays["exp"], dtype=np.int64), np.asarray(plan.arrays["recip"], dtype=np.int64)
    table_t = _on(device, table)
    c2, c1, c0 = (_on(device, c) for c in coeffs)
    c1, c0 = c1 << 15, c0 << 15
    lo, hi = -(1 << 15), (1 << 15) - 1

    def reference(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        return finish_np(short_codes_of(table[x.max(axis=-1, keepdims=True) - x], coeffs), qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.int64)
        e = table_t[torch.amax(x, dim=-1, keepdim=True) - x]
        s = e.sum(dim=-1, keepdim=True)
        b = bitlen_t(s)
        if x.shape[-1] >= SHORT_LONGER_ROWS:  # the sum's 16 bits below its leading one, truncated
            m = s - (1 << (b - 1))
            u = torch.where(b >= 17, m >> torch.clamp(b - 17, min=0), m << torch.clamp(17 - b, min=0))
        else:  # its top 15 bits with an offset, their 14 bits below the leading one
            num, den_bits = short_sum_offset(x.shape[-1])
            d = torch.clamp((s + ((num << (b - 15)) >> den_bits)) >> (b - 15), max=hi)
            u = (d << 2) & 0xFFFF
        i = u >> 14
        p = torch.clamp((c2[i] * u - c1[i]) >> 16, lo, hi)
        p = torch.clamp((p * u + c0[i]) >> 16, lo, hi)
        r = torch.clamp(2 * p, lo, hi)
        t = (e * r + (1 << 15)) >> 16
        return finish_t((t + (1 << (b - 11))) >> (b - 10), qo)

    return reference, fast


@htp_binder("htp.softmax16")
def _bind_softmax16(plan: StepPlan, device: torch.device) -> Fns:
    """Unsigned 16-bit rows of 3 or more on the last axis, output 1/65536 with zero point 0
    (spec/qnn_softmax16.codes_of): ``(E R) >> (b - 1)``, ``R`` = ``2^(b + 15) / S`` rounded to a multiple of
    ``2^max(0, 18 - b)``."""
    qo = Codes.from_attrs(plan.attrs["out"])
    table = np.asarray(plan.arrays["exp"], dtype=np.int64)
    table_t = _on(device, table)

    def reference(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        return finish_np(softmax16_codes_of(table[x.max(axis=-1, keepdims=True) - x]), qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.int64)
        e = table_t[torch.amax(x, dim=-1, keepdim=True) - x]
        s = e.sum(dim=-1, keepdim=True)
        b = bitlen_t(s)
        q = torch.ones_like(s) << torch.clamp(18 - b, min=0)
        r = torch.clamp(q * ((torch.ones_like(s) << (b + 15)) + ((s * q) >> 1)).div(s * q, rounding_mode="floor"),
                        max=(1 << 16) - 1)
        return finish_t((e * r) >> (b - 1), qo)

    return reference, fast


@htp_binder("htp.log_softmax")
def _bind_log_softmax(plan: StepPlan, device: torch.device) -> Fns:
    p = plan.attrs
    axis, oo, qo = int(p["axis"]), int(p["oo"]), Codes.from_attrs(p["out"])
    a_fx, b_fx, total, lower = int(p["a_fx"]), int(p["b_fx"]), int(p["total"]), int(p.get("lower", 0))
    exp_bits = int(p.get("exp_bits", _EXP_BITS))  # the exponentials' fixed point (31 for 16-bit codes)
    diff_np, diff_t = _diffs(axis, bool(p["use_max"]))
    table, log2_table = np.asarray(plan.arrays["exp"], dtype=np.int64), np.asarray(plan.arrays["log2"], dtype=np.int64)
    table_t, log2_t = _on(device, table), _on(device, log2_table)

    def reference(x: np.ndarray) -> np.ndarray:
        k = diff_np(x)
        return finish_np(fixed_log_softmax_np(k, table, log2_table, a_fx, b_fx, total, lower, exp_bits, axis) - oo, qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        k = diff_t(x)
        s = table_t[k].sum(dim=axis, keepdim=True)
        b = bitlen_t(s) - 1
        f = (s >> (b - 30)) - (1 << 30)
        i, r = f >> 14, f & ((1 << 14) - 1)
        lo = log2_t[i]
        frac_log = lo + (((log2_t[i + 1] - lo) * r + (1 << 13)) >> 14)
        lam = ((b - exp_bits) << LAM_BITS) + ((frac_log + (1 << 5)) >> 6)
        return finish_t(-rdbpot_t(k * a_fx + lam * b_fx - lower, total) - oo, qo)

    return reference, fast


# -- LayerNorm / InstanceNorm / GroupNorm ------------------------------------------------------

_MAX_K = 30


def _param(ctx: HtpBuildContext, node: Node, i: int) -> np.ndarray | None:
    if len(node.inputs) <= i or not node.inputs[i]:
        return None
    name = node.inputs[i]
    if not ctx.is_static(name):
        raise Unsupported(f"{node.op_type} parameter '{name}' is not static")
    return static_real(ctx, name)


def _norm_step(node: Node, ctx: HtpBuildContext, axes: tuple[int, ...], work_shape: tuple[int, ...],
               gamma: np.ndarray | None, beta: np.ndarray | None, eps: float, rms: bool = False,
               beta_codes: bool = False, gamma_q: tuple[np.ndarray, float] | None = None,
               gamma_q16: tuple[np.ndarray, float] | None = None) -> HtpStep:
    """The normalization spec (module docstring) over ``axes`` of the input viewed as ``work_shape``;
    gamma / beta (reals) broadcast against that view. ``rms``: RmsNorm, no mean removed: the codes are
    centred on the zero point (real = s * (q + offset)) and s1 = 0, so d = n * x and v = n * s2."""
    x_name, out_name = node.inputs[0], node.outputs[0]
    qi, qo = act_params(ctx, x_name), act_params(ctx, out_name)
    n = int(np.prod([work_shape[a] for a in axes], dtype=np.int64)) if axes else 1
    qm = (1 << qi.bitwidth) - 1
    if n * n * qm * qm >= 1 << 62:
        raise Unsupported(f"{node.op_type} over {n} elements overflows the int64 variance")
    si, so = float(qi.scale[0]), float(qo.scale[0])
    e_real = max(float(eps), 0.0) * n * n / (si * si)
    if e_real >= 2.0**60:
        raise Unsupported(f"{node.op_type} epsilon {eps:g} is huge against the input scale")
    e_table = np.array([min(round(e_real * 4.0**k), 1 << 62) for k in range(_MAX_K + 1)], dtype=np.int64)
    g = (np.asarray(gamma, dtype=np.float64) if gamma is not None else np.ones(())) / so
    b = (np.asarray(beta, dtype=np.float64) if beta is not None else np.zeros(())) / so
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(b))):
        raise Unsupported(f"{node.op_type} parameters are not finite")
    gmax = float(np.max(np.abs(g), initial=0.0))
    bmax = float(np.max(np.abs(b), initial=0.0))
    rn = math.sqrt(n)
    frac = min(30, math.floor(30 - math.log2(rn * gmax + bmax + rn + 2)))
    if frac < 4:
        raise Unsupported(f"{node.op_type}: gamma / beta too large for the output encoding")
    gi = np.asarray(np.round(g * 2.0**frac), dtype=np.int64)
    if gamma_q is not None:  # QNN's LayerNorm: a 16-bit per-row multiplier of gamma's codes (spec/qnn_layernorm.py)
        step = _qnn_layer_norm(node, ctx, axes, work_shape, n, e_table, max(float(eps), 0.0) / (si * si), gamma_q, b, qo)
        if step is not None:
            return step
    if gamma_q16 is not None and not qi.signed:  # QNN's LayerNorm of 16-bit codes (spec/qnn_layernorm.py, rule 3)
        return _qnn_layer_norm16(node, ctx, axes, work_shape, n, max(float(eps), 0.0) / (si * si), gamma_q16, b, qo)
    if beta_codes:  # QNN's LayerNorm: beta rounded to the output's codes first (spec/qnn_layernorm.py)
        bi = np.asarray(np.floor(b + 0.5), dtype=np.int64) << frac
    else:
        bi = np.asarray(np.round(b * 2.0**frac), dtype=np.int64)
    attrs = {"axes": list(axes), "work_shape": list(work_shape), "out_shape": list(ctx.shape(out_name)), "n": n,
             "frac": frac, "oo": int(qo.offset[0]), "oi": int(qi.offset[0]) if rms else 0, "rms": rms}
    return _plan_step(node, ctx, "htp.norm", attrs, {"eps": e_table, "gamma": gi, "beta": bi})


def _norm_layout(p: Mapping[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...], Codes, list[int]]:
    """A normalization plan's working and output shapes, its output codes and the axes it normalizes over."""
    return (tuple(int(d) for d in p["work_shape"]), tuple(int(d) for d in p["out_shape"]), Codes.from_attrs(p["out"]),
            [int(a) for a in p["axes"]])


def _gamma_beta(plan: StepPlan, device: torch.device) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """A QNN LayerNorm plan's integer gamma and beta, as int64 arrays and on ``device``."""
    gq, bc = (np.asarray(plan.arrays[k], dtype=np.int64) for k in ("gq", "beta"))
    return gq, bc, _on(device, gq), _on(device, bc)


@htp_binder("htp.norm")
def _bind_norm(plan: StepPlan, device: torch.device) -> Fns:
    p = plan.attrs
    work_shape, out_shape, qo, ax = _norm_layout(p)
    n, frac, oo, oi, rms = int(p["n"]), int(p["frac"]), int(p["oo"]), int(p["oi"]), bool(p["rms"])
    e_table = np.asarray(plan.arrays["eps"], dtype=np.int64)
    gi, bi = np.asarray(plan.arrays["gamma"], dtype=np.int64), np.asarray(plan.arrays["beta"], dtype=np.int64)
    e_table_t, gi_t, bi_t = _on(device, e_table), _on(device, gi), _on(device, bi)

    def reference(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64).reshape(work_shape) + oi
        s1 = np.zeros_like(x[..., :1]) if rms else np.sum(x, axis=tuple(ax), keepdims=True)
        s2 = np.sum(x * x, axis=tuple(ax), keepdims=True)
        d = n * x - s1
        v = n * s2 - s1 * s1
        k = np.clip((61 - bitlen_np(v + e_table[0])) >> 1, 0, _MAX_K)
        r = np.maximum(isqrt_np((v << (2 * k)) + e_table[k]), 1)
        y = round_div_np((d << k) * gi + bi * r, r << frac)
        return finish_np(y.reshape(out_shape) - oo, qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.int64).reshape(work_shape) + oi
        s1 = torch.zeros_like(x[..., :1]) if rms else x.sum(dim=ax, keepdim=True)
        s2 = (x * x).sum(dim=ax, keepdim=True)
        d = n * x - s1
        v = n * s2 - s1 * s1
        k = torch.clamp((61 - bitlen_t(v + int(e_table[0]))) >> 1, 0, _MAX_K)
        r = torch.clamp_min(isqrt_t((v << (2 * k)) + e_table_t[k]), 1)
        y = round_div_t((d << k) * gi_t + bi_t * r, r << frac)
        return finish_t(y.reshape(out_shape) - oo, qo)

    return reference, fast


def _qnn_layer_norm(node: Node, ctx: HtpBuildContext, axes: tuple[int, ...], work_shape: tuple[int, ...], n: int,
                    e_table: np.ndarray, eps_codes: float, gamma_q: tuple[np.ndarray, float], b: np.ndarray,
                    qo: Any) -> HtpStep | None:
    """QNN's LayerNorm of 8-bit codes (spec/qnn_layernorm.py). The mean in 1/64 codes, floored from the
    product with float32(1/N) = ``rn 2^-e`` (``rn`` 24 bits): ``M = (S1 rn) >> (e - 6)``. The multiplier
    ``m = floor(c rsqrt_f32(float32(W / N^2 + eps_codes)))`` per row (``W = N S2 - S1^2``, the float64 sum
    rounded to float32; ``c = float32(s_g / s_out) 2^16``; 0 where the row is constant and eps is 0). Then
    ``out = round_div(gq (64 q - M) m + Bc 2^22, 2^22) - offset_out`` with gamma's codes ``gq`` and beta in
    output codes ``Bc``. None where the integers would not fit int64."""
    gq, sg = gamma_q
    c = abs(sg / float(qo.scale[0]))
    gmax = float(np.max(np.abs(gq), initial=0))
    if gmax * 64 * c * 2.0**16 * (2 * math.sqrt(n) + 2) >= 2.0**61 or float(n) * n * 2.0**16 >= 2.0**53:
        return None
    mant, exp = math.frexp(float(np.float32(1.0 / n)))  # float32(1/N) = mant 2^exp, mant in [0.5, 1)
    rn, shift = int(mant * 2**24), 24 - exp - 6
    bc = np.asarray(np.floor(b + 0.5), dtype=np.int64)
    attrs = {"axes": list(axes), "work_shape": list(work_shape), "out_shape": list(ctx.shape(node.outputs[0])), "n": n,
             "oo": int(qo.offset[0]), "recip_n": rn, "mean_shift": shift, "eps_codes": float(eps_codes),
             "c": multiplier_constant(sg, float(qo.scale[0]))}
    return _plan_step(node, ctx, "htp.layernorm_qnn", attrs,
                      {"eps": e_table, "gq": np.asarray(gq, dtype=np.int64), "beta": bc})


_LN_ONE = 1 << 22  # the multiplier's 16 fraction bits and the mean's 6


def _row_multipliers_t(c: float, var: torch.Tensor) -> torch.Tensor:
    """spec/qnn_layernorm.row_multipliers in torch (float32 operations round to nearest even, as numpy's)."""
    pos = var > 0
    v32 = torch.where(pos, var, torch.ones_like(var)).to(torch.float32)
    y = (RSQRT_MAGIC - (v32.view(torch.int32) >> 1)).to(torch.int32).view(torch.float32)
    h = v32 * 0.5
    for _ in range(RSQRT_NEWTON_STEPS):
        y = y * (1.5 - (h * y) * y)
    return torch.where(pos, torch.floor(c * y.to(torch.float64)), torch.zeros_like(var)).to(torch.int64)


@htp_binder("htp.layernorm_qnn")
def _bind_layernorm_qnn(plan: StepPlan, device: torch.device) -> Fns:
    p = plan.attrs
    work_shape, out_shape, qo, ax = _norm_layout(p)
    gq, bc, gq_t, bc_t = _gamma_beta(plan, device)
    n, oo, rn, shift = int(p["n"]), int(p["oo"]), int(p["recip_n"]), int(p["mean_shift"])
    eps_codes, c = float(p["eps_codes"]), float(p["c"])
    nn = float(n * n)

    def reference(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64).reshape(work_shape)
        s1 = np.sum(x, axis=tuple(ax), keepdims=True)
        v = n * np.sum(x * x, axis=tuple(ax), keepdims=True) - s1 * s1
        m = row_multipliers(c, v.astype(np.float64) / nn + eps_codes)  # floor(2^16 sg / (s_out sigma)), QNN's
        d = (x << 6) - ((s1 * rn) >> shift)  # q - mean, the mean floored to 1/64 of a code
        y = round_div_np(gq * d * m + (bc << 22), np.int64(_LN_ONE))
        return finish_np(y.reshape(out_shape) - oo, qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.int64).reshape(work_shape)
        s1 = x.sum(dim=ax, keepdim=True)
        v = n * (x * x).sum(dim=ax, keepdim=True) - s1 * s1
        m = _row_multipliers_t(c, v.to(torch.float64) / nn + eps_codes)
        d = (x << 6) - ((s1 * rn) >> shift)
        y = round_div_t(gq_t * d * m + (bc_t << 22), torch.tensor(_LN_ONE, device=x.device))
        return finish_t(y.reshape(out_shape) - oo, qo)

    return reference, fast


def _qnn_layer_norm16(node: Node, ctx: HtpBuildContext, axes: tuple[int, ...], work_shape: tuple[int, ...], n: int,
                      eps_codes: float, gamma_q: tuple[np.ndarray, float], b: np.ndarray, qo: Any) -> HtpStep:
    """QNN's LayerNorm of unsigned 16-bit codes (spec/qnn_layernorm.py, rule 3): the mean on HVX's qf32 grid
    (``mean16``), the row multiplier ``c / sigma`` rounded to 16 significant bits (``row_multipliers16``, sigma
    about that mean), ``out = round(gq m 2^k (q - mean') + Bc) - offset_out`` (half away from zero, float64)."""
    gq, sg = gamma_q
    attrs = {"axes": list(axes), "work_shape": list(work_shape), "out_shape": list(ctx.shape(node.outputs[0])), "n": n,
             "oo": int(qo.offset[0]), "eps_codes": float(eps_codes),
             "c": float(np.float32(sg) / np.float32(float(qo.scale[0])))}
    return _plan_step(node, ctx, "htp.layernorm_qnn16", attrs,
                      {"gq": np.asarray(gq, dtype=np.int64), "beta": np.asarray(np.floor(b + 0.5), dtype=np.int64)})


def _mean16_t(s1: torch.Tensor, n: int) -> torch.Tensor:
    """spec/qnn_layernorm.mean16 in torch float64 (the same IEEE operations)."""
    s = s1.to(torch.float64)
    pow2 = n & (n - 1) == 0
    t = s / n if pow2 else s * float(np.float32(1.0 / n))
    _, e = torch.frexp(torch.where(s > 0, t, torch.ones_like(t)))
    unit = torch.ldexp(torch.ones_like(t), e - 1 - QF32_FRACTION_BITS)
    v = t / unit + (1.0 if pow2 else 0.0)
    r = torch.floor(v / 4) * 4
    f = v - r
    grid = r + torch.where(f <= 1.5, 1.0, torch.where(f <= 2.5, 2.0, 3.0))
    return torch.where(s > 0, grid * unit, torch.zeros_like(t))


def _row_multipliers16_t(c: float, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """spec/qnn_layernorm.row_multipliers16 in torch float64."""
    pos = var > 0
    x = c / torch.sqrt(torch.where(pos, var, torch.ones_like(var)))
    _, e = torch.frexp(x)
    k = e.to(torch.int64) - MULTIPLIER16_BITS
    m = torch.clamp_max(torch.floor(torch.ldexp(x, -k) + 0.5), float((1 << MULTIPLIER16_BITS) - 1))
    return torch.where(pos, m, torch.zeros_like(m)).to(torch.int64), k


@htp_binder("htp.layernorm_qnn16")
def _bind_layernorm_qnn16(plan: StepPlan, device: torch.device) -> Fns:
    p = plan.attrs
    work_shape, out_shape, qo, ax = _norm_layout(p)
    gq, bc, gq_t, bc_t = _gamma_beta(plan, device)
    n, oo, eps_codes, c = int(p["n"]), int(p["oo"]), float(p["eps_codes"]), float(p["c"])
    nn = float(n * n)

    def reference(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64).reshape(work_shape)
        s1 = np.sum(x, axis=tuple(ax), keepdims=True)
        w = n * np.sum(x * x, axis=tuple(ax), keepdims=True) - s1 * s1
        mean = mean16(s1, n)  # on the qf32 grid
        dm = mean - s1 / n
        m, k = row_multipliers16(c, w / nn + dm * dm + eps_codes)  # the variance about that mean
        y = np.ldexp((gq * m).astype(np.float64) * (x - mean), k) + bc
        y = np.copysign(np.floor(np.abs(y) + 0.5), y)
        return finish_np(y.reshape(out_shape) - oo, qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.int64).reshape(work_shape)
        s1 = x.sum(dim=ax, keepdim=True)
        w = n * (x * x).sum(dim=ax, keepdim=True) - s1 * s1
        mean = _mean16_t(s1, n)
        dm = mean - s1.to(torch.float64) / n
        m, k = _row_multipliers16_t(c, w.to(torch.float64) / nn + dm * dm + eps_codes)
        y = torch.ldexp((gq_t * m).to(torch.float64) * (x - mean), k) + bc_t
        y = torch.copysign(torch.floor(torch.abs(y) + 0.5), y)
        return finish_t(y.reshape(out_shape).to(torch.int64) - oo, qo)

    return reference, fast


def _gamma_codes(ctx: HtpBuildContext, node: Node) -> tuple[np.ndarray, float] | None:
    """Gamma's signed codes and its (per-tensor) scale, or None where gamma has no per-tensor encoding."""
    if len(node.inputs) <= 1 or not node.inputs[1] or not ctx.is_static(node.inputs[1]):
        return None
    t = ctx.graph.tensors[node.inputs[1]]
    if t.encoding is None or t.data is None:
        return None
    q = QParams.of(t.encoding)
    if q.axis is not None and q.scale.size > 1:
        return None
    return np.asarray(ctx.static_q(node.inputs[1]), dtype=np.int64) + int(q.offset.reshape(-1)[0]), float(q.scale.reshape(-1)[0])


@htp_kernel("LayerNorm")
def layer_norm(node: Node, ctx: HtpBuildContext) -> HtpStep:
    shape = tuple(ctx.shape(node.inputs[0]))
    rank = len(shape)
    axes = tuple(sorted({int(a) % rank for a in node.attrs["axes"]})) if rank else ()
    qi, qo = act_params(ctx, node.inputs[0]), act_params(ctx, node.outputs[0])
    rowmul = gamma_codes_times_row_multiplier(ctx.arch.name, ctx.arithmetic, qi.bitwidth, qo.bitwidth)
    rowmul16 = gamma_codes_times_row_multiplier16(ctx.arch.name, ctx.arithmetic, qi.bitwidth, qo.bitwidth)
    return _norm_step(node, ctx, axes, shape, _param(ctx, node, 1), _param(ctx, node, 2), node.attrs["epsilon"],
                      beta_codes=beta_in_output_codes(ctx.arch.name, ctx.arithmetic, qi.bitwidth, qo.bitwidth),
                      gamma_q=_gamma_codes(ctx, node) if rowmul else None,
                      gamma_q16=_gamma_codes(ctx, node) if rowmul16 else None)


@htp_kernel("RmsNorm")
def rms_norm(node: Node, ctx: HtpBuildContext) -> HtpStep:
    shape = tuple(ctx.shape(node.inputs[0]))
    rank = len(shape)
    axes = tuple(sorted({int(a) % rank for a in node.attrs["axes"]})) if rank else ()
    return _norm_step(node, ctx, axes, shape, _param(ctx, node, 1), _param(ctx, node, 2), node.attrs["epsilon"],
                      rms=True)


@htp_kernel("InstanceNorm")
def instance_norm(node: Node, ctx: HtpBuildContext) -> HtpStep:
    shape = tuple(ctx.shape(node.inputs[0]))
    if len(shape) < 3:
        raise Unsupported("InstanceNorm needs a rank >= 3 input (batch, spatial..., channels)")
    g, b = _param(ctx, node, 1), _param(ctx, node, 2)
    if g is None or b is None:
        raise Unsupported("InstanceNorm without weight / bias")
    return _norm_step(node, ctx, tuple(range(1, len(shape) - 1)), shape, g.reshape(-1), b.reshape(-1),
                      node.attrs["epsilon"])


@htp_kernel("GroupNorm")
def group_norm(node: Node, ctx: HtpBuildContext) -> HtpStep:
    shape = tuple(ctx.shape(node.inputs[0]))
    groups = int(node.attrs["group"])
    if len(shape) < 2 or groups <= 0 or shape[-1] % groups:
        raise Unsupported(f"GroupNorm of {shape} in {groups} groups")
    g, b = _param(ctx, node, 1), _param(ctx, node, 2)
    if g is None or b is None:
        raise Unsupported("GroupNorm without gamma / beta")
    per = shape[-1] // groups
    work = (*shape[:-1], groups, per)
    axes = (*range(1, len(shape) - 1), len(shape))
    return _norm_step(node, ctx, axes, work, g.reshape(groups, per), b.reshape(groups, per),
                      node.attrs["epsilon"])


# -- Batchnorm ----------------------------------------------------------------------------------

@htp_kernel("Batchnorm")
def batchnorm(node: Node, ctx: HtpBuildContext) -> HtpStep:
    x_name, w_name, b_name = node.inputs[:3]
    qi, qo = act_params(ctx, x_name), act_params(ctx, node.outputs[0])
    if not (ctx.is_static(w_name) and ctx.is_static(b_name)):
        raise Unsupported("Batchnorm with run-time weight or bias")
    qw = ctx.need_enc(w_name)
    if qw.signed or qw.bitwidth > 16:
        raise Unsupported(f"Batchnorm weight encoding ({qw.bitwidth}-bit{', signed' if qw.signed else ''})")
    qnn = _qnn_batchnorm(node, ctx, qi, qo)
    if qnn is not None:
        return qnn
    w_t = ctx.graph.tensors[w_name]
    wshape = [1] * w_t.rank
    if qw.axis is not None and w_t.rank:
        wshape[qw.axis] = qw.scale.size
    sw = qw.scale.reshape(wshape) if w_t.rank else qw.scale.reshape(())
    w_int = np.asarray(ctx.static_q(w_name), dtype=np.int64) + (qw.offset.reshape(wshape) if w_t.rank else qw.offset.reshape(()))
    si, so = float(qi.scale[0]), float(qo.scale[0])
    bias = static_real(ctx, b_name)
    bshape = np.broadcast_shapes(np.shape(bias), np.shape(sw))
    unit = np.broadcast_to(si * sw, bshape)
    bias_q = np.asarray(np.round(np.broadcast_to(bias, bshape) / unit), dtype=np.float64)
    if not np.all(np.isfinite(bias_q)) or np.max(np.abs(bias_q), initial=0.0) >= 2.0**45:
        raise Unsupported("Batchnorm bias out of range of the accumulator")
    bias_q = np.asarray(bias_q, dtype=np.int64)
    ratios = np.broadcast_to(si * sw / so, np.shape(sw))
    pairs = [quantize_multiplier(float(r)) for r in ratios.reshape(-1)]
    mult = np.array([p[0] for p in pairs], dtype=np.int64).reshape(np.shape(sw))
    shift = np.array([p[1] for p in pairs], dtype=np.int64).reshape(np.shape(sw))
    bound = float((1 << qi.bitwidth) - 1) * float(np.max(np.abs(w_int), initial=0)) + float(
        np.max(np.abs(bias_q), initial=0))
    wide = bound > INT32_MAX
    if wide and (int(np.max(shift, initial=0)) > 14 or bound * 2.0**15 >= 2.0**62):
        raise Unsupported("Batchnorm multiplier or accumulator out of the int64 requantization range")
    attrs = {"zi": int(qi.offset[0]), "oo": int(qo.offset[0]), "wide": wide}
    arrays = {"weight": w_int, "bias": bias_q, "multiplier": mult, "shift": shift}
    return _plan_step(node, ctx, "htp.batchnorm", attrs, arrays)


def _dequantized(ctx: HtpBuildContext, name: str) -> tuple[np.ndarray, int] | None:
    """A static 1-D operand as QNN EP reads it, ``(code + offset) * float32(scale)`` (float64), and its bitwidth."""
    q = ctx.need_enc(name)
    codes = np.asarray(ctx.static_q(name), dtype=np.int64).reshape(-1)
    scale = np.asarray(q.scale, dtype=np.float32).astype(np.float64)
    offset = np.asarray(q.offset, dtype=np.int64)
    if scale.size not in (1, codes.size):
        return None
    return (codes + offset) * scale, q.bitwidth


def _qnn_batchnorm(node: Node, ctx: HtpBuildContext, qi: QParams, qo: QParams) -> HtpStep | None:
    """QNN's BatchNorm (spec/qnn_batchnorm.py), channels on the last axis: 8-bit codes as a table per channel,
    16-bit ones by the integer form (``htp.batchnorm_qnn``); None where it does not apply."""
    x_name, w_name, b_name = node.inputs[:3]
    shape = ctx.shape(x_name)
    w, b = _dequantized(ctx, w_name), _dequantized(ctx, b_name)
    if w is None or b is None or not shape or w[0].size != shape[-1] or b[0].size not in (1, shape[-1]):
        return None
    bias = np.broadcast_to(b[0], w[0].shape)
    si, zi, so, zo = float(qi.scale[0]), int(qi.zero_point[0]), float(qo.scale[0]), int(qo.zero_point[0])
    if qi.bitwidth == qo.bitwidth == 16 and w[1] == b[1] == 8:
        spec = batchnorm_spec_for(ctx.arch.name, ctx.arithmetic, si, zi, w[0], bias, so, zo, 16)
        if spec is None:
            return None
        attrs = {"zi": spec.zero_in, "mult": spec.mult, "shift": spec.shift, "carry": spec.carry, "qmax": spec.qmax}
        return _plan_step(node, ctx, "htp.batchnorm_qnn", attrs, {"weight": spec.weight, "offset": spec.offset})
    table = batchnorm_table_for(ctx.arch.name, ctx.arithmetic, si, zi, w[0], bias, so, zo, qi.bitwidth, qo.bitwidth,
                                w[1], b[1])
    if table is None:
        return None
    return channel_table_step(node, ctx, x_name, table, (int(shape[-1]),), qo)


@htp_binder("htp.batchnorm_qnn")
def _bind_batchnorm_qnn(plan: StepPlan, device: torch.device) -> Fns:
    """QNN's integer BatchNorm (spec/qnn_batchnorm.py, :class:`QnnBatchnormSpec`), channels last."""
    p = plan.attrs
    qo = Codes.from_attrs(p["out"])
    spec = QnnBatchnormSpec(int(p["zi"]), np.asarray(plan.arrays["weight"], dtype=np.int64),
                            np.asarray(plan.arrays["offset"], dtype=np.int64), int(p["mult"]), int(p["shift"]),
                            int(p["carry"]), int(p["qmax"]))
    weight_t, offset_t = _on(device, spec.weight), _on(device, spec.offset)

    def reference(x: np.ndarray) -> np.ndarray:
        return finish_np(spec.apply_np(x), qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        return finish_t(spec.apply_t(x, weight_t, offset_t), qo)

    return reference, fast


@htp_binder("htp.batchnorm")
def _bind_batchnorm(plan: StepPlan, device: torch.device) -> Fns:
    p = plan.attrs
    zi, oo, wide, qo = int(p["zi"]), int(p["oo"]), bool(p["wide"]), Codes.from_attrs(p["out"])
    w_int, bias_q, mult, shift = (np.asarray(plan.arrays[k], dtype=np.int64)
                                  for k in ("weight", "bias", "multiplier", "shift"))
    w_int_t, bias_q_t = _on(device, np.ascontiguousarray(w_int)), _on(device, np.ascontiguousarray(bias_q))
    mult_t, shift_t = _on(device, mult), _on(device, shift)

    def reference(x: np.ndarray) -> np.ndarray:
        acc = (np.asarray(x, dtype=np.int64) + zi) * w_int + bias_q
        v = mbqm64_np(acc, mult, shift) if wide else mbqm_np(acc, mult, shift)
        return finish_np(v - oo, qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        acc = (x.to(torch.int64) + zi) * w_int_t + bias_q_t
        v = mbqm64_t(acc, mult_t, shift_t) if wide else mbqm_t(acc, mult_t, shift_t)
        return finish_t(v - oo, qo)

    return reference, fast
