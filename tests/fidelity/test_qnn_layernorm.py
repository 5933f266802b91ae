"""QNN's LayerNorm (spec/qnn_layernorm.py) against the HTP simulator: the sweep's LayerNormalization cases
through openqnn's htp ("qnn" arithmetic against exact rounding, TFLite's) and the probe's rows
(tests/fidelity/layernorm_probe.py) against the spec read in float64."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fidelity.cases import CASES
from tests.fidelity.harness import run_case, simulator_missing

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("name", ["layernorm/1x7x64/a8_pt", "layernorm/1x5x17/a8_pc", "layernorm/1x7x64/a8_pc_odd"])
def test_layernorm_8bit_is_identical(name: str, arch: str) -> None:
    qnn = run_case(CASES[name], arch)
    tflite = run_case(CASES[name], arch, arithmetic="tflite")
    assert qnn.identical is not None and tflite.identical is not None, qnn.error or qnn.refusal
    print(f"{name} v{arch}: qnn {qnn.identical:.2%}, tflite {tflite.identical:.2%}")
    assert qnn.identical == 1.0 and qnn.max_diff == 0
    assert tflite.identical < 0.8


@pytest.mark.parametrize("name", ["layernorm/1x7x64/a16_pt", "layernorm/1x7x64/a16_pc"])
def test_layernorm_16bit_beta_in_output_codes(name: str) -> None:
    qnn = run_case(CASES[name], "73")
    tflite = run_case(CASES[name], "73", arithmetic="tflite")
    assert qnn.identical is not None and tflite.identical is not None, qnn.error or qnn.refusal
    print(f"{name}: qnn {qnn.identical:.2%}, tflite {tflite.identical:.2%}")
    assert qnn.max_diff <= 1
    assert qnn.identical >= 0.95 > 0.8 > tflite.identical


@pytest.mark.parametrize("n,rows", [(256, 60), (17, 31), (100, 24)])
def test_layernorm_probe_rows_follow_the_spec(n: int, rows: int) -> None:
    from tests.fidelity.layernorm_probe import exact_codes, probe_rows, run_codes, spec_codes

    rng = np.random.default_rng(n)
    q = probe_rows(seed=n, n=n)[:, :rows]
    gq, bq = rng.integers(100, 256, n), rng.integers(-300, 300, n)
    for so in (1 / 255, 0.03):
        sim = run_codes("73", q, 0.05, 128, gq, 1 / 200, bq, 1e-3, so, 128)
        ours, ex = spec_codes(q, 0.05, gq, 1 / 200, bq, 1e-3, so, 128), exact_codes(q, 0.05, gq, 1 / 200, bq, 1e-3, so, 128)
        print(f"n={n} s_out={so:.4f}: spec {np.mean(ours == sim):.3%}, exact rounding {np.mean(ex == sim):.3%}")
        assert np.mean(ours == sim) >= 0.995 > 0.99 > np.mean(ex == sim)  # the rest: within 0.05 of a .5
