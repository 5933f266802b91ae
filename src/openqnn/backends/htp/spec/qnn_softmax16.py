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
2. The exponentials in Q15: with ``t = k C' = n + f``, QNN's ``E[k] = g(floor(2^16 f)) >> n``: a function ``g`` of
   the fraction's top 16 bits (no two of 7,652 exponentials read at three scales with the same 16 bits differ; 36
   pairs with the same 15 bits do), shifted right (floored) by the integer part (2,957 of 2,957 checks). ``g`` is
   ``2^15 2^-f`` up to about +-1.5 units in a pattern of period 1/4 (a per-quarter polynomial; its coefficients and
   roundings are open). **Approximated** here by ``min(floor(2^15 2^-t), 2^15 - 1)``, which is 93-94% of the
   exponentials read; the maximum's is 32767.
3. The sum ``S`` of the row's ``E`` (``b`` bits, ``2^(b-1) <= S < 2^b``), an even reciprocal ``r ~ 2^(b + 14) / S``
   and the code ``(E r) >> (b - 2)``: the maximum's code is ``4 p - 2`` (``r = 2 p``, ``E = 32767``) on every
   two-level row of every probe. ``r`` is a monotone function of ``S`` (no two rows with the same sum differ), within
   about +-2 of ``2^(b + 14) / S``; **approximated** here by ``2 round(2^(b + 13) / S)`` (77% of the read values).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ARCHS", "MIN_ROW", "OUT_SCALE", "codes_of", "exp_step16", "exp_table16", "softmax16_codes",
           "softmax16_table_for"]

ARCHS = ("v68", "v73")
OUT_SCALE = 1.0 / 65536
STEP_FRACTION_BITS = 22  # s_in log2(e) in fixed point, truncated
ONE = (1 << 15) - 1  # the maximum's exponential (Q15, saturated)
MIN_ROW = 3  # rows of two take another route (tests/fidelity/softmax16_probe.py: a cubic 2^-f), not wired


def exp_step16(s_in: float) -> float:
    """``s_in log2(e)`` truncated to a multiple of ``2^-STEP_FRACTION_BITS`` (``s_in`` taken as float32)."""
    c = float(np.float32(s_in)) * float(np.log2(np.e))
    return float(np.floor(c * 2.0**STEP_FRACTION_BITS) / 2.0**STEP_FRACTION_BITS)


def exp_table16(s_in: float) -> np.ndarray:
    """``E[k]`` for the differences ``k`` in [0, 65536): ``min(floor(2^15 2^(-k C')), 32767)`` (int64)."""
    k = np.arange(1 << 16, dtype=np.float64)
    return np.minimum(np.floor(2.0 ** (15.0 - k * exp_step16(s_in))), ONE).astype(np.int64)


def codes_of(e: np.ndarray) -> np.ndarray:
    """The codes of rows (last axis) of Q15 exponentials ``e``: ``(e r) >> (b - 2)`` with ``r`` the even
    ``2 round(2^(b + 13) / S)``, ``S`` the row's sum of ``b`` bits; clamped to [0, 65535]."""
    e = np.asarray(e, dtype=np.int64)
    s = np.sum(e, axis=-1, keepdims=True)
    b = np.frexp(s.astype(np.float64))[1].astype(np.int64)
    r = 2 * ((np.left_shift(np.int64(1), b + 14) + s) // (2 * s))  # 2 floor(2^(b+13) / S + 1/2)
    return np.clip((e * r) >> (b - 2), 0, 65535)


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
