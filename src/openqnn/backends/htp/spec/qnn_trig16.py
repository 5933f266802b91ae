"""QNN's HTP Sin and Cos of 16-bit codes, v68 and v73, established on Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0,
QNN 2.51) with ``tests/fidelity/trig16_probe.py`` (every 16-bit input code once per encoding) and held to it by
``tests/fidelity/test_qnn_trig16.py`` (docs/htp-fidelity.md, "16-bit Atan, Sin and Cos (stop 27)" and "16-bit Sin, Cos
and Atan wired (stop 28)"). v68 = v73 in every probe.

With ``a = q - z_in`` and ``rshr(v, s) = (v + 2^(s-1)) >> s``:

    phase:    M = round(float32(s_in) 2^32 / (2 pi)),  P = (|a| M) mod 2^32                 (turns, Q32)
              Sin: negative for a < 0, and for P >= 2^31 (then P -= 2^31)
              Cos: P = 2^32 - P for P > 2^31; negative for P > 2^30
              r = (P > 2^30 ? 2^31 - P : P) >> 16                (the first-quadrant phase, 0..2^14, Q14 of a quarter)
    value:    V = sign F(r)                                       (Sin Q13, Cos Q14)
    output:   2^-Q / float32(s_out) = f 2^e (f in [0.5, 1)),  m = floor(f 2^15 + 1/4)
              code = clamp(z_out + sign(V) rshr(|V| m, 15 - e))

``F`` is a cubic per quarter of the quadrant (``k = r >> 12``, pi/8 each) in the quadrant phase ``x = r`` itself (Q14,
not the offset in the piece), evaluated by Horner in integers with the coefficients in the value's format (Q13, Q14):

    Sin:  p = ((c3 x) >> 14) + c2,  p = ((p x) >> 14) + c1,  F = rshr(p x, 14) + c0          (floor, floor, round)
    Cos:  p = ((c3 x) >> 14) + c2,  p = rshr(p x, 14) + c1,  F = rshr(p x, 14) + c0          (floor, round, round)

Found by searching the integer coefficients of each piece (least squares start, then every neighbour) against the
table of ``F`` read from 4 clean probes, under each of the 8 floor/round choices of the three steps. Every phase
read of Sin's first three pieces and of Cos's last is reproduced (``_SIN_COEFFS``, ``_COS_COEFFS``); Cos's first
piece 99.2%, its second 88.8%, its third 79.4% (their exact form is open); Sin's last piece follows no cubic of
this form (at most 64% of its phases), so it keeps ``round(sin(pi/2 r/2^14) 2^13)`` (72.7%; open).
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.spec.qnn_eltwise import f32
from openqnn.backends.htp.spec.qnn_hardswish16 import _rshr

__all__ = ["TRIG16_ARCHS", "TRIG16_OPS", "trig16_codes", "trig16_quadrant", "trig16_table_for", "trig16_value"]

TRIG16_ARCHS = ("v68", "v73")
TRIG16_OPS = {"ElementWiseSin": "Sin", "ElementWiseCos": "Cos"}
_VALUE_BITS = {"Sin": 13, "Cos": 14}
_N16 = 1 << 16
_QUADRANT_BITS = 14
_PIECE_BITS = 12  # four pieces of pi/8 per quadrant
# (c0, c1, c2, c3) per piece, the value's format (Sin Q13, Cos Q14); None: the piece's form is open (rounded sine)
_SIN_COEFFS: tuple[tuple[int, int, int, int] | None, ...] = (
    (0, 12869, -17, -5197), (-16, 13041, -643, -4405), (-210, 14167, -2847, -2951), None)
_COS_COEFFS: tuple[tuple[int, int, int, int] | None, ...] = (
    (16384, 11, -20486, 1930), (16316, 769, -23424, 5927), (15950, 2928, -27720, 8809), (15309, 5514, -31216, 10394))
# the rounding (1) or flooring (0) of the three Horner steps
_SIN_ROUND = (0, 0, 1)
_COS_ROUND = (0, 1, 1)


def _phase_multiplier(s_in: float) -> int:
    """``round(float32(s_in) 2^32 / (2 pi))``: one input code in units of ``2^-32`` of a turn."""
    return math.floor(f32(s_in) / (2 * math.pi) * 2.0**32 + 0.5)


def trig16_quadrant(a: np.ndarray, s_in: float, op: str) -> tuple[np.ndarray, np.ndarray]:
    """The sign (-1, 0, 1) and the 14-bit first-quadrant phase ``r`` (``0..2^14``) of centred input codes
    ``a = q - z_in``: the Q32 phase ``|a| M mod 2^32`` folded at full width, then floored (module docstring)."""
    one = np.int64(1) << 32
    half, quarter = one >> 1, one >> 2
    a = np.asarray(a, np.int64)
    p = (np.abs(a) * _phase_multiplier(s_in)) % one
    if op == "Sin":
        sign = np.where(p >= half, -1, 1) * np.sign(a)
        p = np.where(p >= half, p - half, p)
    else:
        p = np.where(p > half, one - p, p)
        sign = np.where(p > quarter, -1, 1)
    r = np.where(p > quarter, half - p, p) >> (32 - 2 - _QUADRANT_BITS)
    return sign.astype(np.int64), r.astype(np.int64)


def trig16_value(r: np.ndarray, op: str) -> np.ndarray:
    """``F(r)``: the quadrant function of the 14-bit phase ``r`` (Sin Q13 ``sin``, Cos Q14 ``cos`` of
    ``pi/2 r / 2^14``), a Horner cubic per pi/8 piece (module docstring); Sin's last piece the rounded sine."""
    x = np.asarray(r, np.int64)
    coeffs, rounds = (_SIN_COEFFS, _SIN_ROUND) if op == "Sin" else (_COS_COEFFS, _COS_ROUND)
    piece = np.minimum(x >> _PIECE_BITS, len(coeffs) - 1)
    out = np.zeros(x.shape, np.int64)
    for k, c in enumerate(coeffs):
        sel = piece == k
        xs = x[sel]
        if c is None:  # open: the real function rounded
            theta = np.pi / 2 * xs / 2.0**_QUADRANT_BITS
            out[sel] = np.floor(np.sin(theta) * 2.0 ** _VALUE_BITS[op] + 0.5).astype(np.int64)
            continue
        p = np.full(xs.shape, c[3], np.int64)
        for ci, rnd in zip(c[2::-1], rounds):
            p = (_rshr(p * xs, _QUADRANT_BITS) if rnd else (p * xs) >> _QUADRANT_BITS) + ci
        out[sel] = p
    return out


def trig16_codes(q: np.ndarray, op: str, s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray:
    """QNN's Sin or Cos (``op``) of 16-bit codes ``q`` (module docstring): the signed Q13/Q14 value converted to the
    output codes in sign and magnitude with the multiplier ``floor(f 2^15 + 1/4)``."""
    sign, r = trig16_quadrant(np.asarray(q, np.int64) - z_in, s_in, op)
    v = trig16_value(r, op)
    f, e = math.frexp(f32(2.0 ** -_VALUE_BITS[op] / f32(s_out)))
    m = math.floor(f * 2.0**15 + 0.25)
    sh = 15 - e
    mag = _rshr(v * m, sh) if sh > 0 else (v * m) << -sh
    return np.clip(z_out + sign * mag, 0, _N16 - 1).astype(np.int64)


def trig16_table_for(op_type: str, arch: str, arithmetic: str, s_in: float, z_in: int, s_out: float, z_out: int,
                     in_bits: int, out_bits: int) -> np.ndarray | None:
    """QNN's Sin or Cos on every 16-bit input code (``arithmetic == "qnn"``, v68 or v73, 16-bit codes in and out),
    else None (the caller builds exact rounding)."""
    op = TRIG16_OPS.get(op_type)
    if not (op is not None and arithmetic == "qnn" and arch in TRIG16_ARCHS and in_bits == out_bits == 16
            and s_in > 0 and s_out > 0 and math.isfinite(s_in) and math.isfinite(s_out)):
        return None
    return trig16_codes(np.arange(_N16, dtype=np.int64), op, s_in, z_in, s_out, z_out)
