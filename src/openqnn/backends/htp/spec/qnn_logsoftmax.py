"""QNN's HTP LogSoftmax of 8-bit codes (last axis), v68 and v73 alike, on Qualcomm's HTP simulator
(onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/logsoftmax_probe.py``, held to it by
``tests/fidelity/test_qnn_logsoftmax.py`` (docs/htp-fidelity.md, "LeakyRelu, PRelu, Reciprocal, LogSoftmax and
BatchNorm (8-bit), stop 25" and "LogSoftmax (8- and 16-bit) and CumSum (stop 27)"). Partly established:

- **The difference term** (established, stop 27): an element ``k = max(q) - q`` codes below its row's maximum comes
  out ``k A`` output codes below it, ``A = T8(s_in) T16(1 / s_out)``: the float32 input scale truncated to 8
  significant bits and the float32 reciprocal of the output scale truncated to 16 (``T_b(x)``: ``x``'s binary
  mantissa cut to ``b`` bits). No log2(e) / ln 2 round trip: stop 25's ``trunc8(s_in) fp16(log2 e) ln 2 / s_out``
  (2.2e-4 lower) is excluded by 7 of 17 probes, and a 7- or 9-bit input scale by all that tell them apart. Measured
  by a joint fit of ``A`` and a constant on rows ``[max, max - k x 16]`` whose other elements lie 12 or more nats
  below the maximum (the normalizer 0): 17 encodings, s_in 0.06 to 0.19; the 16-bit LogSoftmax has the same form
  with 16 bits of the input scale (docs).
- **The normalizer** (approximate): ``ln`` of the sum of ``2^(-k C')``, ``C'`` the Softmax's exponent step
  (``qnn_softmax.exp_step``: ``s_in log2 e`` truncated to 8 significant bits), the exponentials precise (a Q30
  table). With the difference term above, exponentials truncated to 15-16 fraction bits or exact fit equally
  (99.85-99.86% of 88k random-row codes), 12-14 bits worse (99.35-99.79%), E16 (the 16-bit Softmax's) or the exact
  step worse still.
- **The rounding** (fitted): the magnitude ``u = k A + ln(sum E) / s_out`` rounds up from ``0.5 + 0.035`` codes,
  not from one half. The best constant per probe lies within -0.040..-0.0325 on 48 random probes (s_in 0.005 to
  0.18, rows of 5, 17, 64); as one constant it is not exactly right (some probes' feasible intervals are disjoint),
  so a fine effect (the normalizer's precision, or a truncation of the fixed-point value) remains open.

    code = clamp(z_out - floor(u + 1/2 - 0.035))

Not covered (TFLite's arithmetic stays): rows of 2 (a probe at ``s_in / s_out = 15`` gave the maximum code 255
whatever the difference), input / output scale ratios above 2, other axes, beta != 1, 16-bit codes
(``spec/qnn_logsoftmax16.py``: their own route).
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.fixedpoint import bitlen_np, rdbpot_np
from openqnn.backends.htp.spec.qnn_softmax import exp_step

__all__ = ["ARCHS", "EXP_FRACTION_BITS", "IN_SCALE_BITS", "LAM_BITS", "OUT_RECIP_BITS", "ROUND_LOWER",
           "diff_multiplier", "exp_table", "fixed_log_softmax_np", "fixed_point", "logsoftmax_codes",
           "logsoftmax_consts_for", "truncate_bits"]

ARCHS = ("v68", "v73")
IN_SCALE_BITS = 8  # the input scale's significant bits in the difference term (16 with 16-bit codes: docs)
OUT_RECIP_BITS = 16  # 1 / s_out's significant bits
EXP_FRACTION_BITS = 30  # the normalizer's exponentials, truncated (15 or more fit alike: module docstring)
MAX_RATIO = 2.0  # s_in / s_out probed up to here
ROUND_LOWER = 0.035  # codes: the rounding threshold lowered from 1/2 (fitted, module docstring)
LAM_BITS = 24  # the kernel's fixed point: log2 of the exponentials' sum in Q24


def truncate_bits(x: float, bits: int) -> float:
    """``x`` (> 0) with its binary mantissa truncated to ``bits`` significant bits."""
    mant, exp = math.frexp(x)
    return math.floor(mant * 2.0**bits) * 2.0 ** (exp - bits)


def diff_multiplier(s_in: float, s_out: float, in_scale_bits: int = IN_SCALE_BITS) -> float:
    """``A = T8(s_in) T16(1 / s_out)``: output codes per input code of the difference term (module docstring); the
    scales as float32, the reciprocal a float32 division (``in_scale_bits``: 16 for 16-bit codes)."""
    recip = float(np.float32(1.0) / np.float32(s_out))
    return truncate_bits(float(np.float32(s_in)), in_scale_bits) * truncate_bits(recip, OUT_RECIP_BITS)


def fixed_point(a_real: float, b_real: float, kmax: int, n: int) -> tuple[int, int, int] | None:
    """The kernel's fixed point of the difference multiplier ``A`` and the log's ``B``: (``a_fx``, ``b_fx``,
    ``total``) with ``total`` and ``total - LAM_BITS`` fraction bits, as many as keep ``k A + lam B`` in int64 on rows
    of ``n`` with differences up to ``kmax`` (at most 30 for ``B``); None where none fits."""
    bound = 2.0**LAM_BITS * (kmax * a_real + (math.log2(max(n, 1)) + 2) * b_real) + 1.0
    frac = min(30, math.floor(61 - math.log2(bound)))
    if frac < 0:
        return None
    return round(a_real * 2.0**(frac + LAM_BITS)), round(b_real * 2.0**frac), frac + LAM_BITS


def fixed_log_softmax_np(k: np.ndarray, table: np.ndarray, log2_table: np.ndarray, a_fx: int, b_fx: int, total: int,
                         lower: int, exp_bits: int, axis: int = -1) -> np.ndarray:
    """The kernel's LogSoftmax in fixed point, numpy, relative to the output's zero point: ``-rdbpot(k A + lam B -
    lower, total)`` with ``k`` the code differences from the row's maximum, ``lam`` = log2 of the row's sum of
    ``table[k]`` (in ``exp_bits`` fraction bits) in Q(``LAM_BITS``), its mantissa's log from ``log2_table`` (2^16 + 1
    entries in Q30, interpolated)."""
    s = np.sum(table[k], axis=axis, keepdims=True)
    b = bitlen_np(s) - 1
    f = (s >> (b - 30)) - (1 << 30)
    i, r = f >> 14, f & ((1 << 14) - 1)
    lo = log2_table[i]
    frac_log = lo + (((log2_table[i + 1] - lo) * r + (1 << 13)) >> 14)
    lam = ((b - exp_bits) << LAM_BITS) + ((frac_log + (1 << 5)) >> 6)
    return -rdbpot_np(k * a_fx + lam * b_fx - lower, total)


def exp_table(s_in: float, bitwidth: int = 8, fraction_bits: int = 30) -> np.ndarray:
    """``E[k] = floor(2^(-k C') 2^EXP_FRACTION_BITS)`` scaled to ``fraction_bits`` (int64, 2^bitwidth entries;
    E[0] = 2^fraction_bits)."""
    ks = np.arange(1 << bitwidth, dtype=np.float64)
    e = np.floor(np.exp2(-ks * exp_step(s_in)) * 2.0**EXP_FRACTION_BITS).astype(np.int64)
    shift = fraction_bits - EXP_FRACTION_BITS
    return e << shift if shift >= 0 else e >> -shift


def logsoftmax_codes(q: np.ndarray, s_in: float, s_out: float, z_out: int) -> np.ndarray:
    """The spec on 8-bit codes ``q`` (last axis), in float64: the reference the probes and tests use."""
    k = np.asarray(q, np.int64).max(axis=-1, keepdims=True) - np.asarray(q, np.int64)
    e = exp_table(s_in, 8, EXP_FRACTION_BITS)[k].astype(np.float64) / 2.0**EXP_FRACTION_BITS
    l2 = np.log2(e.sum(axis=-1, keepdims=True))
    u = k * diff_multiplier(s_in, s_out) + l2 * math.log(2.0) / float(np.float32(s_out))
    return np.clip(z_out - np.floor(u + 0.5 - ROUND_LOWER), 0, 255).astype(np.int64)


def logsoftmax_consts_for(arch: str, arithmetic: str, n: int, s_in: float, s_out: float, in_bits: int,
                          out_bits: int, beta: float, last_axis: bool) -> tuple[np.ndarray, float, float] | None:
    """(the Q30 exponential table, the difference term's multiplier ``A`` in output codes per input code, the
    rounding's lowered threshold in codes) where the spec
    applies (``arithmetic == "qnn"``, v68 or v73, 8-bit codes, rows of 3 or more on the last axis, beta 1,
    ``s_in / s_out <= 2``), else None."""
    if (arithmetic != "qnn" or arch not in ARCHS or in_bits != 8 or out_bits != 8 or n < 3 or beta != 1.0
            or not last_axis or not s_in > 0 or not s_out > 0 or s_in / s_out > MAX_RATIO):
        return None
    return exp_table(s_in), diff_multiplier(s_in, s_out), ROUND_LOWER
