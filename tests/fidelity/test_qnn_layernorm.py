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


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("name,least", [("layernorm/1x7x64/a16_pt", 1.0), ("layernorm/1x5x17/a16_pc", 1.0),
                                        ("layernorm/1x16x768/a16_pt", 0.995)])
def test_layernorm_16bit_follows_rule_3(name: str, least: float, arch: str) -> None:
    """The sweep's 16-bit cases (spec/qnn_layernorm.py rule 3; before it, beta's rounding alone: 92-97%)."""
    qnn = run_case(CASES[name], arch)
    tflite = run_case(CASES[name], arch, arithmetic="tflite")
    assert qnn.identical is not None and tflite.identical is not None, qnn.error or qnn.refusal
    print(f"{name} v{arch}: qnn {qnn.identical:.2%}, tflite {tflite.identical:.2%}")
    assert qnn.max_diff <= 1
    assert qnn.identical >= least > 0.8 > tflite.identical


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("n,c", [(256, 40000), (256, 20000), (512, 20000), (64, 40000)])
def test_layernorm16_mean_is_on_the_qf32_grid(n: int, c: int, arch: str) -> None:
    """Rows of a constant code plus k codes one higher: the mean QNN subtracts is a whole number of float32 ulps
    above the exact one, qf32_grid(k + 1) of them (never a multiple of 4 ulps of its binade; rule 3), read to
    1e-4 of an ulp from a constant element's code."""
    from openqnn.backends.htp.spec.qnn_layernorm import qf32_grid
    from tests.fidelity.layernorm_probe import implied_mean_units, mean_rows, run_codes

    ks = np.arange(-12, 13)
    q = mean_rows(n, c, ks)
    sim = run_codes(arch, q, 1e-3, 32768, np.full(n, 255), 1 / 255, np.zeros(n, np.int64), 1e-3, 1e-5, 32768, bits=16,
                    eps=1e-12)
    got = implied_mean_units(q, sim, 1e-5, 32768)
    read = ~np.isnan(got)
    u = 2.0 ** (np.floor(np.log2(c)) - 23)
    want = qf32_grid(ks / n / u + 1)
    print(f"v{arch} N={n} c={c}: mean' - c (ulps) {np.round(got[read], 3)}")
    assert read.sum() >= 12
    assert np.abs(got - want)[read].max() < 0.01
    assert np.abs(got - ks / n / u)[read].min() > 0.9  # never the exact mean


@pytest.mark.parametrize("arch", ["68", "73"])
def test_layernorm16_row_multiplier_has_16_significant_bits(arch: str) -> None:
    """Symmetric ramps (an exact mean, codes over the output range): the spec's codes exactly, while the same
    rule with the row multiplier unrounded misses 5-10% of them and exact rounding a quarter."""
    from tests.fidelity.layernorm_probe import exact_codes, ramp_rows, run_codes, spec16_codes

    q = ramp_rows(21)
    n = q.shape[-1]
    rng = np.random.default_rng(22)
    for gq, sg, so in ((np.full(n, 255), 1 / 255, 1.75 / 32768), (rng.integers(131, 256, n), 0.004, 6e-5)):
        bq = rng.integers(-2000, 2000, n)
        sim = run_codes(arch, q, 1e-3, 32768, gq, sg, bq, 2e-4, so, 32768, bits=16)
        ours = spec16_codes(q, 1e-3, gq, sg, bq, 2e-4, so, 32768)
        plain = spec16_codes(q, 1e-3, gq, sg, bq, 2e-4, so, 32768, round_multiplier=False)
        ex = exact_codes(q, 1e-3, gq, sg, bq, 2e-4, so, 32768, bits=16)
        print(f"v{arch} s_out={so:.3g}: spec {np.mean(ours == sim):.3%}, multiplier unrounded {np.mean(plain == sim):.2%}, "
              f"exact {np.mean(ex == sim):.2%}")
        assert np.array_equal(ours, sim)
        assert np.mean(plain == sim) < 0.97 and np.mean(ex == sim) < 0.8


@pytest.mark.parametrize("n,rows,least", [(256, 48, 0.995), (64, 48, 0.995), (768, 24, 0.85), (17, 48, 0.9)])
def test_layernorm16_normal_rows(n: int, rows: int, least: float) -> None:
    """Normal rows on fine output scales (up to 6 output codes per input code): N = 64 and 256 follow rule 3;
    other N hold the mean as a fit (S1 float32(1/N) on the qf32 grid, docs/htp-fidelity.md: open), still well
    above exact rounding."""
    from tests.fidelity.layernorm_probe import exact_codes, random_rows16, run_codes, spec16_codes

    q = random_rows16({256: 4, 64: 5, 768: 6, 17: 7}[n], rows, n)
    gq, bq = np.full(n, 255), np.random.default_rng(n).integers(-2000, 2000, n)
    sim = run_codes("73", q, 1e-3, 32768, gq, 1 / 255, bq, 2e-4, 1.75 / 32768, 32768, bits=16)
    ours = spec16_codes(q, 1e-3, gq, 1 / 255, bq, 2e-4, 1.75 / 32768, 32768)
    ex = exact_codes(q, 1e-3, gq, 1 / 255, bq, 2e-4, 1.75 / 32768, 32768, bits=16)
    print(f"N={n}: spec {np.mean(ours == sim):.3%} (max {np.abs(ours - sim).max()}), exact {np.mean(ex == sim):.2%}")
    assert np.mean(ours == sim) >= least > np.mean(ex == sim)


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


def _rows(rows: int, n: int, zo: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(rows * n + zo)
    q = np.clip(np.rint(128 + rng.uniform(10, 60, (rows, 1)) * rng.standard_normal((rows, n))), 0, 255)[None]
    return q.astype(np.int64), rng.integers(100, 256, n), rng.integers(-300, 300, n)


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("slice_", [([0, 0], [1, 64], [1, 2]), ([0], [2], [1]), ([0], [384], [2])])
def test_layernorm_codes_inside_a_model_follow_the_rule(slice_: tuple, arch: str) -> None:
    """A [1, 16, 768] LayerNorm read through a Slice (same encoding; the Slice is the only graph output) gives
    the rule's codes exactly, nonzero multiples of 4 from the zero point included (about 1/4 of the nonzero
    codes): the ``z + 1`` the simulator shows on the full LayerNorm output is its graph-output dequantization."""
    from tests.fidelity.layernorm_probe import run_output, spec_codes

    q, gq, bq = _rows(16, 768, 128)
    got, path = run_output(arch, q, 0.05, 128, gq, 1 / 200, bq, 1e-3, 0.013, 128, slice_=slice_)
    (st, en, ax) = slice_
    sl = [slice(None)] * 3
    for a, b, e in zip(ax, st, en):
        sl[a] = slice(b, e)
    want = spec_codes(q, 0.05, gq, 1 / 200, bq, 1e-3, 0.013, 128)[tuple(sl)]
    z = got - 128
    print(f"v{arch} slice {slice_}: {np.mean(got == want):.3%} of {got.size}, nonzero multiples of 4 "
          f"{np.mean((z % 4 == 0) & (z != 0)):.3f}")
    assert not path.any() and np.array_equal(got, want)
    assert np.mean((z % 4 == 0) & (z != 0)) > 0.15


@pytest.mark.parametrize("rows,n,zo,so", [(16, 768, 128, 0.013), (16, 768, 101, 1 / 255), (32, 256, 30, 0.013),
                                          (30, 768, 4, 0.013), (10, 768, 128, 0.013), (8, 1024, 252, 0.01)])
def test_layernorm_graph_output_dequantization(rows: int, n: int, zo: int, so: float) -> None:
    """The LayerNorm as the graph output: the rule's codes, through the HTP's float16 output dequantization
    (``z + 1`` on nonzero multiples of 4) on the columns the float16 grid marks (harness.recover_output): all
    of 16 x 768 and 32 x 256, the last N / 8 of 10 x 768 and 8 x 1024, the last 256 of 30 x 768."""
    from tests.fidelity.harness import through_output_path
    from tests.fidelity.layernorm_probe import run_output, spec_codes

    q, gq, bq = _rows(rows, n, zo)
    sim, path = run_output("73", q, 0.05, 128, gq, 1 / 200, bq, 1e-3, so, zo)
    rule = spec_codes(q, 0.05, gq, 1 / 200, bq, 1e-3, so, zo)
    ours = through_output_path(rule, path, -zo)
    w = int(path[0, 0].sum())
    print(f"{rows}x{n} zo={zo}: float16 path on the last {w} columns; rule through it {np.mean(ours == sim):.3%}, "
          f"the rule alone {np.mean(rule == sim):.3%}")
    assert np.mean(ours == sim) >= 0.997 and np.mean(rule[path] == sim[path]) < 0.97
    assert w == {(16, 768): 768, (32, 256): 256, (30, 768): 256, (10, 768): 96, (8, 1024): 128}[(rows, n)]
    assert np.all(path[..., n - w:]) and not np.any(path[..., : n - w])


def test_large_graph_output_of_data_movement_is_exact() -> None:
    """The converse: a Transpose of [1, 16, 768] 8-bit codes straight to the graph output comes back on the
    float32 grid, every code as it went in (no float16 path, no ``z + 1``)."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    from tests.fidelity.harness import recover_output, simulate

    rng = np.random.default_rng(3)
    q = rng.integers(0, 256, (1, 16, 768))
    s, zp = np.float32(0.013), 128
    inits = [nh.from_array(np.array(s), "s"), nh.from_array(np.array(zp, np.uint8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["x"]),
             helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
             helper.make_node("QuantizeLinear", ["t", "s", "z"], ["tq"]),
             helper.make_node("DequantizeLinear", ["tq", "s", "z"], ["y"])]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, q.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    xf = (s * (q - zp).astype(np.float32)).astype(np.float32)
    out = simulate(m.SerializeToString(), [{"xf": xf}], "73")
    assert out.outputs is not None, out.refusal
    codes, path = recover_output(out.outputs[0]["y"], float(s), -zp, 8)
    assert not path.any() and np.array_equal(codes, q.transpose(0, 2, 1))


@pytest.mark.parametrize("variant", ["a8_pt", "a8_pc", "a8_pc_odd"])
def test_layernorm_bert_shape_is_identical(variant: str) -> None:
    """The per-channel variants too: openqnn keeps LayerNorm's gamma per tensor under per-channel
    quantization, and their outputs come back on the float16-scale grid of the simulator's output
    dequantization (harness.recover_codes)."""
    qnn = run_case(CASES[f"layernorm/1x16x768/{variant}"], "73")
    assert qnn.identical is not None, qnn.error or qnn.refusal
    assert qnn.identical == 1.0


def _per_axis_gamma_model(signed: bool) -> tuple[bytes, dict[str, np.ndarray]]:
    """A QDQ LayerNorm over [1, 16, 768] whose gamma is quantized per channel (axis 0): uint8 codes with
    zero point 0, or int8 symmetric ones; beta an int32 bias, per tensor."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    n, sx, zx, sy, zy = 768, 0.03, 128, 0.04, 125
    gamma = rng.uniform(0.3, 1.5, n)
    sg = gamma / (127.0 if signed else 255.0)
    gq = np.round(gamma / sg).astype(np.int8 if signed else np.uint8)
    bq = np.round(rng.uniform(-0.3, 0.3, n) / (sx * 0.005)).astype(np.int32)
    t = numpy_helper.from_array
    inits = [t(np.float32(sx), "sx"), t(np.uint8(zx), "zx"), t(np.float32(sy), "sy"), t(np.uint8(zy), "zy"),
             t(gq, "gq"), t(sg.astype(np.float32), "sg"), t(np.zeros(n, gq.dtype), "zg"),
             t(bq, "bq"), t(np.float32(sx * 0.005), "sb"), t(np.int32(0), "zb")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["gq", "sg", "zg"], ["g"], axis=0),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"]),
             helper.make_node("LayerNormalization", ["xd", "g", "b"], ["yf"], axis=-1),
             helper.make_node("QuantizeLinear", ["yf", "sy", "zy"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"])]
    graph = helper.make_graph(nodes, "ln_axis", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    x = (np.float32(sx) * (rng.integers(0, 256, (1, 16, n)) - zx).astype(np.float32)).astype(np.float32)
    return model.SerializeToString(), {"x": x}


@pytest.mark.parametrize("signed", [False, True])
def test_layernorm_per_axis_gamma_is_refused(signed: bool, tmp_path) -> None:
    """QNN does not run a LayerNorm whose gamma has a per-channel (axis) encoding on the HTP: uint8 codes
    pass QNN EP's validation but QNN's graphAddNode fails (error 1000, the session fails even with CPU
    fallback); int8 symmetric codes fail QNN's op validation (3110) and QNN EP leaves the unit to the CPU.
    Either way a session without CPU fallback is refused."""
    from tests.fidelity.harness import simulate

    model, feed = _per_axis_gamma_model(signed)
    out = simulate(model, [feed], "73", tmp_path)
    assert out.outputs is None and out.refusal is not None


@pytest.mark.parametrize("seed,arch,n,sx,sg,so", [(11, "73", 128, 0.05, 1 / 255, 0.0514),
                                                  (12, "68", 128, 0.05, 1 / 255, 0.0514),
                                                  (13, "73", 64, 0.08, 0.006, 0.04)])
def test_layernorm_row_multiplier_takes_float32_fast_inverse_square_root(seed: int, arch: str, n: int, sx: float,
                                                                         sg: float, so: float) -> None:
    """Rows whose exact multiplier 2^16 s_g / (s_out sigma) sits just above an integer (0 to 8e-6 of it): QNN takes
    the integer below on about a quarter of them, where float32's fast inverse square root (spec/qnn_layernorm.py
    rsqrt_f32, up to 4.7e-6 low) says so; the exact floor keeps them all."""
    from tests.fidelity.layernorm_probe import (
        exact_multipliers,
        multipliers_used,
        near_integer_rows,
        spec_multipliers,
    )

    q = near_integer_rows(seed, n, sx, sg, so)
    floor_ok, below_ok = multipliers_used(arch, q, sx, sg, so)
    decisive = floor_ok != below_ok
    m0 = np.floor(exact_multipliers(q, sx, sg, so))[0, :, 0]
    used = np.where(floor_ok, m0, m0 - 1)[decisive]
    spec, exact = np.mean(spec_multipliers(q, sx, sg, so)[0, :, 0][decisive] == used), np.mean(m0[decisive] == used)
    print(f"v{arch} N={n}: {decisive.sum()} decisive rows, {np.sum(below_ok & ~floor_ok)} one lower; "
          f"spec {spec:.2%}, exact floor {exact:.2%}")
    assert decisive.sum() >= 400
    assert spec >= 0.99 > 0.85 > exact
