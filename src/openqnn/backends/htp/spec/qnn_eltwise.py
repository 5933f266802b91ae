"""QNN's HTP element-wise Add and Subtract of 8-bit codes, v68 and v73 alike, established on Qualcomm's HTP
simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/eltwise_probe.py`` and held to it by
``tests/fidelity/test_qnn_eltwise.py`` (docs/htp-fidelity.md).

TFLite's arithmetic (``htp_config.arithmetic: "tflite"``) rescales both operands to twice the larger input
scale with 31-bit multipliers after a left shift of 20, adds, and requantizes the sum (one rounding of a
nearly exact value). QNN instead scales the raw codes by two 16-bit multipliers that share one exponent,
drops 8 bits with a floor, adds an offset that carries the zero points and a rounding half, and shifts
right. With ``a = s_a / s_o`` and ``b = s_b / s_o`` from the float32 scales (``1 / s_o`` first, then times
``s_a``; every step in float32), ``b`` negated for a Subtract:

    v     = a + b                              Add;  max(a, |b|) for Subtract
    e     = frexp exponent of v * 16384/16380  v in [2^(e-1), 2^e), a margin so the multipliers fit
    rsh   = min(6 - e, 7)                      the final right shift; rsh < 0 (v >= 64): not this spec
    m_a   = round(a * 2^(rsh + 8))             |m_a|, |m_b| <= 16383 (m_a + m_b for Add); half away
    m_b   = round(b * 2^(rsh + 8))             from zero
    off   = round(z_o * 2^rsh) - round((z_a * m_a + z_b * m_b) / 2^8)
    code  = clamp((floor((q_a * m_a + q_b * m_b) / 2^8) + off + floor(2^rsh / 2)) >> rsh)

The arithmetic is that of the Hexagon NN library's ``QuantizedAdd_8p8to8_d32`` (``op_add_d32.c``), with one
difference: the intermediate zero ``(z_a * m_a + z_b * m_b) / 2^8`` is rounded to nearest (half up), where
that library floors it. ``rsh = 0`` (v >= 32) has no rounding half: the result is floored.

How it was found: each probe runs all 65,536 pairs of 8-bit codes (``q_a[i, j] = i``, ``q_b[i, j] = j``)
through a QDQ Add or Sub. A linear program over the simulator's codes showed that every probe is exactly
``floor(alpha * (q_a - z_a) + beta * (q_b - z_b) + c)`` for some reals, and the feasible ``alpha`` and
``beta`` are integers over ``2^(rsh + 8)``: multipliers of about 14 bits sharing one exponent, chosen from
the larger of ``a + b``, not from each operand, which explains the one-code differences from exact rounding
near .5 boundaries (0.3-1% of the codes). The feasible ``c`` then fixed the offset (the rounded zero).
Over 110 probes on v68 and v73 (scale ratios 1, 2, 1/3, 3, 7.3 and random from e^-3 to e^3, zero points
128 or random, output scales from 1/40 to 30 times the inputs' sum, sums just below a power of two,
broadcast rows, columns, channel vectors and scalars, either operand broadcast, Add and Sub): 100% of the
codes, identically on v68 and v73; exact rounding 96-100% per probe. Open: ``v >= 64`` (an output grid 64
times finer than the inputs'), where the codes are no linear function of the inputs (i16 saturation, at a
guess); openqnn keeps TFLite's arithmetic there.
"""

from __future__ import annotations

import math
import struct
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["ARCHS", "QnnAddSpec", "add_spec_for"]

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
    """The integers of one Add / Subtract: ``code = clamp(((q_a * mult_a + q_b * mult_b) >> 8) + offset) >> rsh)``,
    ``offset`` including the rounding half (module docstring)."""

    mult_a: int
    mult_b: int
    offset: int
    rsh: int
    qmax: int

    @staticmethod
    def of(s_a: float, z_a: int, s_b: float, z_b: int, s_o: float, z_o: int, subtract: bool,
           bitwidth: int = 8) -> QnnAddSpec | None:
        """QNN's constants for float32 scales and integer zero points (``z = -offset``); None where the
        spec does not reach (``v >= 64``)."""
        inv = _f32(1.0 / _f32(s_o))
        a, b = _f32(inv * _f32(s_a)), _f32(inv * _f32(s_b))
        v = _f32(a + b) if not subtract else max(a, b)
        rsh = min(6 - _frexp_exp(_f32(v * _f32(16384.0 / 16380.0))), 7)
        if rsh < 0:
            return None
        scale = _f32(2.0 ** (rsh + 8))
        mult_a = _roundf(_f32(a * scale))
        mult_b = _roundf(_f32(b * scale)) * (-1 if subtract else 1)
        zero = (z_a * mult_a + z_b * mult_b + 128) >> 8
        offset = _roundf(_f32(z_o * _f32(2.0**rsh))) - zero + ((1 << rsh) >> 1)
        return QnnAddSpec(mult_a, mult_b, offset, rsh, (1 << bitwidth) - 1)

    def to_attrs(self) -> dict[str, int]:
        return asdict(self)

    @staticmethod
    def from_attrs(doc: Mapping[str, Any]) -> QnnAddSpec:
        return QnnAddSpec(int(doc["mult_a"]), int(doc["mult_b"]), int(doc["offset"]), int(doc["rsh"]),
                          int(doc["qmax"]))

    def apply_np(self, qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
        """Codes of int64 codes ``qa`` and ``qb`` (broadcast): the reference."""
        acc = np.asarray(qa, dtype=np.int64) * self.mult_a + np.asarray(qb, dtype=np.int64) * self.mult_b
        return np.clip(((acc >> 8) + self.offset) >> self.rsh, 0, self.qmax)

    def apply_t(self, qa: torch.Tensor, qb: torch.Tensor) -> torch.Tensor:
        """The same on integer tensors, as int64."""
        acc = qa.to(torch.int64) * self.mult_a + qb.to(torch.int64) * self.mult_b
        return torch.bitwise_right_shift(torch.bitwise_right_shift(acc, 8).add_(self.offset), self.rsh).clamp_(
            0, self.qmax)


def add_spec_for(arch: str, arithmetic: str, s_a: float, z_a: int, s_b: float, z_b: int, s_o: float, z_o: int,
                 subtract: bool, bits: tuple[int, int, int]) -> QnnAddSpec | None:
    """QNN's Add / Subtract where it is established (``arithmetic == "qnn"``, v68 or v73, 8-bit codes in and
    out), else None (TFLite's arithmetic applies)."""
    if arithmetic != "qnn" or arch not in ARCHS or bits != (8, 8, 8):
        return None
    if not (s_a > 0 and s_b > 0 and s_o > 0):
        return None
    return QnnAddSpec.of(s_a, z_a, s_b, z_b, s_o, z_o, subtract)
