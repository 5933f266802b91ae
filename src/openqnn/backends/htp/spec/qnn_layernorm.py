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

Not the LayerNorm's: on some shapes (e.g. [16, 768], [32, 256]; the last N / 8 columns of [10, 768]) the
simulator's graph output never holds a code that is a nonzero multiple of 4 from the zero point (``z + 1``
there). That is the HTP's float16 dequantization of a graph output (FullyConnected and Softmax outputs show
it too): the same LayerNorm read through a Slice, Transpose or Reshape gives the rule's codes exactly, so a
LayerNorm inside a model has none of it. The fidelity harness models that output path
(``tests/fidelity/harness.py`` ``recover_output``).
"""

from __future__ import annotations

import math

__all__ = [
    "ARCHS",
    "ROW_MULTIPLIER_BITS",
    "beta_in_output_codes",
    "gamma_codes_times_row_multiplier",
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
