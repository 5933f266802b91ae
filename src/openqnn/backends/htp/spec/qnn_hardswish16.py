"""QNN's HTP HardSwish of 16-bit codes, v68 and v73, established on Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0,
QNN 2.51) with ``tests/fidelity/unary16_probe.py`` (every 16-bit input code once per encoding) and held to it by
``tests/fidelity/test_qnn_unary16.py`` (docs/htp-fidelity.md, "16-bit HardSwish (stop 27)"). v68 = v73 in every probe.

``hardswish(x) = x relu6(x + 3) / 6`` runs as a Q15 gate of the input code times the input requantized to the output's
codes, every step in integers (TFLite's reference instead rounds the real product once into the output encoding).
With ``a = q - z_in`` and ``rshr(v, s) = (v + 2^(s-1)) >> s`` (Hexagon's rounding shift, half up; ``s = 0``: ``v``):

    gate:    r_g = float32(s_in) 2^15 / 6 = f_g 2^e_g  (f in [0.5, 1)),  m_g = round(f_g 2^15)
             s1  = min(15, 14 - e_g),  k = 15 - e_g - s1           (k = max(1, -e_g): extra fraction bits)
             g   = clamp(rshr(rshr(a m_g, s1), k) + 16384, 0, 32767)        (x / 6 + 1/2 in Q15, two roundings)
    input:   r_o = float32(float32(s_in) / float32(s_out)) = f_o 2^e_o,  m_o = round(f_o 2^15)
             x_o = rshr(a m_o, min(15, 15 - e_o))                           (x in output codes; for e_o < 0 with
                                                                              -e_o fraction bits kept)
    product: code = clamp(z_out + rshr(rshr(x_o g, 15), max(0, -e_o)))

Deviations from TFLite's arithmetic and how each was found:

- The gate is a Q15 value that saturates at 32767, so from x = 3 up the code is ``x_o 32767 / 32768`` rounded, not
  ``x_o`` (stop 26: every code from 3 up of two probes at the output encoding equal to the input's).
- The gate is ``x / 6 + 1/2`` from the input *code* with a 15-bit rounded multiplier, rounded twice: first to
  ``15 + k`` fraction bits (a shift capped at 15, as LeakyRelu's 16-bit multiplier shift), then by ``k``; the two
  roundings add up to ``floor(a m_g / 2^(15 - e_g) + 1/2 + 2^-(k+1))`` (+0.75 for ``e_g >= -1``, +0.625 at -2, +0.5625
  at -3). Found at the output encoding equal to the input's (``x_o = a``): for each input code the integer gates that
  give its code bound ``(m_g, offset)``; across the 4 such probes (``s_in`` 1e-4 to 2^-11) one multiplier, the rounded
  one, and offsets of 0.7484-0.75 remain (every code); at 8 random encodings with ``e_g = -2`` the offset is 0.625 and
  at one with ``e_g = -3`` 0.5625 (scans in steps of 1/256: one value each, 100% of the codes; 0.75 there: 86-94%).
- The input is requantized to the output's codes *before* the product, rounded half up, with Elu's and Gelu's 15-bit
  rounded multiplier: the product of the Q15 gate and ``a`` requantized afterwards (rounded or floored at any of 16
  intermediate widths, Gelu's output stage) gives at most 93% of a probe's codes; this form 100% of all 4 probes at
  ``s_in = 2^-12`` with ratios 0.5-1.9.
- Ratios below 1/2 (``e_o < 0``): the multiplier's shift is capped at 15, so ``x_o`` keeps ``-e_o`` fraction bits and the
  product, rounded to 15 bits first, is rounded again by ``-e_o`` (the one-shift form: 81-98% of the codes of 5 probes
  at ratios 0.06-0.2; this form 100%).

Held: 100% of the codes of 75 all-code probes (44 on v73, 31 on v68; ``s_in`` 4e-6 to 2e-3, ratios 0.01 to 63, output zero
points 0 to 50000), where exact rounding gives 41-99%. Not this rule: ratios from 64 up (``e_o >= 7``: 97.6-99.3% of
the codes, up to 95 off, at the gate's first steps near x = -3, where the simulator's gate is finer than Q15; exact
rounding 99.96% there), which keep exact rounding (open).
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.fixedpoint import q15_multiplier, rshr_np
from openqnn.backends.htp.spec.qnn_eltwise import f32

__all__ = ["HARDSWISH16_ARCHS", "HARDSWISH16_MAX_EXP", "hardswish16_codes", "hardswish16_gate", "hardswish16_table_for"]

HARDSWISH16_ARCHS = ("v68", "v73")
HARDSWISH16_MAX_EXP = 6  # ratios s_in / s_out = f 2^e with e above this (64 and up) are not this rule
_N16 = 1 << 16




def hardswish16_gate(a: np.ndarray, s_in: float) -> np.ndarray:
    """The Q15 gate ``relu6(x + 3) / 6`` of centred input codes ``a`` (module docstring): ``x / 6`` from the code with
    a 15-bit multiplier, rounded to ``15 + k`` bits then by ``k``, plus 16384, clamped to [0, 32767]."""
    m, e = q15_multiplier(f32(s_in) * 2.0**15 / 6.0)
    s1 = min(15, 14 - e)
    k = 15 - e - s1
    return np.clip(rshr_np(rshr_np(np.asarray(a, np.int64) * m, s1), k) + 16384, 0, 32767)


def hardswish16_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray | None:
    """QNN's HardSwish of 16-bit codes ``q`` (module docstring); None where the ratio ``s_in / s_out`` is 64 or more
    (not this rule)."""
    m_o, e_o = q15_multiplier(f32(f32(s_in) / f32(s_out)))
    if e_o > HARDSWISH16_MAX_EXP:
        return None
    a = np.asarray(q, np.int64) - z_in
    x_o = rshr_np(a * m_o, min(15, 15 - e_o))
    v = rshr_np(rshr_np(x_o * hardswish16_gate(a, s_in), 15), max(0, -e_o))
    return np.clip(z_out + v, 0, _N16 - 1).astype(np.int64)


def hardswish16_table_for(arch: str, arithmetic: str, s_in: float, z_in: int, s_out: float, z_out: int,
                          in_bits: int, out_bits: int) -> np.ndarray | None:
    """QNN's HardSwish on every 16-bit input code where the rule holds (``arithmetic == "qnn"``, v68 or v73, 16-bit
    codes in and out, a ratio under 64), else None (the caller builds exact rounding)."""
    if not (arithmetic == "qnn" and arch in HARDSWISH16_ARCHS and in_bits == out_bits == 16
            and s_in > 0 and s_out > 0 and math.isfinite(s_in / s_out)):
        return None
    return hardswish16_codes(np.arange(_N16, dtype=np.int64), s_in, z_in, s_out, z_out)
