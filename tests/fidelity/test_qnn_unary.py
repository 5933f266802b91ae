"""QNN's 8-bit Reciprocal, LeakyRelu, PRelu and BatchNorm (openqnn's spec, src/openqnn/backends/htp/spec/
qnn_unary.py) against the HTP simulator: every input code at random encodings (tests/fidelity/unary_probe.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fidelity.harness import simulator_missing
from tests.fidelity.unary_probe import exact_codes, probe_many, random_probes, spec_codes

_missing = simulator_missing()


def _shares(arch: str, op: str, count: int, seed: int, channels: int = 5,
            uniform: bool = False) -> tuple[float, float]:
    probes = random_probes(np.random.default_rng(seed), op, count, channels, uniform)
    sims = probe_many(arch, op, probes)
    spec = np.mean([np.mean(spec_codes(op, p, arch) == y) for p, y in zip(probes, sims)])
    exact = np.mean([np.mean(exact_codes(op, p) == y) for p, y in zip(probes, sims)])
    print(f"v{arch} {op}: spec {spec:.4%}, exact rounding {exact:.4%} ({count} encodings)")
    return float(spec), float(exact)


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_reciprocal_divides_the_quantized_one(arch: str) -> None:
    spec, exact = _shares(arch, "Reciprocal", 16, 11)
    assert spec == 1.0
    assert exact < 0.95  # the numerator is not 1


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_leaky_relu_rounds_exactly(arch: str) -> None:
    """Exact rounding, where TFLite's LeakyRelu (a 31-bit multiplier, then a rounding shift: two roundings) parts
    from the simulator."""
    from openqnn.backends.htp.fixedpoint import mbqm_np, quantize_multiplier
    from tests.fidelity.unary_probe import input_codes

    spec, _ = _shares(arch, "LeakyRelu", 16, 12)
    assert spec == 1.0
    probes = random_probes(np.random.default_rng(12), "LeakyRelu", 16)
    tflite = []
    for p, y in zip(probes, probe_many(arch, "LeakyRelu", probes)):
        a = input_codes(1) - p.zi
        si, so = float(np.float32(p.si)), float(np.float32(p.so))
        mp, shp = quantize_multiplier(si / so)
        mn, shn = quantize_multiplier(si * p.w[0] * float(np.float32(p.sw)) / so)
        v = np.where(a >= 0, mbqm_np(a, mp, shp), mbqm_np(a, mn, shn))
        tflite.append(np.mean(np.clip(v + p.zo, 0, 255) == y))
    assert np.mean(tflite) < 1.0


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
def test_batchnorm_v68_requantizes_its_parameters_then_a_depthwise_requantization() -> None:
    spec, exact = _shares("68", "BatchNorm", 16, 13)
    assert spec >= 0.9995  # the rest within 0.006 of a .5 boundary (docs/htp-fidelity.md)
    assert exact < 0.97


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
def test_batchnorm_v73_requantized_parameters_rounded_exactly_is_closest_yet() -> None:
    """v73's arithmetic is open: with QNN EP's re-quantized parameters exact rounding is within one code and
    closer than with the parameters as given."""
    spec, exact = _shares("73", "BatchNorm", 16, 13)
    assert spec > exact
    assert spec >= 0.97


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_batchnorm_of_one_channel_rounds_exactly(arch: str) -> None:
    """One channel: exact rounding on both archs (v68's depthwise form is for two or more channels)."""
    spec, exact = _shares(arch, "BatchNorm", 24, 2, channels=1)
    assert spec == exact == 1.0


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
def test_batchnorm_v73_parts_from_exact_rounding_with_two_equal_channels() -> None:
    """v73, two channels of weight code 255 and a zero bias (nothing re-quantized away from the given values):
    still not exact rounding, where one channel is (the open part is not in the parameters)."""
    _, exact = _shares("73", "BatchNorm", 24, 2, channels=2, uniform=True)
    assert 0.97 <= exact < 0.995


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_prelu_per_channel_slope_is_closer_as_two_requantizations(arch: str) -> None:
    """Approximate: each branch QNN's Max / Min requantization; closer than exact rounding, not every code."""
    spec, exact = _shares(arch, "PRelu", 16, 14)
    assert spec >= 0.995
    assert spec > exact


@pytest.mark.parametrize("arch", ["68", "73"])
def test_hardsigmoid_is_float32_arithmetic(arch: str) -> None:
    """HardSigmoid at the output scale 1/255 (calibration's [0, 1]), alpha 0.2 and 1/6: every code of ten encodings
    each is openqnn's htp table (float32 arithmetic, ``kernels/lut.FLOAT32_TABLE_OPS``); exact rounding misses ties."""
    from tests.fidelity.unary_probe import probe_codes

    rng = np.random.default_rng(8)
    missed = 0
    for alpha in (0.2, 1 / 6):
        encs = []
        for i in range(10):
            lo, hi = -float(rng.uniform(1, 8)), float(rng.uniform(1, 8))
            si = (hi - lo) / 255 if i % 2 == 0 else float(rng.choice([2**-4, 2**-5, 0.05, 0.1, 3 / 32]))
            encs.append((si, round(-lo * 255 / (hi - lo)), 1 / 255, 0))
        for (si, zi, so, zo), y in zip(encs, probe_codes(arch, "HardSigmoid", encs, alpha=alpha, beta=0.5)):
            np.testing.assert_array_equal(_htp_lut_codes("HardSigmoid", arch, si, zi, so, zo, alpha=alpha, beta=0.5), y)
            x = si * (np.arange(256) - zi)
            exact = np.floor(np.clip(alpha * x + 0.5, 0, 1) / so + 0.5) + zo
            missed += int((exact != y).sum())
    assert missed > 10


def _htp_lut_codes(op: str, arch: str, si: float, zi: int, so: float, zo: int, **attrs: object) -> np.ndarray:
    """openqnn's htp table of a one-input op (QNN's arithmetic) on every 8-bit code."""
    from openqnn.backends.htp.arch import ARCHS
    from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext
    from openqnn.ir import DType, Graph, Tensor, TensorKind
    from openqnn.ir.tensor import Encoding
    from openqnn.ops.build import emit

    g = Graph("g")
    x = g.add_tensor(Tensor("x", (1, 256), DType.FLOAT_32, TensorKind.APP_WRITE))
    x.encoding = Encoding(8, (si,), (-zi,))
    g.inputs.append("x")
    (out,) = emit(g, op, ["x"], dict(attrs), outputs=["out"])
    g.tensors[out].kind, g.tensors[out].encoding = TensorKind.APP_READ, Encoding(8, (so,), (-zo,))
    g.outputs.append(out)
    step = HTP_KERNELS[op](g.nodes[0], HtpBuildContext(g, ARCHS[f"v{arch}"], arithmetic="qnn"))
    return np.asarray(step.reference(np.arange(256).reshape(1, 256))).reshape(-1)


@pytest.mark.parametrize("arch", ["68", "73"])
def test_sigmoid_is_float32_arithmetic(arch: str) -> None:
    """8-bit Sigmoid at tie-prone output scales (1/255, 1/256, just under 1/255): openqnn's htp table (float32
    arithmetic) gives every code of 18 encodings; exact rounding misses some (``sigmoid(0) = 0.5`` on 1/255)."""
    from tests.fidelity.unary_probe import probe_codes

    rng = np.random.default_rng(21)
    encs = []
    for i in range(18):
        lo, hi = -float(rng.uniform(2, 8)), float(rng.uniform(2, 8))
        si = (hi - lo) / 255 if i % 2 else float(rng.choice([2**-4, 2**-5, 0.05, 3 / 64]))
        so = (1 / 255, 1 / 256, float(rng.uniform(0.9, 1.0)) / 255)[i % 3]
        encs.append((si, int(rng.integers(60, 200)), so, 0))
    missed = 0
    for (si, zi, so, zo), y in zip(encs, probe_codes(arch, "Sigmoid", encs)):
        np.testing.assert_array_equal(_htp_lut_codes("Sigmoid", arch, si, zi, so, zo), y)
        v = 1 / (1 + np.exp(-(si * (np.arange(256) - zi)))) / so
        missed += int((np.floor(v + 0.5) + zo != y).sum())
    assert missed > 0
