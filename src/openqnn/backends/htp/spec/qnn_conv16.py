"""QNN's HTP convolution with 16-bit activations and int8 weights (W8A16), v73: how the accumulator is formed
and requantized to 16-bit output codes. Established on Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN
2.51) with ``tests/fidelity/conv16_probe.py`` (1x1 convolutions, uint16 input codes, docs/htp-fidelity.md,
"16-bit activations"); not yet wired into the htp backend (see below).

The HTP multiplies bytes: each uint16 input code ``x = 256 * xh + xl`` is split, and the low bytes' products are
brought to the high bytes' scale by a floor shift, *before* the bias and the zero point, so the output is not a
function of the exact accumulator ``sum(w * (x - zx)) + b`` alone::

    a    = sum(w * xh) + floor(sum(w * xl) / 256)        the low bytes' sum floored to units of 256
           + trunc(qb / 256)                             the bias (qnn_bias's v73 conversion), truncated
           - floor((zx * sum(w) + 128) / 256)             the input zero point's share, rounded half up
    m    = round(M * 256 * 2^k),  k = 23 - floor(log2(M * 256))   a 24-bit multiplier
    y    = (a * m + 2^(k-8)) >> (k - 7)                  first rounded to 7 fractional bits
    code = clamp(((y + 64) >> 7) + zo, 0, 65535)         then to an integer; zero point added after

Evidence (v73, 1x1 convolutions of two uint16 input channels, random int8 weights, random biases to 3e5 of both
signs, input zero point 12345, output zero point 700, 8 channels x 8192 positions per multiplier): at ``M`` =
0.3, 0.07, 0.011, 4e-4, 3e-5: 100% of the codes; at ``M = 0.0023``: 99.968%. The accumulator's form (which
terms are floored, truncated or rounded, 125 combinations tried) was found at ``M = 4e-4`` on two such sets:
only this one holds both (100%); flooring the whole accumulator once (``(acc + qb) >> 8``) gives 96-97%, exact
rounding of ``acc * M`` (TFLite's arithmetic, openqnn's htp today) 64-94% (up to ``255 * M`` codes low). The
7-bit intermediate rounding shows at small ``M`` (a single rounding with any multiplier precision: 99.7%).
Ruled out: float32 products (``fl(fl(a) * fl(M * 256))``, 99.5-99.8%), a 22-bit multiplier (one fit at one
``M`` only).

Open: the 0.03% at ``M = 0.0023`` (the codes sit within 1e-3 of a rounding edge; a 22-bit ceiled multiplier
fits that set better, 99.974%, and no other), v68 (not probed), and FullyConnected (same kernel expected).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["conv16_v73"]


def conv16_v73(xh_sum: np.ndarray, xl_sum: np.ndarray, w_sum: np.ndarray, qb: np.ndarray, zx: int,
               real: np.ndarray, zo: int) -> np.ndarray:
    """Output codes of a W8A16 convolution on v73 (module docstring), channels on the last axis.

    ``xh_sum``/``xl_sum``: ``sum(w * (x >> 8))`` and ``sum(w * (x & 255))`` per output (int64, the uint16 input
    codes' high and low bytes); ``w_sum``: ``sum(w)`` per channel; ``qb``: the bias per channel as QNN converts it
    (``qnn_bias("v73", ...)``); ``zx``: the input zero point; ``real``: ``M = s_x * s_w / s_o`` per channel;
    ``zo``: the output zero point."""
    w_sum = np.asarray(w_sum, dtype=np.int64)
    qb = np.asarray(qb, dtype=np.int64)
    a = (np.asarray(xh_sum, dtype=np.int64) + (np.asarray(xl_sum, dtype=np.int64) >> 8)
         + np.sign(qb) * (np.abs(qb) >> 8) - ((int(zx) * w_sum + 128) >> 8))
    mult, k = [], []
    for r in np.asarray(real, dtype=np.float64).reshape(-1):
        t = r * 256.0
        kr = 23 - math.floor(math.log2(t))
        mult.append(math.floor(t * 2.0**kr + 0.5))
        k.append(kr)
    m = np.asarray(mult, dtype=np.int64)
    kk = np.asarray(k, dtype=np.int64) - 7  # the shift to 7 fractional bits
    if not np.all(kk > 0):
        raise ValueError("conv16_v73: multipliers of 2^15 / 256 or more are not covered")
    y = (a * m + (np.int64(1) << (kk - 1))) >> kk  # a * m < 2^63 while |a| < 2^38 (m < 2^24)
    return np.clip(((y + 64) >> 7) + int(zo), 0, 65535)
