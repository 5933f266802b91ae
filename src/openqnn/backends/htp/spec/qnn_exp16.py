"""QNN's HTP Exp of 16-bit codes, v68 and v73, established on Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN
2.51) with ``tests/fidelity/unary16_probe.py`` (every 16-bit input code once per encoding) and held to it by
``tests/fidelity/test_qnn_exp16.py`` (docs/htp-fidelity.md, "16-bit Exp (stop 27)" and "16-bit Exp and Elu wired
(stop 28)"). v68 = v73 in every probe.

``exp(x) = 2^(x log2 e)``: the exponent is formed from the input *code* with a 15-bit multiplier, split into an
integer ``n`` and a 16-bit fraction ``x``, ``2^(x / 2^16)`` is a Q14 cubic (four segments, Horner's rule with floors,
the evaluation of the 16-bit Softmax's ``pow2_frac`` one degree up), and the output scale enters as a 15-bit
multiplier with a shift by ``n``. With ``a = q - z_in``:

    step:     float32(s_in log2(e)) = f 2^e  (f in [0.5, 1)),   m = round(f 2^15)
              X = trunc_toward_zero(a m 2^(e + 1))                    (the exponent in units of 2^-16; an int32)
              X = X - 1 where X < 0 and X & 0xFFFF = 0                (a negative fraction 2^16 - 0 saturates)
              n = X >> 16,  x = X & 0xFFFF                            (floor n, fraction x >= 0)
    2^f:      s = x >> 14,  (c3, c2, c1, c0) = EXP16_POLY[s]
              P2 = (c3 x + c2 2^15) >> 16,  P1 = (P2 x + c1 2^15) >> 16,  Y = (P1 x + c0 2^15) >> 16
              y = 2 Y                                                 (2^(x / 2^16) in Q15, 16 bits, even)
    output:   float32(1 / s_out) = f_o 2^E,  mo = round(f_o 2^15)  (2^15: 2^14 with E + 1),  sh = n + E - 14
              code = z_out + (((y mo) >> 16) << sh)                   sh >= 0
              code = z_out + ((y mo) >> (16 - sh))                    sh < 0      (clamped to [0, 65535])

How each part was found:

- The step, the fraction and the output stage: stop 27 (the 14-bit significand of every code at power-of-two output
  scales is a function of ``x`` with ``X`` truncated toward zero; codes at other output scales lie on the grid of
  ``(y mo) >> 16``).
- The table ``Y`` (stop 28): at ``s_in = 2^-16 / log2(e)`` (``m = 2^14``, ``X = a``) and ``1 / s_out = 32767`` (``mo
  = 32767``, ``sh = 0`` for ``n = -1``) the code of ``a < 0`` is ``(Y 32767) >> 15 = Y - 1`` with ``x = a + 65536``:
  one probe reads all 65,536 values of ``Y`` (a second at ``mo = 32765`` agrees on every code). Per quarter of ``x`` a
  real cubic leaves at most 0.02 of a unit of smooth error (a quadratic 0.5-0.9); the integer Horner form above, with
  ``(c3, c2, c1)`` searched around that cubic (+-15, +-40, +-40) and ``c0`` from the intervals every value allows, has
  exactly one solution per quarter, ``c0`` a whole multiple of 2^15 in each: 100% of the 65,536 values. (The 16-bit
  Softmax's ``pow2_frac`` is the same evaluation one degree down; its coefficients give 34-48% of ``Y``.)
- The float32 products (stop 28): at 6 input scales where ``s_in log2 e`` in float64 and in float32 round to different
  15-bit ``m`` the float32 one gives every code (float64: 95.8-98.5%); at ``1 / s_out = 39079.0`` in float32
  (39078.9989 in float64) ``mo = 19540`` gives every code, 19539 47%.
- Negative exponents whose fraction is 0 (``X`` a multiple of 2^16 after the truncation): the code is one less than
  ``y = 32768`` at ``n`` gives, which is ``y(65535)`` at ``n - 1`` (13 codes of 58 probes, every one).
- Steps ``s_in log2 e`` in [0.5, 1) (``e = 0``): ``a m 2`` wraps in int32 (a probe at ``s_in = 0.5``: every code).
  From 1 up (``s_in`` 2 tried: 69% with the wrap) it is not this rule: the caller keeps exact rounding.

Held: 100% of the codes of 86 all-code probes on v68 and on v73 and of 6 more on v73 (power-of-two, fine and random
output scales, output zero points to 60,000, ``s_in`` 1e-6 to 3e-2 and 0.5), where exact rounding gives 29-62% on the
fidelity test's probes.
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.fixedpoint import q15_multiplier
from openqnn.backends.htp.spec.qnn_eltwise import f32

__all__ = ["EXP16_ARCHS", "EXP16_MAX_STEP_EXP", "EXP16_POLY", "exp16_codes", "exp16_exponent", "exp16_pow2",
           "exp16_table_for"]

EXP16_ARCHS = ("v68", "v73")
EXP16_MAX_STEP_EXP = 0  # steps s_in log2(e) = f 2^e with e above this (1 and up) are not this rule
# 2^(x / 2^16) in Q14 per quarter s = x >> 14: (c3, c2, c1, c0), Horner's rule in x with floors (module docstring)
EXP16_POLY = np.array([[987, 7850, 22715, 32769],
                       [1180, 7560, 22791, 32762],
                       [1401, 6894, 23130, 32704],
                       [1676, 5648, 24076, 32463]], dtype=np.int64)
_N16 = 1 << 16
_LOG2E = math.log2(math.e)


def exp16_pow2(x: np.ndarray) -> np.ndarray:
    """``y ~ 2^15 2^(x / 2^16)`` (int64, even, 32768..65534) of 16-bit fractions ``x``: twice the Q14 cubic ``Y`` of
    the module docstring."""
    x = np.asarray(x, np.int64)
    c3, c2, c1, c0 = (EXP16_POLY[x >> 14, k] for k in range(4))
    p2 = (c3 * x + (c2 << 15)) >> 16
    p1 = (p2 * x + (c1 << 15)) >> 16
    return ((p1 * x + (c0 << 15)) >> 16) << 1


def exp16_exponent(a: np.ndarray, s_in: float) -> np.ndarray | None:
    """``X`` (int64), the exponent ``x log2(e)`` of centred input codes ``a`` in units of 2^-16: ``a`` times the
    rounded 15-bit significand of ``s_in log2(e)``, truncated toward zero (an int32: ``e = 0`` wraps), a negative
    exponent whose fraction is 0 one unit lower; None where the step is 1 or more."""
    m, e = q15_multiplier(f32(f32(s_in) * _LOG2E))  # (the product in float32)
    if e > EXP16_MAX_STEP_EXP:
        return None
    t = np.asarray(a, np.int64) * m
    d = -1 - e  # 15 - e - 16: the product is in units of 2^(e - 15)
    big_x = np.sign(t) * (np.abs(t) >> d) if d >= 0 else ((t << -d) + (1 << 31)) % (1 << 32) - (1 << 31)  # int32
    return big_x - ((big_x < 0) & ((big_x & 0xFFFF) == 0))  # the fraction 2^16 - 0 saturates to 65535


def exp16_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray | None:
    """QNN's Exp of 16-bit codes ``q`` (module docstring): :func:`exp16_pow2` of the exponent's fraction times the
    15-bit significand of ``1 / s_out``, shifted by the exponent's integer part; None where :func:`exp16_exponent`
    is."""
    big_x = exp16_exponent(np.asarray(q, np.int64) - z_in, s_in)
    if big_x is None:
        return None
    mo, e_o = q15_multiplier(f32(1.0 / f32(s_out)), carry=True)  # (1 / s_out in float32: 39079.0 gives 19540)
    sh = (big_x >> 16) + e_o - 14
    v = exp16_pow2(big_x & 0xFFFF) * mo  # < 2^32
    up = (v >> 16) << np.clip(sh, 0, 17)  # from sh = 17 up the code saturates
    down = v >> np.clip(16 - sh, 16, 40)  # (v < 2^32: from a shift of 32 on, 0)
    return np.clip(z_out + np.where(sh >= 0, up, down), 0, _N16 - 1).astype(np.int64)


def exp16_table_for(arch: str, arithmetic: str, s_in: float, z_in: int, s_out: float, z_out: int, in_bits: int,
                    out_bits: int) -> np.ndarray | None:
    """QNN's Exp on every 16-bit input code where the rule holds (``arithmetic == "qnn"``, v68 or v73, 16-bit codes in
    and out, a step ``s_in log2 e`` under 1), else None (the caller builds exact rounding)."""
    if not (arithmetic == "qnn" and arch in EXP16_ARCHS and in_bits == out_bits == 16
            and s_in > 0 and s_out > 0 and math.isfinite(1.0 / f32(s_out))):
        return None
    return exp16_codes(np.arange(_N16, dtype=np.int64), s_in, z_in, s_out, z_out)
