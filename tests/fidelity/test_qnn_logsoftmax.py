"""QNN's 8-bit LogSoftmax (openqnn's spec, src/openqnn/backends/htp/spec/qnn_logsoftmax.py) against the HTP
simulator (tests/fidelity/logsoftmax_probe.py): the difference step on rows ``[max, max - k, far below...]``, and
random rows of 5 to 128 elements."""

from __future__ import annotations

import math

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_logsoftmax import diff_step, logsoftmax_codes
from tests.fidelity.harness import simulator_missing
from tests.fidelity.logsoftmax_probe import exact_codes, random_probes, run_codes

_missing = simulator_missing()


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("s_in,s_out", [(0.1, 0.08), (0.1, 0.125), (0.083, 0.1)])
def test_difference_step(arch: str, s_in: float, s_out: float) -> None:
    """With the other elements far below, the element k codes below the maximum is k C2 ln2 / s_out below it:
    the step's interval from the simulator's codes holds C2 = trunc8(s_in) fp16(log2 e), not s_in log2 e."""
    k = np.arange(256)
    q = np.zeros((1, 256, 17), np.int64)
    q[0, :, 0], q[0, :, 1] = 255, 255 - k
    y1 = run_codes(arch, q, s_in, 0, s_out)[0, :, 1] - 255
    si, so = float(np.float32(s_in)), float(np.float32(s_out))
    lse = np.log1p(np.exp(-k * si))  # the normalizer, ~0 where k s_in > 9
    m = (k * si > 9) & (y1 > -255)
    d = y1[m] + lse[m] / so
    lo, hi = np.max(-(d + 0.5) / k[m]), np.min(-(d - 0.5) / k[m])  # the step per code, in output codes
    step = diff_step(s_in) * math.log(2.0) / so
    assert lo - 1.5e-4 * step <= step <= hi + 1.5e-4 * step  # within 1e-4: the form is not exact to the last bit
    assert not lo <= si / so <= hi  # the exact step is outside


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_random_rows(arch: str) -> None:
    same = exact = total = 0
    for sx, zx, so, q in random_probes(np.random.default_rng(21), 6, rows=32):
        sim = run_codes(arch, q, sx, zx, so)
        ours = logsoftmax_codes(q, sx, so, 255)
        assert int(np.abs(ours - sim).max()) <= 1
        same += int((ours == sim).sum())
        exact += int((exact_codes(q, sx, so) == sim).sum())
        total += sim.size
    print(f"v{arch} LogSoftmax: spec {same / total:.2%}, exact rounding {exact / total:.2%} of {total}")
    assert same / total >= 0.97
    assert same > exact
