"""QNN's HTP element-wise Divide of two run-time 16-bit operands, v68 and v73 alike (approximate), found on
Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/div_probe.py`` (``probe16``) and
held to it by ``tests/fidelity/test_qnn_div.py`` (docs/htp-fidelity.md, "16-bit LeakyRelu and Div (stop 26)").

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
this reciprocal's to 1e-6 (+4.39e-4 for d = 17, -4.39e-4 for 19, +2.14e-4 for 3, 5, 25, 100). The quotient is then

    code = clamp(z_o + floor(a sign(d) x0 2^s r / 2^29 + 1/2)),  a = q_a - z_a,  r = float32(s_a) / (s_b s_o)

rounded once here (``r`` as a 24-bit multiplier). This is where the rule is approximate: the simulator's codes are
those of that value for numerators below 2^11 in magnitude, and above it a little higher (an extra rounding offset
that doubles with each octave of ``a``, up to about 0.25 of a code at 2^14: an intermediate of about 16 bits, form
not found). 95.9-99.7% of the codes of 16 random probes (4,096 random codes each, v68 = v73), exact rounding 72-97%.
``d = 0`` keeps openqnn's x / 0 (the encoding's end by the sign of ``a``; not probed).
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.spec.qnn_eltwise import f32

__all__ = ["ARCHS", "RECIP16_C0", "RECIP16_C1", "RECIP16_C2", "div16_apply", "div16_codes", "div16_multiplier",
           "div16_multiplier_for", "recip16", "recip16_of_divisor"]

ARCHS = ("v68", "v73")
# nnlib's hvx_recip16_inline (v65+, prec >= 52): per segment j, the constant, the vmps and the vmpa coefficients
RECIP16_C0 = (0x2E12, 0x199B, 0x0F69, 0x09E2)
RECIP16_C1 = (0x7D56, 0x6AB6, 0x5751, 0x472E)
RECIP16_C2 = (0x8001, 0x7DE8, 0x794E, 0x736C)
M_BITS = 24  # the output ratio's multiplier (QNN's own precision not established)


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
    -1`` for ``|d| >= 2^15``: the low bit dropped, not probed), ``x0 ~ 2^29 / (|d| << s)``; ``d = 0`` gives (0, 0)."""
    m = np.abs(np.asarray(d, np.int64))
    s = np.where(m > 0, 14 - np.floor(np.log2(np.maximum(m, 1))).astype(np.int64), 0)
    n = np.where(s >= 0, m << np.maximum(s, 0), m >> 1)
    x0 = np.where(n == 1 << 14, 1 << 15, recip16(np.clip(n, 1 << 14, (1 << 15) - 1)))
    return np.where(m > 0, x0, 0), s


def div16_multiplier(s_a: float, s_b: float, s_o: float) -> tuple[int, int] | None:
    """``(M, k)``: ``r = float32(s_a) / (float32(s_b) float32(s_o))`` as ``M / 2^k``, ``M`` of 24 bits; None where
    the rounding shift ``29 - s + k`` could fall below 1 (``r`` of 2^37 or more)."""
    r = f32(s_a) / (f32(s_b) * f32(s_o))
    _, e = math.frexp(r)
    k = M_BITS - e
    if 29 - 14 + k < 1:
        return None
    return round(r * 2.0**k), k


def div16_apply(q_a: np.ndarray, q_b: np.ndarray, z_a: int, z_b: int, z_o: int, m: int, k: int) -> np.ndarray:
    """The integer rule on codes, ``r = m / 2^k`` (:func:`div16_multiplier`): ``clamp(z_o + floor(a sign(d) x0 m /
    2^(29 - s + k) + 1/2))``; ``d = 0``: the encoding's end by the sign of ``a`` (``0 / 0``: ``z_o``)."""
    a = np.asarray(q_a, np.int64) - z_a
    d = np.asarray(q_b, np.int64) - z_b
    x0, s = recip16_of_divisor(d)
    sh = 29 - s + k
    v = (a * np.sign(d) * x0 * m + (np.int64(1) << (sh - 1))) >> sh
    v = np.where(d == 0, np.sign(a) * (1 << 40), v)
    return np.clip(v + z_o, 0, (1 << 16) - 1).astype(np.int64)


def div16_codes(q_a: np.ndarray, q_b: np.ndarray, s_a: float, z_a: int, s_b: float, z_b: int, s_o: float,
                z_o: int) -> np.ndarray:
    """QNN's Divide of 16-bit codes (module docstring; approximate)."""
    mult = div16_multiplier(s_a, s_b, s_o)
    assert mult is not None, "no 16-bit Divide rule for this ratio"
    return div16_apply(q_a, q_b, z_a, z_b, z_o, *mult)


def div16_multiplier_for(arch: str, arithmetic: str, s_a: float, s_b: float, s_o: float, bits: tuple[int, int, int],
                         runtime_same_shape: bool) -> tuple[int, int] | None:
    """:func:`div16_multiplier` where the rule applies (``arithmetic == "qnn"``, v68 or v73, 16-bit codes in and
    out, two run-time operands of one shape: what was probed), else None."""
    if not (arithmetic == "qnn" and arch in ARCHS and bits == (16, 16, 16) and runtime_same_shape
            and s_a > 0 and s_b > 0 and s_o > 0):
        return None
    return div16_multiplier(s_a, s_b, s_o)
