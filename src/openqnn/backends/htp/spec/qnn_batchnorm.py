"""QNN's HTP BatchNorm (``y = x w + b`` per channel, static weight and bias; openqnn exports a standalone
Batchnorm as an ONNX BatchNormalization of mean 0, variance 0 and epsilon 1), v68 and v73, 8- and 16-bit
activations with a uint8 weight and bias. Established on Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0,
QNN 2.51) with ``tests/fidelity/batchnorm_probe.py`` and ``tests/fidelity/unary_probe.py``; held to it by
``tests/fidelity/test_qnn_batchnorm.py`` (docs/htp-fidelity.md, "BatchNorm, 8-bit on v73 and 16-bit (stop 27)").

QNN EP first folds mean and variance into the weight and bias and **re-quantizes both** to fresh uint8 encodings
over their values' range (:func:`requantize_param`). Then, in TFLite's terms, ``acc = (q - z_in) w' + b'`` on the
accumulator's scale ``s_in s_w'`` and a requantization by ``M = s_in s_w' / s_out``. QNN's integer form
(:class:`QnnBatchnormSpec`), where TFLite would round ``acc * M`` once with a 31-bit multiplier:

- ``M = fl(fl(s_in s_w') / s_out)`` (``fl``: float32), ``e = floor(log2 M)``, a 15-bit multiplier
  ``m = round(M 2^(14 - e))`` and the shift ``k = 14 - e`` (the strided depthwise convolution's multiplier);
- the bias on the accumulator's scale, in float32 and rounded half to even:
  ``b = rint(fl(fl(B s_b') * fl(1 / fl(s_in s_w'))))``, ``B`` the bias code less its zero point;
- the output zero point folded in: ``z = floor(fl(fl(z_out / M) + 1/2))`` (the float32 sum: an odd ``z_out / M``
  in [2^23, 2^24) goes up by one);
- ``code = clamp((((q - z_in) w' + b + z) m + R + 2^(k-1)) >> k)`` with ``R = 2^11`` (16-bit codes) or ``2^9``
  (8-bit) where ``k >= 16`` (``M < 1/4``), else 0: as if the product were first rounded off by 12 (10) bits.

v73 with 8-bit codes and two or more channels (:func:`v73_table`) runs its convolution's requantization
(spec/qnn_requant.py) on int8 weights: the re-quantized weight code ``w'`` clamped to [-128, 127] (``w_x``), the
channel's scale grown by the ratio ``r = w' / w_x`` rounded to 12 significant bits (1 where nothing was clamped), so
``M_c = fl(fl(s_in s_w') / s_out) r``; the bias ``trunc(fl(fl(B s_b') / fl(fl(s_in s_w') r)))``; ``acc = (q - z_in)
w_x + b``; ``k = 11 - floor(log2 M_c)``, a 12-bit ``m = round(M_c 2^k)``, ``s = max(0, floor(-log2 M_c) - 3)``;
``code = clamp((((((acc >> s) << s) + 2^(s-1)) m + 2^(k-1)) >> k) + z_out)``, and where ``s = 0`` the centre is still
there, ``2^(k-16)`` of a step: ``code = clamp(((((acc << (16 - k)) + 1) m + 2^15) >> 16) + z_out)``.

Which form runs (:func:`batchnorm_form`): the integer form with 16-bit codes (v68 and v73, any channel count) and
on v68 with 8-bit codes and two or more channels; v73's form with 8-bit codes and two or more channels; one channel
of 8-bit codes is exact rounding of the re-quantized parameters (both archs, :func:`exact_table`). The integer form
holds for ``14 <= k <= 25`` and intermediates below :data:`BOUND`, v73's for ``11 <= k <= 22`` (:data:`K_RANGE_V73`)
and nonzero weights; outside (probed: a shift of 26 gave code 255 for whole 8-bit channels, a 16-bit channel of
shift 28 and intermediates to 2^43.6 saturated) openqnn keeps its other arithmetic (exact rounding for 8-bit codes,
TFLite's for 16-bit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ARCHS", "BOUND", "K_RANGE", "K_RANGE_V73", "QnnBatchnormSpec", "batchnorm_form", "batchnorm_spec_for",
           "exact_table", "requantize_param", "v73_table"]

ARCHS = ("v68", "v73")
K_RANGE = (14, 25)  # the shifts k the integer form was established over (both widths)
K_RANGE_V73 = (11, 22)  # v73's 8-bit form: the shifts k probed
BOUND = 1 << 42  # |((q - z_in) w + t) m| below this (probed to 2^40.8; a 16-bit channel at 2^43.6 saturated)
_F32 = np.float32


def requantize_param(values: np.ndarray) -> tuple[np.ndarray, float, int]:
    """QNN EP's re-quantization of a BatchNorm scale or bias (``batch_norm_op_builder.cc``, ``Postprocess``): the
    dequantized values (float64) get a fresh uint8 encoding over ``[min(v, 0), max(v, 0)]`` (at least 1e-4 wide):
    ``scale = float32((rmax - rmin) / 255)``, zero point ``rint(-rmin / scale)``; codes ``round(v / scale + zp)``
    (half away from zero), clamped. Returns (codes, scale, zero point)."""
    v = np.asarray(values, np.float64).reshape(-1)
    rmin = _F32(min(float(v.min()), 0.0))
    rmax = _F32(max(float(v.max()), 0.0))
    rmax = max(rmax, _F32(rmin + _F32(1e-4)))
    scale = float(_F32((float(rmax) - float(rmin)) / 255.0))
    zp = int(np.rint(_F32(min(255.0, max(0.0, -float(rmin) / scale)))))
    r = v / scale + zp
    codes = np.clip(np.sign(r) * np.floor(np.abs(r) + 0.5), 0, 255).astype(np.int64)
    return codes, scale, zp


@dataclass(frozen=True)
class QnnBatchnormSpec:
    """QNN's integer BatchNorm of one tensor (module docstring): per channel (the last axis) the re-quantized weight
    ``w`` and the offset ``t = b + z`` on the accumulator's scale; one multiplier ``m``, shift ``k`` and rounding
    carry ``carry`` (``R``)."""

    zero_in: int
    weight: np.ndarray  # int64 [C]: w' (the re-quantized weight's code less its zero point)
    offset: np.ndarray  # int64 [C]: b + z
    mult: int
    shift: int
    carry: int
    qmax: int

    def bound(self) -> int:
        """The largest ``|((q - z_in) w + t) m|`` over the input codes (the integer form's widest intermediate)."""
        a = np.array([-self.zero_in, self.qmax - self.zero_in], dtype=np.int64)
        acc = np.abs(a[:, None] * self.weight[None, :] + self.offset[None, :])
        return int(acc.max(initial=0)) * self.mult

    def apply_np(self, q: np.ndarray) -> np.ndarray:
        """Output codes of input codes ``q`` (channels last): the reference."""
        acc = (np.asarray(q, dtype=np.int64) - self.zero_in) * self.weight + self.offset
        y = (acc * self.mult + (self.carry + (1 << (self.shift - 1)))) >> self.shift
        return np.clip(y, 0, self.qmax)

    def apply_t(self, q: torch.Tensor, weight: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """The same on a tensor of codes (``weight`` / ``offset``: this spec's arrays as int64 tensors), int64."""
        acc = (q.to(torch.int64) - self.zero_in).mul_(weight).add_(offset)
        y = torch.bitwise_right_shift(acc.mul_(self.mult).add_(self.carry + (1 << (self.shift - 1))), self.shift)
        return y.clamp_(0, self.qmax)

    def table(self) -> np.ndarray:
        """Every input code's output, int64 ``[C, 2^bits]`` (8-bit codes: a table per channel)."""
        q = np.arange(self.qmax + 1, dtype=np.int64)[:, None]
        return np.ascontiguousarray(self.apply_np(q).T)


def _requantized(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, float]:
    """(w', s_w', B, s_b'): the re-quantized weight and bias as codes less their zero points, and their scales."""
    wc, ws, wz = requantize_param(weight)
    bc, bs, bz = requantize_param(bias)
    return wc - wz, ws, bc - bz, bs


def batchnorm_form(arch: str, arithmetic: str, bits: int, channels: int) -> str | None:
    """Which of QNN's forms a BatchNorm takes: ``"integer"`` (:class:`QnnBatchnormSpec`), ``"v73"`` (:func:`v73_table`:
    v73's 8-bit codes, two or more channels), ``"exact"`` (exact rounding of the re-quantized parameters: one 8-bit
    channel) or None (not QNN's arithmetic, or not probed: other archs and widths)."""
    if arithmetic != "qnn" or arch not in ARCHS or bits not in (8, 16):
        return None
    if bits == 16 or (arch == "v68" and channels > 1):
        return "integer"
    return "v73" if channels > 1 else "exact"


def batchnorm_spec_for(arch: str, arithmetic: str, s_in: float, z_in: int, weight: np.ndarray, bias: np.ndarray,
                       s_out: float, z_out: int, bits: int) -> QnnBatchnormSpec | None:
    """QNN's integer BatchNorm (module docstring) of ``bits``-bit codes, ``weight`` and ``bias`` the C dequantized
    values QNN EP reads (code plus offset, times the float32 scale); None where :func:`batchnorm_form` is not
    ``"integer"`` or the multiplier's shift lies outside :data:`K_RANGE`."""
    w = np.asarray(weight, np.float64).reshape(-1)
    if batchnorm_form(arch, arithmetic, bits, w.size) != "integer" or not s_in > 0 or not s_out > 0:
        return None
    wq, ws, bq, bs = _requantized(w, np.broadcast_to(np.asarray(bias, np.float64).reshape(-1), w.shape))
    acc_scale = _F32(_F32(s_in) * _F32(ws))
    m_real = _F32(acc_scale / _F32(s_out))
    if not (np.isfinite(m_real) and m_real > 0):
        return None
    e = math.floor(math.log2(float(m_real)))
    k = 14 - e
    if not K_RANGE[0] <= k <= K_RANGE[1]:
        return None
    m = math.floor(float(m_real) * 2.0 ** k + 0.5)  # 15 bits, rounded
    # deviation from TFLite: the bias on the accumulator's scale in float32, times the float32 reciprocal, rounded
    # half to even (a division or float64 fit fewer probes: docs/htp-fidelity.md, stop 27)
    b32 = (bq.astype(_F32) * _F32(bs)).astype(_F32) * (_F32(1) / acc_scale)
    b = np.rint(b32.astype(_F32).astype(np.float64)).astype(np.int64)
    # deviation: the output zero point folded in as floor(fl(z_out / M + 1/2)), the sum rounded to float32 first
    z = math.floor(float(_F32(_F32(_F32(z_out) / m_real) + _F32(0.5))))
    # deviation: R, a carry of 2^11 (16-bit) / 2^9 (8-bit) product units where k >= 16, found from the codes' bounds
    carry = ((1 << 11) if bits == 16 else (1 << 9)) if k >= 16 else 0
    spec = QnnBatchnormSpec(int(z_in), wq.astype(np.int64), b + z, int(m), int(k), carry, (1 << bits) - 1)
    return spec if spec.bound() < BOUND else None


def _significant(x: np.ndarray, bits: int) -> np.ndarray:
    """``x`` (positive) rounded half up to ``bits`` significant bits."""
    m, e = np.frexp(np.asarray(x, np.float64))
    return np.ldexp(np.floor(m * 2.0**bits + 0.5) / 2.0**bits, e)


def v73_table(s_in: float, z_in: int, weight: np.ndarray, bias: np.ndarray, s_out: float, z_out: int
              ) -> np.ndarray | None:
    """v73's BatchNorm of 8-bit codes, two or more channels (module docstring): every input code, int64 ``[C, 256]``;
    None outside the probed range (a zero weight, a shift ``k`` outside :data:`K_RANGE_V73`)."""
    w = np.asarray(weight, np.float64).reshape(-1)
    wq, ws, bq, bs = _requantized(w, np.broadcast_to(np.asarray(bias, np.float64).reshape(-1), w.shape))
    # deviation: the weight as int8, per channel; a code beyond [-128, 127] is clamped and its channel's scale grows
    # by the ratio, rounded to 12 significant bits (the 8-bit probes' weights: every channel)
    wx = np.clip(wq, -128, 127)
    if not np.all(wx != 0):
        return None
    ratio = np.where(wx != wq, _significant(wq / np.where(wx == 0, 1, wx), 12), 1.0).astype(_F32)
    acc_scale = (_F32(_F32(s_in) * _F32(ws)) * ratio).astype(_F32)
    mult_real = ((_F32(_F32(s_in) * _F32(ws)) / _F32(s_out)) * ratio).astype(_F32).astype(np.float64)
    # deviation: the bias on the accumulator's scale in float32, truncated (qnn_bias's v73 per-tensor conversion)
    b = np.trunc(((bq.astype(_F32) * _F32(bs)).astype(_F32) / acc_scale).astype(_F32).astype(np.float64))
    a = np.arange(256, dtype=np.int64) - int(z_in)
    rows = []
    for c in range(wq.size):
        e = math.floor(math.log2(mult_real[c]))
        k = 11 - e
        if not K_RANGE_V73[0] <= k <= K_RANGE_V73[1]:
            return None
        m = math.floor(mult_real[c] * 2.0**k + 0.5)  # 12 bits
        s = max(0, math.floor(-math.log2(mult_real[c])) - 3)
        acc = a * int(wx[c]) + int(b[c])
        if s > 0:  # v73's convolution form: s low bits dropped, the range centred, 12-bit multiplier, zero point after
            y = ((((acc >> s) << s) + (1 << (s - 1))) * m + (1 << (k - 1))) >> k
        else:  # deviation: the centre is 2^(k-16) of an accumulator step here too (a half of the 16-bit product)
            y = (((acc << (16 - k)) + 1) * m + (1 << 15)) >> 16
        rows.append(np.clip(y + int(z_out), 0, 255))
    return np.stack(rows).astype(np.int64)


def exact_table(s_in: float, z_in: int, weight: np.ndarray, bias: np.ndarray, s_out: float, z_out: int
                ) -> np.ndarray:
    """Exact rounding (half away from zero) of ``(q - z_in) s_in w' + b'`` with the re-quantized parameters, every
    8-bit input code: int64 ``[C, 256]``."""
    w = np.asarray(weight, np.float64).reshape(-1)
    wq, ws, bq, bs = _requantized(w, np.broadcast_to(np.asarray(bias, np.float64).reshape(-1), w.shape))
    a = np.arange(256, dtype=np.int64)[None, :] - z_in
    v = (a * float(_F32(s_in)) * (wq * ws)[:, None] + (bq * bs)[:, None]) / float(_F32(s_out))
    v = np.nan_to_num(v, nan=0.0, posinf=1e12, neginf=-1e12)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + z_out, 0, 255).astype(np.int64)
