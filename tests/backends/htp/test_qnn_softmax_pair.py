"""htp_config.arithmetic = "qnn": QNN's Softmax of rows of two 8-bit codes (spec/qnn_softmax.py: a sigmoid table
of the difference, the two codes summing to 255). Fast path == reference == the spec's table; other row
lengths and TFLite's arithmetic keep the general Softmax. (Against the simulator: tests/fidelity/test_qnn_softmax.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_elementwise import _enc, _graph

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext
from openqnn.backends.htp.spec.qnn_softmax import pair_table
from openqnn.ir.tensor import Encoding


def _step(n: int, arch: str, arithmetic: str, s_in: float):
    g = _graph("Softmax", [((3, 5, n), _enc(-128 * s_in, 127 * s_in, 8), None)], {"axis": -1, "beta": 1.0})
    g.tensors["out"].encoding = Encoding(8, (1.0 / 256,), (0,))
    node = g.nodes[0]
    return HTP_KERNELS["Softmax"](node, HtpBuildContext(g, ARCHS[arch], arithmetic=arithmetic)), g


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("s_in", [0.01, 0.2, 1.3])
def test_pair_fast_equals_reference_equals_table(arch: str, s_in: float) -> None:
    step, g = _step(2, arch, "qnn", s_in)
    assert step.plan is not None and step.plan.kernel == "htp.softmax_pair"
    s = float(g.tensors["x0"].encoding.scale[0])  # type: ignore[union-attr]
    x = np.random.default_rng(0).integers(0, 256, (3, 5, 2))
    x[0, 0, 1] = x[0, 0, 0]
    ref = step.reference(x)
    fast = step.fast(torch.from_numpy(x).to(torch.uint8))
    np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
    c1 = pair_table(s)[x[..., 1] - x[..., 0] + 255]
    np.testing.assert_array_equal(ref, np.stack([255 - c1, c1], axis=-1))
    assert list(ref[0, 0]) == [127, 128]
    p = 1.0 / (1.0 + np.exp(-(x[..., 1] - x[..., 0]) * s))
    assert np.abs(ref[..., 1] - 256 * p).max() <= 1.5  # 255 p rounded, against 256 p


@pytest.mark.parametrize("n,arithmetic", [(1, "qnn"), (17, "qnn"), (2, "tflite")])
def test_other_rows_keep_the_general_softmax(n: int, arithmetic: str) -> None:
    step, _ = _step(n, "v73", arithmetic, 0.1)
    assert step.plan is not None and step.plan.kernel == "htp.softmax"
