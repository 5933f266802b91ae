"""QNN's HTP element-wise Add, Subtract and Multiply of 8-bit and of 16-bit codes, v68 and v73 alike,
established on Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/
eltwise_probe.py`` and held to it by ``tests/fidelity/test_qnn_eltwise.py`` (docs/htp-fidelity.md).

TFLite's arithmetic (``htp_config.arithmetic: "tflite"``) rescales both operands of an Add to twice the larger
input scale with 31-bit multipliers after a left shift of 20 (15 for 16-bit), adds, and requantizes the sum,
and requantizes a product with one 31-bit multiplier: one rounding of a nearly exact value. QNN follows the
Hexagon NN library's kernels (``op_add_d32.c``, ``op_addsubmul16_d32.c``) instead, with the differences noted
below: multipliers of 15-16 bits (31 for the 16-bit product), zero points folded into an offset with their
own rounding. Notation: float32 arithmetic throughout; ``frexp(x)`` the exponent ``e`` with ``x`` in
``[2^(e-1), 2^e)``; ``rint`` rounds half to even (the library's ``roundf`` rounds half away from zero: QNN
does not); ``a = float32(1 / s_o) * s_a``, ``b`` likewise.

Add / Subtract of 8-bit codes (``m_b`` negated for a Subtract):

    v     = a + b  (Add),  max(a, b)  (Subtract)
    rsh   = min(6 - frexp(v * 16384/16380), 7)
    m_a   = rint(a * 2^(rsh + 8)),  m_b = rint(b * 2^(rsh + 8))                 about 14 bits
    zero  = round_half_up((z_a * m_a + z_b * m_b) / 2^8)         the library floors this
    rsh >= 0 (v < 64):
      off   = (z_o << rsh) - zero                        an int16: outside it, not this spec
      code  = clamp((floor((q_a * m_a + q_b * m_b) / 2^8) + off + floor(2^rsh / 2)) >> rsh)
    rsh < 0 (v >= 64, output steps finer than the inputs' sum / 64; an attention mask's Add):
      code  = clamp(z_o + ((floor((q_a * m_a + q_b * m_b) / 2^8) - zero) << -rsh))

The second form is the first one's with ``rsh`` read as a left shift of the sum (the output moves in steps of
``2^-rsh`` codes from ``z_o``, the zero point added after the shift, no rounding half): established on the
simulator by ``tests/fidelity/eltwise_probe.py --regime wide`` (docs/htp-fidelity.md, "Add, Sub and Mul"):
every code of about 510 encodings (v68 and v73, Add and Sub, ``a + b`` from 64 to 2e6, ``rsh`` -1 to -15, either
operand the large one, the ``rsh`` 0 / -1 boundary) and BERT's attention-mask Adds.

Add / Subtract of 16-bit codes:

    r     = 15 - max(-1, frexp(1.00004 * max(a, b))),  rsh = r - 1            r < 2: not this spec
    m_a   = min(32767, rint(a * 2^r)),  m_b = min(32767, rint(b * 2^r))
    code  = clamp((floor((q_a * m_a + q_b * m_b) / 2) + (z_o << rsh) - floor((z_a * m_a + z_b * m_b) / 2)
                   + 2^(rsh - 1)) >> rsh)

except that a 16-bit Subtract whose operands' shapes (right-aligned) differ in their last three dimensions
(a row, column, channel or scalar broadcast) takes the subtrahend's one's complement, as that library does,
so every sum is unsigned: ``q_b -> 65535 - q_b``, ``z_b -> 65535 - z_b``, ``m_b -> |m_b|``. Equal shapes, and
broadcasts over the leading dimensions only (a 4-D batch, the first two of 5-D), take the signed form above
(the two differ in the floor of an odd sum: one code, in about 1 output in 20,000).

Multiply, with ``P = (q_a - z_a) * (q_b - z_b)`` exact:

    8-bit:  M = (s_a * s_b) / s_o,  rsh = min(-frexp(M), 7)                   rsh < 0 (M >= 1): not this spec
            m = min(32767, rint(M * 2^(rsh + 15)))
            B = floor(((2 z_a - 255)(2 z_b - 255) + 256) / 2^9) * 2^8     centres P - B in 16 bits
            code = clamp(((P - B) * m + round_half_up(B * m / 2^15) * 2^15 + (z_o << (rsh + 15))
                          + 2^(rsh + 14)) >> (rsh + 15))                 one rounding (the library: two)
    16-bit: M8 = (8 * s_a * s_b) / s_o                                        M8 > 4095/4096: not this spec
            m  = min(2^31 - 1, rint(M8 * 2^31)),  B = (32768 - z_a) - (2 z_a - 65535)(z_b - 32768)
            code = clamp((floor((P + B) * m / 2^31) + 8 z_o - round_half_up(B * m / 2^31) + 4) >> 3)

How it was found: each 8-bit probe runs all 65,536 pairs of codes through a QDQ op. A linear program over the
simulator's codes showed every Add / Sub probe to be exactly ``floor(alpha * (q_a - z_a) + beta * (q_b - z_b)
+ c)`` for some reals, with ``alpha`` and ``beta`` integers over ``2^(rsh + 8)``: multipliers of about 14 bits
sharing the exponent of ``a + b``, which explains the one-code differences from exact rounding near .5
boundaries (0.3-1% of the codes); every Multiply probe a function of ``P`` alone, ``floor(alpha * P + c)``. The
library's kernels then matched but for the feasible ``c`` (the rounded zero; the product's single rounding).
The 16-bit rules are the same library's; probes of random codes selected where candidate rules part (zero
rounded or floored, ``s_a / s_o`` or ``s_a * (1 / s_o)``, ``roundf`` or ``rint`` on exact float32 ties, signed
or one's complement, one rounding or two) decided each choice. Every probe (over 400: scale ratios 1, 2, 1/3,
3, 7.3 and random from e^-3 to e^3, output scales from 1/40 to 30 times the inputs' (products: 1/20 to 20
times a mid-range product's), zero points mid-range or random, rows, columns, channel vectors, scalars and
batches broadcast, either operand, ranks 1 to 5, run-time or constant operands) is 100% identical on v68 and
v73 alike, except constant 8-bit scalars (below); exact rounding is 96-100% per 8-bit probe and 47-100% per
16-bit probe. Open, where openqnn keeps TFLite's arithmetic: the corners noted "not this spec" (16-bit output
steps 8192 times finer than the larger input's, an 8-bit Add offset beyond int16, where the simulator gave
code 0 for every output of the one probe that reached it, and 8-bit ``rsh`` below -15, not probed), and operands of mixed widths (not probed). A constant one-element
8-bit operand takes another path in QNN: exact rounding for Add and Sub (100% of the codes of 28 probes,
this spec 99.3-99.7%), for Mul neither exact rounding nor this spec nor a 12-16-bit or the convolutions'
requantization of the scaled input (99.1-99.6% each; open): openqnn keeps TFLite's arithmetic there, which
rounds nearly exactly.

The end of this file holds QNN's requantization of 8-bit codes into another encoding (``QnnConvertSpec``: the
operands of Max and Min, a Concat's uint8 inputs) and QNN EP's float16 quantization of a Concat's float graph
input (``input_quantize_codes``), found with ``tests/fidelity/minmax_probe.py`` (comment there).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from openqnn.backends.htp.spec.qnn_resize import dequantize, quantize

__all__ = ["ARCHS", "ConvertSpec", "QnnAddSpec", "QnnConvert16Spec", "QnnConvertSpec", "QnnMulSpec", "add_spec_for",
           "complements", "convert_spec_for", "convert_spec_from_attrs", "input_quantize_codes", "input_quantize_table",
           "mul_spec_for"]

ARCHS = ("v68", "v73")


_MIN_RSH8 = -15  # the most negative 8-bit Add / Subtract rsh probed (v = a + b up to 2^21)


def f32(x: float) -> float:
    """``x`` rounded to float32 (QNN's scales and constants are float32), as a Python float."""
    return float(np.float32(x))


def _frexp_exp(x: float) -> int:
    """The exponent frexp gives a normal float32 (``x`` in [2^(e-1), 2^e)), read from its bits."""
    return ((struct.unpack("<I", struct.pack("<f", x))[0] >> 23) & 0xFF) - 126


@dataclass(frozen=True)
class QnnAddSpec:
    """The integers of one Add / Subtract:
    ``code = clamp(((((q_a * mult_a + q_b * mult_b + acc_bias) >> pre) + offset) >> rsh << lsh) + post)``,
    ``offset`` including the zero points and the rounding half (module docstring); ``pre`` is 8 for 8-bit codes,
    1 for 16-bit codes; ``acc_bias`` is not 0 only for a 16-bit Subtract that broadcasts within the last three
    dimensions; ``lsh`` and ``post`` (the output zero point) are not 0 only for an 8-bit output step finer
    than the inputs' sum / 64 (QNN's ``rsh < 0``: ``rsh`` is 0 then)."""

    mult_a: int
    mult_b: int
    acc_bias: int
    pre: int
    offset: int
    rsh: int
    qmax: int
    lsh: int = 0
    post: int = 0

    @staticmethod
    def of(s_a: float, z_a: int, s_b: float, z_b: int, s_o: float, z_o: int, subtract: bool,
           bitwidth: int = 8, complement: bool = False) -> QnnAddSpec | None:
        """QNN's constants for float32 scales and integer zero points (``z = -offset``) of 8-bit or 16-bit
        codes; None where the spec does not reach. ``complement``: a 16-bit Subtract takes the subtrahend's
        one's complement (:func:`complements`)."""
        inv = f32(1.0 / f32(s_o))
        a, b = f32(inv * f32(s_a)), f32(inv * f32(s_b))
        sign = -1 if subtract else 1
        if bitwidth == 16:
            return QnnAddSpec._of16(a, z_a, b, z_b, z_o, sign, complement and subtract)
        if bitwidth != 8:
            return None
        v = f32(a + b) if not subtract else max(a, b)
        rsh = min(6 - _frexp_exp(f32(v * f32(16384.0 / 16380.0))), 7)
        if rsh < _MIN_RSH8:  # v >= 2^21: not probed
            return None
        scale = f32(2.0 ** (rsh + 8))
        mult_a, mult_b = round(f32(a * scale)), sign * round(f32(b * scale))  # half to even
        zero = (z_a * mult_a + z_b * mult_b + 128) >> 8  # rounded (the Hexagon NN library floors it)
        if rsh < 0:
            # v >= 64: the sum less its zero, shifted left by -rsh, then the output zero point (no half). |zero|
            # < 2^15 always (the larger multiplier is below 2^14), so no int16 corner here.
            return QnnAddSpec(mult_a, mult_b, 0, 8, -zero, 0, 255, -rsh, z_o)
        offset = (z_o << rsh) - zero
        if not -(1 << 15) <= offset < 1 << 15:  # an int16 there; beyond it QNN's codes are not this (open)
            return None
        offset += (1 << rsh) >> 1
        return QnnAddSpec(mult_a, mult_b, 0, 8, offset, rsh, 255)

    @staticmethod
    def _of16(a: float, z_a: int, b: float, z_b: int, z_o: int, sign: int, complement: bool) -> QnnAddSpec | None:
        r = 15 - max(-1, _frexp_exp(f32(f32(1.00004) * max(a, b))))
        if r < 2:  # an output step below max(s_a, s_b) / 8192: QNN widens the output range; not followed
            return None
        scale = f32(2.0**r)
        mult_a = min(32767, round(f32(a * scale)))
        mult_b = sign * min(32767, round(f32(b * scale)))
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
                          int(doc["offset"]), int(doc["rsh"]), int(doc["qmax"]), int(doc.get("lsh", 0)),
                          int(doc.get("post", 0)))

    def apply_np(self, qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
        """Codes of int64 codes ``qa`` and ``qb`` (broadcast): the reference."""
        acc = np.asarray(qa, dtype=np.int64) * self.mult_a + np.asarray(qb, dtype=np.int64) * self.mult_b + self.acc_bias
        t = ((acc >> self.pre) + self.offset) >> self.rsh
        if self.lsh:  # |t| < 2^16 and lsh <= 15 (-_MIN_RSH8): no int64 overflow
            t = (t << self.lsh) + self.post
        return np.clip(t, 0, self.qmax)

    def apply_t(self, qa: torch.Tensor, qb: torch.Tensor) -> torch.Tensor:
        """The same on integer tensors, as int64."""
        acc = qa.to(torch.int64) * self.mult_a + qb.to(torch.int64) * self.mult_b + self.acc_bias
        t = torch.bitwise_right_shift(torch.bitwise_right_shift(acc, self.pre).add_(self.offset), self.rsh)
        if self.lsh:
            t = torch.bitwise_left_shift(t, self.lsh).add_(self.post)
        return t.clamp_(0, self.qmax)


@dataclass(frozen=True)
class QnnMulSpec:
    """The integers of one Multiply, with ``P = (q_a - z_a) * (q_b - z_b)`` exact:
    ``code = clamp(((((P + pre_bias) * mult + bias1) >> shift1) + bias2) >> shift2)`` (module docstring)."""

    z_a: int
    z_b: int
    pre_bias: int
    mult: int
    bias1: int
    shift1: int
    bias2: int
    shift2: int
    qmax: int

    @staticmethod
    def of(s_a: float, z_a: int, s_b: float, z_b: int, s_o: float, z_o: int, bitwidth: int = 8) -> QnnMulSpec | None:
        """QNN's constants for float32 scales and integer zero points of 8-bit or 16-bit codes; None where the
        spec does not reach."""
        s_ab = f32(f32(s_a) * f32(s_b))
        if bitwidth == 8:
            m = f32(s_ab / f32(s_o))
            rsh = min(-_frexp_exp(m), 7)
            if rsh < 0:  # m >= 1: an output step finer than s_a * s_b; not followed
                return None
            mult = min(32767, round(f32(f32(m * f32(2.0**rsh)) * 32768.0)))  # half to even
            # a multiple of 256 that centres the product range in 16 bits; its scaled value is rounded apart
            bias = (((2 * z_a - 255) * (2 * z_b - 255) + 256) >> 9) * 256
            adj = ((bias * mult + (1 << 14)) >> 15) + (z_o << rsh)
            sh = 15 + rsh
            return QnnMulSpec(z_a, z_b, -bias, mult, (adj << 15) + (1 << (sh - 1)), sh, 0, 0, 255)
        if bitwidth != 16:
            return None
        m8 = f32(f32(8.0 * s_ab) / f32(s_o))
        if m8 > 4095.0 / 4096.0:  # QNN widens the output range there; not followed
            return None
        mult = min(0x7FFFFFFF, round(f32(m8 * f32(2.0**31))))  # half to even
        bias = (32768 - z_a) - (2 * z_a - 65535) * (z_b - 32768)  # keeps P + bias in int32
        post = 8 * z_o - ((bias * mult + (1 << 30)) >> 31)
        return QnnMulSpec(z_a, z_b, bias, mult, 0, 31, post + 4, 3, 65535)

    def to_attrs(self) -> dict[str, int]:
        return asdict(self)

    @staticmethod
    def from_attrs(doc: Mapping[str, Any]) -> QnnMulSpec:
        return QnnMulSpec(*(int(doc[f]) for f in ("z_a", "z_b", "pre_bias", "mult", "bias1", "shift1", "bias2",
                                                   "shift2", "qmax")))

    def apply_np(self, qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
        """Codes of int64 codes ``qa`` and ``qb`` (broadcast): the reference."""
        p = (np.asarray(qa, dtype=np.int64) - self.z_a) * (np.asarray(qb, dtype=np.int64) - self.z_b)
        t = (((p + self.pre_bias) * self.mult + self.bias1) >> self.shift1) + self.bias2
        return np.clip(t >> self.shift2, 0, self.qmax)

    def apply_t(self, qa: torch.Tensor, qb: torch.Tensor) -> torch.Tensor:
        """The same on integer tensors, as int64."""
        p = (qa.to(torch.int64) - self.z_a) * (qb.to(torch.int64) - self.z_b)
        t = torch.bitwise_right_shift(p.add_(self.pre_bias).mul_(self.mult).add_(self.bias1), self.shift1)
        return torch.bitwise_right_shift(t.add_(self.bias2), self.shift2).clamp_(0, self.qmax)


def mul_spec_for(arch: str, arithmetic: str, s_a: float, z_a: int, s_b: float, z_b: int, s_o: float, z_o: int,
                 bits: tuple[int, int, int], scalar_constant: bool = False) -> QnnMulSpec | None:
    """QNN's Multiply where it is established (as :func:`add_spec_for`), else None."""
    if not _established(arch, arithmetic, bits, scalar_constant, (s_a, s_b, s_o)):
        return None
    return QnnMulSpec.of(s_a, z_a, s_b, z_b, s_o, z_o, bits[0])


def _established(arch: str, arithmetic: str, bits: tuple[int, int, int], scalar_constant: bool,
                 scales: tuple[float, float, float]) -> bool:
    """Where QNN's element-wise rules are established: arithmetic "qnn", v68 or v73, 8-bit or 16-bit codes in and
    out (one width), no constant one-element 8-bit operand (QNN runs that another way), positive scales."""
    return (arithmetic == "qnn" and arch in ARCHS and bits in ((8, 8, 8), (16, 16, 16))
            and not (scalar_constant and bits[0] == 8) and all(sc > 0 for sc in scales))


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
                 subtract: bool, bits: tuple[int, int, int], complement: bool = False,
                 scalar_constant: bool = False) -> QnnAddSpec | None:
    """QNN's Add / Subtract where it is established (``arithmetic == "qnn"``, v68 or v73, 8-bit or 16-bit codes
    in and out, all of one width, no constant one-element 8-bit operand), else None (TFLite's arithmetic
    applies; for a constant scalar it is the closer: module docstring)."""
    if not _established(arch, arithmetic, bits, scalar_constant, (s_a, s_b, s_o)):
        return None
    return QnnAddSpec.of(s_a, z_a, s_b, z_b, s_o, z_o, subtract, bits[0], complement)


# -- Requantization of 8-bit codes into another encoding (Max / Min operands), and the float16 quantization of a
#    Concat's graph input -------------------------------------------------------------------------------------
#
# Established on the simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/minmax_probe.py``, v68 = v73
# (docs/htp-fidelity.md, "Concat, Max and Min"). Max / Min requantize each operand into the output's encoding and
# take the larger / smaller code; a Concat of uint8 graph inputs requantizes the same way. With ``r = float32(s_i /
# s_o)`` in ``[2^e, 2^(e+1))`` (e < 4):
#
#     frac = 7 - max(e, 0),  pre = 7 - min(e, 0),  mult = rint(r * 2^(pre + frac))          (15 bits)
#     t    = floor((q - z_i) * mult / 2^pre)                                  the value with ``frac`` fraction bits
#     code = clamp(z_o + floor((t + 2^(frac - 1) + 1) / 2^frac))
#
# The "+ 1" is one unit of the last fraction bit: QNN rounds ``v + 1/2 + 2^max(e, 0) / 128`` down (``v = (q - z_i)
# r``), so a value whose fraction lies just under a half goes up; those codes and the multiplier's own rounding
# are the simulator's differences from exact rounding. Found by a linear program over all 256 codes per operand
# (alpha = r within the multiplier's precision, the offset above exact rounding by 1/128 of a code for r < 1,
# 2^e / 128 above), then this integer form: 100% of the codes of 76 Max / Min probes (v68, v73), 57 uint8
# Concat probes and 12 more with r from 1/8000 to 15.9 (ties included). Output steps 16 or more times finer than the
# input's (e >= 4) take another form (2-4 codes of 16 unsaturated ones differ): not followed (None).
#
# A Concat fed by a graph input through its QuantizeLinear / DequantizeLinear pair does not requantize: QNN EP
# quantizes the float input straight into the Concat's output encoding (the same through a Reshape; an op's
# output feeding a Concat is computed in the Concat's encoding by that op, which openqnn does not follow). Its
# quantization is float16: with ``x`` the float32 input value, the product ``x * float32(1 / s_o)`` (exact) is
# rounded to float16 and then half away from zero: ``code = clamp(z_o + round_half_away(float16(x * inv)))``;
# 100% of 108 graph-input probes per arch and 12 probes selected where ``x / s_o``, ``x * inv`` rounded to
# float32 first and the exact product part (only the exact product matches all).


@dataclass(frozen=True)
class QnnConvertSpec:
    """QNN's requantization of 8-bit codes into another encoding (above):
    ``code = clamp(z_out + (((((q - z_in) * mult) >> pre) + 2^(frac - 1) + 1) >> frac))``."""

    z_in: int
    z_out: int
    mult: int
    pre: int
    frac: int

    @staticmethod
    def of(s_i: float, z_i: int, s_o: float, z_o: int) -> QnnConvertSpec | None:
        r = f32(f32(s_i) / f32(s_o))
        if not r > 0:
            return None
        e = _frexp_exp(r) - 1  # r in [2^e, 2^(e+1))
        if e >= 4:  # output steps 16+ times finer than the input's: another form (open)
            return None
        frac, pre = 7 - max(e, 0), 7 - min(e, 0)
        mult = round(r * 2.0 ** (pre + frac))  # exact scaling of a float32; half to even
        return QnnConvertSpec(z_i, z_o, mult, pre, frac)

    def to_attrs(self) -> dict[str, int]:
        return asdict(self)

    @staticmethod
    def from_attrs(doc: Mapping[str, Any]) -> QnnConvertSpec:
        return QnnConvertSpec(*(int(doc[f]) for f in ("z_in", "z_out", "mult", "pre", "frac")))

    def apply_np(self, q: np.ndarray) -> np.ndarray:
        """Codes of int64 codes ``q``: the reference."""
        t = ((np.asarray(q, dtype=np.int64) - self.z_in) * self.mult) >> self.pre
        return np.clip(self.z_out + ((t + (1 << (self.frac - 1)) + 1) >> self.frac), 0, 255)

    def table(self) -> np.ndarray:
        """The codes of every 8-bit input code (int64, 256 entries)."""
        return self.apply_np(np.arange(256, dtype=np.int64))


# 16-bit codes (uint16 in and out; Max / Min operands, Where's; v68 = v73: docs/htp-fidelity.md, "16-bit pools,
# reductions and element-wise ops"): a multiplier with 18 fraction bits, the zero point's product rounded to 15
# of them (1/8 of a code), round half up:
#
#     mult  = rint(r * 2^18),  zterm = round_half_up(z_i * mult / 2^15) * 2^15
#     code  = clamp(z_o + floor((q * mult - zterm + 2^17 [+ 2^14]) / 2^18))
#
# Where (ElementWiseSelect) adds 2^14 more (1/16 of a code) before the shift. Found by a linear program over all
# 65,536 codes of an operand (the codes are affine in q with a multiplier at 2^-18 and an offset on a grid of 1/8
# of a code, Where's 1/16 above it), then this form: every code of 30 Max / Min probes (r from 0.0028 to 32,
# random zero points; 23 on v73, 7 on v68) and of 15 Where probes (30 operands, r 0.02 to 10; 10 on v73, 5 on
# v68); exact rounding 0.1-7% of the codes off.


@dataclass(frozen=True)
class QnnConvert16Spec:
    """QNN's requantization of uint16 codes into another encoding (above):
    ``code = clamp(z_out + ((q * mult - zterm + 2^17) >> 18))``."""

    z_in: int
    z_out: int
    mult: int
    zterm: int
    rnd: int = 1 << 17  # added before the shift: Where's is 2^17 + 2^14

    @staticmethod
    def of(s_i: float, z_i: int, s_o: float, z_o: int, select: bool = False) -> QnnConvert16Spec | None:
        """``select``: an operand of Where, else of Max / Min."""
        r = f32(f32(s_i) / f32(s_o))
        if not 2.0 ** -9 <= r < 64:  # the probed ratios
            return None
        mult = round(r * 2.0 ** 18)
        return QnnConvert16Spec(z_i, z_o, mult, ((z_i * mult + (1 << 14)) >> 15) << 15,
                                (1 << 17) + ((1 << 14) if select else 0))

    def to_attrs(self) -> dict[str, int]:
        return {**asdict(self), "bits": 16}

    def apply_np(self, q: np.ndarray) -> np.ndarray:
        """Codes of int64 codes ``q``: the reference."""
        t = np.asarray(q, dtype=np.int64) * self.mult - self.zterm
        return np.clip(self.z_out + ((t + self.rnd) >> 18), 0, 65535)

    def table(self) -> np.ndarray:
        """The codes of every 16-bit input code (int64, 65,536 entries)."""
        return self.apply_np(np.arange(65536, dtype=np.int64))


ConvertSpec = QnnConvertSpec | QnnConvert16Spec


def convert_spec_from_attrs(doc: Mapping[str, Any]) -> ConvertSpec:
    """The requantization a plan stored (``to_attrs``): the 16-bit form where it says so."""
    if int(doc.get("bits", 8)) == 16:
        return QnnConvert16Spec(*(int(doc[f]) for f in ("z_in", "z_out", "mult", "zterm", "rnd")))
    return QnnConvertSpec.from_attrs(doc)


def input_quantize_codes(s_i: float, z_i: int, s_o: float, z_o: int, q: np.ndarray) -> np.ndarray:
    """The codes QNN EP gives a float32 graph input on the grid of ``(s_i, z_i)`` (``x = float32(s_i) * (q - z_i)``)
    that it quantizes straight into a Concat's 8-bit output encoding ``(s_o, z_o)``: through float16, as the float
    Resize route quantizes (``qnn_resize.quantize``)."""
    return quantize(dequantize(q, f32(s_i), z_i), f32(s_o), z_o, 255)


def convert_spec_for(arch: str, arithmetic: str, s_i: float, z_i: int, s_o: float, z_o: int,
                     bits: tuple[int, int], signed: bool = False, select: bool = False) -> ConvertSpec | None:
    """QNN's requantization of a run-time operand of Max / Min (``select``: of Where) where it is established
    (``arithmetic == "qnn"``, v68 or v73; 8-bit codes in and out, output steps under 16 times finer; or uint16
    codes in and out, ratios 2^-9 to 64), else None."""
    if not (arithmetic == "qnn" and arch in ARCHS and s_i > 0 and s_o > 0):
        return None
    if bits == (8, 8):
        return QnnConvertSpec.of(s_i, z_i, s_o, z_o)
    if bits == (16, 16) and not signed:
        return QnnConvert16Spec.of(s_i, z_i, s_o, z_o, select)
    return None


def input_quantize_table(arch: str, arithmetic: str, s_i: float, z_i: int, s_o: float, z_o: int,
                         bits: tuple[int, int]) -> np.ndarray | None:
    """The 256 codes of a Concat's 8-bit graph input of another encoding (:func:`input_quantize_codes`) where it
    is established (``arithmetic == "qnn"``, v68 or v73, 8-bit codes in and out), else None."""
    if not (arithmetic == "qnn" and arch in ARCHS and bits == (8, 8) and s_i > 0 and s_o > 0):
        return None
    return input_quantize_codes(s_i, z_i, s_o, z_o, np.arange(256, dtype=np.int64))
