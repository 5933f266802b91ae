"""QNN's HTP Gelu of 16-bit codes, v68 and v73, measured on Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51)
with ``tests/fidelity/unary16_probe.py`` (every 16-bit input code once per encoding) and held to it by
``tests/fidelity/test_qnn_gelu16.py`` (docs/htp-fidelity.md, "16-bit Gelu (and LogSoftmax) (stop 28)"). v68 = v73.

``gelu(x) = x Phi(x)`` with ``Phi(x) = (1 + erf(z)) / 2``, ``z = x / sqrt(2)``. With ``a = q - z_in`` and ``b = |a|``:

    z:        float32(s_in / sqrt 2) = f 2^e,  m = round(f 2^15),  sh = 1 - e
              Z = (b m + 2^(sh - 1)) >> sh                         |z| in Q14, rounded (an int)
    gate:     G(Z), Phi(|x|) in Q12 (below)
    p:        p = (b G + 2^11) >> 12                 a >= 0        gelu in the input's own units
              p = -((b (4096 - G) + 2^11) >> 12)     a < 0         (sign and magnitude: Phi(-x) = 1 - Phi(x))
    output:   float32(s_in / s_out) = f_o 2^e_o,  mo = round(f_o 2^15),  t = (|p| mo) >> 15
              v = ((t >> (-e_o - 1)) + 1) >> 1     e_o < 0;   t  e_o = 0;   (|p| mo) >> (15 - e_o)  e_o > 0
              code = clamp(z_out + sign(p) v)

The gate per unit interval of z (``j = Z >> 14``, ``t = Z & 16383``, the fraction in Q14):

    j = 0 (found):   P1 = (-19971 t - 5413 2^16) >> 16,  R = (P1 t + 9495 2^16) >> 16      erf(z) / z in Q13
                     G  = 2048 + ((Z R + 2^15) >> 16)                                      erf(z) = z R(z)
    j = 1, 3:        G  = floor(P_j(t / 2^14)), P_j a cubic fitted to the simulator's gates (open: 90.0% and 100%
                     of the gates of each interval; the arithmetic is not this: in [1, 3) the gate steps down as
                     well as up, docs/htp-fidelity.md, "16-bit Gelu's gate from 1 to 4 (stop 28)")
    j = 2:           P  = (TP[k] (512 - f) + TP[k + 1] f) >> 17,  Q the same with TQ,  k = t >> 9, f = t & 511
                     G  = (P Z + Q 2^16 + 2^15) // (Z + 2^16) = P + ((Q - P) 2^16 + 2^15) // (Z + 2^16)
                     a rational (P z + 4 Q + 2) / (z + 4) of two separately floored integers: the form is measured
                     (every drop of the flicker a step of floor((a + 1/2) 4 / (4 + z)), a = Q - P), P and Q are
                     fitted (33 knots each in Q8, GELU16_PQ2_KNOTS; open: 96.5% of the gates of [2, 3), docs/htp-
                     fidelity.md, "16-bit Gelu's gate, fourth pass (stop 29)" and "... fifth pass (stop 29)")
    j >= 4:          G  = 4095                                                             (x from 5.66 up)

How each part was found (the probes at the output encoding equal to the input's, where ``p`` is the code):

- ``G`` is an integer Q12 gate (stop 26), a function of ``Z`` exactly: the gates read from ten power-of-two probes
  (``s_in = 2^-16..2^-12``, zero points 0 and 65535) never disagree on one ``Z`` (79,105 values), where ``Z`` floored
  conflicts on 3,563 and the real ``z`` on a Q15 grid on 1,988; 8 calibration-like random encodings (their own output
  encodings) then give every positive code with ``Z`` from the 15-bit rounded multiplier of float32 ``s_in / sqrt 2``
  (``z`` from the real product: 97.7-99.5%).
- ``j = 0``: with ``G = 2048 + rshr(Z R, 16)`` the codes bound an integer ``R`` for every ``Z``; a real quadratic in
  ``t`` fits these within 0.1 of a unit (the cubic term vanishes: ``erf(z) / z`` is even), and the Horner form with
  floors of the 16-bit Exp (``spec/qnn_exp16.py``: ``(c t + k 2^16) >> 16``, ``t`` here in Q14) searched around it
  has exactly one solution, its constant a whole multiple of 2^16: every gate of 16,384 values of ``Z``.
- ``j = 1, 2``: not ``z R`` with ``R`` a floor of any smooth function (a linear programme on eighths of the interval:
  infeasible by 0.5-2.4 units of ``R`` at every output width 2^13..2^18), nor Horner's rule with floors in ``t`` or
  ``Z`` (Q14, Q15, Q16 variables, shifts 14-16, 0-4 extra bits), nor ``4096`` minus one; the gates flicker by one
  with a period that grows from 2 to 7 codes of ``Z`` across ``j = 1``. So a cubic per interval, floored, stands in.
- The negative side ``4096 - G`` holds for 99.5-100% of the negative codes of the 8 random encodings; the output stage
  is stop 26's (every code of 13 probes, and of the 8 random encodings with the gates read from the probes).
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.fixedpoint import q15_multiplier
from openqnn.backends.htp.spec.qnn_eltwise import f32

__all__ = ["GELU16_ARCHS", "GELU16_CUBICS", "GELU16_PQ2_KNOTS", "gelu16_codes", "gelu16_gate", "gelu16_table_for",
           "gelu16_z"]

GELU16_ARCHS = ("v68", "v73")
_N16 = 1 << 16
_Q = 14  # Z: |z| in Q14
# j = 0: R = erf(z) / z in Q13 as a quadratic in t = frac(z) 2^14, Horner's rule with floors (module docstring)
GELU16_R0 = (-19971, -5413, 9495)
# j = 1, 3 (rows 0, 1): G = (B3 t^3 + B2 t^2 + B1 t + B0) >> 46, a real cubic in t / 2^14 with B_k = its coefficient
# 2^(46 - 14 k) (fitted to the simulator's gates: the arithmetic there is open). j = 1: least squares, floored with a
# tuned offset; j = 3: 4096 - 2^-43 (2t - 8195)(2t - 14043)(2t - 24031): 4096 up to the gates' first and third step
# down (t = 4098, 12016), 4095 from them, and 4096 again from their step up (t = 7022). (j = 2's earlier cubic and the
# fourth pass's cubic P and Q: docs/htp-fidelity.md, "Review (stop 29)".)
GELU16_CUBICS = np.array([[265407968436528832, 3686356027320, -220661525, 4798],
                          [288252500510063224, -10391740208, 1480608, -64]], dtype=np.int64)

# j = 2, since the fifth pass: P and Q by linear interpolation between 33 knots per unit (t = 512 k), in Q8,
# P = (T[k] (512 - f) + T[k + 1] f) >> 17 with k = t >> 9, f = t & 511 (fitted to the simulator's gates by a coordinate
# search: 96.5% of the seen gates of [2, 3) against the cubics' 91.3%; a fitted stand-in, not the arithmetic: knots
# offset by half a step fit as well, docs/htp-fidelity.md, "16-bit Gelu's gate, fifth pass (stop 29)")
GELU16_PQ2_KNOTS = np.array([
     [707276, 708961, 710836, 712677, 714323, 716171, 717930, 719737, 721558, 723152, 724769, 726554, 728248, 729888,
      731488, 733389, 734974, 736592, 738208, 739820, 741788, 743171, 744904, 746496, 748175, 749774, 751393, 753004,
      754675, 756410, 758151, 759772, 761464],
     [1216334, 1218497, 1220467, 1222423, 1224423, 1226269, 1228063, 1229938, 1231626, 1233443, 1235224, 1236768,
      1238451, 1240094, 1241621, 1243068, 1244626, 1246111, 1247566, 1248983, 1250275, 1251714, 1252903, 1254237,
      1255459, 1256711, 1257914, 1259107, 1260132, 1261186, 1262241, 1263204, 1264261]], dtype=np.int64)


def gelu16_z(b: np.ndarray, s_in: float) -> np.ndarray | None:
    """``Z``, ``|z| = |x| / sqrt(2)`` in Q14 of input code magnitudes ``b``: ``b`` times the rounded 15-bit
    significand of float32 ``s_in / sqrt(2)``, rounded; None where ``s_in / sqrt(2)`` is 1 or more (not probed)."""
    m, e = q15_multiplier(float(f32(f32(s_in) / f32(math.sqrt(2.0)))), carry=True)
    sh = 1 - e
    if sh < 1:
        return None
    return (np.asarray(b, np.int64) * m + (1 << (sh - 1))) >> sh


def gelu16_gate(z: np.ndarray) -> np.ndarray:
    """``G`` (int64), ``Phi(|x|)`` in Q12 of ``Z`` (|z| in Q14): the module docstring's per-interval rule."""
    z = np.asarray(z, np.int64)
    j, t = z >> _Q, z & ((1 << _Q) - 1)
    c2, c1, c0 = GELU16_R0
    p1 = (c2 * t + (c1 << 16)) >> 16
    r = (p1 * t + (c0 << 16)) >> 16
    g = 2048 + ((z * r + (1 << 15)) >> 16)
    for k, row in ((1, 0), (3, 1)):
        b0, b1, b2, b3 = (int(v) for v in GELU16_CUBICS[row])
        tk = t[j == k]
        g[j == k] = (b3 * tk**3 + b2 * tk**2 + b1 * tk + b0) >> 46
    t2, z2 = t[j == 2], z[j == 2]
    k2, f2 = t2 >> 9, t2 & 511
    pq = [(r[k2] * (512 - f2) + r[k2 + 1] * f2) >> 17 for r in GELU16_PQ2_KNOTS]
    g[j == 2] = pq[0] + (((pq[1] - pq[0]) << 16) + (1 << 15)) // (z2 + _N16)
    return np.where(j >= 4, 4095, g)


def gelu16_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray | None:
    """QNN's Gelu of 16-bit codes ``q`` (module docstring); None where :func:`gelu16_z` is."""
    a = np.asarray(q, np.int64) - z_in
    b = np.abs(a)
    z = gelu16_z(b, s_in)
    if z is None:
        return None
    g = gelu16_gate(z)
    p = np.where(a >= 0, (b * g + 2048) >> 12, -((b * (4096 - g) + 2048) >> 12))
    mo, e = q15_multiplier(float(f32(f32(s_in) / f32(s_out))), carry=True)
    mag = np.abs(p) * mo
    if e > 0:
        v = mag >> min(15 - e, 62) if e <= 15 else mag << (e - 15)
    elif e == 0:
        v = mag >> 15
    else:
        v = (((mag >> 15) >> (-e - 1)) + 1) >> 1
    return np.clip(z_out + np.sign(p) * v, 0, _N16 - 1).astype(np.int64)


def gelu16_table_for(arch: str, arithmetic: str, s_in: float, z_in: int, s_out: float, z_out: int, in_bits: int,
                     out_bits: int, *, approximate: str = "none") -> np.ndarray | None:
    """QNN's Gelu on every 16-bit input code (``arithmetic == "qnn"``, v68 or v73, 16-bit codes in and out, the
    erf form), else None (the caller builds exact rounding)."""
    if not (arithmetic == "qnn" and arch in GELU16_ARCHS and in_bits == out_bits == 16 and approximate == "none"
            and s_in > 0 and s_out > 0 and math.isfinite(s_in / s_out)):
        return None
    return gelu16_codes(np.arange(_N16, dtype=np.int64), s_in, z_in, s_out, z_out)
