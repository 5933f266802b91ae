"""QNN's HTP Sin, Cos and Atan of 16-bit codes, v68 and v73, established on Qualcomm's HTP simulator (onnxruntime-qnn
2.7.0, QNN 2.51) with ``tests/fidelity/trig16_probe.py`` (every 16-bit input code once per encoding) and held to it by
``tests/fidelity/test_qnn_trig16.py`` (docs/htp-fidelity.md, "16-bit Atan, Sin and Cos (stop 27)" and "16-bit Sin, Cos
and Atan wired (stop 28)"). v68 = v73 in every probe.

With ``a = q - z_in`` and ``rshr(v, s) = (v + 2^(s-1)) >> s``:

    phase:    M = round(float32(s_in) 2^32 / (2 pi)),  P = (|a| M) mod 2^32                 (turns, Q32)
              k = P >> 30 (the quadrant),  u = P mod 2^30;  u = 2^30 - 1 - u for odd k  (a one's complement)
              r = u >> 16                                         (the quadrant phase, 0..2^14 - 1)
              sign: Sin + + - - over k = 0..3 (times sign(a)),  Cos + - - +
    value:    V = sign F(r)                                       (F: Sin Q13 sine, Cos Q14 cosine)
    output:   2^-Q / float32(s_out) = f 2^e (f in [0.5, 1)),  m = round(0.99999 f 2^15)
              code = clamp(z_out + sign(V) (rshr(|V| m, 15 - e) mod 2^17))

``F`` is a cubic per quarter of the quadrant (``r >> 12``, pi/8 each) in the quadrant phase ``x = r`` itself (Q14 of
the quadrant, not the offset within the piece), by Horner in integers: ``p = c3`` (the value's format, Sin Q13, Cos
Q14), then three steps ``p = (p x + C 2^13) >> 14`` with the coefficients ``C2, C1, C0`` in one more bit (Sin Q14, Cos
Q15; an odd ``C`` is a step rounded half up, an even one floored), ``F = p`` (``_SIN_COEFFS``, ``_COS_COEFFS``).

Found from the table of ``F`` read from 4 clean probes (``s_in`` 2^-13..2^-10 at ``s_out = 2^-Q``, where the code is
the value): the piece boundaries are where the error against the rounded function shifts its mean; per piece, for
every leading coefficient within 300 of a least-squares cubic's, the others by least squares and their neighbours,
under each of the 8 floor/round choices of the three steps. Each piece has exactly one choice and one set of
coefficients that gives every phase read (16,120 of 16,384 for each op; any other choice at most 99.85%), and the
fractions added before each floor are pinned to 0 or 1/2 to within 1/128 (scanned). The one's complement in the odd
quadrants shows only where ``P``'s low 16 bits are all 0 (there the reflected phase is one below ``2^30 - u``'s): with
it the 4 clean probes read one value per phase (a two's complement leaves 1 and 2 phases with two values) and 16
random encodings per op give every code (the two's complement misses 1-166 codes on 6 (Sin) and 7 (Cos) of them).

The output multiplier: with ``F`` known, every random encoding pins the integer ``m`` (the real multipliers consistent
with all its codes span under 0.002 of a unit). Over 160 encodings (``f 2^15`` with every fraction) ``m`` is
``round((1 - eps) f 2^15)`` for ``eps`` in [0.965e-5, 1.003e-5], so the factor 0.99999; stop 27's ``floor(f 2^15 +
1/4)`` misses 8 of them (fractions 0.67-0.82 of ``f 2^15``, rounded either way), plain rounding 11 of the first 60.
The magnitude wraps modulo 2^17 before the zero point is added and the result clamped: at output scales far below the
function's range (ratios ``2^-Q / s_out`` of 8 to 84) the simulator's codes run up to 65535, saturate, and start again
from the zero point after every 2^17 codes of magnitude.

Held: every code of 244 encodings per op and arch (v68, v73): 200 random ones as calibration would give (``s_in``
3e-5..3e-4, unsaturated outputs) and 44 anywhere (``s_in`` 1e-6..0.1, ``s_out`` 1e-6..1e-2, any zero points); exact
rounding 17-85% of the codes of the first.

Atan: a function of the real input, odd, Q14 (``V = sign(a) G(...)``, the same output conversion with ``Q = 14``).
``x = |a| s_in`` is ``X = |a| m`` with ``m`` the 15-bit rounded significand of ``float32(s_in) = f 2^e`` (``x = X
2^(e - 15)``), floored to Q15 first, ``xq = floor(x 2^15) = X >> -e``, and

    xq < 2^15 (x < 1):     V = G(xq)
    xq = 2^15:             V = 12868                           (pi/4 in Q14, one below G(2^15); x in [1, 1 + 2^-15))
    xq > 2^15:             n = the top 17 bits of xq, in [2^16, 2^17) (floored; in [1, 2), where xq has 16 bits,
                               n = 2 xq),  xq in [2^(15+k), 2^(16+k))
                           t = R(n) >> k,  R(n) = round(2^31 / n) + D[n - 2^16]   (1 / x in Q15)
                           V = 25736 - G(t)                    (pi/2 in Q14)
    G(t):     a quadratic per quarter of [0, 1] (t >> 13) in t itself, Horner p = c2, p = (p t + C 2^14) >> 15
              twice (C1, C0 in Q15, c2 in Q14; ``_ATAN_COEFFS``)

``D`` (-2..2, 65,536 values, ``tables/atan16_reciprocal.safetensors``) is the simulator's reciprocal less the rounded exact
one, measured: what arithmetic makes it is not found (docs/htp-fidelity.md, "16-bit Atan above 1, from probes (stop
29)" and "16-bit Gelu and Atan as measured tables (stop 30)").

``G`` was found like Sin's ``F``: at power-of-two input scales (2^-16..2^-6 at ``s_out = 2^-14``) the value is a
function of ``x`` (155,648 inputs, no two values for one ``x``) that changes only at multiples of 2^-15 below 1 (``t``
floored: the odd multiples of 2^-16 take the even one below's value); a least-squares quadratic per quarter of ``[0,
1]`` leaves only a rounding (under 1 unit; a single polynomial of degree 13 leaves 2.2); the search gives every ``t``
read (16,384 + 8,192 of them) with one floor/round choice per piece. Above 1 the simulator's reciprocal is not
exact: ``round(2^15 2^k / x) >> k`` gives 98.1% of the inputs of the power-of-two probes (92.7% in ``[1, 2)``).

The reciprocal (stop 30, from stop 29's finding that above 1 the value is a function of 17 bits of ``x``) takes
``xq``, ``x`` already floored to Q15 (in ``[1, 2)`` its 16 bits and a zero; the top 17 bits of ``X`` itself conflict
between binades on 853 odd ``n``), and one ``R(n)`` serves every binade. 123 probes at ``s_out = 2^-14`` (``s_in =
m 2^-(30 - k)``, ``k`` = 0..7, odd ``m`` from 22,000 to 2^15; ``tests/fidelity/trig16_probe.atan_reciprocal_table``)
each allow a set of ``R(n)`` per input (``G`` is not monotone near 1); every ``n`` is read in one to eight binades,
no set is empty, and ``D`` is the allowed value nearest the exact rounding. ``xq = 2^15`` gives pi/4 as ``x = 1``
does (the last 16 misses among 38 random encodings). Held out of the reading: every code of 38 random encodings per
arch (v68, v73; ``s_in`` 1e-6..0.05, any zero points; before 95.5-99.99%, up to 3 codes off).

"""

from __future__ import annotations

import functools
import math

import numpy as np

from openqnn.backends.htp.fixedpoint import q15_multiplier, rshr_np
from openqnn.backends.htp.spec.measured import measured_table
from openqnn.backends.htp.spec.qnn_eltwise import f32

__all__ = ["TRIG16_ARCHS", "TRIG16_OPS", "atan16_core", "atan16_reciprocal_input", "atan16_reciprocal_table",
           "atan16_value", "trig16_codes", "trig16_quadrant", "trig16_table_for", "trig16_value"]

TRIG16_ARCHS = ("v68", "v73")
TRIG16_OPS = {"ElementWiseSin": "Sin", "ElementWiseCos": "Cos", "ElementWiseAtan": "Atan"}
_VALUE_BITS = {"Sin": 13, "Cos": 14, "Atan": 14}
_N16 = 1 << 16
_QUADRANT_BITS = 14
_PIECE_BITS = 12  # four pieces of pi/8 per quadrant
_OUTPUT_SHRINK = 1 - 1e-5  # the output ratio is rounded to 15 bits after this factor (0.99999)
# (c3, C2, C1, C0) per pi/8 piece: c3 in the value's format (Sin Q13, Cos Q14), C2..C0 with one more bit (Sin Q14,
# Cos Q15); each Horner step p = (p x + C 2^13) >> 14 (x the Q14 quadrant phase)
_SIN_COEFFS = ((-5197, -34, 25738, 1), (-4405, -1286, 26082, -31), (-2951, -5694, 28334, -419),
               (-975, -14642, 35125, -2146))
_COS_COEFFS = ((1950, -40985, 24, 32769), (5902, -46801, 1526, 32634), (8809, -55430, 5846, 31904),
               (10394, -62432, 11029, 30619))

# Atan: (c2, C1, C0) per quarter of [0, 1] in t (Q15): c2 Q14, C1 and C0 Q15; pi/2 in Q14
_ATAN_COEFFS = ((-1887, 33067, 1), (-4539, 35471, -268), (-5173, 36500, -466), (-4563, 34566, 299))
_ATAN_HALF_PI = 25736
_ATAN_QUARTER_PI = 12868  # xq = 2^15 (x in [1, 1 + 2^-15)): pi/4 in Q14, one below G(2^15)
_ATAN_RECIP_BITS = 17  # the reciprocal's input: the top 17 bits of xq (x floored to Q15)


def _phase_multiplier(s_in: float) -> int:
    """``round(float32(s_in) 2^32 / (2 pi))``: one input code in units of ``2^-32`` of a turn."""
    return math.floor(f32(s_in) / (2 * math.pi) * 2.0**32 + 0.5)


def trig16_quadrant(a: np.ndarray, s_in: float, op: str) -> tuple[np.ndarray, np.ndarray]:
    """The sign (-1, 0, 1) and the 14-bit quadrant phase ``r`` (``0..2^14 - 1``) of centred input codes
    ``a = q - z_in``: the Q32 phase ``P = |a| M mod 2^32``, its quadrant ``k = P >> 30`` and 30-bit phase within it
    ``u``, reflected as ``2^30 - 1 - u`` (a one's complement) in the odd quadrants, then floored to 14 bits (module
    docstring). Sin is ``+F(u), +F(~u), -F(u), -F(~u)`` over the quadrants and odd in ``a``; Cos (``F`` the cosine of
    the quadrant phase) ``+F(u), -F(~u), -F(u), +F(~u)``."""
    a = np.asarray(a, np.int64)
    p = (np.abs(a) * _phase_multiplier(s_in)) % (np.int64(1) << 32)
    k, u = p >> 30, p & ((1 << 30) - 1)
    if op == "Sin":
        sign = np.where(k >= 2, -1, 1) * np.sign(a)
    else:
        sign = np.where((k == 1) | (k == 2), -1, 1)
    u = np.where((k & 1) == 1, ((1 << 30) - 1) - u, u)
    return sign.astype(np.int64), (u >> (30 - _QUADRANT_BITS)).astype(np.int64)


def _horner(x: np.ndarray, coeffs: tuple[tuple[int, ...], ...], piece_bits: int, shift: int) -> np.ndarray:
    """Horner in integers of the piece ``x >> piece_bits`` (the last piece beyond): ``p = c_top``, then per lower
    coefficient ``p = (p x + C 2^(shift - 1)) >> shift`` (``C`` one bit finer than ``p``: odd rounds half up)."""
    table = np.asarray(coeffs, np.int64)[np.minimum(x >> piece_bits, len(coeffs) - 1)]
    p = table[..., 0]
    for i in range(1, table.shape[-1]):
        p = (p * x + (table[..., i] << (shift - 1))) >> shift
    return p


def trig16_value(r: np.ndarray, op: str) -> np.ndarray:
    """``F(r)``: the quadrant function of the 14-bit phase ``r`` (Sin: ``sin`` in Q13, Cos: ``cos`` in Q14 of
    ``pi/2 r / 2^14``), a cubic per pi/8 piece in ``x = r`` by Horner, ``p = (p x + C 2^13) >> 14`` from ``p = c3``
    (module docstring)."""
    return _horner(np.asarray(r, np.int64), _SIN_COEFFS if op == "Sin" else _COS_COEFFS, _PIECE_BITS, _QUADRANT_BITS)


def atan16_core(t: np.ndarray) -> np.ndarray:
    """``G(t)``: ``atan(t / 2^15)`` in Q14 for ``t`` in ``0..2^15``, a quadratic per quarter of ``[0, 1]`` in ``t``
    (Q15) by Horner, ``p = (p t + C 2^14) >> 15`` from ``p = c2`` (module docstring, Atan)."""
    return _horner(np.asarray(t, np.int64), _ATAN_COEFFS, 13, 15)


def atan16_reciprocal_input(a: np.ndarray, s_in: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xq, n, k)`` of centred input codes ``a`` (module docstring, Atan): ``xq = floor(|a| s_in 2^15)`` through the
    15-bit rounded significand of ``s_in``, ``n`` its top 17 bits in ``[2^16, 2^17)`` and ``k`` its binade above 1
    (``xq`` in ``[2^(15+k), 2^(16+k))``; 0 below)."""
    m, e = q15_multiplier(f32(s_in), carry=True)
    big_x = np.abs(np.asarray(a, np.int64)) * m  # x = X 2^(e - 15)
    xq = big_x >> -e if e <= 0 else big_x << e
    top = np.frexp(np.maximum(xq, 1).astype(np.float64))[1].astype(np.int64) - 1  # floor(log2 xq)
    bits = _ATAN_RECIP_BITS - 1
    n = np.where(top >= bits, xq >> np.maximum(top - bits, 0), xq << np.maximum(bits - top, 0))
    return xq, n, np.maximum(top - 15, 0)


@functools.cache
def atan16_reciprocal_table() -> np.ndarray:
    """``R(n)`` for ``n`` in ``[2^16, 2^17)`` (int64, read-only, made once): ``round(2^31 / n)`` plus the measured ``D``
    of ``tables/atan16_reciprocal.safetensors`` (module docstring; written by ``python -m tests.fidelity.trig16_probe
    --write-atan-table``)."""
    n = np.arange(1 << 16, 1 << 17, dtype=np.int64)
    r = ((1 << 31) + (n >> 1)) // n + measured_table("atan16_reciprocal.safetensors", "correction", 1 << 16)
    r.flags.writeable = False
    return r


def atan16_value(a: np.ndarray, s_in: float) -> np.ndarray:
    """QNN's Atan of centred input codes ``a`` in Q14 (module docstring, Atan): ``G(xq)`` below 1; 12868 (pi/4) at
    ``xq = 2^15``; above, ``25736 - G(R(n) >> k)`` with the measured reciprocal ``R`` of ``xq``'s top 17 bits; odd."""
    a = np.asarray(a, np.int64)
    xq, n, k = atan16_reciprocal_input(a, s_in)
    t_big = atan16_reciprocal_table()[np.clip(n - (1 << 16), 0, (1 << 16) - 1)] >> k
    v = np.where(xq < 1 << 15, atan16_core(np.minimum(xq, 1 << 15)),
                 _ATAN_HALF_PI - atan16_core(np.minimum(t_big, 1 << 15)))
    return np.sign(a) * np.where(xq == 1 << 15, _ATAN_QUARTER_PI, v)


def trig16_codes(q: np.ndarray, op: str, s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray:
    """QNN's Sin, Cos or Atan (``op``) of 16-bit codes ``q`` (module docstring): the signed Q13/Q14 value converted to
    the output codes in sign and magnitude with the multiplier ``round(0.99999 f 2^15)``, the magnitude modulo 2^17."""
    a = np.asarray(q, np.int64) - z_in
    if op == "Atan":
        v = atan16_value(a, s_in)
        sign, v = np.sign(v), np.abs(v)
    else:
        sign, r = trig16_quadrant(a, s_in, op)
        v = trig16_value(r, op)
    f, e = math.frexp(f32(2.0 ** -_VALUE_BITS[op] / f32(s_out)))
    m = math.floor(f * 2.0**15 * _OUTPUT_SHRINK + 0.5)
    sh = 15 - e
    mag = rshr_np(v * m, sh) if sh > 0 else (v * m) << -sh
    return np.clip(z_out + sign * (mag % (2 * _N16)), 0, _N16 - 1).astype(np.int64)


def trig16_table_for(op_type: str, arch: str, arithmetic: str, s_in: float, z_in: int, s_out: float, z_out: int,
                     in_bits: int, out_bits: int) -> np.ndarray | None:
    """QNN's Sin, Cos or Atan on every 16-bit input code (``arithmetic == "qnn"``, v68 or v73, 16-bit codes in and out),
    else None (the caller builds exact rounding)."""
    op = TRIG16_OPS.get(op_type)
    if not (op is not None and arithmetic == "qnn" and arch in TRIG16_ARCHS and in_bits == out_bits == 16
            and s_in > 0 and s_out > 0 and math.isfinite(s_in) and math.isfinite(s_out)):
        return None
    return trig16_codes(np.arange(_N16, dtype=np.int64), op, s_in, z_in, s_out, z_out)
