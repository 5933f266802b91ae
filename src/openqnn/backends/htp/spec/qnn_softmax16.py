"""QNN's HTP Softmax of 16-bit codes (v68 = v73; output 1/65536 with zero point 0, beta 1, last axis, rows of 3 or
more): what the simulator's codes establish (docs/htp-fidelity.md, "16-bit Softmax (stop 26)"; probes in
``tests/fidelity/softmax16_probe.py``). Two parts are approximated and named as such; nothing here is taken from a
library's source.

1. The step: ``C = s_in log2(e)`` (float64 of the float32 scale) in fixed point with 22 fraction bits, truncated:
   ``C' = floor(C 2^22) / 2^22``, so ``t = k C'`` is exact in units of 2^-22. Rows ``[max, max - k, far...]`` give
   the exponentials falling as ``2^(-k C (1 - d))`` with ``d`` 2.0e-4, 2.0e-4, 4.2e-4 and 5.3e-4 at ``s_in`` 2e-4,
   3e-4, 3.7e-4 and 2.5e-4, where 2^-22 truncation gives 1.82e-4, 1.82e-4, 4.05e-4 and 5.13e-4 (the ~1.7e-5 left
   over is the same at every scale); on random rows at ``s_in`` 1.2e-4 to 3e-3 this step is as good as or better
   than 11, 12 or 13 significant bits or 2^-21 / 2^-23 (at 3.5e-4: 88.7% against 38.6% for 11 bits; at 3e-3: 96.8%
   against 93.8% for 12 bits; at 7e-5 to 1.5e-4: 85-87% against 20-39%, rows of 17).
2. The exponentials in Q15: with ``t = k C' = n + f`` (``k m`` in units of 2^-22, ``m = 2^22 C'``),
   ``E[k] = g(f16) >> n``, ``f16 = floor(2^16 f)`` the fraction's top 16 bits, and ``g`` a 4-segment quadratic in the
   complement ``u = 65535 - f16`` (``2^-f = 2^(phi - 1)``, ``phi = 1 - f``), its segment ``s = u >> 14``, in 16-bit
   multiplies with floors: ``P = (c2[s] u + c1[s] 2^15) >> 16``, ``g = (P u + c0[s] 2^15) >> 16`` (``POW2_COEFFS``;
   ``g(0) = 32767``, the maximum's, ``g(65535) = 16384``). The coefficients were recovered from the simulator: 47,354
   of the 65,536 values of ``g`` read exactly at 30 steps (``softmax16_probe.read_pow2``), all reproduced, and no
   other integers within +-3, +-6, +-12 of them do (the same evaluation as the 8-bit short rows' nnlib reciprocal,
   ``spec/qnn_softmax.recip16``, whose first-segment ``c0`` is also 32769). ``E = g >> n`` held on all 2,957 checks in
   octaves 1-7.
3. The sum ``S`` of the row's ``E`` (``b`` bits, ``2^(b-1) <= S < 2^b``), a multiplier ``R ~ 2^(b + 15) / S``
   and the code ``(E R) >> (b - 1)``. The maximum's code on two-level rows (``b = 16``) is ``4 p - 2``
   (``(32767 R) >> 15`` with ``R`` a multiple of 4) on every row of every probe; on random rows (the exponentials
   now exact) every row's codes admit one real ``R`` under this form, a multiple of 4 for ``b = 16``, of 2 for
   ``b = 17`` and an integer for ``b >= 18`` (7,680 rows, 3-200 elements; no coarser grid fits them all): ``b - 2``
   significant bits up to 16. **Approximated** here by rounding ``2^(b + 15) / S`` to that grid; QNN's own
   reciprocal (for ``b = 16`` a monotone function of the sum's top 15 bits, within -2..+1.6 of ``2^29 / D`` in units
   of ``R / 2``) is open.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ARCHS", "MIN_ROW", "OUT_SCALE", "POW2_COEFFS", "codes_of", "exp_step16", "exp_table16", "pow2_frac",
           "softmax16_codes", "softmax16_table_for"]

ARCHS = ("v68", "v73")
OUT_SCALE = 1.0 / 65536
STEP_FRACTION_BITS = 22  # s_in log2(e) in fixed point, truncated
# g's coefficients per segment of u = 65535 - f16 (u >> 14): rows c0, c1, c2 (recovered, module docstring, item 2)
POW2_COEFFS = np.array([[32769, 32876, 33371, 34681],
                        [22652, 21816, 19857, 16401],
                        [4300, 5119, 6087, 7227]], dtype=np.int64)
R_MAX = (1 << 16) - 1  # the multiplier is an unsigned 16-bit number (constant rows of 16 and 64 need it)
MIN_ROW = 3  # rows of two take another route (tests/fidelity/softmax16_probe.py: a cubic 2^-f), not wired


def exp_step16(s_in: float) -> float:
    """``s_in log2(e)`` truncated to a multiple of ``2^-STEP_FRACTION_BITS`` (``s_in`` taken as float32)."""
    c = float(np.float32(s_in)) * float(np.log2(np.e))
    return float(np.floor(c * 2.0**STEP_FRACTION_BITS) / 2.0**STEP_FRACTION_BITS)


def pow2_frac(f16: np.ndarray) -> np.ndarray:
    """``g(f16) ~ 2^15 2^(-f16 / 2^16)`` (Q15, 16384..32767): the 4-segment quadratic of the module docstring."""
    u = 0xFFFF - np.asarray(f16, dtype=np.int64)
    c0, c1, c2 = (c[u >> 14] for c in POW2_COEFFS)
    p = (c2 * u + (c1 << 15)) >> 16
    return (p * u + (c0 << 15)) >> 16


def exp_table16(s_in: float) -> np.ndarray:
    """``E[k]`` for the differences ``k`` in [0, 65536): ``g(f16) >> n`` for ``k m = n 2^22 + f`` (int64)."""
    m = round(exp_step16(s_in) * 2.0**STEP_FRACTION_BITS)
    t = np.arange(1 << 16, dtype=np.int64) * m
    n = t >> STEP_FRACTION_BITS
    g = pow2_frac((t >> (STEP_FRACTION_BITS - 16)) & 0xFFFF)
    return np.where(n < 16, g >> np.minimum(n, 15), 0)


def codes_of(e: np.ndarray) -> np.ndarray:
    """The codes of rows (last axis) of Q15 exponentials ``e``: the row's sum ``S`` of ``b`` bits, the multiplier
    ``R ~ 2^(b + 15) / S`` rounded to a multiple of ``q = 2^max(0, 18 - b)`` (``b - 2`` significant bits up to 16),
    at most 65535, ``(e R) >> (b - 1)``; clamped to [0, 65535]."""
    e = np.asarray(e, dtype=np.int64)
    s = np.sum(e, axis=-1, keepdims=True)
    b = np.frexp(s.astype(np.float64))[1].astype(np.int64)
    q = np.left_shift(np.int64(1), np.maximum(18 - b, 0))
    r = q * ((np.left_shift(np.int64(1), b + 15) + (s * q >> 1)) // (s * q))  # q floor(2^(b+15) / (S q) + 1/2)
    r = np.minimum(r, R_MAX)
    return np.clip((e * r) >> (b - 1), 0, 65535)


def softmax16_codes(q: np.ndarray, s_in: float) -> np.ndarray:
    """QNN's Softmax (last axis) of uint16 codes ``q`` at input scale ``s_in``, as far as established (module
    docstring): output codes at 1/65536, zero point 0."""
    q = np.asarray(q, dtype=np.int64)
    return codes_of(exp_table16(s_in)[q.max(axis=-1, keepdims=True) - q])


def softmax16_table_for(arch: str, arithmetic: str, n: int, s_in: float, s_out: float, z_out: int, in_bits: int,
                        out_bits: int, beta: float, last_axis: bool, unsigned: bool) -> np.ndarray | None:
    """``exp_table16(s_in)`` where this route applies (``arithmetic == "qnn"``, v68 or v73, unsigned 16-bit codes in
    and out, output 1/65536 with zero point 0, beta 1, the last axis, rows of at least ``MIN_ROW``), else None."""
    if (arithmetic != "qnn" or arch not in ARCHS or in_bits != 16 or out_bits != 16 or not unsigned or n < MIN_ROW
            or beta != 1.0 or not last_axis or float(np.float32(s_out)) != OUT_SCALE or z_out != 0
            or not s_in > 0):
        return None
    return exp_table16(s_in)
