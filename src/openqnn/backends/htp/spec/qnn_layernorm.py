"""QNN's HTP LayerNorm of 8- and 16-bit codes, v68 and v73 alike, as established on Qualcomm's HTP simulator
(onnxruntime-qnn 2.7.0, QNN 2.51): the fidelity sweep's LayerNormalization cases and
``tests/fidelity/layernorm_probe.py`` (docs/htp-fidelity.md).

TFLite-style exact arithmetic computes ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` and rounds
``y / s_out`` once. QNN differs in two places:

1. beta is rounded to the output's codes first (8- and 16-bit codes): ``Bc = round(beta / s_out)``.
2. 8-bit codes: gamma enters as its codes ``gq`` (zero point removed) and the rest of the scale as one
   multiplier per row, truncated to 16 fraction bits::

       r    = floor(2^16 * s_gamma / (s_out * sigma))     sigma = sqrt(var + eps / s_in^2), in input codes
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
"""

from __future__ import annotations

import math

__all__ = [
    "ARCHS",
    "ROW_MULTIPLIER_BITS",
    "beta_in_output_codes",
    "gamma_codes_times_row_multiplier",
    "route_code",
    "route_columns",
    "row_multiplier",
]

ARCHS = ("v68", "v73")
ROW_MULTIPLIER_BITS = 16


def beta_in_output_codes(arch: str, arithmetic: str, in_bits: int, out_bits: int) -> bool:
    """Whether beta is rounded to the output's codes before it is added (``arithmetic == "qnn"``, v68 or v73,
    8- or 16-bit codes, the same in and out); else beta enters at the normalization's precision (exact rounding once)."""
    return arithmetic == "qnn" and arch in ARCHS and in_bits in (8, 16) and out_bits == in_bits


def gamma_codes_times_row_multiplier(arch: str, arithmetic: str, in_bits: int, out_bits: int) -> bool:
    """Whether gamma's codes are scaled by the truncated per-row multiplier (rule 2): "qnn", v68/v73, 8-bit codes."""
    return beta_in_output_codes(arch, arithmetic, in_bits, out_bits) and in_bits == 8


def row_multiplier(s_gamma: float, s_out: float, sigma_codes: float) -> int:
    """``floor(2^16 s_gamma / (s_out sigma))`` (float64; the kernel computes it in integers)."""
    return math.floor(2.0**ROW_MULTIPLIER_BITS * s_gamma / (s_out * sigma_codes))


def route_columns(rows: int, n: int) -> int:
    """How many of the last columns (of N = ``n``; ``rows`` R the product of the leading dimensions) take the
    large-tensor route (rule 3): 0 none, ``n`` all. What the probes of HTP v73 show (uniform random rows; the
    route is the same in every row of a tensor):

    - R a multiple of 8, R >= 16: all columns where N >= 256, R < 128 and R N > 6144 (e.g. 16 x 512, 16 x 448,
      24 x 320, 32 x 256; not 16 x 384, 24 x 256, 16 x 320), or where N >= 224, R >= 128 and R N >= 53248
      (208 x 256, 144 x 384, 192 x 320, 256 x 224; not 128..200 x 256, 128..136 x 384, 128..160 x 320).
      Never seen for N <= 192 (up to 512 x 192, 512 x 128, 1024 x 64).
    - R = 8: the last N / 8 columns where N >= 1024 (1024, 1536, 2048), none up to N = 768.
    - R = 9..15: the last N / 8 columns where N >= 768 (768: R = 10..15, but 192 at R = 9; 1024, 1536: R = 9,
      10, 12 and 15; 2048: R = 9..15); none at N = 256 and 512.
    - R > 16 not a multiple of 8: the last 256 columns where N >= 512 (512, 768, 1024, 1536: R = 17..36;
      2048: R = 17, but all at R = 25); none at N = 256 (R = 9..127).
    - R < 8: none (N = 768, 1024).

    The conditions in between (other N, R > 36 not a multiple of 8) are extrapolations of these."""
    if rows >= 16 and rows % 8 == 0:
        if rows < 128:
            return n if n >= 256 and rows * n > 6144 else 0
        return n if n >= 224 and rows * n >= 53248 else 0
    if rows == 8:
        return n // 8 if n >= 1024 else 0
    if 9 <= rows <= 15:
        if n < 768:
            return 0
        return 192 if (rows, n) == (9, 768) else n // 8
    if rows > 16:
        if n < 512:
            return 0
        return n if (rows, n) == (25, 2048) else 256
    return 0


def route_code(z: int) -> int:
    """Rule 3 on one output code ``z`` relative to the zero point, already clamped to the output's range."""
    return z + 1 if z % 4 == 0 and z != 0 else z
