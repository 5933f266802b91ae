"""QNN's HTP Gelu of 16-bit codes, v68 and v73, measured on Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51)
with ``tests/fidelity/unary16_probe.py`` (every 16-bit input code once per encoding) and held to it by
``tests/fidelity/test_qnn_gelu16.py`` (docs/htp-fidelity.md, "16-bit Gelu (and LogSoftmax) (stop 28)"). v68 = v73.

``gelu(x) = x Phi(x)`` with ``Phi(x) = (1 + erf(z)) / 2``, ``z = x / sqrt(2)``. With ``a = q - z_in`` and ``b = |a|``:

    z:        float32(s_in / sqrt 2) = f 2^e,  m = round(f 2^15),  sh = 1 - e
              Z = (b m + 2^(sh - 1)) >> sh                         |z| in Q14, rounded (an int)
    gate:     G(Z), Phi(|x|) in Q12 (below)
    p:        p = (b G + 2^11) >> 12                 a >= 0        gelu in the input's own units
              p = -((b max(4096 - G, 0) + 2^11) >> 12)  a < 0      (sign and magnitude: Phi(-x) = 1 - Phi(x))
    output:   float32(s_in / s_out) = f_o 2^e_o,  mo = round(f_o 2^15),  t = (|p| mo) >> 15
              v = ((t >> (-e_o - 1)) + 1) >> 1     e_o < 0;   t  e_o = 0;   (|p| mo) >> (15 - e_o)  e_o > 0
              code = clamp(z_out + sign(p) v)

The gate per unit interval of z (``j = Z >> 14``, ``t = Z & 16383``, the fraction in Q14):

    j = 0 (found):   P1 = (-19971 t - 5413 2^16) >> 16,  R = (P1 t + 9495 2^16) >> 16      erf(z) / z in Q13
                     G  = 2048 + ((Z R + 2^15) >> 16)                                      erf(z) = z R(z)
    j = 1, 2, 3:     G  = GATE[Z - 2^14], a table of the 49,152 gates read off the simulator (measured, every one;
                     the arithmetic that makes them is not found: docs/htp-fidelity.md, "16-bit Gelu and Atan as
                     measured tables (stop 30)")
    j >= 4:          G  = 4095                                                             (x from 5.66 up)

The negative side's gate is ``4096 - G`` clamped at 0: where ``G`` reaches 4097 (``z`` in about [2.67, 3)) a
negative input gives 0, not a positive value (stop 30: every negative code of 32 random encodings).

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
- ``j = 1, 2, 3`` (stop 30): thirteen probes (``s_in = s_out`` from ``2^-14`` to ``1.93 2^-14`` and ``2^-13`` to
  ``1.23 2^-13``, zero point 0; ``tests/fidelity/gelu16_gate_probe.gate_table``) pin one integer gate for every
  ``Z`` of [1, 4), never two (v68 = v73); with the table, 32 random encodings held out of the reading (their own
  zero points and output encodings) give every code. The table is data measured from the simulator, the way a ROM
  would be read; what arithmetic fills it is open (below, and docs/htp-fidelity.md, stops 28-29: the gate steps down
  as well as up; in [2, 3) a rational ``(P z + 4 Q + 2) // (z + 4)`` of two floored integers).
- ``j = 1, 2``: not ``z R`` with ``R`` a floor of any smooth function (a linear programme on eighths of the interval:
  infeasible by 0.5-2.4 units of ``R`` at every output width 2^13..2^18), nor Horner's rule with floors in ``t`` or
  ``Z`` (Q14, Q15, Q16 variables, shifts 14-16, 0-4 extra bits), nor ``4096`` minus one; the gates flicker by one
  with a period that grows from 2 to 7 codes of ``Z`` across ``j = 1``.
- The negative side: ``4096 - G`` wherever the probes at zero point 65535 read it (every ``Z`` of [0, 5) they pin),
  clamped at 0 (the gates of 4097: the stop 28 spec's 0.5% of negative codes missed); the output stage
  is stop 26's (every code of 13 probes, and of the 8 random encodings with the gates read from the probes).
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.fixedpoint import q15_multiplier
from openqnn.backends.htp.spec.measured import measured_table
from openqnn.backends.htp.spec.qnn_eltwise import f32

__all__ = ["GELU16_ARCHS", "GELU16_TABLE_RANGE", "gelu16_codes", "gelu16_gate", "gelu16_gate_table", "gelu16_table_for",
           "gelu16_z", "gelu_form"]

GELU16_ARCHS = ("v68", "v73")
_N16 = 1 << 16
_Q = 14  # Z: |z| in Q14
# j = 0: R = erf(z) / z in Q13 as a quadratic in t = frac(z) 2^14, Horner's rule with floors (module docstring)
GELU16_R0 = (-19971, -5413, 9495)
GELU16_TABLE_RANGE = (1 << _Q, 4 << _Q)  # j = 1, 2, 3: the gates of Z in [2^14, 2^16), measured (module docstring)


def gelu16_gate_table() -> np.ndarray:
    """The gates of ``Z`` in ``GELU16_TABLE_RANGE`` (int64, read-only), as the simulator gives them (module
    docstring); from ``tables/gelu16_gate.safetensors``, written by ``python -m tests.fidelity.gelu16_gate_probe
    --write-table``."""
    return measured_table("gelu16_gate.safetensors", "gate", GELU16_TABLE_RANGE[1] - GELU16_TABLE_RANGE[0])


def gelu_form(arch: str, arithmetic: str, approximate: str) -> str:
    """The Gelu QNN's HTP computes for ONNX's ``approximate`` attribute: the erf form, whatever it says, on v68 and
    v73 with QNN's arithmetic (measured: an ONNX Gelu with ``approximate="tanh"`` gives the erf form's codes, every
    one of six 16-bit encodings and the sweep's tanh case at 8 and 16 bits, v68 and v73; docs/htp-fidelity.md,
    "16-bit Gelu and Atan as measured tables (stop 30)"); ``approximate`` itself elsewhere."""
    return "none" if arithmetic == "qnn" and arch in GELU16_ARCHS else approximate


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
    t = z & ((1 << _Q) - 1)
    c2, c1, c0 = GELU16_R0
    p1 = (c2 * t + (c1 << 16)) >> 16
    r = (p1 * t + (c0 << 16)) >> 16
    g = 2048 + ((z * r + (1 << 15)) >> 16)
    lo, hi = GELU16_TABLE_RANGE
    inside = (z >= lo) & (z < hi)
    g[inside] = gelu16_gate_table()[z[inside] - lo]
    return np.where(z >= hi, 4095, g)


def gelu16_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray | None:
    """QNN's Gelu of 16-bit codes ``q`` (module docstring); None where :func:`gelu16_z` is."""
    a = np.asarray(q, np.int64) - z_in
    b = np.abs(a)
    z = gelu16_z(b, s_in)
    if z is None:
        return None
    g = gelu16_gate(z)
    p = np.where(a >= 0, (b * g + 2048) >> 12, -((b * np.maximum(4096 - g, 0) + 2048) >> 12))  # (clamped)
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
