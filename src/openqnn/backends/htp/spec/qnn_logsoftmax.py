"""QNN's HTP LogSoftmax of 8-bit codes (last axis), v68 and v73 alike, on Qualcomm's HTP simulator
(onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/logsoftmax_probe.py``, held to it by
``tests/fidelity/test_qnn_logsoftmax.py`` (docs/htp-fidelity.md, "LeakyRelu, PRelu, Reciprocal, LogSoftmax and
BatchNorm (8-bit), stop 25"). Partly established:

- **The difference term** (established): an element ``k = max(q) - q`` codes below its row's maximum comes out
  ``k * C2 * ln 2 / s_out`` below the maximum's, with ``C2 = trunc8(s_in) * 1.4423828125``: the input scale
  truncated to 8 significant bits (a bfloat16 truncation) times log2(e) as a float16 (1477/1024). Measured on rows
  ``[max, max - k, far below...]`` (the normalizer constant): the slope is ``s_in / s_out`` times 0.99577..0.99889
  per input scale, nearly the same for every output scale (within 1e-4); ``trunc8(s_in) / s_in * 0.99978``
  matches it within 1e-4 on ten input scales (float32 ``s_in * log2 e`` truncated to 8 bits, as the Softmax,
  does not: 0.9950..0.9990), so the form is right to about 1e-4, not to the last bit.
- **The normalizer** (approximate): ``log2`` of the sum of ``E[k] = floor(2^(-k C') 2^12) / 2^12`` with ``C'`` the
  Softmax's exponent step (``qnn_softmax.exp_step``); the best of the candidates tried (exponentials exact, in
  float16, bfloat16, float32, truncated to 9..16 fraction bits, with ``C'``, ``C2`` or the exact step; sums in
  float16 or exact; ``log2`` through 4..11-bit mantissa tables): 98.5% of 99,000 random probe codes where exact
  rounding gives 92%; what is left is within one code (the normalizer is off by up to about 0.005 in log2).

- **The rounding** (fitted): the magnitude ``u = (k C2 + log2(sum E)) ln 2 / s_out`` rounds up from
  ``0.5 + 0.02``, not from one half: a single offset in codes fits 24 probes better than one in nats (their best
  offsets 0.004-0.03 codes, 0.00004-0.0028 nat); 0.02 lifts the spec from 98.5% to 99.1% of their codes.

    code = clamp(z_out - floor(u + 1/2 - 0.02))

Not covered (TFLite's arithmetic stays): rows of 2 (a probe at ``s_in / s_out = 15`` gave the maximum code 255
whatever the difference), input / output scale ratios above 2, other axes, beta != 1, 16-bit codes.
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.backends.htp.spec.qnn_softmax import exp_step

__all__ = ["ARCHS", "EXP_FRACTION_BITS", "LOG2E_F16", "ROUND_LOWER", "diff_step", "exp_table", "logsoftmax_codes",
           "logsoftmax_consts_for"]

ARCHS = ("v68", "v73")
LOG2E_F16 = 1477 / 1024  # log2(e) as a float16
EXP_FRACTION_BITS = 12  # the normalizer's exponentials, truncated
MAX_RATIO = 2.0  # s_in / s_out probed up to here
ROUND_LOWER = 0.02  # codes: the rounding threshold lowered from 1/2 (fitted, module docstring)


def diff_step(s_in: float) -> float:
    """``C2``: the difference term's step in log2 units per input code (module docstring)."""
    mant, exp = math.frexp(float(np.float32(s_in)))
    return math.floor(mant * 256.0) * 2.0 ** (exp - 8) * LOG2E_F16


def exp_table(s_in: float, bitwidth: int = 8, fraction_bits: int = 30) -> np.ndarray:
    """``E[k] = floor(2^(-k C') 2^12)`` scaled to ``fraction_bits`` (int64, 2^bitwidth entries; E[0] = 2^fraction_bits)."""
    ks = np.arange(1 << bitwidth, dtype=np.float64)
    e = np.floor(np.exp2(-ks * exp_step(s_in)) * 2.0**EXP_FRACTION_BITS).astype(np.int64)
    return e << (fraction_bits - EXP_FRACTION_BITS)


def logsoftmax_codes(q: np.ndarray, s_in: float, s_out: float, z_out: int) -> np.ndarray:
    """The spec on 8-bit codes ``q`` (last axis), in float64: the reference the probes and tests use."""
    k = np.asarray(q, np.int64).max(axis=-1, keepdims=True) - np.asarray(q, np.int64)
    e = exp_table(s_in, 8, EXP_FRACTION_BITS)[k].astype(np.float64) / 2.0**EXP_FRACTION_BITS
    l2 = np.log2(e.sum(axis=-1, keepdims=True))
    u = (k * diff_step(s_in) + l2) * math.log(2.0) / float(np.float32(s_out))
    return np.clip(z_out - np.floor(u + 0.5 - ROUND_LOWER), 0, 255).astype(np.int64)


def logsoftmax_consts_for(arch: str, arithmetic: str, n: int, s_in: float, s_out: float, in_bits: int,
                          out_bits: int, beta: float, last_axis: bool) -> tuple[np.ndarray, float, float] | None:
    """(the Q30 exponential table, the difference term's step in output codes ``C2 ln 2 / s_out``, the rounding's
    lowered threshold in codes) where the spec
    applies (``arithmetic == "qnn"``, v68 or v73, 8-bit codes, rows of 3 or more on the last axis, beta 1,
    ``s_in / s_out <= 2``), else None."""
    if (arithmetic != "qnn" or arch not in ARCHS or in_bits != 8 or out_bits != 8 or n < 3 or beta != 1.0
            or not last_axis or not s_in > 0 or not s_out > 0 or s_in / s_out > MAX_RATIO):
        return None
    return exp_table(s_in), diff_step(s_in) * math.log(2.0) / float(np.float32(s_out)), ROUND_LOWER
