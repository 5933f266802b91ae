"""QNN's HTP arithmetic of 8-bit LeakyRelu / PRelu, Reciprocal and BatchNorm, v68 and v73, established on
Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/unary_probe.py`` and held to it
by ``tests/fidelity/test_qnn_unary.py`` (docs/htp-fidelity.md, "LeakyRelu, PRelu, Reciprocal, LogSoftmax and
BatchNorm (8-bit), stop 25").

Reciprocal: QNN EP writes an ONNX Reciprocal as an ElementWiseDivide of a constant 1.0 by the input, the
constant quantized *in the input's encoding*: its code ``q1 = clamp(round(1 / s_in) + z_in)``, so the numerator
is ``n = s_in (q1 - z_in)``, not 1 (1.0034 at s_in = 0.00784). The codes are then those of the exact quotient:
``clamp(z_out + round(n / (s_in (q - z_in)) / s_out))``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ARCHS", "batchnorm_codes", "leaky_relu_table_for", "prelu_codes", "reciprocal_codes",
           "reciprocal_numerator", "reciprocal_table_for"]

ARCHS = ("v68", "v73")
X_BY_ZERO = 255.0  # the real value QNN's Reciprocal gives at the input's zero point (probed: 254.5 to 255.0)


def _f32(v: float) -> float:
    return float(np.float32(v))


def _round_clamp(v: np.ndarray, zo: int, bits: int = 8) -> np.ndarray:
    """``clamp(z_out + round(v))``, half away from zero, infinities saturated."""
    v = np.nan_to_num(np.asarray(v, np.float64), nan=0.0, posinf=1e12, neginf=-1e12)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + zo, 0, (1 << bits) - 1).astype(np.int64)


def reciprocal_numerator(s_in: float, z_in: int, bits: int = 8) -> int:
    """The code of 1.0 in the input's encoding: ``clamp(round(1 / s_in) + z_in)`` (QNN EP's constant)."""
    return int(np.clip(np.rint(1.0 / _f32(s_in)) + z_in, 0, (1 << bits) - 1))


def reciprocal_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray:
    """QNN's Reciprocal of 8-bit codes ``q``: the exact quotient of the quantized 1.0 by the input."""
    si, so = _f32(s_in), _f32(s_out)
    n = (reciprocal_numerator(s_in, z_in) - z_in) * si
    dq = np.asarray(q, np.int64) - z_in
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(dq == 0, X_BY_ZERO, n / (dq * si)) / so
    return _round_clamp(v, z_out)


def prelu_codes(q: np.ndarray, s_in: float, z_in: int, w: np.ndarray, s_w: float, z_w: int, s_out: float,
                z_out: int, scalar: bool) -> np.ndarray:
    """QNN's PRelu of 8-bit codes (slope codes ``w`` broadcast to ``q``)."""
    si, sw, so = _f32(s_in), _f32(s_w), _f32(s_out)
    a = np.asarray(q, np.int64) - z_in
    v = np.where(a >= 0, a * si / so, a * si * ((np.asarray(w, np.int64) - z_w) * sw) / so)
    return _round_clamp(v, z_out)


def batchnorm_codes(q: np.ndarray, s_in: float, z_in: int, w: np.ndarray, s_w: float, z_w: int, b: np.ndarray,
                    s_b: float, z_b: int, s_out: float, z_out: int) -> np.ndarray:
    """QNN's BatchNorm (``y = x w + b`` per channel) of 8-bit codes."""
    si, sw, sb, so = _f32(s_in), _f32(s_w), _f32(s_b), _f32(s_out)
    a = np.asarray(q, np.int64) - z_in
    v = (a * si * ((np.asarray(w, np.int64) - z_w) * sw) + (np.asarray(b, np.int64) - z_b) * sb) / so
    return _round_clamp(v, z_out)


def _established(arch: str, arithmetic: str, *bits: int) -> bool:
    return arithmetic == "qnn" and arch in ARCHS and all(b == 8 for b in bits)


def reciprocal_table_for(arch: str, arithmetic: str, s_in: float, z_in: int, s_out: float, z_out: int,
                         in_bits: int, out_bits: int) -> np.ndarray | None:
    """QNN's Reciprocal on every 8-bit input code (``arithmetic == "qnn"``, v68 or v73, 8-bit codes), else None."""
    if not _established(arch, arithmetic, in_bits, out_bits) or not s_in > 0 or not s_out > 0:
        return None
    return reciprocal_codes(np.arange(256, dtype=np.int64), s_in, z_in, s_out, z_out)


def leaky_relu_table_for(arch: str, arithmetic: str, s_in: float, z_in: int, alpha: float, s_out: float, z_out: int,
                         in_bits: int, out_bits: int) -> np.ndarray | None:
    """QNN's PRelu with a one-element static slope (openqnn's LeakyRelu; ``alpha`` its dequantized value) on every
    8-bit input code (``arithmetic == "qnn"``, v68 or v73, 8-bit codes), else None: exact rounding."""
    if not _established(arch, arithmetic, in_bits, out_bits) or not s_in > 0 or not s_out > 0:
        return None
    si, so = _f32(s_in), _f32(s_out)
    a = np.arange(256, dtype=np.int64) - z_in
    return _round_clamp(np.where(a >= 0, a * si / so, a * si * alpha / so), z_out)
