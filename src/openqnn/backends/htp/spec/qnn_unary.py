"""QNN's HTP arithmetic of 8-bit LeakyRelu / PRelu, Reciprocal and BatchNorm, v68 and v73, established on
Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/unary_probe.py`` and held to it
by ``tests/fidelity/test_qnn_unary.py`` (docs/htp-fidelity.md, "LeakyRelu, PRelu, Reciprocal, LogSoftmax and
BatchNorm (8-bit), stop 25").

Reciprocal: QNN EP writes an ONNX Reciprocal as an ElementWiseDivide of a constant 1.0 by the input, the
constant quantized *in the input's encoding*: its code ``q1 = clamp(round(1 / s_in) + z_in)``, so the numerator
is ``n = s_in (q1 - z_in)``, not 1 (1.0034 at s_in = 0.00784). The codes are then those of the exact quotient:
``clamp(z_out + round(n / (s_in (q - z_in)) / s_out))``, and at ``q = z_in`` the real value 255. 100% of 104 probes
(26,624 codes, v68 and v73; exact rounding of ``1 / x``: 73-88%).

LeakyRelu (a PRelu of a one-element 8-bit slope, as openqnn exports it): exact rounding of ``a s_in / s_out`` and
``a s_in alpha / s_out`` (``a = q - z_in``, alpha the slope's code times its scale): 100% of 56 probes.

PRelu of a slope of several values (approximate): each branch is the Max / Min requantization
(``qnn_eltwise.QnnConvertSpec``) with the ratio ``s_in / s_out`` or ``s_in alpha / s_out``: 99.7% of 51,200 probe
codes (exact rounding 99.3%), 100% of the fidelity cases; the rest lie within 0.025 of a .5 boundary, both ways.

BatchNorm: :func:`batchnorm_table` (QNN EP re-quantizes the weight and the bias first; spec/qnn_batchnorm.py).
"""

from __future__ import annotations

import numpy as np

from openqnn.backends.htp.spec.qnn_batchnorm import (
    batchnorm_form,
    batchnorm_spec_for,
    exact_table,
    requantize_param,
    v73_table,
)
from openqnn.backends.htp.spec.qnn_eltwise import QnnConvertSpec, f32

__all__ = ["ARCHS", "batchnorm_table", "batchnorm_table_for", "leaky_relu_table_for", "prelu_tables",
           "prelu_tables_for", "reciprocal_codes",
           "reciprocal_numerator", "reciprocal_table_for", "requantize_param"]

ARCHS = ("v68", "v73")
X_BY_ZERO = 255.0  # the real value QNN's Reciprocal gives at the input's zero point (probed: 254.5 to 255.0)


def _round_clamp(v: np.ndarray, zo: int, bits: int = 8) -> np.ndarray:
    """``clamp(z_out + round(v))``, half away from zero, infinities saturated."""
    v = np.nan_to_num(np.asarray(v, np.float64), nan=0.0, posinf=1e12, neginf=-1e12)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + zo, 0, (1 << bits) - 1).astype(np.int64)


def reciprocal_numerator(s_in: float, z_in: int, bits: int = 8) -> int:
    """The code of 1.0 in the input's encoding: ``clamp(round(1 / s_in) + z_in)`` (QNN EP's constant)."""
    return int(np.clip(np.rint(1.0 / f32(s_in)) + z_in, 0, (1 << bits) - 1))


def reciprocal_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int, bits: int = 8) -> np.ndarray:
    """QNN's Reciprocal of ``bits``-bit codes ``q``: the exact quotient of the quantized 1.0 by the input (16-bit:
    the numerator is established, the quotient's rounding is not, ``qnn_unary16``)."""
    si, so = f32(s_in), f32(s_out)
    n = (reciprocal_numerator(s_in, z_in, bits) - z_in) * si
    dq = np.asarray(q, np.int64) - z_in
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(dq == 0, X_BY_ZERO, n / (dq * si)) / so
    return _round_clamp(v, z_out, bits)


def prelu_tables(s_in: float, z_in: int, alphas: np.ndarray, s_out: float, z_out: int) -> np.ndarray | None:
    """QNN's PRelu with a static slope of several values (``alphas``: each value as QNN reads it, code times scale)
    on every 8-bit input code: int64 ``[len(alphas), 256]``, or None where the form does not reach (a slope of 0 or
    below, ratios of 16 or more). Each branch is the Max / Min requantization (``QnnConvertSpec``, 15-bit multiplier,
    rounding a hair above a half) with the ratio ``s_in / s_out`` (``q >= z_in``) or ``s_in alpha / s_out``
    (approximate: module docstring)."""
    pos = QnnConvertSpec.of(s_in, z_in, s_out, z_out)
    if pos is None:
        return None
    q = np.arange(256, dtype=np.int64)
    rows = []
    for alpha in np.asarray(alphas, np.float64).reshape(-1):
        neg = QnnConvertSpec.of(f32(s_in) * float(alpha), z_in, s_out, z_out) if alpha > 0 else None
        if neg is None:
            return None
        rows.append(np.where(q >= z_in, pos.apply_np(q), neg.apply_np(q)))
    return np.stack(rows).astype(np.int64)


def prelu_tables_for(arch: str, arithmetic: str, s_in: float, z_in: int, alphas: np.ndarray, s_out: float,
                     z_out: int, in_bits: int, out_bits: int, slope_bits: int) -> np.ndarray | None:
    """:func:`prelu_tables` where it applies (``arithmetic == "qnn"``, v68 or v73, 8-bit codes and slope), else None."""
    if not _established(arch, arithmetic, in_bits, out_bits, slope_bits):
        return None
    return prelu_tables(s_in, z_in, alphas, s_out, z_out)


def batchnorm_table(arch: str, s_in: float, z_in: int, weight: np.ndarray, bias: np.ndarray, s_out: float,
                    z_out: int) -> np.ndarray:
    """QNN's BatchNorm (``y = x w + b`` per channel; mean 0, variance 0, epsilon 1, as openqnn exports it) of every
    8-bit input code: int64 ``[C, 256]``. ``weight`` and ``bias``: the C dequantized values QNN EP reads (code plus
    offset, times the float32 scale), which it re-quantizes (:func:`requantize_param`).

    spec/qnn_batchnorm.py: v68 with two or more channels runs its integer form (a 15-bit multiplier, the bias and the
    output zero point folded into the accumulator in float32); v73 with two or more channels its convolution form
    with int8 weights (:func:`v73_table`); one channel (both archs) is exact rounding of ``(q - z_in) s_in w' + b'``
    (docs/htp-fidelity.md, "BatchNorm on v73 (stop 25)" and "BatchNorm, 8-bit on v73 and 16-bit (stop 27)").
    """
    w = np.asarray(weight, np.float64).reshape(-1)
    if batchnorm_form(arch, "qnn", 8, w.size) == "v73":
        table = v73_table(s_in, z_in, weight, bias, s_out, z_out)
        if table is not None:
            return table
    spec = batchnorm_spec_for(arch, "qnn", s_in, z_in, weight, bias, s_out, z_out, 8)
    return spec.table() if spec is not None else exact_table(s_in, z_in, weight, bias, s_out, z_out)


def batchnorm_table_for(arch: str, arithmetic: str, s_in: float, z_in: int, weight: np.ndarray, bias: np.ndarray,
                        s_out: float, z_out: int, in_bits: int, out_bits: int, w_bits: int,
                        b_bits: int) -> np.ndarray | None:
    """:func:`batchnorm_table` where QNN's BatchNorm is followed (``arithmetic == "qnn"``, v68 or v73, 8-bit codes,
    an 8-bit weight and bias, which QNN EP re-quantizes to uint8), else None."""
    if not _established(arch, arithmetic, in_bits, out_bits, w_bits, b_bits) or not s_in > 0 or not s_out > 0:
        return None
    return batchnorm_table(arch, s_in, z_in, weight, bias, s_out, z_out)


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
    si, so = f32(s_in), f32(s_out)
    a = np.arange(256, dtype=np.int64) - z_in
    return _round_clamp(np.where(a >= 0, a * si / so, a * si * alpha / so), z_out)

