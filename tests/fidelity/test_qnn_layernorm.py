"""QNN's LayerNorm rounds beta to the output's codes (spec/qnn_layernorm.py): the sweep's LayerNormalization
cases against the HTP simulator, openqnn's "qnn" arithmetic against exact rounding (TFLite's)."""

from __future__ import annotations

import pytest

from tests.fidelity.cases import CASES
from tests.fidelity.harness import run_case, simulator_missing

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("name", ["layernorm/1x7x64/a8_pt", "layernorm/1x7x64/a16_pc"])
def test_layernorm_beta_in_output_codes(name: str) -> None:
    qnn = run_case(CASES[name], "73")
    tflite = run_case(CASES[name], "73", arithmetic="tflite")
    assert qnn.identical is not None and tflite.identical is not None, qnn.error or qnn.refusal
    print(f"{name}: qnn {qnn.identical:.2%}, tflite {tflite.identical:.2%}")
    assert qnn.max_diff <= 1
    assert qnn.identical >= 0.95 > 0.8 > tflite.identical
