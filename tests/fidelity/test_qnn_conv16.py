"""v68's W8A16 convolution (spec/qnn_conv16.py) against the HTP simulator: the bias's units of 256 at the ties of
its float32 sum (tests/fidelity/conv16_probe.py's ``bias_ties``), and random two-channel probes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fidelity.harness import simulator_missing

# the fidelity case conv/5to64_k3_d2_p2/a16_pt's scales (its one v68 channel off before stop 27)
SX, SW, SO, ZX = 0.000101957776, 0.008046468, 0.00023265448, 31282


@pytest.mark.parametrize("zo, around, per_channel", [(36035, 1.0219e7, False), (1000, 1.02e7, False),
                                                     (36035, 1.02e7, True), (65000, 1.8434e7, False),
                                                     (15000, 4.254e6, False)],
                         ids=["share", "bias", "per-channel", "above-2^24", "below-2^23"])
def test_v68_w8a16_bias_takes_the_half_in_float32(zo: int, around: float, per_channel: bool) -> None:
    """Biases whose float32 sum with the zero point's share lands on 256 j - 6 .. 256 j + 5: every channel's
    units of 256 are Conv16Spec.bias's (the 1/2 added in float32); in [2^23, 2^24) the float64 half misses the
    sums 256 j - 1 (the first three sets), elsewhere the two agree."""
    from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec, _v68_bias
    from tests.fidelity.conv16_probe import bias_offsets, bias_ties

    if simulator_missing():
        pytest.skip(simulator_missing() or "")
    sw: float | np.ndarray = SW
    if per_channel:
        sw = (SW * np.random.default_rng(1).uniform(0.5, 1.0, 60)).astype(np.float32)
        sw[0] = SW
    bias = bias_ties(SX, sw, SO, zo, around)
    found, qbz = bias_offsets(SX, sw, SO, zo, ZX, bias, per_tensor=not per_channel)
    assert found == [[0]] * bias.size
    # the float64 half (the 8-bit form's): one unit low where the float32 sum is 256 j - 1 in [2^23, 2^24)
    real = float(np.float32(SX)) * np.broadcast_to(np.asarray(sw, np.float32), (bias.size,)).astype(np.float64) \
        / float(np.float32(SO))
    real = real if per_channel else real[:1]
    spec = QnnRequantSpec.of("v68", real, zo, 16)
    ws = np.asarray(sw, np.float32).reshape(-1)
    old = np.broadcast_to(_v68_bias(bias, float(np.float32(SX)), ws, None if per_channel else
                                    float(np.float32(np.float32(SX) * np.float32(SW))), spec, real) + spec.pre,
                          (bias.size,))
    differ = (old >> 8) != (qbz >> 8)
    if 1 << 23 <= old.min() and old.max() < 1 << 24:
        assert differ.sum() >= 3 and np.all(old[differ] % 256 == 255)
    else:
        assert not differ.any()


@pytest.mark.parametrize("seed", [5, 6])
def test_conv16_v68_matches_simulator(seed: int) -> None:
    """Random two-channel W8A16 probes on v68 (random weights, biases to 3e5 of both signs, input and output zero
    points; seed 5 per-channel weight scales, seed 6 per-tensor): every code."""
    from openqnn.backends.htp.spec.qnn_conv16 import Conv16Spec, conv16_v68
    from tests.fidelity.conv16_probe import N, run

    if simulator_missing():
        pytest.skip(simulator_missing() or "")
    rng = np.random.default_rng(seed)
    c = 64
    m = float(np.exp(rng.uniform(np.log(1e-4), np.log(0.05))))
    zx, zo, sx, pc = int(rng.integers(300, 65000)), int(rng.integers(0, 65535)), 1e-3, bool(seed % 2)
    sw = (0.01 * (rng.uniform(0.3, 1.0, c) if pc else np.ones(c))).astype(np.float32)
    so = sx * 0.01 / m
    xs = np.stack([np.arange(N) * 7 % 65536, rng.integers(0, 65536, N)])
    w = rng.integers(-127, 128, (c, 2))
    w[:, 0] = np.abs(w[:, 0]) | 1
    lim = max(1, int(min(127, 20000 / m / 65536 / 2)))  # outputs within 16 bits
    w = np.clip(w, -lim, lim)
    bias = rng.integers(-300000, 300000, c)
    p = run("68", xs, zx, w, bias, sx, sw, so, zo, per_tensor=not pc)
    real = p.real if pc else p.real[:1]
    qbz = Conv16Spec.of(real, zo, "v68").bias(bias, float(np.float32(sx)), sw if pc else sw[:1],
                                              None if pc else float(np.float32(np.float32(sx) * sw[0])), real)
    out = conv16_v68((w @ (xs >> 8)).T, (w @ (xs & 255)).T, w.sum(1), np.broadcast_to(qbz, (c,)), zx, p.real)
    assert np.array_equal(out, p.codes.T)


def test_v68_w8a16_bias_integer_sums_below_2_23_keep_their_units() -> None:
    """Below 2^23 the float32 1/2 is exact: with a bias scale half the accumulator's (so odd biases take a half)
    the float32 sums land on integers and halves, and the sums ``256 j - 1`` stay in unit ``j - 1`` (an odd sum is
    not rounded up: the half to even shows only where float32 steps are 1)."""
    from openqnn.backends.htp.spec.qnn_requant import _bias_f32
    from tests.fidelity.conv16_probe import bias_offsets

    if simulator_missing():
        pytest.skip(simulator_missing() or "")
    f32 = np.float32
    zo, p = 15000, f32(f32(SX) * f32(SW))
    sb = float(f32(p / f32(2)))
    share = f32(f32(zo) / f32(p / f32(SO)))
    cand = np.arange(-4000, 4000)
    sums = (_bias_f32(cand, float(f32(SX)), np.array([SW], f32), sb) + share).astype(f32).astype(np.float64)
    bias = np.concatenate([cand[np.isclose(sums % 256, r)][:10] for r in (254.5, 255.0, 255.5, 253.0, 0.0, 1.0)])
    found, qbz = bias_offsets(SX, SW, SO, zo, ZX, bias, sb=sb)
    assert found == [[0]] * bias.size
    on = sums[np.isin(cand, bias)]
    assert (on % 256 == 255).sum() >= 5 and np.all(qbz < 1 << 23)


@pytest.mark.parametrize("arch, seed, zo", [("68", 1, 29305), ("73", 1, 29305), ("68", 4, 60000), ("73", 3, 5000)])
def test_strided_depthwise16_zero_point_share_in_float32(arch: str, seed: int, zo: int) -> None:
    """A strided depthwise convolution with 16-bit codes folds ``floor(fl(fl(zo / M_c) + 1/2))`` into its
    accumulators (spec/qnn_requant.py's dw_strided16_pre, QNN's float32 multiplier ``M_c``): every channel's
    measured offset from ``round(zo / M)`` (conv16_probe.strided_dw_offsets) is the rule's."""
    from openqnn.backends.htp.spec.qnn_requant import dw_strided16_pre
    from tests.fidelity.conv16_probe import strided_dw_offsets

    if simulator_missing():
        pytest.skip(simulator_missing() or "")
    found, p = strided_dw_offsets(arch, seed, zo)
    pre = dw_strided16_pre(float(p["sx"]), p["sw"], float(p["so"]), zo, len(found))
    assert found == [[int(d)] for d in pre - p["pre64"]]
    if seed == 1:  # round(zo / M) itself misses most channels here
        assert sum(f == [0] for f in found) < len(found) // 2
