"""QNN's HTP LayerNorm of 8- and 16-bit codes, v68 and v73 alike, as established on Qualcomm's HTP simulator
(onnxruntime-qnn 2.7.0, QNN 2.51): the fidelity sweep's LayerNormalization cases and
``tests/fidelity/layernorm_probe.py`` (docs/htp-fidelity.md).

TFLite-style exact arithmetic computes ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` and rounds
``y / s_out`` once. QNN differs in three places:

1. beta is rounded to the output's codes first (8- and 16-bit codes): ``Bc = round(beta / s_out)``.
2. 8-bit codes: gamma enters as its codes ``gq`` (zero point removed) and the rest of the scale as one
   multiplier per row, truncated to 16 fraction bits::

       r    = floor(2^16 * s_gamma / (s_out * sigma))     sigma = sqrt(var + eps / s_in^2), in input codes
                                                          (1 / sigma: float32's fast inverse square root, below)
       code = clamp(round(gq * (q - mean) * r / 2^16 + Bc) - offset_out)

   so every row's codes carry a gain ``r / (2^16 s_gamma / (s_out sigma))`` between ``1 - 2^-16 / r'``
   and 1 (r' the exact multiplier): -0.6% where ``s_gamma / (s_out sigma)`` is about 0.003 (rows of wide
   spread, coarse output scales), nothing visible on fine ones.

3. 16-bit codes (unsigned, in and out; docs/htp-fidelity.md, "16-bit LayerNorm (stop 26)"): gamma's codes times
   a per-row multiplier of 16 significant bits, about a mean kept on HVX's qf32 grid::

       mean' = qf32_grid(S1 / N + u)  (N a power of two)   u = 2^(e - 23), the mean in [2^e, 2^(e+1))
             = qf32_grid(S1 * float32(1/N))  (other N)     (qf32: a multiple of 4 units never kept, see qf32_grid)
       x    = float32(s_g) / float32(s_out) / sqrt(var')   var' about mean', eps / s_in^2 included
       m 2^k = x rounded to 16 significant bits (half up; saturated at 2^16 - 1)
       code = clamp(round(gq m 2^k (q - mean') + Bc) - offset_out)     (half away from zero)

   Found on the simulator with rows that isolate one unknown each (tests/fidelity/layernorm_probe.py): rows of a
   constant code plus k codes one higher read the mean to 1e-4 of a float32 ulp (``implied_mean_units``): always
   a whole number of ulps above the exact mean, never a multiple of 4 ulps of its binade, ``qf32_grid(k + 1)``
   for every k (N = 64 to 512); symmetric ramps fix each row's gain to 1e-7: 0 where everything is a power of
   two, otherwise within 2^-16 of exact, the error of ``s_g / s_out`` alone where 1 / sigma is a power of two
   and of 1 / sigma alone where ``s_g / s_out`` is; then the row multiplier ``x`` itself rounded to 16 bits fits
   99.4% of 928 rows (the rest within 0.005 of a half step). The mean of other N is a fit (the constant rows
   show offsets growing with the code that no single rounding of ``S1 float32(1/N)`` gives: a qf32 sum).

How it was found: probes of uniform and normal rows (256 elements; gamma codes 100 to 255 with scales 1/255
to 0.01; output scales 1/255 to 12/255 and 0.01 to 0.05; beta 0) give each row's gain to about 0.05%; the
multiplier per input code ``gq * s_gamma / (s_out sigma)`` lies on a grid of ``gq / 65536`` (searched over
grids from 1/50 to 1/10^5: 99.5% of 600 rows for ``1/257`` at gamma code 255, ``1/655.4`` at 100 and
``1/327.7`` at 200, whatever the scales), truncated (rounding it instead fits no better than exact
arithmetic). 99.3% of the probes' codes (exact arithmetic 95%); the rest are one code off, mostly a row
offset of +0.01..0.05 of a code that is open. With 16-bit codes the multiplier has no such grid (exact
arithmetic fits 90-99% of probe codes and 16-24 bit truncations no better): rule 3, found apart.

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
    "MULTIPLIER16_BITS",
    "QF32_FRACTION_BITS",
    "ROW_MULTIPLIER_BITS",
    "RSQRT_MAGIC",
    "RSQRT_NEWTON_STEPS",
    "beta_in_output_codes",
    "gamma_codes_times_row_multiplier",
    "gamma_codes_times_row_multiplier16",
    "mean16",
    "multiplier_constant",
    "qf32_grid",
    "row_multipliers",
    "row_multipliers16",
    "rsqrt_f32",
]

ARCHS = ("v68", "v73")
ROW_MULTIPLIER_BITS = 16
RSQRT_MAGIC = 0x5F3759DF  # the seed's constant: magic - (float32 bits >> 1)
RSQRT_NEWTON_STEPS = 2
QF32_FRACTION_BITS = 23  # the 16-bit rule's mean: HVX qf32, 23 fraction bits and an implied last bit
MULTIPLIER16_BITS = 16  # the 16-bit rule's row multiplier: 16 significant bits, rounded


def beta_in_output_codes(arch: str, arithmetic: str, in_bits: int, out_bits: int) -> bool:
    """Whether beta is rounded to the output's codes before it is added (``arithmetic == "qnn"``, v68 or v73,
    8- or 16-bit codes, the same in and out); else beta enters at the normalization's precision (exact rounding once)."""
    return arithmetic == "qnn" and arch in ARCHS and in_bits in (8, 16) and out_bits == in_bits


def gamma_codes_times_row_multiplier(arch: str, arithmetic: str, in_bits: int, out_bits: int) -> bool:
    """Whether gamma's codes are scaled by the truncated per-row multiplier (rule 2): "qnn", v68/v73, 8-bit codes."""
    return beta_in_output_codes(arch, arithmetic, in_bits, out_bits) and in_bits == 8


def gamma_codes_times_row_multiplier16(arch: str, arithmetic: str, in_bits: int, out_bits: int) -> bool:
    """Whether the 16-bit rule (rule 3) applies: "qnn", v68/v73, 16-bit codes in and out."""
    return beta_in_output_codes(arch, arithmetic, in_bits, out_bits) and in_bits == 16


def qf32_grid(t: np.ndarray) -> np.ndarray:
    """The value HVX's qf32 keeps of ``t``, given in units of the grid (``2^(e - 23)`` for a value in ``[2^e,
    2^(e+1))``): ``R + 1`` for ``t - R`` in [0, 1.5], ``R + 2`` in (1.5, 2.5], ``R + 3`` above, ``R = 4 floor(t / 4)``.
    A qf32 mantissa's last bit is implied 1, so a multiple of 4 units is never kept (it becomes one more), a
    multiple of 2 only by the next exponent (the rounding of quic/qemu's ``rnd_sat_qf_sig``, mmvec_qfloat.c)."""
    t = np.asarray(t, dtype=np.float64)
    r = np.floor(t / 4) * 4
    f = t - r
    return r + np.where(f <= 1.5, 1.0, np.where(f <= 2.5, 2.0, 3.0))


def mean16(s1: np.ndarray, n: int) -> np.ndarray:
    """QNN's mean of rows of 16-bit codes (float64, exact), from their integer sums ``s1``: on the qf32 grid of
    its binade (:func:`qf32_grid`, unit ``u = 2^(e - 23)``), of ``S1 / N + u`` where N is a power of two and
    of ``S1 * float32(1/N)`` otherwise (a fit, not the mechanism: see the module docstring). 0 where ``s1`` is 0."""
    s = np.asarray(s1, dtype=np.float64)
    pow2 = n & (n - 1) == 0
    t = s / n if pow2 else s * float(np.float32(1.0 / n))
    _, e = np.frexp(np.where(s > 0, t, 1.0))  # t = f 2^e, f in [0.5, 1): the binade is [2^(e-1), 2^e)
    unit = np.ldexp(1.0, e - 1 - QF32_FRACTION_BITS)
    return np.where(s > 0, qf32_grid(t / unit + (1.0 if pow2 else 0.0)) * unit, 0.0)


def row_multipliers16(c: float, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 16-bit rule's row multiplier ``c / sqrt(variance)`` (``c`` = float32(s_g) / float32(s_out) in float32,
    ``variance`` about QNN's mean, eps / s_in^2 included, float64) rounded to 16 significant bits: ``(m, k)``
    with ``m = min(floor(x 2^-k + 1/2), 2^16 - 1)``, ``k = floor(log2 x) - 15`` (``m 2^k`` the multiplier;
    saturated, so a value just below a power of two loses 2^-16). ``m`` is 0 where ``variance`` is not positive."""
    v = np.asarray(variance, dtype=np.float64)
    pos = v > 0
    x = c / np.sqrt(np.where(pos, v, 1.0))
    _, e = np.frexp(x)
    k = e - MULTIPLIER16_BITS  # x = f 2^e, f in [0.5, 1): floor(log2 x) - 15 = e - 16
    m = np.minimum(np.floor(np.ldexp(x, -k) + 0.5), float((1 << MULTIPLIER16_BITS) - 1))
    return np.where(pos, m, 0.0).astype(np.int64), k.astype(np.int64)


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
