"""QNN's HTP LogSoftmax of unsigned 16-bit codes (last axis), v68 and v73 alike, on Qualcomm's HTP simulator
(onnxruntime-qnn 2.7.0, QNN 2.51), probed with ``tests/fidelity/logsoftmax_probe.py`` and held to it by
``tests/fidelity/test_qnn_logsoftmax.py`` (docs/htp-fidelity.md, "LogSoftmax (8- and 16-bit) and CumSum (stop 27)"
and "16-bit LogSoftmax (stop 28)"). Partly established, partly fitted:

- **The difference term** (established, stop 27): an element ``k = max(q) - q`` codes below its row's maximum comes
  out ``k A`` output codes below it, ``A = T16(s_in) T16(1 / s_out)`` (``qnn_logsoftmax.truncate_bits``).
- **The exponent** (established, stop 28): ``k s_in log2(e)`` is the 16-bit Exp's (``qnn_exp16.exp16_exponent``):
  the rounded 15-bit significand of float32 ``s_in log2 e`` times ``k``, truncated to units of 2^-16, ``n + f``.
  Of the steps tried on random rows at the sweep's encoding this one and ``s_in log2 e`` truncated to 14-16 bits fit
  best; the 16-bit Softmax's Q22 step (``floor(2^22 s_in log2 e)``) fits far worse (docs).
- **2^-f** (fitted): not the 16-bit Exp's table nor the 16-bit Softmax's ``g``: a smooth function of ``f`` within
  about 5e-4 of 2^-f (``LS16_EXP_POLY``, a real quartic in ``f``, Q15, fitted with the log's correction by Gauss-Newton on
  the simulator's random rows at four encodings; the maximum's value
  ``1 - 2^-15`` and the error's shape are measured, the integer arithmetic is open). The exponentials ``P(f) 2^-n``
  are summed in fixed point (Q31 here); floors per element to Q15, Q16 or Q17 fit worse than the exact sum.
- **The log** (partly fitted): ``ln S = T16(ln 2) (log2 S + p(m - 1))`` with ``m`` the sum's mantissa in [1, 2):
  the multiplier ``T16(ln 2) T16(1 / s_out)`` (fitted per encoding, the factor came out 1.3e-6 to 2.9e-6 under
  ``ln 2 T16(1 / s_out)`` on four encodings; ``T16(ln 2)`` is 2.06e-6 under ln 2) and ``LS16_LOG_POLY`` a quintic
  correction of about 2e-5 in log2 units (fitted; QNN's own log2 is open).
- **The output**: ``code = z_out - floor(k A + ln(S) T16(1 / s_out) + 1/2)``, clamped.

Evaluated in the htp kernel's fixed point (``kernels/normalization.py``, ``htp.log_softmax``): a Q31 exponential
table, ``log2`` of the sum in Q24 from a 2^16-segment table with linear interpolation, ``A`` and ``B = T16(ln 2)
T16(1 / s_out)`` as fixed-point multipliers; :func:`logsoftmax16_codes` is that arithmetic in numpy.
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.spec.qnn_exp16 import exp16_exponent
from openqnn.backends.htp.spec.qnn_logsoftmax import (
    diff_multiplier,
    fixed_log_softmax_np,
    fixed_point,
    truncate_bits,
)

__all__ = ["ARCHS", "EXP_BITS", "LN2_Q16", "LS16_EXP_POLY", "LS16_LOG_POLY", "exp_table16", "fixed_point16",
           "log2_table16", "logsoftmax16_codes", "logsoftmax16_consts_for"]

ARCHS = ("v68", "v73")
EXP_BITS = 31  # the exponentials' fixed point (the maximum's 32761.5 / 32768 stays above 2^30)
# 2^-f in Q15 for f in [0, 1): c0 + c1 f + ... (least squares on the simulator's codes; docs)
LS16_EXP_POLY = (32766.2935, -22626.3395, 7418.31203, -1178.39249, 3.30355859)
LN2_Q16 = 45426  # ln 2 truncated to 16 bits: the log's multiplier is ln 2 T16(1 / s_out) (fitted -2e-6 off ln 2)
# the log's correction in log2 units, a polynomial in t = m - 1 (m the sum's mantissa in [1, 2); fitted; its
# constant, 3e-5, carries the rounding's offset: 0.05-0.2 of a code)
LS16_LOG_POLY = (3.04210348e-05, 0.000517990119, -0.00398909872, 0.0107130883, -0.0116308636, 0.00440114583)


def exp_table16(s_in: float) -> np.ndarray | None:
    """``E[k] = round(P(f) 2^(EXP_BITS - 15 - n))`` (int64, 65,536 entries) for ``k s_in log2 e = n + f`` as the
    16-bit Exp forms it; None where that exponent is not established (a step of 1 or more)."""
    k = np.arange(1 << 16, dtype=np.int64)
    xneg = exp16_exponent(-k, s_in)
    if xneg is None:
        return None
    x = -xneg
    n, f = x >> 16, (x & 0xFFFF).astype(np.float64) / 65536.0
    p = np.polyval(np.asarray(LS16_EXP_POLY[::-1], dtype=np.float64), f)
    return np.round(p * np.exp2((EXP_BITS - 15 - n).astype(np.float64))).astype(np.int64)


def log2_table16() -> np.ndarray:
    """``L[i] = round((log2(1 + t) + p(t)) 2^30)``, ``t = i / 2^16`` (int64, 2^16 + 1 entries)."""
    t = np.arange((1 << 16) + 1, dtype=np.float64) / 2.0**16
    corr = np.polyval(np.asarray(LS16_LOG_POLY[::-1], dtype=np.float64), t)
    return np.round((np.log2(1.0 + t) + corr) * 2.0**30).astype(np.int64)


def fixed_point16(s_in: float, s_out: float, n: int) -> tuple[int, int, int] | None:
    """(``a_fx``, ``b_fx``, ``total``): ``A = T16(s_in) T16(1 / s_out)`` and ``B = T16(ln 2) T16(1 / s_out)`` in the
    kernel's fixed point (:func:`~openqnn.backends.htp.spec.qnn_logsoftmax.fixed_point`) on rows of ``n``."""
    b_real = LN2_Q16 / 65536.0 * truncate_bits(float(np.float32(1.0) / np.float32(s_out)), 16)
    return fixed_point(diff_multiplier(s_in, s_out, 16), b_real, 65535, n)


def logsoftmax16_codes(q: np.ndarray, s_in: float, s_out: float, z_out: int) -> np.ndarray:
    """The spec on 16-bit codes ``q`` (last axis) in the kernel's fixed point (module docstring): int64 codes."""
    q = np.asarray(q, dtype=np.int64)
    k = q.max(axis=-1, keepdims=True) - q
    table, fx = exp_table16(s_in), fixed_point16(s_in, s_out, q.shape[-1])
    if table is None or fx is None:
        raise ValueError("LogSoftmax16: the exponent's step is 1 or more, or the encodings are out of the fixed point")
    out = fixed_log_softmax_np(k, table, log2_table16(), *fx, 0, EXP_BITS)
    return np.clip(z_out + out, 0, 65535).astype(np.int64)


def logsoftmax16_consts_for(arch: str, arithmetic: str, n: int, s_in: float, s_out: float, in_bits: int,
                            out_bits: int, beta: float, last_axis: bool, unsigned: bool
                            ) -> tuple[np.ndarray, np.ndarray, int, int, int] | None:
    """(the Q31 exponential table, the log2 table, ``a_fx``, ``b_fx``, ``total``) where this route applies
    (``arithmetic == "qnn"``, v68 or v73, unsigned 16-bit codes in and out, rows of 3 or more on the last axis,
    beta 1, an exponent step under 1), else None."""
    if (arithmetic != "qnn" or arch not in ARCHS or in_bits != 16 or out_bits != 16 or not unsigned or n < 3
            or beta != 1.0 or not last_axis or not s_in > 0 or not s_out > 0
            or not math.isfinite(float(np.float32(1.0) / np.float32(s_out)))):
        return None
    table, fx = exp_table16(s_in), fixed_point16(s_in, s_out, n)
    if table is None or fx is None:
        return None
    return (table, log2_table16(), *fx)
