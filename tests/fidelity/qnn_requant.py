"""What QNN's HTP (v68, v73) computes when it requantizes a convolution's accumulator, transcribed from the
findings separately from openqnn's spec (src/openqnn/backends/htp/spec/qnn_requant.py), which a test holds to
it: the first piece of the
per-arch spec (issue 14), established with ``tests.fidelity.requant_probe`` on the simulator of
onnxruntime-qnn 2.7.0 (QNN 2.51) and checked against it on random convolutions by ``test_qnn_requant.py``.

TFLite's arithmetic (openqnn's htp today) rounds ``acc * M + zo`` with a 31-bit multiplier. QNN v68 instead,
per output channel with multiplier ``M = s_in * s_w / s_out`` (float32 scales):

1. folds the output zero point into the accumulator: ``a = acc + round(zo / M)``;
2. drops the accumulator's low ``s = max(0, floor(-log2 M) - 3)`` bits (an arithmetic shift: floor);
3. multiplies by an 11-bit multiplier ``m = round(M * 2^(10 - e))``, ``e = floor(log2 M)`` (``m`` in
   [1024, 2048]), and rounds half up: ``code = ((a >> s) * m + 2^(k-1)) >> k`` with ``k = 10 - e - s``;
4. clamps to the output's range.

Step 2 makes v68 biased downward (the issue's "about 5.6% of Conv outputs one code lower"): up to
``(2^s - 1) * M`` of a code is lost before rounding. ``acc`` is the exact integer
``sum((q - zx) * w) + bias`` (how it is split between the MAC array and a bias does not matter: only the
total is shifted).

QNN v73 drops the same ``s`` bits but centres the dropped range (adds ``2^(s-1)`` back), multiplies by a
12-bit multiplier ``m = round(M * 2^(11 - e))``, rounds half up and adds the output zero point after
rounding: ``code = clamp((((a >> s) << s) + 2^(s-1)) * m + 2^(k-1)) >> k) + zo)`` with ``a = acc``,
``k = 11 - e``. Unbiased, hence the issue's "evenly ±1" on v73.

Not yet known: v69 and v75+, 16-bit outputs, the other ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["requant_v68", "requant_v73"]


def _per_channel(acc: np.ndarray, multiplier: np.ndarray | float, bitwidth: int, channel_axis: int,
                 one: Callable[[np.ndarray, float], np.ndarray]) -> np.ndarray:
    """``one(acc of a channel, its multiplier)`` over the channels (one multiplier: the whole), clamped."""
    acc = np.asarray(acc, dtype=np.int64)
    mults = np.atleast_1d(np.asarray(multiplier, dtype=np.float64))
    if mults.size == 1:
        return np.clip(one(acc, float(mults[0])), 0, (1 << bitwidth) - 1)
    out = np.empty(acc.shape, dtype=np.int64)
    moved, dest = np.moveaxis(acc, channel_axis, -1), np.moveaxis(out, channel_axis, -1)
    for c, mult in enumerate(mults):
        dest[..., c] = np.clip(one(moved[..., c], float(mult)), 0, (1 << bitwidth) - 1)
    return out


def requant_v68(acc: np.ndarray, multiplier: np.ndarray | float, zero_point: int, bitwidth: int = 8,
                channel_axis: int = -1) -> np.ndarray:
    """Output codes of QNN v68's requantization of int32 accumulators ``acc`` (integers, any shape) with the
    per-channel (along ``channel_axis``) or per-tensor ``multiplier`` and the output ``zero_point``."""
    def one(a: np.ndarray, mult: float) -> np.ndarray:
        e = math.floor(math.log2(mult))
        s = max(0, math.floor(-math.log2(mult)) - 3)
        m = math.floor(mult * 2.0 ** (10 - e) + 0.5)
        k = 10 - e - s
        q = ((a + round(zero_point / mult)) >> s) * m
        return (q + (1 << (k - 1))) >> k if k > 0 else q << -k

    return _per_channel(acc, multiplier, bitwidth, channel_axis, one)


def requant_v73(acc: np.ndarray, multiplier: np.ndarray | float, zero_point: int, bitwidth: int = 8,
                channel_axis: int = -1) -> np.ndarray:
    """Output codes of QNN v73's requantization (see the module docstring), as :func:`requant_v68`."""
    def one(a: np.ndarray, mult: float) -> np.ndarray:
        e = math.floor(math.log2(mult))
        s = max(0, math.floor(-math.log2(mult)) - 3)
        m = math.floor(mult * 2.0 ** (11 - e) + 0.5)
        k = 11 - e
        q = (((a >> s) << s) + ((1 << (s - 1)) if s > 0 else 0)) * m
        return ((q + (1 << (k - 1))) >> k if k > 0 else q << -k) + zero_point

    return _per_channel(acc, multiplier, bitwidth, channel_axis, one)
