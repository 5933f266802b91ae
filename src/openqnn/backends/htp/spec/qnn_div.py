"""QNN's HTP element-wise Divide of two run-time 16-bit operands, v68 and v73 alike (established), found on
Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/div_probe.py`` (``probe16``) and
``tests/fidelity/unary16_probe.py`` (Reciprocal), held to it by ``tests/fidelity/test_qnn_div.py``
(docs/htp-fidelity.md, "16-bit LeakyRelu and Div (stop 26)" and "16-bit Div, Reciprocal and SquareRoot (stop 27)").

TFLite's arithmetic (``htp_config.arithmetic: "tflite"``) rounds the exact quotient once. QNN divides by a
reciprocal of the divisor's centred *code* ``d = q_b - z_b`` with about 11 good bits: the Hexagon NN library's
(nnlib, ``hvx_mathops.h``, ``hvx_recip16_inline`` for v65 and later with a precision argument of 52 or more: a
2nd-order polynomial on 4 segments, no Newton refinement, a relative error up to 5.2e-4). ``|d|`` is normalized to
``n = |d| << s`` in ``[2^14, 2^15)`` and

    d4   = (n << 2) mod 2^16,  j = d4 >> 14                          (the segment: n's 2 bits below the top one)
    p    = C0[j]
    p    = sat16((p d4 - (C1[j] << 15)) >> 16)                       (Hexagon's vmps)
    p    = sat16((p d4 + (C2[j] << 15)) >> 16)                       (Hexagon's vmpa)
    x0   = sat16(2 p)                                                ~ 2^29 / n

(``n = 2^14``, a power of two, takes ``x0 = 2^15``: the simulator divides by powers of two exactly). Each
divisor's slope relative error ``x0 n / 2^29 - 1`` measured on the simulator (73 divisors, every numerator) is
this reciprocal's to 1e-6 (+4.39e-4 for d = 17, -4.39e-4 for 19, +2.14e-4 for 3, 5, 25, 100).

The numerator (stop 27) is scaled first, in 16-bit fixed point, the signs kept apart (sign and magnitude):
``r = float32(s_a) / (float32(s_b) float32(s_o)) = m 2^-k`` with ``m`` its 15-bit significand *rounded* (half up,
``m`` in ``[2^14, 2^15)``; one that rounds up to 2^15 is 2^14 of the next binade); ``|a| = |q_a - z_a|`` normalized
to 15 bits, ``|a| ~ an 2^ea`` (``an`` in ``[2^14, 2^15)``, *floored*: ``|a| >= 2^15`` drops its low bit); their
Q15 product rounded half up (Hexagon's ``vmpy:<<1:rnd``), ``p = (an m + 2^14) >> 15`` (14 or 15 significant bits:
``|a| r ~ p 2^(15 + ea - k)``); then

    v    = (p x0 + 2^(sh - 1)) >> sh,   sh = 14 + k - ea - s         (one rounding shift, half up)
    code = clamp(z_o + sign(a) sign(d) v)

TFLite's single rounding of the exact quotient differs from this in three places: the divisor's reciprocal (11
good bits), the 15-bit ratio and the numerator's Q15 product (the "drift above 2^11" of stop 26 was this product's
rounding: it rounds ``|a| r`` to 14-15 significant bits, a grid coarser than a code once ``|a| r`` passes 2^14).
Established on 21 divisor sweeps and random probes (every numerator code against 11 divisors, ratios 3.75 to
30,720; 10 random probes of 4,096 random codes, ratios 42-437; 100% of the codes on v73, and of 5 sweeps, 8 random
probes and 3 broadcast probes on v68 and v73) and on 38 all-code Reciprocal probes on v73 and 12 of them on v68
(3,276,750 codes, 100%; ``qnn_unary16``). ``d = 0`` keeps openqnn's x / 0 (the encoding's end by the sign of ``a``;
a Reciprocal's ``x = 0`` gives 65535 on the simulator, which this reproduces for a positive numerator).
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.spec.qnn_eltwise import f32

__all__ = ["ARCHS", "RECIP16_C0", "RECIP16_C1", "RECIP16_C2", "div16_apply", "div16_codes", "div16_multiplier",
           "div16_multiplier_for", "div16_scaled_numerator", "numerator16", "recip16", "recip16_of_divisor"]

ARCHS = ("v68", "v73")
# nnlib's hvx_recip16_inline (v65+, prec >= 52): per segment j, the constant, the vmps and the vmpa coefficients
RECIP16_C0 = (0x2E12, 0x199B, 0x0F69, 0x09E2)
RECIP16_C1 = (0x7D56, 0x6AB6, 0x5751, 0x472E)
RECIP16_C2 = (0x8001, 0x7DE8, 0x794E, 0x736C)
M_BITS = 15  # the output ratio's significand, rounded (stop 27; stop 26 had kept 24 bits)
_MAX_LEFT = 20  # a left shift past this saturates any non-zero value (p x0 < 2^30, codes < 2^16)


def _sat16(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -(1 << 15), (1 << 15) - 1)


def recip16(n: np.ndarray) -> np.ndarray:
    """nnlib's 16-bit reciprocal of ``n`` in ``[2^14, 2^15)``: ``~ 2^29 / n`` in ``[2^14, 2^15)`` (module docstring)."""
    n = np.asarray(n, np.int64)
    d4 = (n << 2) & 0xFFFF
    j = d4 >> 14
    p = np.asarray(RECIP16_C0, np.int64)[j]
    p = _sat16((p * d4 - (np.asarray(RECIP16_C1, np.int64)[j] << 15)) >> 16)
    p = _sat16((p * d4 + (np.asarray(RECIP16_C2, np.int64)[j] << 15)) >> 16)
    return _sat16(2 * p)


def recip16_of_divisor(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x0, s)`` of each non-zero divisor code ``d`` (module docstring): ``|d| << s`` in ``[2^14, 2^15)`` (``s =
    -1`` for ``|d| >= 2^15``: the low bit dropped), ``x0 ~ 2^29 / (|d| << s)``; ``d = 0`` gives (0, 0)."""
    m = np.abs(np.asarray(d, np.int64))
    s = np.where(m > 0, 14 - np.floor(np.log2(np.maximum(m, 1))).astype(np.int64), 0)
    n = np.where(s >= 0, m << np.maximum(s, 0), m >> 1)
    x0 = np.where(n == 1 << 14, 1 << 15, recip16(np.clip(n, 1 << 14, (1 << 15) - 1)))
    return np.where(m > 0, x0, 0), s


def numerator16(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(an, ea)`` of each numerator code ``a`` (centred): ``|a| ~ an 2^ea`` with ``an`` in ``[2^14, 2^15)``,
    floored (``|a| >= 2^15``: ``ea = 1``, the low bit dropped); ``a = 0`` gives (0, 0)."""
    m = np.abs(np.asarray(a, np.int64))
    ea = np.where(m > 0, np.floor(np.log2(np.maximum(m, 1))).astype(np.int64) - 14, 0)
    an = np.where(ea >= 0, m >> np.maximum(ea, 0), m << np.maximum(-ea, 0))
    return an, ea


def div16_multiplier(s_a: float, s_b: float, s_o: float) -> tuple[int, int]:
    """``(m, k)``: ``r = float32(s_a) / (float32(s_b) float32(s_o))`` as ``m / 2^k``, ``m`` its 15-bit significand
    rounded half up (``[2^14, 2^15)``: a significand that rounds up to 2^15 is 2^14 of the next binade)."""
    r = f32(s_a) / (f32(s_b) * f32(s_o))
    f, e = math.frexp(r)
    m = math.floor(f * 2.0**M_BITS + 0.5)
    if m == 1 << M_BITS:  # rounded up out of 15 bits: 2^14 one binade up (a sweep at r = 8 (1 - 2^-18): as is 81%)
        return m >> 1, M_BITS - e - 1
    return m, M_BITS - e


def div16_scaled_numerator(a: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``(p, ea)``: the numerator's magnitude times the ratio's significand, ``p = (an m + 2^14) >> 15`` (a rounded
    Q15 product, Hexagon's ``vmpy:<<1:rnd``), ``|a| m / 2^k ~ p 2^(15 + ea - k)`` (module docstring)."""
    an, ea = numerator16(a)
    return (an * m + (1 << 14)) >> 15, ea


def div16_apply(q_a: np.ndarray, q_b: np.ndarray, z_a: int, z_b: int, z_o: int, m: int, k: int) -> np.ndarray:
    """The integer rule on codes, ``r = m / 2^k`` (:func:`div16_multiplier`): ``clamp(z_o + sign(a) sign(d) ((p x0 +
    2^(sh - 1)) >> sh))``, ``sh = 14 + k - ea - s`` (a left shift where ``sh <= 0``); ``d = 0``: the encoding's
    end by the sign of ``a`` (``0 / 0``: ``z_o``)."""
    a = np.asarray(q_a, np.int64) - z_a
    d = np.asarray(q_b, np.int64) - z_b
    p, ea = div16_scaled_numerator(a, m)
    x0, s = recip16_of_divisor(d)
    sh = 14 + k - ea - s
    prod = p * x0
    right = np.clip(sh, 1, 62)
    v = np.where(sh >= 1, (prod + (np.int64(1) << (right - 1))) >> right, prod << np.clip(-sh, 0, _MAX_LEFT))
    v = np.where(d == 0, np.sign(a) * (1 << 40), np.sign(a) * np.sign(d) * v)
    return np.clip(v + z_o, 0, (1 << 16) - 1).astype(np.int64)


def div16_codes(q_a: np.ndarray, q_b: np.ndarray, s_a: float, z_a: int, s_b: float, z_b: int, s_o: float,
                z_o: int) -> np.ndarray:
    """QNN's Divide of 16-bit codes (module docstring)."""
    return div16_apply(q_a, q_b, z_a, z_b, z_o, *div16_multiplier(s_a, s_b, s_o))


def div16_multiplier_for(arch: str, arithmetic: str, s_a: float, s_b: float, s_o: float, bits: tuple[int, int, int],
                         runtime: bool) -> tuple[int, int] | None:
    """:func:`div16_multiplier` where the rule applies (``arithmetic == "qnn"``, v68 or v73, 16-bit codes in and
    out, two run-time operands, of one shape or broadcast: what was probed), else None."""
    if not (arithmetic == "qnn" and arch in ARCHS and bits == (16, 16, 16) and runtime
            and s_a > 0 and s_b > 0 and s_o > 0):
        return None
    return div16_multiplier(s_a, s_b, s_o)
