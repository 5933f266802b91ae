"""htp_config.arithmetic = "qnn": QNN's 16-bit LogSoftmax (spec/qnn_logsoftmax16.py: A = T16(s_in) T16(1 / s_out), the
16-bit Exp's exponent, a fitted 2^-f and log2, T16(ln 2) T16(1 / s_out)). Fast path == reference == spec; other cases
keep the general constants. (Against the simulator: tests/fidelity/test_qnn_logsoftmax.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_qnn_logsoftmax import _step as _logsoftmax_step

from openqnn.backends.htp.spec.qnn_logsoftmax import diff_multiplier
from openqnn.backends.htp.spec.qnn_logsoftmax16 import (
    EXP_BITS,
    LN2_Q16,
    exp_table16,
    log2_table16,
    logsoftmax16_codes,
    logsoftmax16_consts_for,
)

# simulator codes (v73, QNN 2.51): s_in 1.8114909e-4 (zero point 34795), s_out 1.8287258e-4 (zero point 65535)
_ROWS = [[22357, 57203, 26978, 41877, 27264, 28823, 40874, 15968, 37234, 18426, 46868, 35085, 35843, 18205, 28657,
          30972, 46784],
         [50787, 32081, 40353, 39328, 36337, 45863, 47123, 47643, 36347, 48773, 40348, 7075, 31101, 34533, 48510,
          23811, 32601]]
_SIM = [[28736, 63252, 33313, 48071, 33596, 35140, 47078, 22407, 43472, 24842, 53015, 41343, 42094, 24623, 34976,
         37269, 52932],
        [57215, 38686, 46880, 45865, 42902, 52338, 53586, 54101, 42912, 55220, 46875, 13916, 37715, 41115, 54960,
         30494, 39201]]


def _step(n: int, arch: str, arithmetic: str, s_in: float, s_out: float):
    return _logsoftmax_step(n, arch, arithmetic, s_in, s_out, 16)


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("n,s_in,s_out", [(17, 1.81e-4, 1.83e-4), (64, 9e-5, 2.5e-4), (5, 5e-4, 4e-4),
                                          (17, 3e-4, 1.1e-4)])
def test_fast_equals_reference_equals_spec(arch: str, n: int, s_in: float, s_out: float) -> None:
    step, g = _step(n, arch, "qnn", s_in, s_out)
    enc = g.tensors["x0"].encoding
    assert enc is not None and step.plan is not None
    assert step.plan.attrs["exp_bits"] == EXP_BITS
    rng = np.random.default_rng(n)
    x = rng.integers(0, 65536, (2, 64, n))
    x[1] = rng.integers(0, 4000, (64, n)) + rng.integers(0, 61536, (64, 1))
    ref = step.reference(x)
    fast = step.fast(torch.from_numpy(x.astype(np.int32))).numpy().astype(np.int64)
    np.testing.assert_array_equal(ref, fast)
    np.testing.assert_array_equal(ref, logsoftmax16_codes(x, enc.scale[0], s_out, 65535))


def test_pieces() -> None:
    s_out = 1.8287258e-4
    recip = float(np.float32(1.0) / np.float32(s_out))
    a = diff_multiplier(1.8114909e-4, s_out, 16)  # (T16 of s_in for 16-bit codes)
    assert a / (float(np.float32(1.8114909e-4)) / float(np.float32(s_out))) - 1 == pytest.approx(-1.2e-5, abs=1.5e-5)
    assert diff_multiplier(2.0**-10, 2.0**-11, 16) == 2.0  # powers of two: exact
    assert recip > 4096  # (1 / s_out: 13 integer bits, T16 keeps 3 fraction bits)
    assert LN2_Q16 == math.floor(math.log(2.0) * 2**16)
    e = exp_table16(1.8114909e-4)
    assert e is not None and e.shape == (65536,)
    assert e[0] == round(32766.2935 * 2**16)  # the maximum's, about 1 - 2^-15 (measured: 1 - 2^-15)
    assert np.all(np.diff(e) <= 0) and e[-1] >= 0
    rel = e[1:800] / 2.0**31 / np.exp2(-np.arange(1, 800) * float(np.float32(1.8114909e-4)) * math.log2(math.e)) - 1
    assert np.abs(rel).max() < 6e-4  # within 6e-4 of 2^-x (the simulator's: +1.5e-4 .. -4.8e-4)
    lt = log2_table16()
    assert lt.shape == (65537,) and abs(lt[-1] / 2.0**30 - 1) < 1e-4
    assert exp_table16(0.7) is None  # a step s_in log2 e of 1 or more: not this rule


def test_by_hand_against_the_simulator() -> None:
    """Two rows of the sweep's case: every code the simulator's."""
    got = logsoftmax16_codes(np.array(_ROWS), 0.00018114909396670345, 0.00018287257634502912, 65535)
    np.testing.assert_array_equal(got, np.array(_SIM))


def test_declines_outside_the_rule() -> None:
    args = (17, 1.8e-4, 1.8e-4, 16, 16, 1.0, True, True)
    assert logsoftmax16_consts_for("v73", "qnn", *args) is not None
    assert logsoftmax16_consts_for("v68", "qnn", *args) is not None
    assert logsoftmax16_consts_for("v75", "qnn", *args) is None
    assert logsoftmax16_consts_for("v73", "tflite", *args) is None
    assert logsoftmax16_consts_for("v73", "qnn", 2, *args[1:]) is None  # rows of two: not probed
    assert logsoftmax16_consts_for("v73", "qnn", 17, 1.8e-4, 1.8e-4, 8, 8, 1.0, True, True) is None
    assert logsoftmax16_consts_for("v73", "qnn", 17, 1.8e-4, 1.8e-4, 16, 16, 1.0, True, False) is None  # signed
    assert logsoftmax16_consts_for("v73", "qnn", 17, 0.7, 1.8e-4, 16, 16, 1.0, True, True) is None  # step >= 1
    assert logsoftmax16_consts_for("v73", "qnn", 17, 1.8e-4, 1.8e-4, 16, 16, 2.0, True, True) is None  # beta


def test_tflite_keeps_the_exact_constants() -> None:
    step_q, _ = _step(17, "v73", "qnn", 1.81e-4, 1.83e-4)
    step_t, _ = _step(17, "v73", "tflite", 1.81e-4, 1.83e-4)
    assert step_q.plan is not None and step_t.plan is not None
    assert "exp_bits" in step_q.plan.attrs and "exp_bits" not in step_t.plan.attrs
