"""QNN's HTP ReduceMean and ReduceSum of 8-bit codes, v68 and v73 alike, established on Qualcomm's HTP
simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/reduce_probe.py`` and held to it by
``tests/fidelity/test_qnn_reduce.py`` (docs/htp-fidelity.md).

TFLite's arithmetic (``htp_config.arithmetic: "tflite"``) folds ``1 / n`` into a 31-bit multiplier
(``QuantizedMeanOrSum``). QNN's, with ``S = sum(q - z_in)`` over the reduced elements (exact),
``M = s_in / (s_out * n)`` (ReduceSum: ``n = 1``) from the float32 scales and ``e = floor(log2 M)``:

    m    = floor(M * 2^(14 - e))                 a 15-bit multiplier in [2^14, 2^15), rounded down
    code = clamp(((S * m + 2^(k-1)) >> k) + z_out),   k = 14 - e; round half up, zero point after

How it was found: the probe gives each output channel a chosen sum ``S`` (every sum in the output's
range, spread evenly over the elements) and reads at which ``S`` each code begins. The codes depend on
``S`` only (not on how it is spread), identically on v68 and v73; fitting ``floor(S * a + c + 0.5)``
per multiplier puts ``a`` 0 to 5e-5 below ``M`` (a 15-bit multiplier rounded down: the best of 10 to 31
bits, rounded, floored or ceiled), and exact ties (``S * M = k + 0.5`` with few-bit scales) round up.
Over 30 multipliers below 0.5 (n = 5 to 289, random zero points) this reproduces 99.93% of the codes
(exact rounding: 99.76%); the rest sit within 0.002 of a .5 boundary, one code apart. Open: those, and
multipliers above about 0.6 (an output grid finer than the input's mean), where QNN's codes are offset
by up to 0.7 of a code from any ``floor(S * a + 0.5)``.

A ReduceMean over axes 1 and 2 of a 4-D tensor (how openqnn's export writes a mean over the pixels of its
channels-last activations, e.g. MobileNetV2's global pool; QNN takes axis 1 for the channels) rounds the
multiplier to nearest too (``nearest``): ``m = round(M * 2^(14 - e))``, the rest as above. Found on
MobileNetV2 (64x64: a [1, 2, 2, 1280] mean, 5 of 2,560 codes one above the floored multiplier's, all
reproduced) and established with ``python -m tests.fidelity.reduce_probe --nhwc`` (32 random multipliers,
n = 5 to 100, v68 and v73: 100% of the codes; the floored multiplier 99.4% on MobileNetV2's).

GlobalAveragePool written as QNN's own PoolAvg2d (not openqnn's export, which writes a ReduceMean) rounds
the multiplier to nearest instead (``m = round(M * 2^(14 - e))``: 100% of 26,000 probe codes on v68 and
v73 for inputs up to about 2.5 MB; larger ones take another path, close to exact rounding).

16-bit codes in and out (uint16; v68 = v73; docs/htp-fidelity.md, "16-bit pools, reductions and element-wise
ops"): the sum is exact, the multiplier 15 bits, the zero point added after, in two forms.

- A ReduceMean over axes 1 and 2 of a 4-D tensor (openqnn's GlobalAveragePool, unless it reads a Transpose of
  a graph input) and QNN's PoolAvg2d: the multiplier rounded to nearest, and the constant added before the
  shift ``2^(k-1)`` (round half up) where ``e + bitlen(n) >= -2``, else ``2^k`` (``floor(S m / 2^k) + 1``);
  ``bitlen(n)`` = ``n.bit_length()``. Probed for ``e`` from -16 to 0. Inputs over 3 MiB (uint16 bytes with the
  channels padded to a multiple of 32; measured between 3,010,560 and 3,211,264 bytes) take another path:
  exact rounding of ``S M`` on every probe code (here a 24-bit multiplier, within 0.004 of a code of exact).
- Every other ReduceMean and every ReduceSum: the constant ``2^k`` always, and the multiplier rounded to
  nearest from ``M (1 - 1e-5)`` (measured: each probe's multiplier is that rounding for a relative shrink in
  [9.8e-6, 1.055e-5); why is not known). Probed for ``M < 0.5``; above, another form (not followed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ARCHS", "QnnMeanSpec", "mean_spec_for"]

ARCHS = ("v68", "v73")
# 16-bit ReduceSum / ReduceMean (not the pool): the multiplier is QNN's rounding of M shrunk by this, relative
SHRINK16 = 1e-5
LARGE16 = 3 << 20  # a 16-bit pool's input size (bytes, channels padded to 32) above which QNN rounds nearly exactly


@dataclass(frozen=True)
class QnnMeanSpec:
    """The integers of one reduction's requantization: ``code = clamp(((S * mult + half) >> k) + z_out)``."""

    mult: int
    k: int
    z_out: int
    qmax: int
    one: bool = False  # the constant added before the shift is 2^k (16-bit forms), not 2^(k-1)

    @staticmethod
    def of(real: float, z_out: int, bitwidth: int = 8, nearest: bool = False) -> QnnMeanSpec:
        """``nearest``: the multiplier rounded to nearest (a ReduceMean over axes 1 and 2 of a 4-D tensor),
        else rounded down."""
        e = math.floor(math.log2(real))
        m = real * 2.0 ** (14 - e)
        return QnnMeanSpec(math.floor(m + 0.5) if nearest else math.floor(m), 14 - e, int(z_out), (1 << bitwidth) - 1)

    @staticmethod
    def of16(real: float, z_out: int, count: int, pool: bool, large: bool = False) -> QnnMeanSpec:
        """The 16-bit forms: ``pool`` for a ReduceMean over axes 1 and 2 of a 4-D tensor (QNN's PoolAvg2d),
        else a ReduceSum / ReduceMean (``count`` reduced elements: the pool's rounding depends on it); ``large``:
        a pool's input over 3 MiB (close to exact rounding)."""
        e = math.floor(math.log2(real))
        if pool and large:
            return QnnMeanSpec(math.floor(real * 2.0 ** (23 - e) + 0.5), 23 - e, int(z_out), (1 << 16) - 1)
        m = real * 2.0 ** (14 - e) * (1.0 if pool else 1.0 - SHRINK16)
        one = not pool or e + int(count).bit_length() <= -3
        return QnnMeanSpec(math.floor(m + 0.5), 14 - e, int(z_out), (1 << 16) - 1, one)

    @property
    def rnd(self) -> int:
        """The constant added to the product before the shift."""
        return 1 << (self.k if self.one else self.k - 1)

    def apply_np(self, s: np.ndarray) -> np.ndarray:
        """Codes of exact int64 sums ``s``: the reference."""
        p = np.asarray(s, dtype=np.int64) * self.mult
        y = (p + self.rnd) >> self.k if self.k > 0 else p << -self.k
        return np.clip(y + self.z_out, 0, self.qmax)

    def apply_t(self, s: torch.Tensor) -> torch.Tensor:
        """The same on a tensor of integer sums, as int64."""
        p = s.to(torch.int64) * self.mult
        y = torch.bitwise_right_shift(p + self.rnd, self.k) if self.k > 0 else torch.bitwise_left_shift(
            p, -self.k)
        return y.add_(self.z_out).clamp_(0, self.qmax)


def mean_spec_for(arch: str, arithmetic: str, real: float, z_out: int, in_bits: int, out_bits: int,
                  nearest: bool = False, count: int = 1, signed: bool = False,
                  padded_bytes: int = 0) -> QnnMeanSpec | None:
    """QNN's ReduceMean / ReduceSum requantization where it is established (``arithmetic == "qnn"``, v68 or
    v73, unsigned 8-bit or 16-bit codes in and out; ``real`` = s_in / (s_out * n)), else None (TFLite's
    arithmetic applies). ``nearest``: a ReduceMean over axes 1 and 2 of a 4-D tensor (its multiplier rounded
    to nearest; with 16-bit codes QNN's PoolAvg2d form); ``count``: the number of reduced elements;
    ``padded_bytes``: the input's size with its channels padded to a multiple of 32 (16-bit pools switch path
    above 3 MiB)."""
    if arithmetic != "qnn" or arch not in ARCHS or not real > 0 or in_bits != out_bits:
        return None
    if in_bits == 8:
        return QnnMeanSpec.of(real, z_out, out_bits, nearest)
    if in_bits == 16 and not signed and real < (2.0 if nearest else 0.5):  # the probed multipliers
        return QnnMeanSpec.of16(real, z_out, count, nearest, padded_bytes > LARGE16)
    return None
