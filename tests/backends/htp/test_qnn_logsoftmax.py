"""htp_config.arithmetic = "qnn": QNN's 8-bit LogSoftmax constants (spec/qnn_logsoftmax.py: the difference multiplier
T8(s_in) T16(1 / s_out), exponentials of the Softmax's step in Q30, the rounding threshold 0.035 code low). Fast path ==
reference == the float64 spec; other cases keep the general constants. (Against the simulator:
tests/fidelity/test_qnn_logsoftmax.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_elementwise import _enc, _graph

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext
from openqnn.backends.htp.spec.qnn_logsoftmax import diff_multiplier, logsoftmax_codes, logsoftmax_consts_for
from openqnn.ir.tensor import Encoding


def _step(n: int, arch: str, arithmetic: str, s_in: float, s_out: float, bits: int = 8):
    """A LogSoftmax over rows of ``n`` (2 x 64 rows) and its graph: the input symmetric around the middle code, the
    output's zero point the top code (outputs are 0 or below)."""
    half = 1 << (bits - 1)
    g = _graph("LogSoftmax", [((2, 64, n), _enc(-half * s_in, (half - 1) * s_in, bits), None)],
               {"axis": -1, "beta": 1.0})
    g.tensors["out"].encoding = Encoding(bits, (s_out,), (-(2 * half - 1),))
    node = g.nodes[0]
    return HTP_KERNELS["LogSoftmax"](node, HtpBuildContext(g, ARCHS[arch], arithmetic=arithmetic)), g


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("n,s_in,s_out", [(17, 0.046, 0.037), (64, 0.02, 0.03), (5, 0.09, 0.07), (128, 0.011, 0.02)])
def test_fast_equals_reference_equals_spec(arch: str, n: int, s_in: float, s_out: float) -> None:
    step, g = _step(n, arch, "qnn", s_in, s_out)
    enc = g.tensors["x0"].encoding
    assert enc is not None and step.plan is not None
    rng = np.random.default_rng(n)
    x = rng.integers(0, 256, (2, 64, n))
    x[1] = rng.integers(0, 40, (64, n)) + rng.integers(0, 216, (64, 1))
    ref = step.reference(x)
    np.testing.assert_array_equal(ref, step.fast(torch.from_numpy(x).to(torch.uint8)).numpy().astype(np.int64))
    np.testing.assert_array_equal(ref, logsoftmax_codes(x, enc.scale[0], s_out, 255))


def test_difference_multiplier_truncates_both_scales() -> None:
    s_out = 0.0917
    recip = float(np.float32(1.0) / np.float32(s_out))  # 10.905...: 16 significant bits, 12 fraction bits
    assert diff_multiplier(0.1, s_out) == math.floor(0.1 * 2**11) / 2**11 * math.floor(recip * 2**12) / 2**12
    assert diff_multiplier(0.1, s_out) / (0.1 / s_out) == pytest.approx(1 - 3.92e-3, abs=2e-5)  # 0.8 -> 204/256
    assert diff_multiplier(0.0625, 0.125) == 0.5  # powers of two: exact (no log2 e / ln 2 round trip)
    assert logsoftmax_consts_for("v73", "qnn", 2, 0.1, 0.1, 8, 8, 1.0, True) is None  # rows of two: another route
    assert logsoftmax_consts_for("v73", "qnn", 17, 0.1, 0.01, 8, 8, 1.0, True) is None  # s_in / s_out = 10: not probed
    assert logsoftmax_consts_for("v73", "tflite", 17, 0.1, 0.1, 8, 8, 1.0, True) is None
    assert logsoftmax_consts_for("v68", "qnn", 17, 0.1, 0.1, 8, 8, 1.0, True) is not None


def test_tflite_keeps_the_exact_constants() -> None:
    step_q, _ = _step(17, "v73", "qnn", 0.046, 0.037)
    step_t, _ = _step(17, "v73", "tflite", 0.046, 0.037)
    assert step_q.plan is not None and step_t.plan is not None
    assert step_q.plan.attrs["a_fx"] != step_t.plan.attrs["a_fx"]
