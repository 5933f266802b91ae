"""QNN's HTP MatMul of two 8-bit activations, v68 and v73, established on Qualcomm's HTP simulator
(onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/matmul_probe.py`` and held to it by
``tests/fidelity/test_qnn_matmul.py`` (docs/htp-fidelity.md).

TFLite's arithmetic (``htp_config.arithmetic: "tflite"``) requantizes the exact accumulator
``sum_k (a - za) * (b - zb)`` with a 31-bit multiplier. QNN treats the right operand ``b`` (in[1], [..., K, N])
as a convolution's int8 weights, one output column ``n`` at a time:

- A column whose values ``v = b - zb`` all fit int8 (``-128 <= v <= 127``) is used as it is: the exact
  accumulator, requantized with the convolutions' rule of the arch (:mod:`.qnn_requant`) at
  ``M = s_a * s_b / s_out``. (Deviation from TFLite: only the requantization, as for convolutions.)
- A column that does not fit is first requantized to int8 at run time, with its own scale: the factor
  ``f = max(max(v) / 127, -min(v) / 128)`` (> 1) is rounded to 11 fractional bits,
  ``F = round(f * 2^11)``; the column becomes ``w = (v * r + 2^15) >> 16`` with the 16-bit reciprocal
  ``r = round(2^27 / F)`` (so ``w ~ v / f``, the column's extreme value lands on 127 or -128), and the
  column's accumulator ``sum_k (a - za) * w`` is requantized with the convolutions' rule at
  ``M * F / 2^11``. (Deviation: the column's values are rounded to a coarser grid, up to half a step of
  ``f``, so outputs can differ from exact rounding by about a code where ``K`` is large.)

How it was found: with ``zb = 128`` (every value fits) or any ``zb`` and columns that fit, the codes are
a function of the exact accumulator and the convolutions' spec gives every code (K = 1 to 128, random
``za``, v68 and v73). A column with one value out of int8's range changes every output of that column
and only that column; with K = 1 the output is ``(a - za) * 127`` (or ``* -128``) requantized at a
multiplier within 1e-4 of ``M * v / 127``, fitted per column to ``M * round(2^11 * v / 127) / 2^11``; with
K > 1 the other values of the column are rounded with ``v / f``, ties decided by the 16-bit reciprocal
(``round(2^27 / F)`` reproduces every code of the probes; ceiled, or 2^15, 2^17 and 2^18 reciprocals do not).

In a graph, an in[1] that an op computes (through Reshape / Transpose) reaches the MatMul already as int8:
its producer writes it at the tensor's scale with zero point 0 (an 8-bit code of zero point 128), so every
column fits and ``F = 2^11``; the htp backend rewrites the graph so (``openqnn.backends.htp.rewrite``, v68 and
v73: the BERT-style encoder's attention, every code). The run-time conversion above is for a graph input.

Two 16-bit operands: :mod:`.qnn_matmul16` (in[1] converted to uint8 first, then these int8 columns). Other
archs and mixed widths are not established yet (``matmul_spec_for`` returns None: TFLite's arithmetic applies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from openqnn.backends.htp.spec.qnn_requant import ARCHS, QnnRequantSpec

__all__ = ["F_MAX", "F_ONE", "QnnMatMulSpec", "column_factor", "matmul_spec_for"]

F_ONE = 1 << 11  # the column factor's unit: 11 fractional bits
F_MAX = (255 * F_ONE + 63) // 127  # the largest factor: a column value of 255 (zb = 0)


def column_factor(v: np.ndarray) -> np.ndarray:
    """``F = round(2^11 * max(1, max(v) / 127, -min(v) / 128))`` per column of ``v`` ([..., K, N] zero-point
    removed int64 values of in[1]): [..., N] int64 in [2^11, F_MAX]. Integer arithmetic, round half up."""
    v = np.asarray(v, dtype=np.int64)
    hi = v.max(axis=-2) if v.shape[-2] else np.zeros(v.shape[:-2] + v.shape[-1:], np.int64)
    lo = v.min(axis=-2) if v.shape[-2] else np.zeros_like(hi)
    pos = (np.maximum(hi, 127) * (2 * F_ONE) + 127) // 254  # round(2^11 * hi / 127)
    neg = np.maximum(-lo, 128) * (F_ONE // 128)  # 2^11 * (-lo) / 128, exact
    return np.maximum(pos, neg)


@dataclass(frozen=True)
class QnnMatMulSpec:
    """The integers of QNN's act x act MatMul requantization: one :class:`QnnRequantSpec` row per column
    factor ``F`` (``table[F - 2^11]``), and the reciprocals ``recip[F - 2^11] = round(2^27 / F)``."""

    arch: str
    zero_point: int
    table: np.ndarray  # int64 [5, F_MAX - F_ONE + 1]: QnnRequantSpec.consts() at M * F / 2^11
    recip: np.ndarray  # int64 [F_MAX - F_ONE + 1]

    @staticmethod
    def of(arch: str, real: float, zero_point: int) -> QnnMatMulSpec:
        f = np.arange(F_ONE, F_MAX + 1, dtype=np.int64)
        table = QnnRequantSpec.of(arch, float(real) * f.astype(np.float64) / F_ONE, zero_point).consts()
        recip = ((1 << 28) + f) // (2 * f)  # round(2^27 / F), half up
        return QnnMatMulSpec(arch, int(zero_point), table, recip)

    def consts(self) -> np.ndarray:
        """The table and reciprocals as one int64 [6, F_MAX - F_ONE + 1] array (what a plan stores)."""
        return np.concatenate([self.table, self.recip[None]]).astype(np.int64)

    @staticmethod
    def from_consts(arch: str, consts: np.ndarray, zero_point: int) -> QnnMatMulSpec:
        c = np.ascontiguousarray(consts, dtype=np.int64)
        return QnnMatMulSpec(arch, int(zero_point), c[:5], c[5])

    def column_weights(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(``w``, ``F``): in[1]'s values ``v`` ([..., K, N], zero point removed) as QNN's int8 columns and
        their factors (a column that fits has ``F = 2^11``, ``r = 2^16``: ``w = v``)."""
        v = np.asarray(v, dtype=np.int64)
        f = column_factor(v)
        w = (v * self.recip[f - F_ONE][..., None, :] + (1 << 15)) >> 16
        return w, f

    def requant_np(self, acc: np.ndarray, f: np.ndarray) -> np.ndarray:
        """Codes of the int64 accumulators ``acc`` [..., M, N] of columns with factors ``f`` [..., N]."""
        rows = np.broadcast_to((np.asarray(f) - F_ONE)[..., None, :], np.shape(acc))
        spec = QnnRequantSpec.from_consts(self.arch, self.table[:, rows], self.zero_point)
        return spec.apply_np(acc)

    def apply_t(self, acc: torch.Tensor, f: torch.Tensor, consts: torch.Tensor) -> torch.Tensor:
        """:meth:`requant_np` on tensors: ``acc`` [..., M, N] integers, ``f`` [..., N] int64 factors, ``consts``
        :meth:`consts` as an int64 tensor on their device; int64 codes."""
        rows = (f - F_ONE).unsqueeze(-2)
        pre, shift, centre, mult, k = (consts[i][rows] for i in range(5))
        a = acc.to(torch.int64) + pre
        a = torch.bitwise_left_shift(torch.bitwise_right_shift(a, shift), shift).add_(centre).mul_(mult)
        kpos = k > 0
        kcl = k.clamp(min=0)
        half = torch.where(kpos, torch.bitwise_left_shift(torch.ones_like(k), (k - 1).clamp(min=0)), 0)
        code = torch.where(kpos, torch.bitwise_right_shift(a + half, kcl), torch.bitwise_left_shift(a, (-k).clamp(min=0)))
        return code.add_(self.post).clamp_(0, 255)

    @property
    def post(self) -> int:
        """Added after rounding: the output zero point on v73 (the convolutions' rule), 0 on v68."""
        return self.zero_point if self.arch == "v73" else 0

    def apply_np(self, av: np.ndarray, bv: np.ndarray) -> np.ndarray:
        """The reference: output codes of ``av @ bv`` (int64 operands with their zero points removed,
        [..., M, K] and [..., K, N], broadcasting batch dimensions)."""
        w, f = self.column_weights(bv)
        acc = np.matmul(np.asarray(av, dtype=np.int64), w)
        return self.requant_np(acc, np.broadcast_to(f, acc.shape[:-2] + f.shape[-1:]))


def matmul_spec_for(arch: str, arithmetic: str, real: float, zero_point: int, a_bits: int, b_bits: int,
                    out_bits: int) -> QnnMatMulSpec | None:
    """QNN's act x act MatMul where it is established (``arithmetic == "qnn"``, v68 or v73, 8-bit operands and
    output, ``real = s_a * s_b / s_out > 0``), else None (TFLite's arithmetic applies)."""
    if arithmetic != "qnn" or arch not in ARCHS or (a_bits, b_bits, out_bits) != (8, 8, 8) or not real > 0:
        return None
    return QnnMatMulSpec.of(arch, real, zero_point)
