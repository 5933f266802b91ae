"""QNN's HTP element-wise Add and Subtract of 8-bit and of 16-bit codes, v68 and v73 alike, established on
Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/eltwise_probe.py`` and held
to it by ``tests/fidelity/test_qnn_eltwise.py`` (docs/htp-fidelity.md).

TFLite's arithmetic (``htp_config.arithmetic: "tflite"``) rescales both operands to twice the larger input
scale with 31-bit multipliers after a left shift of 20 (15 for 16-bit), adds, and requantizes the sum: one
rounding of a nearly exact value. QNN instead scales the raw codes by two integer multipliers that share one
exponent, halves or drops low bits with a floor, adds an offset that carries the zero points and a rounding
half, and shifts right. With ``a = s_a / s_o`` and ``b = s_b / s_o`` from the float32 scales (``1 / s_o``
first, then times ``s_a``; every step in float32), ``m_b`` negated for a Subtract, and ``frexp(x)`` the
exponent ``e`` with ``x`` in ``[2^(e-1), 2^e)``:

8-bit codes (the Hexagon NN library's ``QuantizedAdd_8p8to8_d32``, but for the rounded zero):

    v     = a + b  (Add),  max(a, b)  (Subtract)
    rsh   = min(6 - frexp(v * 16384/16380), 7)       rsh < 0 (v >= 64): not this spec
    m_a   = roundf(a * 2^(rsh + 8)),  m_b = roundf(b * 2^(rsh + 8))      half away from zero
    off   = roundf(z_o * 2^rsh) - round((z_a * m_a + z_b * m_b) / 2^8)   that library floors this
    code  = clamp((floor((q_a * m_a + q_b * m_b) / 2^8) + off + floor(2^rsh / 2)) >> rsh)

16-bit codes (that library's ``QuantizedAdd_u16_d32``):

    r     = 15 - max(-1, frexp(1.00004 * max(a, b))),  rsh = r - 1       r < 2: not this spec
    m_a   = min(32767, rint(a * 2^r)),  m_b = min(32767, rint(b * 2^r))  half to even
    code  = clamp((floor((q_a * m_a + q_b * m_b) / 2) + (z_o << rsh) - floor((z_a * m_a + z_b * m_b) / 2)
                   + 2^(rsh - 1)) >> rsh)

except that a 16-bit Subtract whose operands' shapes (right-aligned) differ in their last three dimensions
(a row, column, channel or scalar broadcast) takes the subtrahend's one's complement, as that library does,
so every sum is unsigned: ``q_b -> 65535 - q_b``, ``z_b -> 65535 - z_b``, ``m_b -> |m_b|``. Equal shapes, and
broadcasts over the leading dimensions only (a 4-D batch, the first two of 5-D), take the signed form above.
The two differ in the floor of an odd sum (one code, in about 1 of 20,000 outputs).

How it was found: each 8-bit probe runs all 65,536 pairs of codes through a QDQ Add or Sub. A linear program
over the simulator's codes showed every probe to be exactly ``floor(alpha * (q_a - z_a) + beta * (q_b - z_b) +
c)`` for some reals, with ``alpha`` and ``beta`` integers over ``2^(rsh + 8)``: multipliers of about 14 bits
sharing the exponent of the larger of ``a + b``, which explains the one-code differences from exact rounding
near .5 boundaries (0.3-1% of the codes); the feasible ``c`` then fixed the offset (the rounded zero). The
16-bit rule was then the same library's; probes on random codes selected where candidate rules part (the zero
floored or rounded, ``a`` from ``s_a / s_o`` or ``s_a * (1 / s_o)``, ``roundf`` or ``rint``, signed or one's
complement) picked each choice. Every probe (over 200: scale ratios 1, 2, 1/3, 3, 7.3 and random from e^-3
to e^3, output scales from 1/40 to 30 times the inputs' sum, zero points mid-range or random, rows, columns,
channel vectors, scalars and batches broadcast, either operand, ranks 1 to 5) is 100% identical, on v68 and
v73 alike; exact rounding is 96-100% per 8-bit probe and 47-100% per 16-bit probe. Open: the corners the spec
does not reach (an output step 64 times finer than the inputs' for 8 bits, 8192 times for 16 bits), where
the codes are no such linear function (saturation, at a guess); openqnn keeps TFLite's arithmetic there, as
for mixed 8/16-bit operands, which were not probed.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["ARCHS", "QnnAddSpec", "add_spec_for", "complements"]

ARCHS = ("v68", "v73")


def _f32(x: float) -> float:
    return float(np.float32(x))


def _frexp_exp(x: float) -> int:
    """The exponent frexp gives a normal float32 (``x`` in [2^(e-1), 2^e)), read from its bits."""
    return ((struct.unpack("<I", struct.pack("<f", x))[0] >> 23) & 0xFF) - 126


def _roundf(x: float) -> int:
    """``(int)(x + copysignf(0.5f, x))`` in float32: half away from zero, as the C library's roundf."""
    return math.trunc(_f32(_f32(x) + math.copysign(0.5, x)))


@dataclass(frozen=True)
class QnnAddSpec:
    """The integers of one Add / Subtract:
    ``code = clamp((((q_a * mult_a + q_b * mult_b + acc_bias) >> pre) + offset) >> rsh)``, ``offset`` including the
    zero points and the rounding half (module docstring); ``pre`` is 8 for 8-bit codes, 1 for 16-bit codes;
    ``acc_bias`` is not 0 only for a 16-bit Subtract that broadcasts within the last three dimensions."""

    mult_a: int
    mult_b: int
    acc_bias: int
    pre: int
    offset: int
    rsh: int
    qmax: int

    @staticmethod
    def of(s_a: float, z_a: int, s_b: float, z_b: int, s_o: float, z_o: int, subtract: bool,
           bitwidth: int = 8, complement: bool = False) -> QnnAddSpec | None:
        """QNN's constants for float32 scales and integer zero points (``z = -offset``) of 8-bit or 16-bit
        codes; None where the spec does not reach. ``complement``: a 16-bit Subtract takes the subtrahend's
        one's complement (:func:`complements`)."""
        inv = _f32(1.0 / _f32(s_o))
        a, b = _f32(inv * _f32(s_a)), _f32(inv * _f32(s_b))
        sign = -1 if subtract else 1
        if bitwidth == 16:
            return QnnAddSpec._of16(a, z_a, b, z_b, z_o, sign, complement and subtract)
        if bitwidth != 8:
            return None
        v = _f32(a + b) if not subtract else max(a, b)
        rsh = min(6 - _frexp_exp(_f32(v * _f32(16384.0 / 16380.0))), 7)
        if rsh < 0:  # v >= 64: open (module docstring)
            return None
        scale = _f32(2.0 ** (rsh + 8))
        mult_a, mult_b = _roundf(_f32(a * scale)), sign * _roundf(_f32(b * scale))
        zero = (z_a * mult_a + z_b * mult_b + 128) >> 8  # rounded (the Hexagon NN library floors it)
        offset = _roundf(_f32(z_o * _f32(2.0**rsh))) - zero + ((1 << rsh) >> 1)
        return QnnAddSpec(mult_a, mult_b, 0, 8, offset, rsh, 255)

    @staticmethod
    def _of16(a: float, z_a: int, b: float, z_b: int, z_o: int, sign: int, complement: bool) -> QnnAddSpec | None:
        r = 15 - max(-1, _frexp_exp(_f32(_f32(1.00004) * max(a, b))))
        if r < 2:  # an output step below max(s_a, s_b) / 8192: QNN widens the output range; not followed
            return None
        scale = _f32(2.0**r)
        # float32 -> int with round half to even (the 8-bit path's roundf rounds half away from zero)
        mult_a = min(32767, round(_f32(a * scale)))
        mult_b = sign * min(32767, round(_f32(b * scale)))
        rsh = r - 1
        # q_b * mult_b + acc_bias = (65535 - q_b) * |mult_b|: the one's complement keeps the sum unsigned
        acc_bias = 65535 * -mult_b if complement else 0
        offset = (z_o << rsh) - ((z_a * mult_a + z_b * mult_b + acc_bias) >> 1) + (1 << (rsh - 1))  # zero floored
        return QnnAddSpec(mult_a, mult_b, acc_bias, 1, offset, rsh, 65535)

    def to_attrs(self) -> dict[str, int]:
        return asdict(self)

    @staticmethod
    def from_attrs(doc: Mapping[str, Any]) -> QnnAddSpec:
        return QnnAddSpec(int(doc["mult_a"]), int(doc["mult_b"]), int(doc["acc_bias"]), int(doc["pre"]),
                          int(doc["offset"]), int(doc["rsh"]), int(doc["qmax"]))

    def apply_np(self, qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
        """Codes of int64 codes ``qa`` and ``qb`` (broadcast): the reference."""
        acc = np.asarray(qa, dtype=np.int64) * self.mult_a + np.asarray(qb, dtype=np.int64) * self.mult_b + self.acc_bias
        return np.clip(((acc >> self.pre) + self.offset) >> self.rsh, 0, self.qmax)

    def apply_t(self, qa: torch.Tensor, qb: torch.Tensor) -> torch.Tensor:
        """The same on integer tensors, as int64."""
        acc = qa.to(torch.int64) * self.mult_a + qb.to(torch.int64) * self.mult_b + self.acc_bias
        return torch.bitwise_right_shift(torch.bitwise_right_shift(acc, self.pre).add_(self.offset), self.rsh).clamp_(
            0, self.qmax)


def complements(shape_a: Sequence[int], shape_b: Sequence[int]) -> bool:
    """Whether QNN's 16-bit Subtract takes the one's complement of the subtrahend: when the operands' shapes,
    right-aligned, differ in their last three dimensions (a broadcast within a batch element). Equal shapes
    and broadcasts over leading dimensions only (a 4-D batch, the first two dimensions of a 5-D tensor) take
    the signed form."""
    n = max(len(shape_a), len(shape_b))
    a = (1,) * (n - len(shape_a)) + tuple(shape_a)
    b = (1,) * (n - len(shape_b)) + tuple(shape_b)
    return a[-3:] != b[-3:]


def add_spec_for(arch: str, arithmetic: str, s_a: float, z_a: int, s_b: float, z_b: int, s_o: float, z_o: int,
                 subtract: bool, bits: tuple[int, int, int], complement: bool = False) -> QnnAddSpec | None:
    """QNN's Add / Subtract where it is established (``arithmetic == "qnn"``, v68 or v73, 8-bit or 16-bit codes
    in and out, all of one width), else None (TFLite's arithmetic applies)."""
    if arithmetic != "qnn" or arch not in ARCHS or bits not in ((8, 8, 8), (16, 16, 16)):
        return None
    if not (s_a > 0 and s_b > 0 and s_o > 0):
        return None
    return QnnAddSpec.of(s_a, z_a, s_b, z_b, s_o, z_o, subtract, bits[0], complement)
