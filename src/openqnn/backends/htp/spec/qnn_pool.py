"""QNN's HTP AveragePool of 8-bit codes (its PoolAvg2d), per arch, established on Qualcomm's HTP simulator
(onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/pool_probe.py`` and held to it by
``tests/fidelity/test_qnn_pool.py`` (docs/htp-fidelity.md).

TFLite's arithmetic (``htp_config.arithmetic: "tflite"``) divides the window's sum by its count with exact
rounding. QNN's, with ``S = sum(q - z_in)`` over the window's taps inside the input (padding is real 0,
i.e. the zero point's code; the codes depend on ``S`` only, not on how it is spread), ``n`` the window's
divisor (taps inside the input, or the whole window with ``count_include_pad``), ``M = s_in / (s_out * n)``
from the float32 scales and ``e = floor(log2 M)``, takes one of two routes:

- **as a depthwise convolution** (arch-dependent): stride 1, a square window of 3, 5 or 7 taps a side,
  no dilation, and one divisor for every window (no padding, or padding counted). QNN runs it as a
  depthwise convolution whose weight is ``1/n`` stored as a power of two, so the accumulator is ``S * 2^7``
  and the multiplier ``M / 2^7``, requantized as QNN's convolutions are (``spec/qnn_requant.py``: v68
  floors the low bits, v73 centres them). 100% of the probes' codes on v68 and v73 (3x3 with padding
  counted, 5x5 likewise, 3x3, 5x5 and 7x7 without padding); any weight code ``2^j``, ``j >= 4``, gives the
  same codes.
- **otherwise** (v68 = v73): a 15-bit multiplier rounded to nearest per divisor, round half up, the zero
  point added after (GlobalAveragePool's form, ``spec/qnn_reduce.py``):
  ``m = round(M * 2^(14 - e))``, ``code = clamp(((S * m + 2^(k-1)) >> k) + z_out)``, ``k = 14 - e``.
  It reproduces 98-100% of the codes per probe (exact rounding: the same within 0.1%): QNN rounds up some
  values a little below a .5 boundary (by up to ``2^-(k2+1)`` of a code), as a second rounding would; for
  2x2 windows, stride 2, a two-stage rounding ``((S * m) >> (k - k2)) >> k2`` (each half up) with
  ``k2 = min(7, 2 - e)`` for ``e <= -2`` reproduces every probe code from M = 0.005 to 0.4.
- **two-stage rounding** (stop 25, v68 = v73): windows that leave padding out of the count (the padding
  present), and 2x2 windows at stride 2, round twice, ``k2`` set by the scale ratio ``r = s_in / s_out``
  (not by ``M``): ``k2 = min(7, 4 - floor(log2 r))`` for ``r < 2``; for ``r >= 2`` one rounding. Two
  roundings half up are one rounding with the constant ``2^(k-1) + 2^(k-k2-1)`` (``pool_mean_round``), i.e.
  a value from ``1/2 - 2^-(k2+1)`` of a code below a boundary on rounds up. It reproduces every code of the
  probes whose divisors are powers of two (2x2 stride 2, 2x2 stride 2 padding excluded) and all but a few
  of divisor 6 or 9 (those lie within 0.004 of the threshold: the mean's multiplier is not known exactly).
  Windows with padding counted (3x3 and 7x7 at stride 2) and stride-1 windows without padding (2x2, 3x2)
  keep one rounding (the two-stage rule moves 0.2-0.4% of their codes away from the simulator's).

How it was found: window probes (each non-overlapping window given a chosen sum ``S``, every sum in the
output's range) for 2x2 and 3x3 windows at random multipliers and zero points, then random codes through
twelve geometries (kernels 2x2, 3x3, 3x2, 5x5, 7x7; strides 1 and 2; padding counted or not), both archs.
The routes differ in which archs agree: only the depthwise route gives different codes on v68 and v73.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec

__all__ = ["ARCHS", "WEIGHT", "conv_route", "conv_spec", "pool_mean_consts", "pool_mean_np", "pool_mean_round",
           "two_stage_route"]

ARCHS = ("v68", "v73")
WEIGHT16 = 1 << 5  # the 16-bit depthwise route's weight code for 1/n (W8A16 rule; 2^4 and 2^6 miss most codes)
WEIGHT = 1 << 7  # the depthwise route's weight code for 1/n (any 2^j, j >= 4, gives the same codes)


def conv_route(k: Sequence[int], s: Sequence[int], d: Sequence[int], padded: bool, count_pad: bool) -> bool:
    """Whether QNN runs this 2-D average pool as a depthwise convolution (module docstring)."""
    return (len(k) == 2 and k[0] == k[1] and k[0] in (3, 5, 7) and tuple(s) == (1, 1) and tuple(d) == (1, 1)
            and (count_pad or not padded))


def pool_mean_consts(real: float) -> tuple[int, int]:
    """(m, k) of the 15-bit route for ``real`` = s_in / (s_out * n): ``m = round(real * 2^(14 - e))``, ``k = 14 - e``."""
    e = math.floor(math.log2(real))
    return math.floor(real * 2.0 ** (14 - e) + 0.5), 14 - e


def two_stage_route(k: Sequence[int], s: Sequence[int], padded: bool, count_pad: bool) -> bool:
    """Whether the 15-bit route rounds twice (module docstring): padding left out of the count, or 2x2 / 2."""
    return (padded and not count_pad) or (tuple(k) == (2, 2) and tuple(s) == (2, 2) and not padded)


def pool_mean_round(ratio: float, k: int, two_stage: bool) -> int:
    """The 15-bit route's rounding constant for shift ``k`` at scale ratio ``ratio`` = s_in / s_out.

    One rounding half up adds ``2^(k-1)``; the two-stage rounding ``((S m + 2^(j-1)) >> j + 2^(k2-1)) >> k2``
    with ``j = k - k2`` is the same as one rounding with ``2^(k-1) + 2^(j-1)`` added
    (``floor(floor(a) / 2^k2) = floor(a / 2^k2)``).
    """
    half = 1 << (k - 1)
    e_r = math.floor(math.log2(ratio))
    if not two_stage or e_r >= 1:
        return half
    k2 = min(7, 4 - e_r)
    return half + (1 << (k - k2 - 1))


def route16(k: Sequence[int], s: Sequence[int], d: Sequence[int], padded: bool, count_pad: bool) -> str | None:
    """The 16-bit (uint16) route of a 2-D average pool where one was measured (docs/htp-fidelity.md, "16-bit pools,
    reductions and element-wise ops"; approximate): "exact" (exact rounding of ``S M``: stride-1 windows without
    padding that are not the depthwise route, 3x3 stride-2 windows with padding left out of the count), "mean"
    (2x2 stride-2 windows, no padding or padding left out: the 15-bit multiplier rounded to nearest, round half
    up), else None (not followed)."""
    k, s, d = tuple(k), tuple(s), tuple(d)
    if len(k) != 2 or d != (1, 1):
        return None
    if (s == (1, 1) and not padded and not conv_route(k, s, d, padded, count_pad)) or (
            k == (3, 3) and s == (2, 2) and padded and not count_pad):
        return "exact"
    if k == (2, 2) and s == (2, 2) and (not padded or not count_pad):
        return "mean"
    return None


def pool16_consts(real: float, route: str) -> tuple[int, int, int]:
    """(m, k, rounding constant) of a 16-bit route for ``real`` = s_in / (s_out * n): "mean" the 15-bit multiplier
    rounded to nearest, "exact" a 31-bit one (exact rounding but for values within 2^-31 of a code of a half; window
    sums of at most 2^22 keep the product in 64 bits); both round half up."""
    e = math.floor(math.log2(real))
    k = (14 if route == "mean" else 30) - e
    return math.floor(real * 2.0 ** k + 0.5), k, 1 << (k - 1)


def pool_mean_np(s: np.ndarray, mult: np.ndarray, k: np.ndarray, z_out: int, qmax: int,
                 rounding: np.ndarray | None = None) -> np.ndarray:
    """Codes of the 15-bit route for window sums ``s`` (int64; ``mult``, ``k`` and ``rounding`` broadcast per
    window; ``rounding`` defaults to ``2^(k-1)``, one rounding half up)."""
    p = np.asarray(s, dtype=np.int64) * mult
    add = (np.int64(1) << (k - 1)) if rounding is None else rounding
    return np.clip(((p + add) >> k) + z_out, 0, qmax)


def conv_spec(arch: str, real: float, z_out: int) -> QnnRequantSpec:
    """The depthwise route's requantization of accumulators ``S * WEIGHT`` (``real`` = s_in / (s_out * n))."""
    return QnnRequantSpec.of(arch, np.array([real / WEIGHT]), z_out)
