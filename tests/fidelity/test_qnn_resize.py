"""QNN's linear Resize as QNN EP runs openqnn's export of it (on floats; openqnn's spec,
src/openqnn/backends/htp/spec/qnn_resize.py) against the HTP simulator: random 8-bit codes and encodings
through the exported graph (tests/fidelity/resize_probe.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fidelity.harness import simulator_missing
from tests.fidelity.resize_probe import exact_codes, probe, spec_codes

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("mode", ["linear_half", "linear_align", "linear_asym", "linear_half_x3"])
def test_float_resize_matches_the_simulator(mode: str, arch: str) -> None:
    """float32 interpolation, float16 quantization rounded half away: every code; exact rounding of the same
    float32 values misses 1-4% of them."""
    same = exact_same = total = 0
    for seed in range(3):
        p = probe(arch, mode, seed)
        ours = spec_codes(p)
        np.testing.assert_array_equal(ours, p["y"])
        same += int((ours == p["y"]).sum())
        exact_same += int((exact_codes(p) == p["y"]).sum())
        total += ours.size
    print(f"v{arch} {mode}: spec {same / total:.4%}, exact rounding {exact_same / total:.4%} of {total}")
    assert exact_same < same
