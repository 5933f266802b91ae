"""QNN's HTP LayerNorm of 8- and 16-bit codes, v68 and v73 alike, as established on Qualcomm's HTP simulator
(onnxruntime-qnn 2.7.0, QNN 2.51): the fidelity sweep's LayerNormalization cases and
``tests/fidelity/layernorm_probe.py`` (docs/htp-fidelity.md).

TFLite-style exact arithmetic computes ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` and rounds
``y / s_out`` once. QNN differs in two places:

1. beta is rounded to the output's codes first (8- and 16-bit codes): ``Bc = round(beta / s_out)``.
2. 8-bit codes: gamma enters as its codes ``gq`` (zero point removed) and the rest of the scale as one
   multiplier per row, truncated to 16 fraction bits::

       r    = floor(2^16 * s_gamma / (s_out * sigma))     sigma = sqrt(var + eps / s_in^2), in input codes
                                                          (1 / sigma: float32's fast inverse square root, below)
       code = clamp(round(gq * (q - mean) * r / 2^16 + Bc) - offset_out)

   so every row's codes carry a gain ``r / (2^16 s_gamma / (s_out sigma))`` between ``1 - 2^-16 / r'``
   and 1 (r' the exact multiplier): -0.6% where ``s_gamma / (s_out sigma)`` is about 0.003 (rows of wide
   spread, coarse output scales), nothing visible on fine ones.

How it was found: probes of uniform and normal rows (256 elements; gamma codes 100 to 255 with scales 1/255
to 0.01; output scales 1/255 to 12/255 and 0.01 to 0.05; beta 0) give each row's gain to about 0.05%; the
multiplier per input code ``gq * s_gamma / (s_out sigma)`` lies on a grid of ``gq / 65536`` (searched over
grids from 1/50 to 1/10^5: 99.5% of 600 rows for ``1/257`` at gamma code 255, ``1/655.4`` at 100 and
``1/327.7`` at 200, whatever the scales), truncated (rounding it instead fits no better than exact
arithmetic). 99.3% of the probes' codes (exact arithmetic 95%); the rest are one code off, mostly a row
offset of +0.01..0.05 of a code that is open. With 16-bit codes the multiplier has no such grid (exact
arithmetic fits 90-99% of probe codes and 16-24 bit truncations no better): beta's rounding only.

Not the LayerNorm's: on some shapes (e.g. [16, 768], [32, 256]; the last N / 8 columns of [10, 768]) the
simulator's graph output never holds a code that is a nonzero multiple of 4 from the zero point (``z + 1``
there). That is the HTP's float16 dequantization of a graph output (FullyConnected and Softmax outputs show
it too): the same LayerNorm read through a Slice, Transpose or Reshape gives the rule's codes exactly, so a
LayerNorm inside a model has none of it. The fidelity harness models that output path
(``tests/fidelity/harness.py`` ``recover_output``).

The row multiplier's ``1 / sigma`` (docs/htp-fidelity.md, "LayerNorm's reciprocal square root"): not exact but
float32's "fast inverse square root", the seed ``0x5F3759DF - (bits(v) >> 1)`` of the float32 ``v = var + eps /
s_in^2`` (in input codes) and two Newton steps ``y = y (1.5 - (v/2 y) y)``, every operation rounded to float32;
then ``r = floor(float32(s_gamma / s_out) 2^16 y)``. Its error (``1 / sigma`` low by 0 to 4.7e-6, varying
smoothly with the variance's float32 mantissa) is what takes a row whose exact multiplier sits just above an
integer one lower: found on rows chosen that way (``tests/fidelity/layernorm_probe.py`` ``near_integer_rows``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ARCHS",
    "ROW_MULTIPLIER_BITS",
    "RSQRT_MAGIC",
    "RSQRT_NEWTON_STEPS",
    "beta_in_output_codes",
    "gamma_codes_times_row_multiplier",
    "multiplier_constant",
    "row_multipliers",
    "rsqrt_f32",
]

ARCHS = ("v68", "v73")
ROW_MULTIPLIER_BITS = 16
RSQRT_MAGIC = 0x5F3759DF  # the seed's constant: magic - (float32 bits >> 1)
RSQRT_NEWTON_STEPS = 2


def beta_in_output_codes(arch: str, arithmetic: str, in_bits: int, out_bits: int) -> bool:
    """Whether beta is rounded to the output's codes before it is added (``arithmetic == "qnn"``, v68 or v73,
    8- or 16-bit codes, the same in and out); else beta enters at the normalization's precision (exact rounding once)."""
    return arithmetic == "qnn" and arch in ARCHS and in_bits in (8, 16) and out_bits == in_bits


def gamma_codes_times_row_multiplier(arch: str, arithmetic: str, in_bits: int, out_bits: int) -> bool:
    """Whether gamma's codes are scaled by the truncated per-row multiplier (rule 2): "qnn", v68/v73, 8-bit codes."""
    return beta_in_output_codes(arch, arithmetic, in_bits, out_bits) and in_bits == 8


def rsqrt_f32(v: np.ndarray) -> np.ndarray:
    """QNN's ``1 / sqrt(v)`` of float32 ``v > 0``: the seed ``RSQRT_MAGIC - (bits(v) >> 1)`` and
    ``RSQRT_NEWTON_STEPS`` Newton steps ``y = y * (1.5 - (h * y) * y)`` with ``h = v / 2``, each operation
    rounded to float32 (round to nearest even). Low by 0 to 4.7e-6 of its value."""
    v32 = np.asarray(v, dtype=np.float32)
    y = (np.int32(RSQRT_MAGIC) - (v32.view(np.int32) >> 1)).astype(np.int32).view(np.float32)
    h = v32 * np.float32(0.5)
    for _ in range(RSQRT_NEWTON_STEPS):
        y = y * (np.float32(1.5) - (h * y) * y)
    return np.asarray(y, dtype=np.float32)


def multiplier_constant(s_gamma: float, s_out: float) -> float:
    """``float32(s_gamma / s_out) * 2^16`` (the division in float32), the constant the row's ``1 / sigma`` scales."""
    return float(np.float32(s_gamma) / np.float32(s_out)) * 2.0**ROW_MULTIPLIER_BITS


def row_multipliers(c: float, variance: np.ndarray) -> np.ndarray:
    """``floor(c * rsqrt_f32(float32(variance)))`` per row, ``c`` = :func:`multiplier_constant` (the product of two
    float32 values, exact in float64); ``variance`` = var + eps / s_in^2 in input codes, float64. 0 where it is
    not positive (a constant row and eps 0)."""
    v = np.asarray(variance, dtype=np.float64)
    pos = v > 0
    y = rsqrt_f32(np.where(pos, v, 1.0).astype(np.float32)).astype(np.float64)
    return np.where(pos, np.floor(c * y), 0).astype(np.int64)
