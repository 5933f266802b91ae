"""QNN's HTP convolution with 16-bit activations and int8 weights (W8A16), v73 and v68: how the accumulator is
formed and requantized to 16-bit output codes. Established on Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0,
QNN 2.51) with ``tests/fidelity/conv16_probe.py`` (1x1 convolutions, uint16 input codes, docs/htp-fidelity.md,
"16-bit activations" and "W8A16 convolutions wired"); wired into the htp backend's convolutions and
FullyConnected as :class:`Conv16Spec` (requant.py's ``QnnConv16Requant``).

The HTP multiplies bytes: each uint16 input code ``x = 256 * xh + xl`` is split, and the low bytes' products are
brought to the high bytes' scale by a floor shift, *before* the bias and the zero point, so the output is not a
function of the exact accumulator ``sum(w * (x - zx)) + b`` alone. v73 (:func:`conv16_v73`)::

    a    = sum(w * xh) + floor(sum(w * xl) / 256)        the low bytes' sum floored to units of 256
           + trunc(qb / 256)                             the bias (qnn_bias's v73 conversion), truncated
           - floor((zx * sum(w) + 128) / 256)             the input zero point's share, rounded half up
    m    = round(M * 256 * 2^k),  k = 23 - floor(log2(M * 256))   a 24-bit multiplier
    y    = (a * m + 2^(k-8)) >> (k - 7)                  first rounded to 7 fractional bits
    code = clamp(((y + 64) >> 7) + zo, 0, 65535)         then to an integer; zero point added after

v68 (:func:`conv16_v68`): the same ``a`` but with ``floor(qbz / 256)``, ``qbz`` the bias with the output zero
point's share as v68 forms it for 8-bit codes (``fl(bias + fl(zo / M_c))``, qnn_bias's v68 form) but with the
1/2 added in float32 too, ``qbz = floor(fl(fl(bias + share) + 1/2))`` (half to even: a sum in [2^23, 2^24), where
float32 steps are 1, rounds up where it is odd, so one of ``256 j - 1`` counts as ``256 j``), then v68's 11-bit
multiplier of ``M * 256`` (``k = 10 - floor(log2(M * 256))``) and one rounding half up, no zero point after (no
low bits dropped, unlike v68's 8-bit form at small ``M``).

Evidence, v73 (1x1 convolutions of two uint16 input channels, random int8 weights, random biases to 3e5 of both
signs, input zero point 12345, output zero point 700, 8 channels x 8192 positions per multiplier): at ``M`` =
0.3, 0.07, 0.011, 4e-4, 3e-5: 100% of the codes; at ``M = 0.0023``: 99.968%. The accumulator's form (which
terms are floored, truncated or rounded, 125 combinations tried) was found at ``M = 4e-4`` on two such sets:
only this one holds both (100%); flooring the whole accumulator once (``(acc + qb) >> 8``) gives 96-97%, exact
rounding of ``acc * M`` (TFLite's arithmetic) 64-94% (up to ``255 * M`` codes low). The 7-bit intermediate
rounding shows at small ``M`` (a single rounding with any multiplier precision: 99.7%). Ruled out: float32
products (``fl(fl(a) * fl(M * 256))``, 99.5-99.8%), a 22-bit multiplier (one fit at one ``M`` only).

Evidence, v68 (the same kind of probe, inputs within the range that keeps outputs unclipped, output zero points
0..40000, input zero points 300..65000, per-tensor and per-channel weight scales): a consecutive-code probe first
(weight 1: the code steps every 256 input codes, as on v73; the slope is the 11-bit multiplier's, 1229 / 16 for
``M * 256 = 76.8``, and the level at ``xh = zx >> 8`` 43 codes below v73's: the zero point's share times that
multiplier); then of about 140 accumulator forms (the bias, zero point share and output zero point share
floored, rounded, truncated, apart or joined), each with an 11- or 12-bit multiplier and low bits dropped or not,
only this one holds all of 9 random sets (M 3e-5..0.3, 589,824 codes, 100%); a fresh validation of 5 sets (M 1e-5..0.07, three per-channel):
327,669 of 327,680, the 11 others in one channel at ``M = 4.4e-6`` whose accumulator exceeds 2^24, each just above
a half and rounded down (float32 products of ``a`` or ``a * m`` do worse: 99.96%).

The float32 1/2 (stop 27; docs/htp-fidelity.md, "The W8A16 bias in float32 (stop 27)"): tie probes
(``conv16_probe.bias_ties`` / ``bias_offsets``: biases whose float32 sum lands on ``256 j - 6 .. 256 j + 5``,
weights 1, so each channel's units of 256 show exactly): every sum ``256 j - 1`` in [2^23, 2^24) counts as
``256 j`` (13 of 13 channels in three probes: the zero point's share or the bias large, per-tensor or
per-channel), every other sum as the float64 half gives (287 of 287 over five probes, [2^22, 2^25)); below 2^23,
integer sums ``256 j - 1`` (a bias scale half the accumulator's) keep unit ``j - 1`` (120 of 120 channels: so not
"odd sums up", but the float32 half to even); the fidelity case ``conv/5to64_k3_d2_p2/a16_pt`` (one channel, sum
10,286,591) 98.65% -> 100%. The 8-bit form is not changed (its sums stay below 2^23 in every probe so far).

Open: v73's 0.03% at ``M = 0.0023`` (the codes sit within 1e-3 of a rounding edge; a 22-bit ceiled multiplier
fits that set better, 99.974%, and no other); v68's 11 codes above; negative v68 sums (not probed: floor assumed, as for 8 bits).
Not this rule: a strided depthwise convolution (24-53% of the fidelity cases' codes), which takes its 8-bit form
with 16-bit codes too (spec/qnn_requant.py's "dw_strided": the exact accumulator, no byte split).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec, _v68_bias, qnn_bias

__all__ = ["ARCHS16", "Conv16Spec", "conv16_spec_for", "conv16_v68", "conv16_v73"]

ARCHS16 = ("v68", "v73")
"""The archs whose W8A16 convolution is established."""


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


def conv16_v68(xh_sum: np.ndarray, xl_sum: np.ndarray, w_sum: np.ndarray, qbz: np.ndarray, zx: int,
               real: np.ndarray) -> np.ndarray:
    """Output codes of a W8A16 convolution on v68 (module docstring), arguments as :func:`conv16_v73`'s but
    ``qbz``: the bias with the output zero point's share as QNN's v68 forms it (``floor(fl(fl(bias + fl(zo / M_c))
    + 1/2))``, :meth:`Conv16Spec.bias`)::

        a    = sum(w * xh) + floor(sum(w * xl) / 256) + floor(qbz / 256) - floor((zx * sum(w) + 128) / 256)
        m    = round(M * 256 * 2^k),  k = 10 - floor(log2(M * 256))   an 11-bit multiplier, as v68's 8-bit one
        code = clamp((a * m + 2^(k-1)) >> k, 0, 65535)               one rounding, the zero point already in a
    """
    w_sum = np.asarray(w_sum, dtype=np.int64)
    a = (np.asarray(xh_sum, dtype=np.int64) + (np.asarray(xl_sum, dtype=np.int64) >> 8)
         + (np.asarray(qbz, dtype=np.int64) >> 8) - ((int(zx) * w_sum + 128) >> 8))
    mult, k = [], []
    for r in np.asarray(real, dtype=np.float64).reshape(-1):
        kr = 10 - math.floor(math.log2(r * 256.0))
        mult.append(math.floor(r * 256.0 * 2.0**kr + 0.5))
        k.append(kr)
    kk = np.asarray(k, dtype=np.int64)
    if not np.all(kk > 0):
        raise ValueError("conv16_v68: multipliers of 2^10 / 256 or more are not covered")
    return np.clip((a * np.asarray(mult, dtype=np.int64) + (np.int64(1) << (kk - 1))) >> kk, 0, 65535)


@dataclass(frozen=True)
class Conv16Spec:
    """The W8A16 rule per arch as the kernels run it: per output channel the multiplier ``mult`` and its shift
    (v73: :func:`conv16_v73`'s 24-bit multiplier, ``shift = k - 7`` to 7 fractional bits, the output zero point
    added after; v68: :func:`conv16_v68`'s 11-bit one, ``shift = k``, the zero point in the bias).

    The kernels give the bytes' sums as plane sums ``th``, ``tl`` with known differences ``dh = sum(w * xh) - th``,
    ``dl = sum(w * xl) - tl`` (the reference and the float convolutions sum the bytes less the zero point's bytes,
    the int8 GEMMs the bytes less 128; padding taps hold the input zero point, so its bytes enter both sums);
    :meth:`offsets` gives the constants ``hoff``, ``loff`` with ``a = th + hoff + floor((tl + loff) / 256)``. The
    differences and the weights' sum may be per channel or per output position and channel (a transposed
    convolution's taps depend on the position's phase).
    """

    mult: np.ndarray
    shift: np.ndarray
    zero_point: int
    arch: str = "v73"

    @staticmethod
    def of(real: np.ndarray, zero_point: int, arch: str = "v73") -> Conv16Spec:
        """From ``M`` per channel (float64 of the float32 scales); ValueError where ``M <= 0`` or ``M * 256`` is
        2^15 (v73) or 2^10 (v68) or more (not covered)."""
        if arch not in ARCHS16:
            raise ValueError(f"conv16: no W8A16 rule for {arch}")
        mult, shift = [], []
        for r in np.asarray(real, dtype=np.float64).reshape(-1):
            t = float(r) * 256.0
            if not 0.0 < t < (2.0**15 if arch == "v73" else 2.0**10):
                raise ValueError(f"conv16: multiplier {float(r)} is not covered")
            if arch == "v73":
                k = 23 - math.floor(math.log2(t))
                mult.append(math.floor(t * 2.0**k + 0.5))
                shift.append(k - 7)
            else:
                k = 10 - math.floor(math.log2(t))
                mult.append(math.floor(t * 2.0**k + 0.5))
                shift.append(k)
        return Conv16Spec(np.asarray(mult, dtype=np.int64), np.asarray(shift, dtype=np.int64), int(zero_point), arch)

    def bias(self, b: np.ndarray, x_scale: float, w_scale: np.ndarray, bias_scale: float | None, real: np.ndarray
             ) -> np.ndarray:
        """The bias ``qb`` the rule takes, from the bias ``b`` on the accumulators' scale (int64 per channel; see
        spec/qnn_requant.py's ``qnn_bias``): v73's conversion; on v68 its float32 sum with the output zero point's
        share ``zo / M_c``, rounded (``qnn_bias``'s v68 form, the share it leaves out added back) with the 1/2
        added in float32 (module docstring)."""
        if self.arch == "v68":
            spec = QnnRequantSpec.of("v68", real, self.zero_point, 16)
            # the 1/2 added in float32 (half_f32): a float32 sum in [2^23, 2^24) one below a multiple of 256 turns
            # to that multiple (tie probes, docs/htp-fidelity.md "The W8A16 bias in float32 (stop 27)")
            return np.asarray(_v68_bias(np.asarray(b, dtype=np.int64).reshape(-1), x_scale, w_scale, bias_scale, spec,
                                        real, half_f32=True) + spec.pre, dtype=np.int64)
        return np.asarray(qnn_bias(self.arch, b, x_scale, w_scale, bias_scale), dtype=np.int64)

    def offsets(self, w_sum: np.ndarray, qb: np.ndarray, zx: int, dh: np.ndarray, dl: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(hoff, loff)`` (class docstring): ``dh`` with the bias in units of 256 (v73 truncated, v68 floored)
        and the zero point's rounded share (``w_sum``: the weights' sum over the output's taps), and ``dl``."""
        w_sum = np.asarray(w_sum, dtype=np.int64)
        qb = np.asarray(qb, dtype=np.int64)
        b256 = qb >> 8 if self.arch == "v68" else np.sign(qb) * (np.abs(qb) >> 8)
        hoff = np.asarray(dh, dtype=np.int64) + b256 - ((int(zx) * w_sum + 128) >> 8)
        return hoff, np.asarray(dl, dtype=np.int64)

    def apply_np(self, th: np.ndarray, tl: np.ndarray, hoff: np.ndarray, loff: np.ndarray) -> np.ndarray:
        """Output codes (int64) of the plane sums ``th``, ``tl`` (channels last; :meth:`offsets`)."""
        a = np.asarray(th, dtype=np.int64) + hoff + ((np.asarray(tl, dtype=np.int64) + loff) >> 8)
        y = (a * self.mult + (np.int64(1) << (self.shift - 1))) >> self.shift
        if self.arch == "v68":
            return np.clip(y, 0, 65535)
        return np.clip(((y + 64) >> 7) + self.zero_point, 0, 65535)

    def apply_t(self, th: torch.Tensor, tl: torch.Tensor, hoff: torch.Tensor, loff: torch.Tensor,
                mult: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """:meth:`apply_np` in PyTorch (int64; ``th``/``tl`` integers of any dtype; the constants as int64
        tensors, ``mult`` and ``shift`` this spec's): codes as int32."""
        a = th.to(torch.int64).add_(hoff)
        a += (tl.to(torch.int64) + loff) >> 8
        a.mul_(mult).add_(torch.bitwise_left_shift(torch.ones_like(shift), shift - 1)).bitwise_right_shift_(shift)
        if self.arch == "v73":
            a.add_(64).bitwise_right_shift_(7).add_(self.zero_point)
        return a.clamp_(0, 65535).to(torch.int32)


def conv16_spec_for(arch: str, arithmetic: str, real: np.ndarray, zero_point: int, in_bits: int, w_bits: int,
                    out_bits: int) -> Conv16Spec | None:
    """The W8A16 convolution's spec where it is established (``arithmetic == "qnn"``, an arch of
    :data:`ARCHS16`, 16-bit input and output codes, 8-bit weights, ``M * 256`` below 2^15), else None."""
    if arithmetic != "qnn" or arch not in ARCHS16 or in_bits != 16 or w_bits != 8 or out_bits != 16:
        return None
    try:
        return Conv16Spec.of(real, zero_point, arch)
    except ValueError:
        return None
