"""QNN's HTP Softmax of 8-bit codes, v68 and v73 alike, established on Qualcomm's HTP simulator
(onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/softmax_probe.py`` and held to it by
``tests/fidelity/test_qnn_softmax.py`` (docs/htp-fidelity.md).

TFLite's arithmetic (``htp_config.arithmetic: "tflite"``) tabulates ``exp(-beta * s_in * k)`` for the
differences ``k = max(q) - q`` from the row's maximum. QNN's, for rows of ``n >= 17`` elements and the
fixed output encoding of probabilities (scale 1/256, zero point 0), computes the exponential base 2 with
the step ``C = s_in * log2(e)`` (float32 scale) *truncated to 8 significant bits*:

    C'   = floor(C * 2^(8 - b)) * 2^(b - 8),      b = floor(log2 C) + 1    (C' in [2^(b-1), 2^b))
    E[k] = g(f16) >> n,  k C' = n + f,  f16 = floor(2^16 f)   per difference k = max(q) - q, in [0, 255]
    S    = sum(E) of b' bits,  F = floor(2^(b' + 15) / S),
    r    = F + ((2^(b' - 1) - ((S F) >> 16)) F) >> (b' - 1)     (16 bits: F or F + 1; ``long_recip``)
    code = clamp((E[k] r + 2^(b' + 6)) >> (b' + 7))      (256 E[k] / S, rounded once)

so every element's exponent is scaled by ``C' / C`` (0.9952 at s_in = 0.05 and 0.1, 0.9973 at 0.3):
elements far below the row's maximum come out up to a few percent too large.

How it was found: rows of two levels (the maximum and one element ``k`` below it, the rest far below) read
at output scales 2^-9 to 2^-16 give ``E[k]`` to 0.1%: ``-log2 E[k] / k`` is one constant per input scale,
the same at s_in = 0.05 and 0.1 (a binary float's truncation), 147/2048 against 0.0721348 at 0.05 and
221/512 against 0.4328085 at 0.3. On random attention-like rows (n = 17 to 1000, s_in = 0.01 to 1.3,
with and without a masked tail at code 0; 432k codes, v68 = v73) this reproduces 99.98% of the codes
(exact rounding 95-99.7% for n below about 100); the rest lie within 0.005 of a .5 boundary, or are a
large maximum's probability (above 0.8) one code higher (the division's precision). Stop 26 (the BERT-style
encoder at 64 tokens, docs/htp-fidelity.md): Q15 exponentials, truncated, the maximum's saturated (int16 lanes), and a
16-bit truncated reciprocal of the sum, in place of Q30 rounded ones and an exact division: misses 1,062 -> 158 of
5.6M codes of rows of j maxima and m elements k below (three input scales), 335 -> 41 of 863,744 random-row codes,
84 -> 80 of 524,288 of the encoder's attention rows; the single-op Softmax cases 99.91% -> 100%. The rest: a few rows
whose codes need the reciprocal 1-2 units off, both ways, and table entries one unit off the truncation. Stop 27: the
table entries are ``g(f16) >> n``, ``g`` the 16-bit Softmax's 4-segment quadratic ``2^-f`` (``spec/qnn_softmax16.pow2_frac``,
``g(0) = 32767``), not ``floor(2^15 2^-x)`` (which they differ from by up to two units): misses 158 -> 70 of the 5.6M level
codes, 41 -> 20 of the random rows', 90 -> 14 of the encoder's rows' (v68 and v73 together), and 356 -> 159 of 8.7M
level codes at seven other input scales 0.0137-0.6 (fewer at six, 52 -> 55 at 0.05). Open: a few entries one unit
above ``g >> n`` (k = 7, 8 at s_in 0.10401), and the reciprocal: where the sum is known (a step of exactly 1, ``E[k] = 32767 >> k``) QNN's is
``floor(2^(b + 15) / S)`` or one more, the choice neither a rounding at a fixed fraction nor a smooth function of the
sum (docs/htp-fidelity.md, stop 27). Then (stop 27, "The reciprocal of the 8-bit long-row Softmax"): sum by sum
(``reciprocal_rows``) the choice is a function of S alone, and the floor corrected once with the product ``S F``
truncated at 2^16 (``long_recip``) makes it for sums of 17 bits and more in all but a few percent (misses of 1,247
pinned sums of 17-21 bits 209 -> 46; level rows 70 -> 35, step-1 rows 29 -> 7, random rows 20 -> 18 codes; the encoder's rows
unchanged). Open: sums of 16 bits, and the seed QNN corrects (not F itself). Stop 28 ("8-bit Softmax on long rows: the
table"): ``g`` is ``pow2_frac`` but for its last segment (``f16 < 16384``), whose coefficients (c0, c1, c2) are
(34675, 16404, 7230), not (34681, 16401, 7227), the result saturated at 32767 (``g(0)`` = 32768 there):
``long_pow2``. The only integer coefficients within +-200 / +-200 / +-12 that every per-entry bound of the level rows
at ten input scales allows; misses of those rows 206 -> 49 of 14.3M codes, random rows 18 -> 6, the encoder's
attention rows fed alone (v68) 6 -> 0.

Rows of two elements: ``pair_table``. Rows of 3 to 16 elements, which QNN computes another way (exact
rounding reproduces 99.2% of their codes, the long-row rule 85-95%): ``short_codes``, 16-bit fixed point with
nnlib's reciprocal (99.97% of random rows' codes; docs/htp-fidelity.md, stop 26). Not covered
(TFLite's arithmetic stays): other output encodings, beta != 1, an axis other than the last, 16-bit codes.
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.spec.qnn_softmax16 import POW2_COEFFS

__all__ = [
    "ARCHS",
    "LONG_POW2_COEFFS",
    "MIN_ROW",
    "RECIP16",
    "RECIP_BITS",
    "RECIP_PRODUCT_SHIFT",
    "SHORT_LONGER_ROWS",
    "SHORT_ROWS",
    "exp_step",
    "exp_table",
    "long_codes_of",
    "long_pow2",
    "long_recip",
    "pair_table",
    "pair_table_for",
    "recip16",
    "recip16_of_mantissa",
    "short_codes",
    "short_codes_of",
    "short_exp_table",
    "short_mantissa",
    "short_sum_offset",
    "short_table_for",
    "softmax_table_for",
]

ARCHS = ("v68", "v73")
MIN_ROW = 17  # rows shorter than this take QNN's other route (module docstring)
OUT_SCALE = 1.0 / 256
FRACTION_BITS = 15  # of the table's entries (int16 lanes: E[0] = g(0) = 2^15 - 1)
RECIP_BITS = 15  # the sum's reciprocal: floor(2^(b + 15) / S) for a sum of b bits (16 bits), then one correction step
RECIP_PRODUCT_SHIFT = 16  # the correction step's product S r, truncated to its bits from 2^16 up (stop 27)
# g = 2^15 2^-f of the long rows per segment u >> 14 of u = 65535 - f16 (rows c0, c1, c2): pow2_frac's but the last
# segment (f16 < 16384), which is (34681, 16401, 7227) there (stop 28)
LONG_POW2_COEFFS = POW2_COEFFS.copy()
LONG_POW2_COEFFS[:, 3] = (34675, 16404, 7230)


def exp_step(s_in: float, beta: float = 1.0) -> float:
    """``C' = beta * s_in * log2(e)`` truncated to 8 significant bits: the exponent (base 2) per code of
    difference."""
    c = float(beta) * float(np.float32(s_in)) * math.log2(math.e)
    mant, exp = math.frexp(c)  # c = mant * 2^exp, mant in [0.5, 1)
    return math.floor(mant * 256.0) * 2.0 ** (exp - 8)


def long_pow2(f16: np.ndarray) -> np.ndarray:
    """``g(f16) ~ 2^15 2^(-f16 / 2^16)`` (Q15) of the long rows: the 16-bit Softmax's 4-segment quadratic
    (``spec/qnn_softmax16.pow2_frac``, Horner's rule with floors in ``u = 65535 - f16``, segments ``u >> 14``) with its
    own last segment (``f16 < 16384``: ``LONG_POW2_COEFFS[:, 3]``), saturated at 32767 (int16 lanes: the segment gives
    32768 at ``f16 = 0``). Stop 28 (docs/htp-fidelity.md, "8-bit Softmax on long rows: the table"): the only integer
    coefficients within +-200 / +-200 / +-12 of ``pow2_frac``'s that every entry bound read from the level rows at ten
    input scales allows."""
    u = 0xFFFF - np.asarray(f16, dtype=np.int64)
    c0, c1, c2 = (c[u >> 14] for c in LONG_POW2_COEFFS)
    p = (c2 * u + (c1 << 15)) >> 16
    return np.minimum((p * u + (c0 << 15)) >> 16, (1 << FRACTION_BITS) - 1)


def exp_table(s_in: float, bitwidth: int = 8) -> np.ndarray:
    """``E[k] = g(f16) >> n`` for k in [0, 2^bitwidth): the row's exponentials in Q15 (int16 lanes), with
    ``k C' = n + f`` (exact: ``C'`` has 8 significant bits), ``f16 = floor(2^16 f)`` and ``g`` = :func:`long_pow2`
    (``g(0) = 32767``: the maximum's). Stop 27: ``g`` the 4-segment quadratic ``2^-f`` of the 16-bit Softmax
    (``spec/qnn_softmax16.pow2_frac``), within a unit or two of ``floor(2^(-k C') 2^15)`` (stop 26's table); stop 28:
    its last segment (``f16 < 16384``) with other coefficients, saturated (docs/htp-fidelity.md, "8-bit Softmax on long
    rows (stop 27)" and "8-bit Softmax on long rows: the table (stop 28)")."""
    mant, ex = math.frexp(exp_step(s_in))  # C' = m 2^-F with the 8-bit integer m
    m, frac_bits = math.floor(mant * 256.0), 8 - ex
    t = np.arange(1 << bitwidth, dtype=np.int64) * m  # k C' in units of 2^-F
    if frac_bits >= 16:
        n, f16 = t >> frac_bits, (t >> (frac_bits - 16)) & 0xFFFF
    else:  # F < 16 (s_in above about 1.4e-3): k C' in units of 2^-16 exactly
        t16 = t << (16 - frac_bits)
        n, f16 = t16 >> 16, t16 & 0xFFFF
    g = long_pow2(f16)
    return np.where(n < 16, g >> np.minimum(n, 15), 0).astype(np.int64)


def long_recip(s: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The reciprocal of the row sums ``s`` (``b`` bits each) that the codes take: ``F = floor(2^(b + 15) / S)``, then
    one Newton-style correction whose product ``S F`` is truncated at ``2^16`` (``P = (S F) >> 16``, the high part of
    a 32x16 product): ``rho = 2^(b - 1) - P`` (the remainder ``2^(b + 15) - S F`` rounded *up* to units of ``2^16``),
    ``r = F + ((rho F) >> (b - 1))``. So ``r`` is ``F`` or ``F + 1`` (``F + 2`` for the single-element sum 32767), one
    more exactly where the remainder's units of ``2^16``, rounded up, times ``F`` reach ``2^(b - 1)``.

    Stop 27 (docs/htp-fidelity.md, "The reciprocal of the 8-bit long-row Softmax"): at a step of exactly 1 (s_in =
    0.6932, ``E[k] = 32767 >> k``, the sum known) QNN's reciprocal is ``F`` or ``F + 1``, a function of S alone, one more
    in about half the rows of 16 and 17 bits and a share halving per bit above. The truncation at ``2^16`` is the best
    of 2^10-2^22 separately for every sum length 17-21 (7,282 sums bounded by 11,114 rows: sums whose bounds it misses
    328 -> 153; ``2^15``: 224, ``2^17``: 570), and on the level, power and random rows alike (v68 = v73: 70 -> 35, 29 -> 7, 20 -> 18
    codes; ``2^15`` / ``2^17``: 60 / 144, 21 / 32, 20 / 30). The seed ``F`` itself stays a model: QNN's is some
    approximation, and the sums of 16 bits (``r = ceil(2^31 / S)`` here) are barely better than the floor (107 vs 119
    of 1,056 bounded sums)."""
    s, b = np.asarray(s, dtype=np.int64), np.asarray(b, dtype=np.int64)
    f = (np.int64(1) << (b + RECIP_BITS)) // s
    rho = (np.int64(1) << (b + RECIP_BITS - RECIP_PRODUCT_SHIFT)) - ((s * f) >> RECIP_PRODUCT_SHIFT)
    return f + ((rho * f) >> (b + RECIP_BITS - RECIP_PRODUCT_SHIFT))


def long_codes_of(e: np.ndarray) -> np.ndarray:
    """The codes of rows (last axis) of ``exp_table`` exponentials: ``S = sum(e)`` of ``b`` bits, its reciprocal
    ``r = long_recip(S, b)`` (``floor(2^(b + 15) / S)`` or one more, 16 bits), ``code = (e r + 2^(b + 6)) >> (b + 7)``
    (``256 e / S`` rounded), clamped to [0, 255]."""
    e = np.asarray(e, dtype=np.int64)
    s = np.sum(e, axis=-1, keepdims=True)
    b = np.frexp(s.astype(np.float64))[1].astype(np.int64)  # s < 2^b <= 2 s
    r = long_recip(s, b)
    sh = b + RECIP_BITS - 8
    return np.clip((e * r + (np.int64(1) << (sh - 1))) >> sh, 0, 255)


def softmax_table_for(arch: str, arithmetic: str, n: int, s_in: float, s_out: float, z_out: int, in_bits: int,
                      out_bits: int, beta: float, last_axis: bool) -> np.ndarray | None:
    """QNN's exponential table where its rule is established (``arithmetic == "qnn"``, v68 or v73, 8-bit codes
    in and out, the output at scale 1/256 and zero point 0, beta 1, the last axis, rows of at least 17
    elements), else None (TFLite's arithmetic applies). The codes are then
    ``clamp(round_div(E[k] << 8, sum(E)))``, as TFLite's power-of-two output."""
    if (arithmetic != "qnn" or arch not in ARCHS or in_bits != 8 or out_bits != 8 or n < MIN_ROW or beta != 1.0
            or not last_axis or float(np.float32(s_out)) != OUT_SCALE or z_out != 0 or not s_in > 0):
        return None
    return exp_table(s_in, in_bits)


def pair_table(s_in: float) -> np.ndarray:
    """Rows of two elements: ``P[k + 255] = floor(255 * sigmoid(k * s_in) + 1/2)`` for ``k = q1 - q0`` in
    -255..255 (float64 of the float32 scale); the second element's code is ``P[k + 255]``, the first's
    ``255 - P[k + 255]`` (the two always sum to 255; a tie gives 127 and 128)."""
    ks = np.arange(-255, 256, dtype=np.float64)
    return np.asarray(np.floor(255.0 / (1.0 + np.exp(-ks * float(np.float32(s_in)))) + 0.5), dtype=np.int64)


def pair_table_for(arch: str, arithmetic: str, n: int, s_in: float, s_out: float, z_out: int, in_bits: int,
                   out_bits: int, beta: float, last_axis: bool) -> np.ndarray | None:
    """QNN's rows of two elements (``arithmetic == "qnn"``, v68 or v73, 8-bit codes, output 1/256 with zero
    point 0, beta 1, the last axis), else None. Found with ``tests/fidelity/softmax_probe.py``'s
    ``run_codes`` on pairs of random codes (input scales 0.01 to 1.3, ties included): 100% of 1,536 rows, where
    exact rounding (of ``256 p``) gives 50%."""
    if (arithmetic != "qnn" or arch not in ARCHS or in_bits != 8 or out_bits != 8 or n != 2 or beta != 1.0
            or not last_axis or float(np.float32(s_out)) != OUT_SCALE or z_out != 0 or not s_in > 0):
        return None
    return pair_table(s_in)


# -- rows of 3 to 16 elements ---------------------------------------------------------------------------------------
#
# Found with ``tests/fidelity/softmax_probe.py --short`` (docs/htp-fidelity.md, "Softmax rows of 3 to 16" and stop 26).
# Each step is an HVX 16-bit operation; how each was established:
# - the exponentials: the product of two 16-entry tables indexed by the difference's nibbles (vlut16-sized), each
#   exp scaled by 32767 and rounded, multiplied in Q15 with rounding. Against ``round(2^15 exp(-k s_in))`` (TFLite's
#   shape, and this spec's before stop 26): 99.90% -> 99.97% of random rows' codes; splits 2/6, 3/5, 5/3, 6/2 (99.92-
#   99.94%), three or more tables (99.81-99.89%), tables scaled by 2^15 (99.91%), truncated or rounded-up tables or a
#   truncated product (99.80-99.86%) are each worse. So the row's maximum is 32766, not 2^15.
# - the reciprocal of the row's sum is derived: the 16-bit 4-segment quadratic of Qualcomm's public Hexagon NN
#   library (nnlib, hexagon/include/hvx_mathops.h, ``hvx_recip16_inline`` for V65 and later with its precision
#   parameter >= 52: "2-order 4seg poly with no refinement", max relative error 51.6e-5); its gain swings per quarter
#   of the sum's mantissa exactly as the simulator's codes do. Its input (``short_mantissa``) for rows of 5 to 16: the
#   sum's 16 bits below its leading one, truncated (found on the BERT encoder's a8_pc attention rows, stop 26: 185 ->
#   0 misses of the random rows of 5-16, 3 -> 0 of the encoder's); for rows of 3-4 the sum's top 15 bits with an
#   offset of 1/4 of their last bit (fitted, ``short_sum_offset``; 16 truncated bits miss 42 codes there, not 12).
#   The two groups of lengths are the simulator's (rows of 3 and 4 give identical codes, rows of 5 to 16 identical
#   codes).
# - the product ``e r`` is taken to its high half with rounding (``vmpy:<<1:rnd``), then shifted to the code with
#   rounding: a double rounding, found by sweeping the first rounding's position (bit 16 of the product: 99.97%;
#   bits 13-15: 99.75-99.84%, 17-18: 99.61-98.93%, a single rounding 99.72%). It is the upward bias of about 0.004
#   code seen before (2^-7 of a code rounded away for sums of 2 to 4 maxima).
# Identical codes (v73; v68 = v73): 99.998% of 673,792 random-row codes (exact rounding 99.14%): every code of the
# rows of 5 to 16, 12 misses of 100,352 in rows of 3-4; 99.9999% of 2.4M padded (max, max - k1, max - k2) rows' (2
# misses: one row of 3, the same of 4). The misses lie one unit of the first rounding from a .5 boundary.
# Not covered (TFLite's arithmetic stays): other output encodings, beta != 1, an axis other than the last, 16-bit.

SHORT_ROWS = range(3, MIN_ROW)  # row lengths this route covers
SHORT_ONE = (1 << 15) - 1  # the exponentials' tables: exp scaled by the largest int16
SHORT_LONGER_ROWS = 5  # rows of 3-4 and rows of 5-16 give the reciprocal different mantissas of the sum
# recip16's coefficients per mantissa quarter, rows c2 (signed halfwords), c1 (subtracted), c0 (added): nnlib's.
RECIP16 = np.array([[11794, 6555, 3945, 2530],
                    [32086, 27318, 22353, 18222],
                    [32769, 32232, 31054, 29548]], dtype=np.int64)


def _sat16(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -(1 << 15), (1 << 15) - 1)


def recip16(d: np.ndarray, coeffs: np.ndarray = RECIP16) -> np.ndarray:
    """``r ~ 2^29 / d`` for ``d`` in [2^14, 2^15): :func:`recip16_of_mantissa` of ``u = (d << 2) mod 2^16``, d's 14
    bits below its leading one as a Q16 mantissa."""
    return recip16_of_mantissa((np.asarray(d, dtype=np.int64) << 2) & 0xFFFF, coeffs)


def recip16_of_mantissa(u: np.ndarray, coeffs: np.ndarray = RECIP16) -> np.ndarray:
    """``r ~ 2^30 / (2^16 + u)`` for the Q16 mantissa ``u`` in [0, 2^16) (the bits below a number's leading one):
    the 4-segment quadratic reciprocal without refinement, in the HVX instructions' integer arithmetic (vlut4 / vmps
    / vmpa: products of 16-bit lanes, arithmetic shifts by 16, saturation). Its top two bits ``s`` are the quarter:
    ``p = sat16((c2[s] u - c1[s] 2^15) >> 16)``, ``p = sat16((p u + c0[s] 2^15) >> 16)``, ``r = sat16(2 p)``."""
    u = np.asarray(u, dtype=np.int64)
    c2, c1, c0 = (np.asarray(c, dtype=np.int64) for c in coeffs)
    s = u >> 14
    p = _sat16((c2[s] * u - (c1[s] << 15)) >> 16)
    p = _sat16((p * u + (c0[s] << 15)) >> 16)
    return _sat16(2 * p)


def short_exp_table(s_in: float) -> np.ndarray:
    """The exponentials of rows of 3 to 16, ``E[k]`` for the differences k in [0, 256): the product of two 16-entry
    tables indexed by k's nibbles, each ``exp`` scaled by ``2^15 - 1`` (the largest int16) and rounded, multiplied
    in Q15 with rounding (``vmpy(a, b):<<1:rnd``): ``A[i] = floor(32767 exp(-16 i s_in) + 1/2)``,
    ``B[j] = floor(32767 exp(-j s_in) + 1/2)``, ``E[k] = (A[k >> 4] B[k & 15] + 2^14) >> 15`` (float64 of the
    float32 scale). So ``E[0] = 32766``, and E is off ``2^15 exp(-k s_in)`` by up to about 2 units."""
    i = np.arange(16, dtype=np.float64)
    s = float(np.float32(s_in))
    hi = np.asarray(np.floor(np.exp(-16.0 * i * s) * SHORT_ONE + 0.5), dtype=np.int64)
    lo = np.asarray(np.floor(np.exp(-i * s) * SHORT_ONE + 0.5), dtype=np.int64)
    k = np.arange(256)
    return (hi[k >> 4] * lo[k & 15] + (1 << 14)) >> 15


def short_codes_of(e: np.ndarray, coeffs: np.ndarray = RECIP16) -> np.ndarray:
    """The codes of rows (last axis) of exponentials ``e`` (``short_exp_table``'s, Q15): the integer sum ``S`` (``b``
    bits, ``2^15 - 2 <= S < 2^19``); the reciprocal ``r = recip16_of_mantissa(u)`` (``~ 2^(b + 14) / S``) of its
    mantissa ``u`` (``short_mantissa``); the product's high half rounded, ``t = (e r + 2^15) >> 16`` (the code in
    units of ``2^-(b-10)``), then ``(t + 2^(b-11)) >> (b - 10)``, clamped to [0, 255]: a double rounding, the first at
    ``2^-5`` to ``2^-9`` of a code as the sum grows."""
    e = np.asarray(e, dtype=np.int64)
    s = np.sum(e, axis=-1, keepdims=True)
    b = np.frexp(s.astype(np.float64))[1].astype(np.int64)  # s < 2^b <= 2 s (exact: s < 2^53)
    t = (e * recip16_of_mantissa(short_mantissa(s, b, e.shape[-1]), coeffs) + (1 << 15)) >> 16
    return np.clip((t + (1 << (b - 11))) >> (b - 10), 0, 255)


def short_mantissa(s: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """The Q16 mantissa of the row sum ``s`` (``b`` bits) that the reciprocal reads. Rows of 5 to 16: the sum's 16
    bits below its leading one, truncated (``(s - 2^(b-1)) >> (b - 17)``; stop 26, second step: every code of 573,440
    random-row and 1.9M padded-row codes). Rows of 3 or 4: its top 15 bits ``d = (s + c) >> (b - 15)`` (at most
    ``2^15 - 1``) with ``c`` a quarter of d's last bit (fitted, ``short_sum_offset``), their 14 bits below the
    leading one (``(d << 2) mod 2^16``)."""
    s, b = np.asarray(s, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if n >= SHORT_LONGER_ROWS:
        m = s - (np.int64(1) << (b - 1))
        return np.where(b >= 17, m >> np.maximum(b - 17, 0), m << np.maximum(17 - b, 0))
    num, den_bits = short_sum_offset(n)
    d = np.minimum((s + ((num << (b - 15)) >> den_bits)) >> (b - 15), (1 << 15) - 1)
    return (d << 2) & 0xFFFF


def short_sum_offset(n: int) -> tuple[int, int]:
    """``(num, den_bits)``: for rows of 3 or 4 elements the offset added to the sum before its top 15 bits are taken,
    ``num / 2^den_bits`` of their last bit: 1/4. Fitted, not derived: on the 3-4 element rows of 673,792 random-row
    codes 0 misses 24, 1/4 and 3/8 12, 1/2 99 (docs/htp-fidelity.md, stop 26). Rows of 5 to 16 take no offset (their
    reciprocal reads 16 truncated bits of the sum, ``short_mantissa``)."""
    return (1, 2) if n < SHORT_LONGER_ROWS else (0, 0)


def short_codes(q: np.ndarray, s_in: float) -> np.ndarray:
    """QNN's 8-bit Softmax (last axis, output 1/256 with zero point 0, beta 1) of rows of 3 to 16 codes ``q``
    at input scale ``s_in`` (the input's zero point cancels: only the differences ``k = max(q) - q`` enter)."""
    q = np.asarray(q, dtype=np.int64)
    return short_codes_of(short_exp_table(s_in)[q.max(axis=-1, keepdims=True) - q])


def short_table_for(arch: str, arithmetic: str, n: int, s_in: float, s_out: float, z_out: int, in_bits: int,
                    out_bits: int, beta: float, last_axis: bool) -> np.ndarray | None:
    """``short_exp_table(s_in)`` where this module's route for rows of 3 to 16 applies
    (``arithmetic == "qnn"``, v68 or v73, 8-bit codes, output 1/256 with zero point 0, beta 1, the last axis),
    else None (TFLite's arithmetic applies)."""
    if (arithmetic != "qnn" or arch not in ARCHS or in_bits != 8 or out_bits != 8 or n not in SHORT_ROWS
            or beta != 1.0 or not last_axis or float(np.float32(s_out)) != OUT_SCALE or z_out != 0
            or not s_in > 0):
        return None
    return short_exp_table(s_in)
