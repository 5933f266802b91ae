"""QNN's ReduceMean / ReduceSum requantization (openqnn's spec, src/openqnn/backends/htp/spec/qnn_reduce.py)
and GlobalAveragePool's (QNN's PoolAvg2d: the multiplier rounded to nearest) against the HTP simulator: every
sum in the output range at random multipliers below 0.5 and random zero points (tests/fidelity/reduce_probe.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fidelity.harness import simulator_missing
from tests.fidelity.reduce_probe import probe, random_probes, spec_codes

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "GlobalAveragePool"])
def test_reduction_requantization_matches_the_simulator(op: str, arch: str) -> None:
    same = exact_same = total = 0
    for hw, sx, so, zx, zo in random_probes(np.random.default_rng(3), 4):
        n = hw[0] * hw[1]
        sums, sim, m = probe(arch, op, hw, sx, so / (1 if op == "ReduceSum" else n), zx, zo, max_channels=1024)
        ours = spec_codes(op, sums, m, zo)
        assert int(np.abs(ours - sim).max()) <= 1
        same += int((ours == sim).sum())
        exact_same += int((np.clip(np.floor(sums * m + 0.5) + zo, 0, 255) == sim).sum())
        total += sums.size
    print(f"v{arch} {op}: spec {same / total:.4%} identical, exact rounding {exact_same / total:.4%} of {total}")
    assert same / total >= (1.0 if op == "GlobalAveragePool" else 0.998)
    assert same >= exact_same


@pytest.mark.parametrize("arch", ["68", "73"])
def test_reduce_mean_over_axes_1_2_rounds_its_multiplier(arch: str) -> None:
    """A ReduceMean over axes 1 and 2 of a [1, H, W, C] tensor (openqnn's export of a mean over the pixels):
    the multiplier rounded to nearest, every code; MobileNetV2's global pool (whose floored multiplier is one
    lower) among the probes."""
    from openqnn.backends.htp.spec.qnn_reduce import QnnMeanSpec

    mnv2 = ((2, 2), 0.0008843347722408818, 0.0008811780050689098 * 4, 0, 0)
    same = floor_same = total = 0
    for hw, sx, so, zx, zo in [mnv2, *random_probes(np.random.default_rng(5), 4)]:
        n = hw[0] * hw[1]
        sums, sim, m = probe(arch, "ReduceMean", hw, sx, so / n, zx, zo, max_channels=1024, nhwc=True)
        same += int((spec_codes("ReduceMean", sums, m, zo, nhwc=True) == sim).sum())
        floor_same += int((QnnMeanSpec.of(m, zo).apply_np(sums) == sim).sum())
        total += sums.size
    print(f"v{arch} ReduceMean axes 1, 2: spec {same / total:.4%}, floored multiplier {floor_same / total:.4%}")
    assert same == total and floor_same < total


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("op,layout", [("ReduceMean", "nhwc"), ("ReduceMean", "transposed"), ("ReduceMean", "nchw"),
                                       ("ReduceMean", "last"), ("ReduceSum", "nhwc"), ("GlobalAveragePool", "nchw")])
def test_16_bit_reductions_match_the_simulator(op: str, layout: str, arch: str) -> None:
    """uint16 codes: QNN's PoolAvg2d form (GlobalAveragePool, a ReduceMean over axes 1 and 2 of [1, H, W, C]; its
    rounding switches with e + bitlen(n)) and the ReduceSum form (the rest, a transposed graph input's mean too),
    at multipliers from 2^-14 to 0.4 (spec/qnn_reduce.py)."""
    from openqnn.backends.htp.spec.qnn_reduce import mean_spec_for
    from tests.fidelity.reduce_probe import probe16

    rng = np.random.default_rng(11)
    pool = op == "GlobalAveragePool" or (op == "ReduceMean" and layout == "nhwc")
    same = exact_same = other_same = total = 0
    for hw, m in [((7, 9), 0.003), ((8, 8), 0.0015), ((3, 3), 0.009), ((14, 14), 2.0 ** -12), ((4, 4), 0.4),
                  ((5, 7), 0.07)]:
        sums, sim, mm, zo = probe16(arch, op, hw, m, rng, layout="nchw" if op == "GlobalAveragePool" else layout)
        n = 1 if op == "ReduceSum" else hw[0] * hw[1]
        spec = mean_spec_for(f"v{arch}", "qnn", mm, zo, 16, 16, nearest=pool, count=n)
        assert spec is not None
        ours = spec.apply_np(sums)
        same += int((ours == sim).sum())
        # the other form of a mean (a ReduceSum has one)
        other = mean_spec_for(f"v{arch}", "qnn", mm, zo, 16, 16, nearest=not pool, count=n)
        other_same += int((other.apply_np(sums) == sim).sum()) if other is not None and op != "ReduceSum" else 0
        exact_same += int((np.clip(np.floor(sums * mm + 0.5) + zo, 0, 65535) == sim).sum())
        total += sums.size
    print(f"v{arch} {op} {layout}: spec {same / total:.4%}, exact rounding {exact_same / total:.4%} of {total}")
    assert same / total >= 0.999 and exact_same / total < 0.9 and other_same / total < 0.9


@pytest.mark.parametrize("arch", ["68", "73"])
def test_16_bit_pool_over_3_mib_rounds_nearly_exactly(arch: str) -> None:
    """A 16-bit mean over 56x56 pixels at e + bitlen(n) = -3: 470 channels (2.95 MB) take the small-input form
    (floor + 1), 512 channels (3.2 MB) the large-input path (exact rounding); each form fails on the other."""
    from openqnn.backends.htp.spec.qnn_reduce import mean_spec_for
    from tests.fidelity.reduce_probe import probe16

    rng = np.random.default_rng(13)
    for channels, large in ((470, False), (512, True)):
        sums, sim, mm, zo = probe16(arch, "ReduceMean", (56, 56), 2.0 ** -15 * 1.5, rng, channels=channels)
        padded = 56 * 56 * -(-channels // 32) * 32 * 2
        spec = mean_spec_for(f"v{arch}", "qnn", mm, zo, 16, 16, nearest=True, count=56 * 56, padded_bytes=padded)
        other = mean_spec_for(f"v{arch}", "qnn", mm, zo, 16, 16, nearest=True, count=56 * 56,
                              padded_bytes=0 if large else 4 << 20)
        assert spec is not None and other is not None
        assert (spec.apply_np(sums) == sim).mean() >= 0.998
        assert (other.apply_np(sums) == sim).mean() < 0.9
