"""Fixed-point arithmetic of the htp backend: the executable spec, after TFLite's reference kernels.

Every function exists twice with the same name pattern: plain numpy on int64 arrays (the spec,
``*_np``) and PyTorch on int64 tensors (the fast path, ``*_t``). Tests hold them together.

- ``quantize_multiplier(real)``: a double ``real`` -> (int32 multiplier in Q0.31, shift) with
  ``real ~= multiplier * 2^(shift - 31)`` (TFLite's QuantizeMultiplier).
- ``srdhm``: SaturatingRoundingDoublingHighMul (gemmlowp): (a * b * 2 + 2^31 rounding) >> 32, with
  the one overflow case saturated; division truncates toward zero as C does.
- ``rdbpot``: RoundingDivideByPOT: arithmetic shift right rounding half away from zero.
- ``mbqm``: MultiplyByQuantizedMultiplier for int32 accumulators ("double rounding": srdhm, then
  rdbpot), used with 8-bit activations.
- ``mbqm64``: the int64-input variant TFLite uses for 16-bit activations: the multiplier reduced
  to 16 bits, one rounding shift.

QNN's 16-bit lookup tables (built once at prepare, so numpy only) share two more: ``q15_multiplier``, a
15-bit rounded significand and its exponent, and ``rshr_np``, Hexagon's rounding right shift (half up).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "bitlen_np",
    "bitlen_t",
    "mbqm64_np",
    "mbqm64_t",
    "mbqm_np",
    "mbqm_t",
    "q15_multiplier",
    "quantize_multiplier",
    "rdbpot_np",
    "rdbpot_t",
    "rshr_np",
    "srdhm_np",
    "srdhm_t",
]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: ``real = m * 2^(shift - 31)``, m in [2^30, 2^31) (or 0)."""
    if real == 0.0:
        return 0, 0
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"multiplier {real} must be finite and non-negative")
    q, shift = math.frexp(real)  # real = q * 2^shift, q in [0.5, 1)
    m = round(q * (1 << 31))
    if m == (1 << 31):
        m //= 2
        shift += 1
    if shift < -31:  # too small to represent: flush to zero, as TFLite does
        return 0, 0
    if shift > 30:
        shift, m = 30, INT32_MAX
    return int(m), int(shift)


def q15_multiplier(real: float, carry: bool = False) -> tuple[int, int]:
    """``(round(f 2^15), e)`` with ``real = f 2^e``, ``f`` in [0.5, 1), rounded half up: a 15-bit multiplier and its
    exponent. With ``carry``, a significand that rounds up to 2^15 is 2^14 one binade up (as 16-bit Exp, Gelu and
    Atan take it; HardSwish keeps 2^15)."""
    f, e = math.frexp(real)
    m = math.floor(f * 2.0**15 + 0.5)
    if carry and m == 1 << 15:
        return 1 << 14, e + 1
    return m, e


def bitlen_np(x: np.ndarray) -> np.ndarray:
    """Number of bits of non-negative int64s (0 for 0): an integer binary search."""
    x = np.asarray(x, dtype=np.int64)
    n = np.zeros_like(x)
    for sh in (32, 16, 8, 4, 2, 1):
        n = n + np.where((x >> (n + sh)) > 0, sh, 0)
    return n + (x > 0)


def bitlen_t(x: torch.Tensor) -> torch.Tensor:
    n = torch.zeros_like(x)
    for sh in (32, 16, 8, 4, 2, 1):
        n = n + ((x >> (n + sh)) > 0).to(torch.int64) * sh
    return n + (x > 0).to(torch.int64)


def rshr_np(v: np.ndarray, s: int) -> np.ndarray:
    """Hexagon's rounding right shift, half up: ``(v + 2^(s-1)) >> s`` (``v`` itself for ``s = 0``)."""
    return (v + (1 << (s - 1))) >> s if s > 0 else v


# -- numpy: the spec -----------------------------------------------------------------------------

def _trunc_div_np(x: np.ndarray, d: int) -> np.ndarray:
    q = np.abs(x) // d
    return np.where(x < 0, -q, q)


def srdhm_np(a: np.ndarray, b: int | np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    out = _trunc_div_np(ab + nudge, 1 << 31)
    return np.where(overflow, INT32_MAX, out).astype(np.int64)


def rdbpot_np(x: np.ndarray, exponent: int | np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def mbqm_np(x: np.ndarray, multiplier: int | np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """x (int32 range) * multiplier * 2^(shift - 31), TFLite's double rounding."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = np.clip(np.asarray(x, dtype=np.int64) << left, INT32_MIN, INT32_MAX)
    return rdbpot_np(srdhm_np(shifted, multiplier), right)


def mbqm64_np(x: np.ndarray, multiplier: int | np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """x (int64 accumulator) * multiplier * 2^(shift - 31): the 16-bit-activation requantization."""
    m = np.asarray(multiplier, dtype=np.int64)
    reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
    total_shift = 15 - np.asarray(shift, dtype=np.int64)
    prod = np.asarray(x, dtype=np.int64) * reduced
    if np.all(total_shift > 0):
        return (prod + (np.int64(1) << (total_shift - 1))) >> total_shift
    # multipliers >= 2^15 (outside TFLite's asserted range): an exact left shift, no rounding needed
    right = np.maximum(total_shift, 1)
    return np.where(total_shift > 0, (prod + (np.int64(1) << (right - 1))) >> right,
                    prod << np.maximum(-total_shift, 0))


# -- torch: the fast path (same integer operations, vectorized) --------------------------------

def srdhm_t(a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
    a = a.to(torch.int64)
    bt = torch.as_tensor(b, dtype=torch.int64, device=a.device)
    ab = a * bt
    nudge = torch.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    out = torch.div(ab + nudge, 1 << 31, rounding_mode="trunc")
    overflow = (a == INT32_MIN) & (bt == INT32_MIN)
    return torch.where(overflow, torch.full_like(out, INT32_MAX), out)


def rdbpot_t(x: torch.Tensor, exponent: torch.Tensor | int) -> torch.Tensor:
    e = torch.as_tensor(exponent, dtype=torch.int64, device=x.device)
    mask = (torch.ones_like(e) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).to(torch.int64)
    return (x >> e) + (remainder > threshold).to(torch.int64)


def mbqm_t(x: torch.Tensor, multiplier: torch.Tensor | int, shift: torch.Tensor | int) -> torch.Tensor:
    s = torch.as_tensor(shift, dtype=torch.int64, device=x.device)
    left = torch.clamp(s, min=0)
    right = torch.clamp(-s, min=0)
    shifted = torch.clamp(x.to(torch.int64) << left, INT32_MIN, INT32_MAX)
    return rdbpot_t(srdhm_t(shifted, multiplier), right)


def mbqm64_t(x: torch.Tensor, multiplier: torch.Tensor | int, shift: torch.Tensor | int) -> torch.Tensor:
    m = torch.as_tensor(multiplier, dtype=torch.int64, device=x.device)
    reduced = torch.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, torch.full_like(m, 0x7FFF))
    total_shift = 15 - torch.as_tensor(shift, dtype=torch.int64, device=x.device)
    prod = x.to(torch.int64) * reduced
    right = torch.clamp(total_shift, min=1)
    shifted = (prod + (torch.ones_like(right) << (right - 1))) >> right
    if bool((total_shift > 0).all()):
        return shifted
    return torch.where(total_shift > 0, shifted, prod << torch.clamp(-total_shift, min=0))
