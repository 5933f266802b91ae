"""QNN's HTP Softmax of 8-bit codes, v68 and v73 alike, established on Qualcomm's HTP simulator
(onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/softmax_probe.py`` and held to it by
``tests/fidelity/test_qnn_softmax.py`` (docs/htp-fidelity.md).

TFLite's arithmetic (``htp_config.arithmetic: "tflite"``) tabulates ``exp(-beta * s_in * k)`` for the
differences ``k = max(q) - q`` from the row's maximum. QNN's, for rows of ``n >= 17`` elements and the
fixed output encoding of probabilities (scale 1/256, zero point 0), computes the exponential base 2 with
the step ``C = s_in * log2(e)`` (float32 scale) *truncated to 8 significant bits*:

    C'   = floor(C * 2^(8 - b)) * 2^(b - 8),      b = floor(log2 C) + 1    (C' in [2^(b-1), 2^b))
    E[k] = 2^(-k * C')                            per difference k = max(q) - q, in [0, 255]
    code = clamp(round(256 * E[k] / sum(E)))      the sum and the division precise

so every element's exponent is scaled by ``C' / C`` (0.9952 at s_in = 0.05 and 0.1, 0.9973 at 0.3):
elements far below the row's maximum come out up to a few percent too large.

How it was found: rows of two levels (the maximum and one element ``k`` below it, the rest far below) read
at output scales 2^-9 to 2^-16 give ``E[k]`` to 0.1%: ``-log2 E[k] / k`` is one constant per input scale,
the same at s_in = 0.05 and 0.1 (a binary float's truncation), 147/2048 against 0.0721348 at 0.05 and
221/512 against 0.4328085 at 0.3. On random attention-like rows (n = 17 to 1000, s_in = 0.01 to 1.3,
with and without a masked tail at code 0; 432k codes, v68 = v73) this reproduces 99.98% of the codes
(exact rounding 95-99.7% for n below about 100); the rest lie within 0.005 of a .5 boundary, or are a
large maximum's probability (above 0.8) one code higher (the division's precision): open.

Rows of two elements: ``pair_table``. Not covered (TFLite's arithmetic stays): rows of 3 to 16 elements,
which QNN computes another way (exact rounding reproduces 99.1% of their codes, this rule 85-95%; open: the
sum's reciprocal behaves like a polynomial per quarter of its mantissa, gain within +-5.1e-4, plus some fine
rounding; ``tests/fidelity/softmax_probe.py --short`` and
docs/htp-fidelity.md), other output encodings, beta != 1, an axis other than the last, 16-bit codes.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ARCHS", "MIN_ROW", "exp_step", "exp_table", "pair_table", "pair_table_for", "softmax_table_for"]

ARCHS = ("v68", "v73")
MIN_ROW = 17  # rows shorter than this take QNN's other route (module docstring)
OUT_SCALE = 1.0 / 256
FRACTION_BITS = 30  # of the table's entries (E[0] = 2^30)


def exp_step(s_in: float, beta: float = 1.0) -> float:
    """``C' = beta * s_in * log2(e)`` truncated to 8 significant bits: the exponent (base 2) per code of
    difference."""
    c = float(beta) * float(np.float32(s_in)) * math.log2(math.e)
    mant, exp = math.frexp(c)  # c = mant * 2^exp, mant in [0.5, 1)
    return math.floor(mant * 256.0) * 2.0 ** (exp - 8)


def exp_table(s_in: float, bitwidth: int = 8) -> np.ndarray:
    """``E[k] = round(2^(-k C') * 2^30)`` for k in [0, 2^bitwidth): the row's exponentials in Q30."""
    ks = np.arange(1 << bitwidth, dtype=np.float64)
    return np.asarray(np.round(np.exp2(-ks * exp_step(s_in)) * 2.0**FRACTION_BITS), dtype=np.int64)


def softmax_table_for(arch: str, arithmetic: str, n: int, s_in: float, s_out: float, z_out: int, in_bits: int,
                      out_bits: int, beta: float, last_axis: bool) -> np.ndarray | None:
    """QNN's exponential table where its rule is established (``arithmetic == "qnn"``, v68 or v73, 8-bit codes
    in and out, the output at scale 1/256 and zero point 0, beta 1, the last axis, rows of at least 17
    elements), else None (TFLite's arithmetic applies). The codes are then
    ``clamp(round_div(E[k] << 8, sum(E)))``, as TFLite's power-of-two output."""
    if (arithmetic != "qnn" or arch not in ARCHS or in_bits != 8 or out_bits != 8 or n < MIN_ROW or beta != 1.0
            or not last_axis or float(np.float32(s_out)) != OUT_SCALE or z_out != 0 or not s_in > 0):
        return None
    return exp_table(s_in, in_bits)


def pair_table(s_in: float) -> np.ndarray:
    """Rows of two elements: ``P[k + 255] = floor(255 * sigmoid(k * s_in) + 1/2)`` for ``k = q1 - q0`` in
    -255..255 (float64 of the float32 scale); the second element's code is ``P[k + 255]``, the first's
    ``255 - P[k + 255]`` (the two always sum to 255; a tie gives 127 and 128)."""
    ks = np.arange(-255, 256, dtype=np.float64)
    return np.asarray(np.floor(255.0 / (1.0 + np.exp(-ks * float(np.float32(s_in)))) + 0.5), dtype=np.int64)


def pair_table_for(arch: str, arithmetic: str, n: int, s_in: float, s_out: float, z_out: int, in_bits: int,
                   out_bits: int, beta: float, last_axis: bool) -> np.ndarray | None:
    """QNN's rows of two elements (``arithmetic == "qnn"``, v68 or v73, 8-bit codes, output 1/256 with zero
    point 0, beta 1, the last axis), else None. Found with ``tests/fidelity/softmax_probe.py``'s
    ``run_codes`` on pairs of random codes (input scales 0.01 to 1.3, ties included): 100% of 1,536 rows, where
    exact rounding (of ``256 p``) gives 50%."""
    if (arithmetic != "qnn" or arch not in ARCHS or in_bits != 8 or out_bits != 8 or n != 2 or beta != 1.0
            or not last_axis or float(np.float32(s_out)) != OUT_SCALE or z_out != 0 or not s_in > 0):
        return None
    return pair_table(s_in)
