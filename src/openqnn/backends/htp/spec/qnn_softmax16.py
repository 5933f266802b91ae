"""QNN's HTP Softmax of 16-bit codes (v68 = v73; output 1/65536 with zero point 0, beta 1, last axis): what the
simulator's codes establish (docs/htp-fidelity.md, "16-bit Softmax (stop 26)"; probes in
``tests/fidelity/softmax16_probe.py``). Open parts are named; nothing here is taken from a library's source.

1. The step: ``C = s_in log2(e)`` (float64 of the float32 scale) truncated to 12 significant bits,
   ``C' = floor(C 2^(12 - b)) 2^(b - 12)``, ``b = floor(log2 C) + 1`` (the 8-bit long rows' rule with 12 bits in
   place of 8). Read from rows ``[max, max - k, far...]``: the exponentials fall as ``2^(-k C (1 - d))`` with
   ``d`` 1.90e-4, 1.92e-4 and >= 4e-4 at ``s_in`` 2e-4, 3e-4 and 3.7e-4, where 12 bits give 1.82e-4, 1.82e-4 and
   4.05e-4 (13 bits: 1.82e-4, 0.44e-4, 1.82e-4).
2. The exponentials in Q15: ``E[k] = min(floor(2^15 2^(-k C')), 2^15 - 1)`` (the maximum's is 32767). QNN's own
   values differ from this by up to about +-1.5 units in a pattern of period 1/4 in the fraction of ``k C'``
   (a 4-segment polynomial for ``2^-f``; its coefficients are open): this form gives 93-94% of the exponentials
   read from the probes exactly.
3. The sum ``S`` of the row's ``E`` (``b`` bits, ``2^(b-1) <= S < 2^b``), a reciprocal ``r ~ 2^(b + 14) / S``
   (an even number: its rounding is open, ``2 round(2^(b + 13) / S)`` fits 77% of the read values) and the code
   ``(E r) >> (b - 2)``: the maximum's code is ``4 p - 2`` (``r = 2 p``, ``E = 32767``), which every probe row of
   more than two elements shows (65,534 of 65,535 rows at ``s_in`` 2e-4; the one other is the all-maxima row).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ARCHS", "MIN_ROW", "OUT_SCALE", "codes_of", "exp_step16", "exp_table16", "softmax16_codes",
           "softmax16_table_for"]

ARCHS = ("v68", "v73")
OUT_SCALE = 1.0 / 65536
STEP_BITS = 12  # significant bits kept of s_in log2(e)
ONE = (1 << 15) - 1  # the maximum's exponential (Q15, saturated)
MIN_ROW = 3  # rows of two take another route (tests/fidelity/softmax16_probe.py: a cubic 2^-f), not wired


def exp_step16(s_in: float) -> float:
    """``s_in log2(e)`` truncated to ``STEP_BITS`` significant bits (``s_in`` taken as float32)."""
    c = float(np.float32(s_in)) * float(np.log2(np.e))
    b = int(np.floor(np.log2(c))) + 1
    return float(np.floor(c * 2.0 ** (STEP_BITS - b)) * 2.0 ** (b - STEP_BITS))


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
