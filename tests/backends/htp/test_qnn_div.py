"""htp_config.arithmetic = "qnn": QNN's 16-bit Divide (spec/qnn_div.py, established at stop 27): the numerator's rounded
Q15 product with the ratio's 15-bit significand, times nnlib's 16-bit reciprocal of the divisor's code. Fast path ==
reference == the spec; TFLite's arithmetic, other arches, broadcasts and constant operands keep exact rounding.
(Against the simulator: tests/fidelity/test_qnn_div.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_elementwise import _enc, _graph

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext
from openqnn.backends.htp.spec.qnn_div import (
    div16_codes,
    div16_multiplier,
    div16_scaled_numerator,
    numerator16,
    recip16,
    recip16_of_divisor,
)


def test_recip16_has_nnlibs_documented_accuracy() -> None:
    """nnlib's table for its 2nd-order 4-segment reciprocal without refinement (``hvx_recip16_inline``, prec >= 52):
    over all 16,384 inputs a max excess error of 15.92 codes, a max relative error of 51.6e-5, rms 23.2e-5."""
    n = np.arange(1 << 14, 1 << 15)
    ideal = 2.0**29 / n
    x0 = recip16(n)
    rel = (x0 - ideal) / ideal
    assert round(float(np.abs(rel).max()) * 1e5, 1) == 51.6
    assert round(float(np.sqrt(np.mean(rel**2))) * 1e5, 1) == 23.2
    assert round(float((np.abs(x0 - ideal) - np.abs(ideal - np.round(ideal))).max()), 2) == 15.92


@pytest.mark.parametrize("d,lo,hi", [(3, 2.135e-4, 2.137e-4), (17, 4.386e-4, 4.397e-4), (19, -4.399e-4, -4.385e-4),
                                     (1000, -7.254e-5, -7.165e-5), (2211, 3.864e-4, 3.871e-4),
                                     (23290, -3.282e-4, -3.279e-4)])
def test_reciprocal_error_is_the_simulators_slope(d: int, lo: float, hi: float) -> None:
    """Each divisor's slope error measured on the simulator (``div_probe --bits 16``, v68 = v73, numerators below
    2^11) holds the reciprocal's relative error; the negated divisor mirrors it."""
    x0, s = recip16_of_divisor(np.array([d, -d]))
    n = d << int(s[0])
    assert lo <= int(x0[0]) * n / 2**29 - 1 < hi
    assert x0[1] == x0[0] and s[1] == s[0]


def test_scaled_numerator_by_hand() -> None:
    """``r = 15``: ``m = 30720 = 0.9375 2^15``, ``k = 11``; ``a = 32760``: ``p = (32760 30720 + 2^14) >> 15 = 30713``
    (the Q15 product 30712.5 rounded up); ``|a| >= 2^15`` drops its low bit; the significand's rounding can reach
    2^15."""
    assert div16_multiplier(1e-4, 1e-4, 1 / 15) == (30720, 11)
    assert div16_multiplier(1.0, 1.0, 1 / (1 - 2.0**-17)) == (1 << 14, 14)
    p, ea = div16_scaled_numerator(np.array([32760, -32760, 40001, 3, 0]), 30720)
    assert p.tolist() == [30713, 30713, 18750, 23040, 0] and ea.tolist() == [0, 0, 1, -13, 0]
    an, ea = numerator16(np.array([1, 65535, -16384]))
    assert an.tolist() == [16384, 32767, 16384] and ea.tolist() == [-14, 1, 0]


@pytest.mark.parametrize("qa,qb,y", [(65528, 16, 63481), (8, 16, 2055), (23207, 16, 23804), (32776, 16, 32776),
                                     (14548, 17, 16685), (65520, 17, 61680), (34819, 17, 34579)])
def test_simulator_codes_of_a_divisor_sweep(qa: int, qb: int, y: int) -> None:
    """Codes of ``div_probe.divisor_probes`` (``s_a = s_b = 1e-4``, ``z_a = z_o = 32768``, ``r = 15``; v68 = v73)
    where stop 26's exact product was a code off."""
    assert int(div16_codes(np.array([qa]), np.array([qb]), 1e-4, 32768, 1e-4, 0, 1 / 15, 32768)[0]) == y


def _run(g, arch: str, arithmetic: str, xs: dict[str, np.ndarray]):
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic=arithmetic))
    assert step.plan is not None
    args = [xs[n] for n in node.inputs if n in xs]
    ref = step.reference(*args)
    fast = step.fast(*[torch.from_numpy(a.astype(np.int32)) for a in args])
    np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
    return step.plan.kernel, ref


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_divide16_is_the_spec(arch: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (2, 5, 7, 9)
    encs = [_enc(-rng.uniform(0.1, 3), rng.uniform(0.1, 3), 16) for _ in range(2)]
    g = _graph("ElementWiseDivide", [(shape, encs[0], None), (shape, encs[1], None)])
    g.tensors["out"].encoding = _enc(-rng.uniform(1, 30), rng.uniform(1, 30), 16)
    (sa, sb, so), (za, zb, zo) = ([e.scale[0] for e in (*encs, g.tensors["out"].encoding)],
                                  [-e.offset[0] for e in (*encs, g.tensors["out"].encoding)])
    xs = {"x0": rng.integers(0, 1 << 16, shape), "x1": rng.integers(0, 1 << 16, shape)}
    xs["x1"].reshape(-1)[:5] = zb  # x / 0
    kernel, ref = _run(g, arch, "qnn", xs)
    assert kernel == "htp.divide_qnn16"
    np.testing.assert_array_equal(ref, div16_codes(xs["x0"], xs["x1"], sa, za, sb, zb, so, zo))
    _, exact = _run(g, arch, "tflite", xs)
    assert (exact != ref).any()
    assert np.abs(exact - ref).max() <= 20


@pytest.mark.parametrize("case", ["tflite", "v75", "8-bit"])
def test_divide16_rule_applies_only_where_probed(case: str) -> None:
    rng = np.random.default_rng(4)
    bw = 8 if case == "8-bit" else 16
    shape_b = (1, 9) if case == "broadcast" else (3, 9)
    g = _graph("ElementWiseDivide", [((3, 9), _enc(-1, 1, bw), None), (shape_b, _enc(-1, 2, bw), None)])
    g.tensors["out"].encoding = _enc(-8, 8, bw)
    xs = {"x0": rng.integers(0, 1 << bw, (3, 9)), "x1": rng.integers(0, 1 << bw, shape_b)}
    kernel, _ = _run(g, "v75" if case == "v75" else "v73", "tflite" if case == "tflite" else "qnn", xs)
    assert kernel == "htp.divide"


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("out_range", [1e-5, 3e-3, 1e4])
def test_divide16_extreme_ratios_fast_is_the_spec(arch: str, out_range: float) -> None:
    """Ratios that shift left (``sh <= 0``: saturating), just right of it, and far right (every code ``z_o``):
    every pair of some codes, the fast path = the reference = the spec."""
    g = _graph("ElementWiseDivide", [((256, 256), _enc(-2.0, 3.0, 16), None), ((256, 256), _enc(-0.5, 4.0, 16), None)])
    g.tensors["out"].encoding = _enc(-out_range, out_range, 16)
    encs = [g.tensors[n].encoding for n in ("x0", "x1", "out")]
    (sa, sb, so), (za, zb, zo) = [e.scale[0] for e in encs], [-e.offset[0] for e in encs]
    q = np.linspace(0, 65535, 256).astype(np.int64)
    q[:3] = [za, za + 1, za - 1]
    q[3:6] = [zb, zb + 1, zb - 1]
    xa, xb = np.meshgrid(q, q, indexing="ij")
    kernel, ref = _run(g, arch, "qnn", {"x0": xa, "x1": xb})
    assert kernel == "htp.divide_qnn16"
    np.testing.assert_array_equal(ref, div16_codes(xa, xb, sa, za, sb, zb, so, zo))


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("shapes", [((3, 9), (1, 9)), ((2, 1, 9), (4, 1)), ((1, 1), (5, 7))])
def test_divide16_broadcast_is_the_spec(arch: str, shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    """Run-time operands that broadcast (probed alike, stop 27): QNN's rule, fast = reference = spec."""
    rng = np.random.default_rng(6)
    (sa_, sb_) = shapes
    g = _graph("ElementWiseDivide", [(sa_, _enc(-1.3, 2.0, 16), None), (sb_, _enc(-0.4, 3.0, 16), None)])
    g.tensors["out"].encoding = _enc(-9, 9, 16)
    encs = [g.tensors[n].encoding for n in ("x0", "x1", "out")]
    (sa, sb, so), (za, zb, zo) = [e.scale[0] for e in encs], [-e.offset[0] for e in encs]
    xs = {"x0": rng.integers(0, 1 << 16, sa_), "x1": rng.integers(0, 1 << 16, sb_)}
    kernel, ref = _run(g, arch, "qnn", xs)
    assert kernel == "htp.divide_qnn16"
    np.testing.assert_array_equal(ref, div16_codes(xs["x0"], xs["x1"], sa, za, sb, zb, so, zo))
