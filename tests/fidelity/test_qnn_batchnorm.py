"""QNN's BatchNorm (openqnn's spec, src/openqnn/backends/htp/spec/qnn_batchnorm.py) against the HTP simulator:
random encodings, 16-bit codes on both archs, v68's and v73's 8-bit channels (tests/fidelity/batchnorm_probe.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fidelity.batchnorm_probe import exact_codes, input_codes, probe_many, random_probes, spec_codes
from tests.fidelity.harness import simulator_missing

_missing = simulator_missing()


def _shares(arch: str, bits: int, count: int, seed: int, channels: int, wscale: float = 1.0,
            signed: bool = False) -> tuple[float, float, int]:
    probes = random_probes(np.random.default_rng(seed), bits, count, channels, wscale=wscale, signed=signed)
    qs = [input_codes(p, k) for k, p in enumerate(probes)]
    sims = probe_many(arch, probes, qs)
    spec = np.mean([np.mean(spec_codes(arch, p, q) == y) for p, q, y in zip(probes, qs, sims)])
    exact = np.mean([np.mean(exact_codes(p, q) == y) for p, q, y in zip(probes, qs, sims)])
    n = sum(y.size for y in sims)
    print(f"v{arch} {bits}-bit BatchNorm: spec {spec:.4%}, exact rounding {exact:.4%} ({n} codes)")
    return float(spec), float(exact), n


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_16bit_batchnorm_is_the_integer_form(arch: str) -> None:
    """Weights of both signs, random zero points: every code (exact rounding is codes apart)."""
    spec, exact, _ = _shares(arch, 16, 6, 21, 3, signed=True)
    assert spec == 1.0
    assert exact < 0.9


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
def test_16bit_batchnorm_of_large_weights_has_no_carry() -> None:
    """Weights of 10 to 200 (``M`` near 1/4 and above: shifts 14 to 17, the carry only from 16)."""
    spec, _, _ = _shares("73", 16, 8, 8, 3, wscale=100.0)
    assert spec == 1.0


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
def test_8bit_batchnorm_v68_is_the_integer_form() -> None:
    spec, exact, _ = _shares("68", 8, 12, 22, 4)
    assert spec == 1.0
    assert exact < 1.0


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("wscale,signed", [(1.0, True), (40.0, False)])
def test_8bit_batchnorm_v73_is_its_convolution_form_on_int8_weights(wscale: float, signed: bool) -> None:
    """Weights of both signs (codes clamped to -128 / 127) and large weights (no bits dropped)."""
    spec, exact, _ = _shares("73", 8, 12, 23, 5, wscale=wscale, signed=signed)
    assert spec == 1.0
    assert exact < 1.0
