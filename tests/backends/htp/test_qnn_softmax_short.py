"""htp_config.arithmetic = "qnn": QNN's Softmax of rows of 3 to 16 8-bit codes is open (spec/qnn_softmax.py,
docs/htp-fidelity.md): such rows keep TFLite's arithmetic (exact exponentials in Q30, a rounded division), not
the long-row table with its 8-bit step. Fast path == reference, within one code of exact rounding.
(Against the simulator: tests/fidelity/test_qnn_softmax.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_qnn_softmax_pair import _step

from openqnn.backends.htp.spec.qnn_softmax import MIN_ROW, exp_table


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("n", [3, 8, 16])
def test_short_rows_keep_tflite_arithmetic(arch: str, n: int) -> None:
    assert n < MIN_ROW
    s_in = 0.1
    step, g = _step(n, arch, "qnn", s_in)
    assert step.plan is not None and step.plan.kernel == "htp.softmax"
    s = float(g.tensors["x0"].encoding.scale[0])  # type: ignore[union-attr]
    table = np.asarray(step.plan.arrays["exp"], dtype=np.int64)
    np.testing.assert_array_equal(table, np.round(np.exp(-s * np.arange(256)) * 2.0**30).astype(np.int64))
    assert not np.array_equal(table, exp_table(s))  # not the long rows' 8-bit step
    x = np.random.default_rng(n).integers(0, 256, (3, 5, n))
    ref = step.reference(x)
    np.testing.assert_array_equal(ref, step.fast(torch.from_numpy(x).to(torch.uint8)).numpy().astype(np.int64))
    e = np.exp(s * (x - x.max(axis=-1, keepdims=True)))
    exact = np.clip(np.rint(256 * e / e.sum(axis=-1, keepdims=True)), 0, 255)
    assert np.abs(ref - exact).max() <= 1
    assert np.mean(ref == exact) > 0.99
