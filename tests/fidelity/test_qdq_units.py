"""The QDQ export's node units as QNN EP forms them: LayerNorm (its beta a 32-bit bias of scale s_in x s_gamma)
and a standalone BatchNorm (an ONNX BatchNormalization) run as QNN's *integer* ops on the HTP simulator, not on
floats; within one code of openqnn's htp (their arithmetic is not QNN's yet: docs/htp-fidelity.md)."""

from __future__ import annotations

import pytest

from tests.fidelity.harness import simulator_missing

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("name, least", [
    ("layernorm/1x7x64/a8_pc", 0.70),  # measured 74.6% on v68 and v73 (QNN's float LayerNorm: 99.1%)
    ("layernorm/1x5x17/a16_pt", 0.70),  # 74.7% (float: 22.4%, up to 12 codes apart)
    ("batchnorm/1x5x7x9/a8_pt", 0.95),  # v73 97.0% (float: off the output grid)
])
def test_norms_run_as_quantized_units(name: str, least: float, tmp_path) -> None:
    from tests.fidelity.cases import CASES
    from tests.fidelity.harness import run_prepared

    r = run_prepared(CASES[name].prepare(), "73", cache=tmp_path, arithmetic="qnn")
    assert r.refusal is None and r.error is None, r.line()
    assert not r.qnn_float, r.line()  # QNN EP took every compute node inside a QDQ unit
    assert r.max_diff is not None and r.max_diff <= 1 and r.identical is not None and r.identical >= least, r.line()
