"""The QDQ export's node units as QNN EP forms them: LayerNorm (its beta a 32-bit bias of scale s_in x s_gamma),
a standalone BatchNorm (an ONNX BatchNormalization), and 16-bit activations' 8-bit static operands (stored as
16-bit integers) run as QNN's *integer* ops on the HTP simulator, not on floats; within a code or two of
openqnn's htp (their arithmetic is not QNN's yet: docs/htp-fidelity.md)."""

from __future__ import annotations

import pytest

from tests.fidelity.harness import simulator_missing

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("name, least, most", [
    ("layernorm/1x7x64/a8_pc", 0.70, 1),  # measured 74.6% on v68 and v73 (QNN's float LayerNorm: 99.1%)
    ("layernorm/1x5x17/a16_pt", 0.70, 1),  # 74.7% (float: 22.4%, up to 12 codes apart)
    ("batchnorm/1x5x7x9/a8_pt", 0.95, 1),  # v73 97.0% (float: off the output grid)
    ("pow2/exp2/a16", 0.99, 1),  # 16-bit activations, the exponent's 8-bit codes stored as 16-bit: 99.84%
    ("leaky_relu/0.1/a16", 0.6, 2),  # the same for the slope: 67.8%, up to 2 codes (float: off the grid)
])
def test_units_run_quantized(name: str, least: float, most: int, tmp_path) -> None:
    from tests.fidelity.cases import CASES
    from tests.fidelity.harness import run_prepared

    r = run_prepared(CASES[name].prepare(), "73", cache=tmp_path, arithmetic="qnn")
    assert r.refusal is None and r.error is None, r.line()
    assert not r.qnn_float, r.line()  # QNN EP took every compute node inside a QDQ unit
    assert r.max_diff is not None and r.max_diff <= most and r.identical is not None and r.identical >= least, r.line()
