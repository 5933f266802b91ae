"""QNN's HTP LayerNorm of 8- and 16-bit codes, v68 and v73 alike: what is established so far, on Qualcomm's HTP
simulator (onnxruntime-qnn 2.7.0, QNN 2.51), from the fidelity sweep's LayerNormalization cases
(docs/htp-fidelity.md).

TFLite-style exact arithmetic computes ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` and rounds
``y / s_out`` once. QNN rounds beta to the output's codes first:

    code = clamp(round(gamma * (x - mean) / sqrt(var + eps) / s_out + round(beta / s_out)) - offset_out)

How it was found: the sweep's differences from exact rounding (25% of the codes, max 1) have a mean per
column of up to +-0.5 of a code that does not depend on the row, and rounding ``beta / s_out`` alone takes
the share of identical codes from 72-75% to 96-97% (87% on the case with skewed inputs; 16-bit codes
likewise, 71-75% to 92-98%). Open: the rest
is a per-row gain of -0.2% to -0.6% on rows of large spread (input standard deviation of 60-80 codes);
1/sigma or gamma / s_out truncated to 8-15 bits, or 1/sigma in fixed point, explain part of it, none all.
"""

from __future__ import annotations

__all__ = ["ARCHS", "beta_in_output_codes"]

ARCHS = ("v68", "v73")


def beta_in_output_codes(arch: str, arithmetic: str, in_bits: int, out_bits: int) -> bool:
    """Whether beta is rounded to the output's codes before it is added (``arithmetic == "qnn"``, v68 or v73,
    8- or 16-bit codes, the same in and out); else beta enters at the normalization's precision (exact rounding once)."""
    return arithmetic == "qnn" and arch in ARCHS and in_bits in (8, 16) and out_bits == in_bits
