"""QNN's HTP MatMul of two 16-bit activations (uint16 codes in and out), v68 and v73, established on Qualcomm's
HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/matmul16_probe.py`` and held to it by
``tests/fidelity/test_qnn_matmul.py`` (docs/htp-fidelity.md, "16-bit MatMul, Softmax and LayerNorm").

QNN's HTP does not take a MatMul of two uint16 activations: ONNX Runtime's QNN execution provider inserts a QNN
``Convert`` of in[1] to **uint8** (its verbose log shows ``<in1>_convert``, ``QNN_DATATYPE_UFIXED_POINT_8``) with
the encoding of in[1]'s whole uint16 range (:func:`converted_encoding`: ``s8 = (s_b * 65535) / 255``,
``z8 = round(z_b * 255 / 65535)`` as ONNX Runtime's ``GetQuantParams`` computes them). So in[1] reaches the
MatMul with 256 levels, and every step of it is about ``|a - z_a| * M`` output codes: hence TFLite's exact
arithmetic being up to 247 codes from the simulator. Then:

1. **The conversion** (:func:`convert_codes`, v68 = v73): the uint16 codes are scaled to 15 bits by 255/512
   rounded up, and the difference to the zero point's is rounded to the 8-bit grid half up::

       t(x) = (255 x + 511) >> 9
       b8   = clamp((t(q_b) - t(z_b) + 128 z8 + 64) >> 7, 0, 255)

   (so the slope is ``255 / 65536``, not ``1 / 257``, and the rounding constant moves with the parity of
   ``256 z8 - ceil(255 z_b / 256)``; exact rounding of ``(q_b - z_b) * s_b / s8 + z8`` differs on 0.4-0.8% of
   the codes).
2. **The column factor**: ``v = b8 - z8`` is used as int8 weights exactly as in the 8-bit MatMul
   (:mod:`.qnn_matmul`): a column with a value outside [-128, 127] is requantized at run time with its factor
   ``F`` (11 fractional bits) and the 16-bit reciprocal.
3. **The accumulator** is formed on bytes, as the W8A16 convolution's (:mod:`.qnn_conv16`): with the uint16
   codes of in[0] split ``a = 256 a_h + a_l``, in units of 256::

       A = sum_k w a_h + floor(sum_k w a_l / 256) - floor((z_a sum_k w + 128) / 256)

4. **The requantization** per column at ``r = 256 M F / 2^11`` (``M = s_a s8 / s_out``), per arch:

   - v73 (the W8A16 convolution's): ``m = round(r 2^k)``, ``k = 23 - floor(log2 r)`` (24 bits); the product
     rounded to 7 fractional bits, then half up, the zero point added after:
     ``code = ((((A m + 2^(k-8)) >> (k - 7)) + 64) >> 7) + z_o``;
   - v68 (its 8-bit convolutions' form, nothing dropped): the zero point folded in first as
     ``pre = floor(fl(z_o / r))`` with ``r = fl(256 fl(M) F / 2^11)`` (float32, ``fl(M)`` the float32 quotient
     of the float32 scales), an 11-bit multiplier ``m = round(r 2^(10 - e))``, ``e = floor(log2 r)``:
     ``code = ((A + pre) m + 2^(k-1)) >> k``, ``k = 10 - e``;

   clamped to [0, 65535].

Evidence: the conversion from 19 sweeps of all 65,536 uint16 codes of in[1] (zero points 0 to 65535, scales
1e-5 to 0.5; read through K = 1 products at ``a - z_a = +-30000``): 985,856 of 985,856 codes, v68 = v73, and the
conversion does not depend on the scale. The requantization from random products (K = 1 to 128, zero points
0 to 65535 on either side, multipliers 7e-6 to 6e-3; three sets): v68 82,922 of 82,944 codes (two columns whose
folded zero point ``pre`` QNN takes one higher: a float32 order not found); v73 99.90-99.93% (the rest one code off,
values within 0.007 below a .5, rounded the other way: the W8A16 convolution's open rounding); 12 sweeps of all
65,536 codes of in[0] against 16 weights: v68 100%, v73 99.82-100%.

Not covered (TFLite's arithmetic stays): other archs, 8-bit outputs or mixed widths, a static operand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from openqnn.backends.htp.spec.qnn_matmul import F_MAX, F_ONE, column_factor
from openqnn.backends.htp.spec.qnn_requant import ARCHS

__all__ = ["QnnMatMul16Spec", "convert_codes", "converted_encoding", "matmul16_spec_for", "t15"]

U16_MAX = 65535


def converted_encoding(scale: float, zero_point: int) -> tuple[float, int]:
    """(``s8``, ``z8``): the uint8 encoding ONNX Runtime's QNN EP gives its Convert of a uint16 tensor of
    encoding (``scale``, ``zero_point``): the range of every uint16 code (float32, including 0) over 255 levels,
    the zero point rounded half to even from float32 (``GetQuantParams``)."""
    s = float(np.float32(scale))
    rmin = min(float(np.float32(s * (0 - zero_point))), 0.0)
    rmax = max(float(np.float32(s * (U16_MAX - zero_point))), 0.0)
    step = (rmax - rmin) / 255.0
    z = float(np.float32(min(max(0.0 - rmin / step, 0.0), 255.0)))
    return float(np.float32(step)), int(np.round(z))


def t15(x: np.ndarray | int) -> np.ndarray:
    """``(255 x + 511) >> 9``: uint16 codes scaled by 255/512, rounded up (15 bits)."""
    return (255 * np.asarray(x, dtype=np.int64) + 511) >> 9


def convert_codes(q: np.ndarray, zero_point: int, z8: int) -> np.ndarray:
    """QNN's HTP Convert of uint16 codes ``q`` (zero point ``zero_point``) to uint8 codes of zero point ``z8``."""
    return np.clip((t15(q) - t15(zero_point) + 128 * int(z8) + 64) >> 7, 0, 255)


@dataclass(frozen=True)
class QnnMatMul16Spec:
    """The integers of QNN's 16-bit act x act MatMul: in[1]'s conversion (``zb``, ``z8``) and, per column factor
    ``F`` (``table[:, F - 2^11]``), the requantization's ``pre`` (v68: the folded zero point), multiplier and
    shift (v73: the shift to 7 fractional bits), and the column conversion's reciprocal ``round(2^27 / F)``."""

    arch: str
    zero_point: int  # of the output
    zb: int  # in[1]'s uint16 zero point
    z8: int  # its converted uint8 zero point
    table: np.ndarray  # int64 [4, F_MAX - F_ONE + 1]: pre, mult, shift, recip

    @staticmethod
    def of(arch: str, s_a: float, s_b: float, zb: int, s_out: float, zero_point: int) -> QnnMatMul16Spec:
        s8, z8 = converted_encoding(s_b, zb)
        f32 = np.float32
        f = np.arange(F_ONE, F_MAX + 1, dtype=np.int64)
        if arch == "v68":  # float32 throughout: fl(fl(256 fl(M)) fl(F / 2^11)), pre = floor(fl(z_o / r))
            mf = f32(f32(f32(s_a) * f32(s8)) / f32(s_out))
            r32 = f32(256.0 * mf) * (f / F_ONE).astype(np.float32)
            r = r32.astype(np.float64)
            e = np.floor(np.log2(r))
            pre = np.floor((f32(zero_point) / r32).astype(np.float64))
            mult = np.floor(r * 2.0 ** (10 - e) + 0.5)
            shift = 10 - e
        else:
            r = 256.0 * float(f32(s_a)) * s8 / float(f32(s_out)) * f / F_ONE
            k = 23 - np.floor(np.log2(r))
            pre = np.zeros_like(r)
            mult = np.floor(r * 2.0**k + 0.5)
            shift = k - 7
        table = np.asarray([pre, mult, shift, ((1 << 28) + f) // (2 * f)], dtype=np.int64)
        if not (table[2] > 0).all():
            raise ValueError("QnnMatMul16Spec: multipliers of 2^15 / 256 or more are not covered")
        return QnnMatMul16Spec(arch, int(zero_point), int(zb), z8, table)

    def consts(self) -> np.ndarray:
        """The table, what a plan stores (with ``arch``, ``zero_point``, ``zb`` and ``z8`` as attributes)."""
        return self.table.astype(np.int64)

    @staticmethod
    def from_consts(arch: str, consts: np.ndarray, zero_point: int, zb: int, z8: int) -> QnnMatMul16Spec:
        return QnnMatMul16Spec(arch, int(zero_point), int(zb), int(z8), np.ascontiguousarray(consts, dtype=np.int64))

    def column_weights(self, qb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(``w``, ``F``): in[1]'s uint16 codes ``qb`` ([..., K, N]) converted to uint8 and taken as int8 columns."""
        v = convert_codes(qb, self.zb, self.z8) - self.z8
        f = column_factor(v)
        return (v * self.table[3][f - F_ONE][..., None, :] + (1 << 15)) >> 16, f

    def requant_np(self, acc: np.ndarray, f: np.ndarray) -> np.ndarray:
        """Codes of the 256-unit accumulators ``acc`` [..., M, N] of columns with factors ``f`` [..., N]."""
        rows = np.broadcast_to((np.asarray(f) - F_ONE)[..., None, :], np.shape(acc))
        pre, m, k = (self.table[i][rows] for i in range(3))
        a = np.asarray(acc, dtype=np.int64)
        if self.arch == "v68":
            code = ((a + pre) * m + (np.int64(1) << (k - 1))) >> k
        else:
            code = ((((a * m + (np.int64(1) << (k - 1))) >> k) + 64) >> 7) + self.zero_point
        return np.clip(code, 0, U16_MAX)

    def apply_t(self, acc: torch.Tensor, f: torch.Tensor, consts: torch.Tensor) -> torch.Tensor:
        """:meth:`requant_np` on tensors: ``acc`` [..., M, N] int64, ``f`` [..., N] int64 factors, ``consts``
        :meth:`consts` as an int64 tensor on their device; int64 codes."""
        rows = (f - F_ONE).unsqueeze(-2)
        pre, m, k = (consts[i][rows] for i in range(3))
        half = torch.bitwise_left_shift(torch.ones_like(k), k - 1)
        if self.arch == "v68":
            code = torch.bitwise_right_shift((acc + pre).mul_(m).add_(half), k)
        else:
            y = torch.bitwise_right_shift(acc * m + half, k)
            code = torch.bitwise_right_shift(y.add_(64), 7).add_(self.zero_point)
        return code.clamp_(0, U16_MAX)

    def apply_np(self, qa: np.ndarray, za: int, qb: np.ndarray) -> np.ndarray:
        """The reference: output codes of ``qa @ qb`` (uint16 codes, [..., M, K] and [..., K, N], broadcasting
        batch dimensions; ``za`` in[0]'s zero point)."""
        w, f = self.column_weights(qb)
        a = np.asarray(qa, dtype=np.int64)
        acc = (np.matmul(a >> 8, w) + (np.matmul(a & 255, w) >> 8)
               - ((int(za) * w.sum(axis=-2) + 128) >> 8)[..., None, :])
        return self.requant_np(acc, np.broadcast_to(f, acc.shape[:-2] + f.shape[-1:]))


def matmul16_spec_for(arch: str, arithmetic: str, s_a: float, s_b: float, zb: int, s_out: float, zero_point: int,
                      a_bits: int, b_bits: int, out_bits: int) -> QnnMatMul16Spec | None:
    """QNN's 16-bit act x act MatMul where it is established (``arithmetic == "qnn"``, v68 or v73, uint16 operands
    and output, multipliers below 2^15 / 256), else None (TFLite's arithmetic applies)."""
    if arithmetic != "qnn" or arch not in ARCHS or (a_bits, b_bits, out_bits) != (16, 16, 16):
        return None
    if not (s_a > 0 and s_b > 0 and s_out > 0):
        return None
    try:
        return QnnMatMul16Spec.of(arch, s_a, s_b, zb, s_out, zero_point)
    except ValueError:
        return None
