"""QNN's HTP arithmetic of pointwise functions of 16-bit codes (lookup-table ops), v68 and v73, established on
Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/unary16_probe.py`` (every 16-bit
input code through a QDQ op at random encodings) and held to it by ``tests/fidelity/test_qnn_unary16.py``
(docs/htp-fidelity.md, "16-bit activation functions (stop 25)"). v68 = v73 in every probe.

Abs (established): a requantization of ``a = |q - z_in|`` with a multiplier of 18 fraction bits,
``m = round(float32(s_in / s_out) 2^18)``, whose rounding depends on the element's row: the parity of its index on
the second-to-last axis (QNN's W axis of an NHWC tensor; a tensor of rank under 2 is row 0). Even rows drop the
product's low 14 bits and round the last 4 from 7/16 up, ``code = clamp(z_out + ((((a m) >> 14) + 9) >> 4))``; odd
rows round half up, ``clamp(z_out + ((((a m) >> 17) + 1) >> 1))``. 100% of 22 all-code probes in one row (1,441,792
codes per arch, ratios 0.15-18.6; exact rounding 90-99%), of 6 all-code probes over 64-element rows (v73) and of 18
random-code probes of 9 shapes of rank 1 to 5 (v73).

Log (a cliff, established): with an output scale below ``2^-14 (1 + 5e-6)`` (bracketed by the probes between
``6.1035419e-5``, all codes 0, and ``6.1035504e-5``, codes of the function) every output is code 0, whatever the
zero points and the input scale. Above it the codes are within a few codes of exact rounding but not established
(open): openqnn keeps exact rounding there.

Softplus (approximate, fitted): three pieces in the real input ``x``, fixed whatever the encodings: ``exp(x)`` below
-2, a degree-4 polynomial on [-2, 5) (``SOFTPLUS_POLY``, highest power first, least-squares fits to the simulator's
codes: every probe's fit agrees to about 1e-7 and leaves at most 0.52 of a code), ``x`` from 5; the value's codes by
exact rounding. The polynomial is about 0.012 off softplus (134 codes at ``s_out = 9.2e-5``), which is what the
simulator shows; 99.0-99.2% of the codes of two random probes (exact rounding 0.2-10%), all within one code.

SquareRoot (established, stop 27): ``a r C`` of the input *code* ``a = (q - z_in) mod 2^16`` (inputs below the zero
point wrap) with the Hexagon NN library's 10-bit reciprocal square root (nnlib ``hvx_mathops.h``,
``ref_Ruh_rsqrt10_Ruh``, as its ``hvx_Vuh_sqrt_VuhI`` uses it): ``a`` normalized by an even left shift ``sh`` to
``n`` in ``[2^14, 2^16)``, ``r6`` a 6-bit seed from ``n``'s top 6 bits (``RSQRT10_LUT``), one Newton step in 16-bit
fixed point, ``r = 16 r6 - sat16((2 r6 pd + 2^15) >> 16)`` with ``pd = wrap16((n r6^2) >> 8)`` (``r ~ 2^17 /
sqrt(n)``, 512-1024). ``C = sqrt(s_in) / s_out = M 2^(e - 15)`` with ``M`` its 15-bit significand rounded (2^15:
2^14 one binade up); then a rounded Q15 product and one rounding shift: ``T = (n r M + 2^14) >> 15``, ``code =
clamp(z_out + ((T + 2^(t - 1)) >> t))``, ``t = 17 + sh / 2 - e``; ``a = 0`` gives ``z_out``. 100% of 18 all-code
probes (1,179,648 codes, v73; clean and random encodings, zero points to 63,844) and of 10 more on v68 and v73; stop
25's form (``1 / sqrt(a)`` with a rounded 10-bit mantissa) 93.0-99.95%, the same rsqrt with one rounding of ``n r C``
99.84-100% (docs/htp-fidelity.md, "16-bit Div, Reciprocal and SquareRoot (stop 27)").

Reciprocal (established): QNN EP writes it as ``Div(1.0, x)`` with 1.0 quantized in the input's 16-bit encoding
(as for 8-bit codes, ``qnn_unary.reciprocal_numerator``), so once ``1 / s_in`` passes ``65535 - z_in`` codes the
numerator clamps below 1; the quotient is QNN's 16-bit Divide (``qnn_div.div16_apply``: the numerator's 15-bit
magnitude times the ratio's rounded 15-bit significand, a rounded Q15 product, times nnlib's 16-bit reciprocal of the
input's centred code, one rounding shift; ``x = z_in`` gives the encoding's top). 100% of the codes of 38 all-code
probes on v73 and 12 of them on v68 (3,276,750 codes), stop 26's form (a 24-bit ratio, no Q15 product)
96.2%, exact rounding of ``1 / x`` 0.5-84% per probe (docs/htp-fidelity.md, "16-bit Div, Reciprocal and SquareRoot
(stop 27)").

LeakyRelu (established; a PRelu of a one-element 16-bit slope, as openqnn exports it, ``alpha`` the slope's code
times its scale): one 16-bit requantization per branch with a shared shift (``tests/fidelity/prelu16_probe.py``,
docs/htp-fidelity.md "16-bit LeakyRelu and Div (stop 26)"). ``r = float32(s_in / s_out)``, ``r_neg = r alpha``;
``k = min(15, 14 - floor(log2(max(r, |r_neg|))))``; ``m_pos = floor(r 2^k)``, ``m_neg = trunc(r_neg 2^k)`` (15-bit
multipliers truncated, not rounded, toward zero: TFLite rounds a 31-bit one); with ``a = q - z_in`` and ``m`` the
branch's multiplier, ``acc = wrap32(a m + (z_out << k))`` (an int32 sum: with a high output zero point it wraps and
the code saturates low), ``code = clamp(((acc >> (k - 1)) + 1) >> 1)`` (Hexagon's rounding shift, which does not
overflow). Found on 112 all-code probes (``r`` 0.005 to 300, alpha -0.4 to 6), then 100% of 112 fresh ones (7,340,032
codes, v68 and v73; exact rounding 70%, 15-99% per probe). A slope of 8-bit codes beside 16-bit activations (not
openqnn's export, which widens it) takes another form: open.

Elu (the piece from 0 up established; docs/htp-fidelity.md "16-bit nonlinearities and HVX floats (stop 26)"). With
``a = q - z_in >= 0`` and ``r = float32(s_in / s_out) = f 2^e`` (``f`` in [0.5, 1)): ``m = round(f 2^15)`` (15 bits,
rounded, unlike LeakyRelu's truncated one), ``y = (a m) >> (15 - e)`` for ``e <= 0``, ``y = ((a m) >> 15) << e`` for
``e > 0`` (the product floored first, then shifted up: a ratio of 1 drops the code's low bit), ``code = clamp(z_out +
y)``, whatever ``alpha``: 100% of those codes of 22 all-code probes (r 0.33-4, v68 = v73; exact rounding 6-78%) and of
6 more at alpha 0.5 and 1.7. Below 0 (established, stop 28): QNN's 16-bit Exp (``spec/qnn_exp16.py``) at the output
scale ``float32(s_out / alpha)`` and the output zero point ``Z = trunc(float32(z_out - float32(alpha / s_out)))``
(truncated toward zero: ``z_out - ceil(alpha / s_out)`` where ``z_out`` is above ``alpha / s_out``, ``z_out -
floor(alpha / s_out)`` where it is below), ``code = clamp(Z + v)`` with ``v`` the Exp's unclamped value: 100% of the
codes of 56 all-code probes at each of alpha 1, 0.5, 0.2, 1.7 and 2.5 on v68 and v73 (``alpha / s_out`` up to
107,613); on 36 of them exact rounding gives 24% and 16% of the codes below 0 (mean) at alpha 1 and 0.5. A non-positive
``alpha`` is not probed (exact rounding there).

Sigmoid and Tanh (established): the 16-bit tanh of Qualcomm's public Hexagon NN library (nnlib,
``QuantizedTanh_16`` / ``QuantizedSigmoid_16``: ``tanh_hvx_prescale`` and ``tanh_hvx_cubic``), driven by the input
*code*. ``a = |q - z_in|`` is scaled by a 15-bit multiplier of ``f = s_in 12288`` (tanh; ``6144``, half, for
sigmoid, which is ``tanh(x / 2)``): ``e`` the binary exponent of ``f (1 + 3.05e-5)`` (``f = m 2^e``, ``m`` in
[0.5, 1)), ``sh = min(15 - e, 15)``, ``mult = round(f 2^sh)``, ``x1 = sat_u16((a mult) >> sh)`` (``|x| 3 / 16``
in units of 2^-16, saturating at ``|x| = 16 / 3``); ``u = ((65535 - x1)^2) >> 16`` (``(1 - x1)^2``) selects one
of 16 cubic segments by its top 4 bits (``TANH16_CUBIC``: c3, c2, c1, c0 with 23, 20, 17, 15 fraction bits) and
the cubic in its 12 low bits ``r`` is Horner's rule with Hexagon's rounding doubling multiply
(``vmpy(a, b):s1:rnd:sat = sat16((2 a b + 2^15) >> 16)``): ``t = c3 r + c2``, ``t = t r + c1``, ``y = t (2 r) +
c0``, each sum saturated to int16; a negative input (``q < z_in``) takes ``~y`` (QNN's only departure from nnlib,
which negates: ``~y = -y - 1``). Sigmoid is then ``(t + 2^15) >> 1`` (Q15); the Q15 value is rounded into the
output encoding. Found: the simulator's values sit on a 2^-15 grid; this form gives 100% of those Q15 values on 5
all-code probes (v73); negation by ``-y`` instead of ``~y`` misses half the codes of negative inputs, the real
``|x| 3 / 16`` instead of the code's multiplier 95-99.9%. Codes: 99.37-100% of 41 all-code probes (v68 = v73), all
within one (exact rounding 7-81%); the Q15 value's requantization (the 0.05-0.6% one off) is open.
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.spec.qnn_div import div16_apply, div16_multiplier
from openqnn.backends.htp.spec.qnn_eltwise import f32
from openqnn.backends.htp.spec.qnn_exp16 import exp16_codes
from openqnn.backends.htp.spec.qnn_unary import reciprocal_numerator

__all__ = [
    "ABS_FRAC",
    "ABS_PRE",
    "ARCHS16",
    "LOG_ZERO_SCALE",
    "RSQRT10_LUT",
    "SOFTPLUS_PIECES",
    "SOFTPLUS_POLY",
    "TANH16_CUBIC",
    "abs16_codes",
    "abs16_multiplier",
    "elu16_codes",
    "elu16_negative",
    "elu16_positive",
    "leaky_relu16_codes",
    "leaky_relu16_multipliers",
    "leaky_relu16_table_for",
    "log16_is_zero",
    "row_parity",
    "rsqrt10",
    "softplus16_codes",
    "softplus16_values",
    "sqrt16_codes",
    "sqrt16_multiplier",
    "tanh16_codes",
    "tanh16_input_scale",
    "tanh16_q15",
    "unary16_tables_for",
]

ARCHS16 = ("v68", "v73")
ABS_PRE, ABS_FRAC = 14, 4  # Abs: the product's dropped bits, then the rounded ones (from 7/16 up: + 2^3 + 1)
# Log: output scales at or below this give code 0 everywhere (probed: 6.1035419e-5 zero, 6.1035504e-5 not)
LOG_ZERO_SCALE = 6.1035462e-5  # the middle of the bracket
N16 = 1 << 16
SOFTPLUS_POLY = (-6.6644005e-04, -4.6107509e-03, 1.0882618e-01, 5.1270431e-01, 7.0310844e-01)  # x in [-2, 5)
SOFTPLUS_PIECES = (-2.0, 5.0)
# nnlib's 10-bit reciprocal square root (hvx_mathops.h, lut_root_recip): the 6-bit seed by n's top 6 bits (16..63)
RSQRT10_LUT = (0,) * 16 + (63, 61, 60, 58, 57, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 46, 45, 44, 44, 43, 42, 42, 41,
                           41, 40, 40, 39, 39, 38, 38, 38, 37, 37, 36, 36, 36, 35, 35, 35, 34, 34, 34, 33, 33, 33, 33,
                           32, 32)
# nnlib's 16-bit tanh: per segment of u = (1 - |x| 3 / 16)^2 (16 segments, u's top 4 bits), the cubic's
# coefficients (c3, c2, c1, c0) with 23, 20, 17 and 15 fraction bits (nnlib's hvx_constants.c, tanh_16_cubic_lookup)
TANH16_CUBIC = (
    (-1125, -36, -58, 32766), (-742, -390, -117, 32746), (-1192, -672, -250, 32702), (-1725, -1115, -475, 32613),
    (-2424, -1760, -837, 32453), (-3266, -2667, -1392, 32179), (-4178, -3894, -2214, 31735),
    (-5006, -5465, -3385, 31044), (-5405, -7354, -4987, 30007), (-4952, -9406, -7078, 28509),
    (-3158, -11296, -9658, 26426), (262, -12509, -12622, 23647), (4941, -12443, -15726, 20101),
    (9594, -10586, -18595, 15800), (12789, -6953, -20788, 10858), (13087, -2101, -21927, 5494),
)


def abs16_multiplier(s_in: float, s_out: float) -> int:
    """``round(float32(float32(s_in) / float32(s_out)) * 2^18)``: Abs's multiplier."""
    return round(f32(f32(s_in) / f32(s_out)) * 2.0 ** (ABS_PRE + ABS_FRAC))


def abs16_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int, odd: bool = False) -> np.ndarray:
    """QNN's Abs of 16-bit codes ``q`` in an even row (``odd``: an odd row), module docstring."""
    a = np.abs(np.asarray(q, np.int64) - z_in)
    m = abs16_multiplier(s_in, s_out)
    if odd:
        r = (((a * m) >> (ABS_PRE + ABS_FRAC - 1)) + 1) >> 1
    else:
        r = (((a * m) >> ABS_PRE) + (1 << (ABS_FRAC - 1)) + 1) >> ABS_FRAC
    return np.clip(z_out + r, 0, N16 - 1).astype(np.int64)


def elu16_positive(a: np.ndarray, s_in: float, s_out: float) -> np.ndarray:
    """QNN's 16-bit Elu from 0 up, in output codes above ``z_out``, of centred input codes ``a >= 0`` (module
    docstring): ``r = f 2^e``, ``m = round(f 2^15)``, ``(a m) >> (15 - e)`` or ``((a m) >> 15) << e``."""
    f, e = math.frexp(f32(f32(s_in) / f32(s_out)))
    m = math.floor(f * 2.0**15 + 0.5)
    a = np.asarray(a, np.int64)
    return (a * m) >> (15 - e) if e <= 0 else ((a * m) >> 15) << e


def elu16_negative(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int,
                   alpha: float) -> np.ndarray | None:
    """QNN's 16-bit Elu below 0 (module docstring): QNN's 16-bit Exp (``spec/qnn_exp16.py``) at the output scale
    ``float32(s_out / alpha)`` with the output zero point ``trunc(float32(z_out - float32(alpha / s_out)))`` (toward
    zero: ``ceil(alpha / s_out)`` below ``z_out`` when that is positive, the floor when not), for every code ``q``;
    None where that rule is not established (``alpha <= 0``, an Exp step ``s_in log2 e`` of 1 or more)."""
    if not (alpha > 0 and math.isfinite(alpha)):
        return None
    inv = f32(alpha / f32(s_out))
    return exp16_codes(q, s_in, z_in, f32(f32(s_out) / alpha), math.trunc(f32(z_out - inv)))


def elu16_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int, alpha: float) -> np.ndarray:
    """QNN's 16-bit Elu of codes ``q``: :func:`elu16_positive` from ``q = z_in`` up; below, :func:`elu16_negative`, or
    exact rounding (half to even) of ``alpha (exp(x) - 1)`` where that is None (module docstring)."""
    a = np.asarray(q, np.int64) - z_in
    neg = elu16_negative(q, s_in, z_in, s_out, z_out, alpha)
    if neg is None:
        x = np.minimum(a, 0) * f32(s_in)
        neg = z_out + np.rint(alpha * np.expm1(x) / f32(s_out))
    y = np.where(a >= 0, z_out + elu16_positive(np.maximum(a, 0), s_in, s_out), neg)
    return np.clip(y, 0, N16 - 1).astype(np.int64)


def leaky_relu16_multipliers(s_in: float, s_out: float, alpha: float) -> tuple[int, int, int] | None:
    """LeakyRelu's ``(m_pos, m_neg, k)`` (module docstring): each branch's slope as a 15-bit multiplier truncated
    toward zero, both at the shift ``k`` of the larger; None where ``k`` would fall below 1 (a slope of 2^14 or more)."""
    r = f32(f32(s_in) / f32(s_out))
    r_neg = r * alpha
    _, e = math.frexp(max(r, abs(r_neg)))  # max(...) in [2^(e-1), 2^e)
    k = min(15, 15 - e)
    if k < 1:
        return None
    return math.floor(r * 2.0**k), math.trunc(r_neg * 2.0**k), k


def leaky_relu16_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int,
                       alpha: float) -> np.ndarray | None:
    """QNN's LeakyRelu of 16-bit codes ``q`` with the slope ``alpha`` (module docstring); None where no rule."""
    mults = leaky_relu16_multipliers(s_in, s_out, alpha)
    if mults is None:
        return None
    m_pos, m_neg, k = mults
    a = np.asarray(q, np.int64) - z_in
    acc = a * np.where(a >= 0, m_pos, m_neg) + (z_out << k)
    acc = (acc + (1 << 31)) % (1 << 32) - (1 << 31)  # the int32 sum wraps
    return np.clip(((acc >> (k - 1)) + 1) >> 1, 0, N16 - 1).astype(np.int64)


def leaky_relu16_table_for(arch: str, arithmetic: str, s_in: float, z_in: int, alpha: float, s_out: float,
                           z_out: int, in_bits: int, out_bits: int, slope_bits: int) -> np.ndarray | None:
    """QNN's LeakyRelu on every 16-bit input code where the rule is established (``arithmetic == "qnn"``, v68 or
    v73, 16-bit codes in and out and a 16-bit slope), else None."""
    if not (arithmetic == "qnn" and arch in ARCHS16 and in_bits == out_bits == slope_bits == 16
            and s_in > 0 and s_out > 0 and math.isfinite(alpha)):
        return None
    return leaky_relu16_codes(np.arange(N16, dtype=np.int64), s_in, z_in, s_out, z_out, alpha)


def row_parity(shape: tuple[int, ...]) -> np.ndarray:
    """Each element's row parity (0 or 1, int64), shaped to broadcast against ``shape``: the index on the
    second-to-last axis modulo 2, as ``(W, 1)``; ``(1,)`` (row 0) for a tensor of rank under 2."""
    if len(shape) < 2:
        return np.zeros(1, np.int64)
    return (np.arange(shape[-2], dtype=np.int64) % 2).reshape(-1, 1)


def softplus16_values(x: np.ndarray) -> np.ndarray:
    """QNN's 16-bit Softplus of real inputs ``x`` (float64): ``exp(x)``, the polynomial, ``x`` (module docstring)."""
    x = np.asarray(x, np.float64)
    lo, hi = SOFTPLUS_PIECES
    with np.errstate(over="ignore"):
        return np.where(x < lo, np.exp(np.minimum(x, lo)), np.where(x < hi, np.polyval(SOFTPLUS_POLY, x), x))


def softplus16_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray:
    """QNN's Softplus of 16-bit codes ``q``: :func:`softplus16_values` of the dequantized input, rounded (half to
    even) into the output encoding."""
    x = (np.asarray(q, np.int64) - z_in) * f32(s_in)
    return np.clip(np.rint(softplus16_values(x) / f32(s_out)) + z_out, 0, N16 - 1).astype(np.int64)


def rsqrt10(n: np.ndarray) -> np.ndarray:
    """nnlib's ``ref_Ruh_rsqrt10_Ruh`` of ``n`` in ``[2^14, 2^16)``: ``~ 2^17 / sqrt(n)`` in ``[512, 1024]``, a 6-bit
    seed and one Newton step in 16-bit fixed point (module docstring)."""
    n = np.asarray(n, np.int64)
    r6 = np.asarray(RSQRT10_LUT, np.int64)[(n >> 10) & 63]
    pd = (((n * r6 * r6) >> 8) + (1 << 15)) % N16 - (1 << 15)  # (int16) of the product's bits 23..8
    px = np.clip((2 * r6 * pd + (1 << 15)) >> 16, -(1 << 15), (1 << 15) - 1)  # Hexagon's vmpyh:<<1:rnd:sat
    return r6 * 16 - px


def sqrt16_multiplier(s_in: float, s_out: float) -> tuple[int, int]:
    """``(M, e)``: ``sqrt(float32(s_in)) / float32(s_out) = M 2^(e - 15)``, ``M`` the 15-bit significand rounded half
    up (``[2^14, 2^15)``: one that rounds up to 2^15 is 2^14 of the next binade)."""
    f, e = math.frexp(math.sqrt(f32(s_in)) / f32(s_out))
    m = math.floor(f * 2.0**15 + 0.5)
    return (m >> 1, e + 1) if m == 1 << 15 else (m, e)  # (2^15 is 2^14 one binade up: 41 codes of one probe)


def sqrt16_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray:
    """QNN's SquareRoot of 16-bit codes ``q`` (module docstring): nnlib's 10-bit reciprocal square root of the
    normalized code ``n = a << sh``, ``T = (n r M + 2^14) >> 15``, rounded by ``t = 17 + sh / 2 - e``; ``a = 0``
    gives ``z_out``."""
    a = (np.asarray(q, np.int64) - z_in) % N16  # (a 16-bit difference: inputs below the zero point wrap)
    sh = np.where(a > 0, 15 - np.floor(np.log2(np.maximum(a, 1))).astype(np.int64), 0) & ~1
    n = a << sh
    m, e = sqrt16_multiplier(s_in, s_out)
    t = n * rsqrt10(n) * m
    t = (t + (1 << 14)) >> 15
    sh_out = 17 + sh // 2 - e
    right = np.clip(sh_out, 1, 62)
    v = np.where(sh_out >= 1, (t + (np.int64(1) << (right - 1))) >> right, t << np.clip(-sh_out, 0, 20))
    return np.clip(np.where(a > 0, v, 0) + z_out, 0, N16 - 1).astype(np.int64)


def tanh16_input_scale(s_in: float, sigmoid: bool) -> tuple[int, int] | None:
    """The multiplier and right shift taking ``|q - z_in|`` to ``x1`` (``|x| 3 / 16``, or ``|x| 3 / 32`` for
    sigmoid, in units of 2^-16), module docstring; None where nnlib's range check fails (no rule there)."""
    f = f32(s_in) * (6144.0 if sigmoid else 12288.0)
    e = int(np.frexp(f * 1.0000305)[1])
    sh = 15 - e
    if not 0 < sh <= 18:
        return None
    sh = min(sh, 15)
    return int(np.floor(f * 2.0**sh + 0.5)), sh


def _mpy_s1_rnd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hexagon's ``vmpy(Vh, Vh):<<1:rnd:sat``: ``sat16((2 a b + 2^15) >> 16)``."""
    return np.clip((2 * a * b + (1 << 15)) >> 16, -(1 << 15), (1 << 15) - 1)


def tanh16_q15(q: np.ndarray, s_in: float, z_in: int, sigmoid: bool) -> np.ndarray | None:
    """QNN's 16-bit tanh (or sigmoid) of input codes ``q`` as a Q15 value (int64), module docstring; None where
    :func:`tanh16_input_scale` is."""
    scale = tanh16_input_scale(s_in, sigmoid)
    if scale is None:
        return None
    mult, sh = scale
    d = np.asarray(q, np.int64) - z_in
    x1 = np.minimum((np.abs(d) * mult) >> sh, N16 - 1)
    u = ((N16 - 1 - x1) ** 2) >> 16
    c = np.asarray(TANH16_CUBIC, np.int64)[u >> 12]
    r = u & 0xFFF
    lim = (-(1 << 15), (1 << 15) - 1)
    t = np.clip(_mpy_s1_rnd(c[..., 0], r) + c[..., 1], *lim)
    t = np.clip(_mpy_s1_rnd(t, r) + c[..., 2], *lim)
    y = np.clip(_mpy_s1_rnd(t, 2 * r) + c[..., 3], *lim)
    y = np.where(d < 0, ~y, y)
    return (y + (1 << 15)) >> 1 if sigmoid else y


def tanh16_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int,
                 sigmoid: bool = False) -> np.ndarray | None:
    """QNN's 16-bit Tanh (``sigmoid``: Sigmoid) codes of input codes ``q``: :func:`tanh16_q15` rounded (half up)
    into the output encoding; None where there is no rule."""
    y = tanh16_q15(q, s_in, z_in, sigmoid)
    if y is None:
        return None
    v = np.floor(y * 2.0**-15 / f32(s_out) + 0.5)
    return np.clip(v + z_out, 0, N16 - 1).astype(np.int64)


def log16_is_zero(s_out: float) -> bool:
    """Whether QNN's 16-bit Log gives code 0 for every input (an output scale at or below ``LOG_ZERO_SCALE``)."""
    return f32(s_out) <= LOG_ZERO_SCALE


def unary16_tables_for(op_type: str, arch: str, arithmetic: str, s_in: float, z_in: int, s_out: float, z_out: int,
                       in_bits: int, out_bits: int, alpha: float = 1.0) -> np.ndarray | None:
    """QNN's tables of ``op_type`` where a 16-bit rule is established (``arithmetic == "qnn"``, v68 or v73, 16-bit
    codes in and out; ``alpha``: Elu's): int64 ``[R, 65536]``, one row (R = 1) or one per row parity (R = 2,
    :func:`row_parity`); else None (the caller builds exact rounding)."""
    if not (arithmetic == "qnn" and arch in ARCHS16 and in_bits == 16 and out_bits == 16
            and s_in > 0 and s_out > 0):
        return None
    q = np.arange(N16, dtype=np.int64)
    if op_type == "ElementWiseAbs":
        return np.stack([abs16_codes(q, s_in, z_in, s_out, z_out, odd) for odd in (False, True)])
    if op_type == "ElementWiseLog" and log16_is_zero(s_out):
        return np.zeros((1, N16), np.int64)
    if op_type == "ElementWiseSquareRoot":
        return sqrt16_codes(q, s_in, z_in, s_out, z_out)[None]
    if op_type == "Elu" and math.isfinite(alpha):
        return elu16_codes(q, s_in, z_in, s_out, z_out, alpha)[None]
    if op_type == "ElementWiseSoftplus":
        return softplus16_codes(q, s_in, z_in, s_out, z_out)[None]
    if op_type in ("Sigmoid", "Tanh"):
        codes = tanh16_codes(q, s_in, z_in, s_out, z_out, sigmoid=op_type == "Sigmoid")
        return None if codes is None else codes[None]
    if op_type == "ElementWiseReciprocal":
        q1 = np.full(N16, reciprocal_numerator(s_in, z_in, 16), np.int64)
        return div16_apply(q1, q, z_in, z_in, z_out, *div16_multiplier(s_in, s_in, s_out))[None]
    return None
