"""openqnn's htp against Qualcomm's HTP simulator (the onnxruntime-qnn wheel): the harness end to end.

The default run is a few seconds: one Conv case and the guide's SimpleModel on v73, code recovery,
refusals and off-grid outputs reported (not raised), the cache. ``OPENQNN_FIDELITY=1`` also runs the
full sweep (every single-op case and the small whole models on v68 and v73, about two minutes with
an empty cache) and prints the report's tables.

The assertions hold what is measured today (docs/htp-fidelity.md), not the issue's targets: openqnn
does not yet follow QNN's arithmetic.
"""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

if platform.system() != "Linux" or platform.machine() != "x86_64":
    pytest.skip(f"QNN's HTP simulator (onnxruntime-qnn) runs on Linux x86_64 only, not {platform.system()} "
                f"{platform.machine()}", allow_module_level=True)
pytest.importorskip("onnxruntime_qnn", reason="the onnxruntime-qnn wheel (QNN's HTP simulator) is not installed; "
                    "pip install 'onnxruntime-qnn>=2.7' (Python >= 3.11), or the dev extra")

from tests.fidelity import harness
from tests.fidelity.cases import CASES, model_cases, select

FULL = os.environ.get("OPENQNN_FIDELITY") == "1"
full_only = pytest.mark.skipif(not FULL, reason="the full fidelity sweep (minutes) runs with OPENQNN_FIDELITY=1")

CONV = "conv/3to17_k3_s2_p1/a8_pc"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fidelity-cache")


@pytest.fixture(scope="module")
def conv(cache):
    prep = CASES[CONV].prepare()
    return prep, harness.export_bytes(prep)


def test_conv_case_end_to_end_v73(conv, cache):
    prep, qdq = conv
    r = harness.run_prepared(prep, "73", cache=cache, qdq=qdq)
    print(r.line())
    assert r.refusal is None and r.error is None, r.line()
    assert r.n == 2 * 17 * 4 * 5  # two feeds of [1, 17, 4, 5]
    assert "Conv2d" in r.ops and not r.fallbacks and not r.qnn_float
    # measured: 98.2% identical, every difference one code; both within one code of exact arithmetic
    assert r.max_diff <= 1 and r.identical >= 0.9
    assert set(r.hist) <= {-1, 0, 1} and sum(r.hist.values()) == r.n
    assert r.ref_oq_max is not None and r.ref_oq_max <= 1 and r.ref_sim_max is not None and r.ref_sim_max <= 1


def test_code_recovery_is_exact(conv, cache):
    prep, qdq = conv
    sim = harness.simulate(qdq, prep.sim_feeds, "73", cache)
    assert sim.refusal is None and sim.outputs is not None
    enc = prep.graph.tensors["y"].encoding
    s = float(np.float32(enc.scale[0]))
    for out in sim.outputs:
        v = out["y"].astype(np.float64) / s
        assert np.abs(v - np.rint(v)).max() <= 1e-3  # 8-bit codes land on the grid
        q = harness.recover_codes(out["y"], enc.scale[0], enc.offset[0], 8)
        assert q.min() >= 0 and q.max() <= 255
    # and the recovery refuses what is not on the grid, or out of range
    grid = np.float32(0.05) * (np.arange(0, 256, dtype=np.float32) - 7)
    assert np.array_equal(harness.recover_codes(grid, 0.05, -7, 8), np.arange(256))
    with pytest.raises(harness.CodeRecoveryError, match="off the grid"):
        harness.recover_codes(grid + np.float32(0.02), 0.05, -7, 8)
    with pytest.raises(harness.CodeRecoveryError, match="outside"):
        harness.recover_codes(grid, 0.05, -8, 8)
    # 16-bit: float32 rounding of y is allowed for, far below half a code
    codes = np.arange(0, 65536, 97)
    y16 = (np.float32(3.1e-5) * (codes - 30011).astype(np.float32)).astype(np.float32)
    assert np.array_equal(harness.recover_codes(y16, 3.1e-5, -30011, 16), codes)


def test_code_recovery_takes_the_float16_scale_of_8bit_outputs() -> None:
    """The simulator's 8-bit output dequantization multiplies by float16(scale): 0.0438019 -> 0.0437927,
    0.026 of a code off the float32 grid at 130 codes; recovered on the float16 grid, 8-bit only."""
    s, off = 0.04380193224140242, -125
    codes = np.arange(256)
    y = (np.float32(np.float16(s)) * (codes + off).astype(np.float32)).astype(np.float32)
    assert np.array_equal(harness.recover_codes(y, s, off, 8), codes)
    with pytest.raises(harness.CodeRecoveryError, match="off the grid"):
        harness.recover_codes(y + np.float32(0.3 * s), s, off, 8)
    # 16-bit codes keep the float32 scale (where float16's would be codes apart): no second grid there
    y16 = (np.float32(np.float16(s)) * (np.arange(0, 65536, 97) - 30011).astype(np.float32)).astype(np.float32)
    with pytest.raises(harness.CodeRecoveryError, match="off the grid"):
        harness.recover_codes(y16, s, -30011, 16)


def test_cache_hit_gives_the_same_result(conv, cache):
    prep, qdq = conv
    first = harness.run_prepared(prep, "73", cache=cache, qdq=qdq)
    again = harness.run_prepared(prep, "73", cache=cache, qdq=qdq)
    assert again.cached
    assert (again.identical, again.max_diff, again.hist) == (first.identical, first.max_diff, first.hist)


def test_refusal_is_reported_not_raised(cache):
    r = harness.run_case(CASES["erf/1x5x7x9/a8"], "73", cache=cache)
    print(r.line())
    assert r.refusal is not None and "Erf" in r.refusal  # QNN EP has no Erf
    assert r.identical is None and r.error is None


def test_off_grid_output_is_reported_not_raised(cache):
    # QNN EP does not group PRelu with 16-bit activations and an 8-bit slope into a QDQ unit: the
    # simulator runs it on floats and its outputs are not on the output encoding's grid
    # (In a process where QNN's HTP already prepared a graph for another SoC -- soc_model 57, say -- the
    # same float PRelu comes back on the grid: QNN keeps state across sessions. The case is then compared
    # like any other; either way it is a finding, never an exception.)
    r = harness.run_case(CASES["prelu/slope_c/a16"], "73", cache=cache, use_cache=False)
    print(r.line())
    assert r.error is None or r.error.startswith("off-grid:"), r.line()
    assert r.refusal is None and any(x.startswith("PRelu") for x in r.qnn_float)
    if r.error is None:
        assert r.n > 0 and r.identical is not None


def test_simple_model_v73(cache):
    case = next(c for c in model_cases() if c.name == "simple/32/a8_pc")
    r = harness.run_case(case, "73", cache=cache)
    print(r.line())
    assert r.refusal is None and r.error is None, r.line()
    assert r.n == 4 * 10 and not r.fallbacks
    # measured: 90% identical logits codes, max difference 1, top-1 the same on all 4 inputs
    assert r.max_diff <= 1 and r.top1 == 1.0


@full_only
def test_full_sweep(capsys):
    from tests.fidelity.report import exact_table, findings, model_table, op_table, run_all

    archs = ["68", "73"]
    results = run_all(select() + model_cases(), archs, progress=False)
    with capsys.disabled():
        print("\n" + op_table(results, archs) + "\n\n" + exact_table(results, archs) + "\n\n"
              + model_table(results) + "\n\n" + findings(results))
    # every case gives a comparison or a recorded finding, never an exception
    assert all(r.identical is not None or r.refusal or r.error for r in results)
    # what holds today: data movement and max / relu are bit-exact with QNN on both archs ...
    exact_ops = {"reshape", "transpose", "gather", "slice", "tile", "pad", "depth_to_space", "space_to_depth",
                 "split", "maxpool", "relu", "reduce_max", "reduce_min"}
    for r in results:
        if r.op in exact_ops:
            assert r.identical == 1.0, r.line()
    # ... and the CNNs' top-1 class agrees on every input
    for r in results:
        if r.model and r.op in ("simple", "resnet18", "mobilenet_v2"):
            assert r.top1 == 1.0, r.line()


@pytest.mark.parametrize(("arch", "bits", "least"), [("68", 8, 0.999), ("73", 8, 0.999), ("68", 16, 0.999),
                                                    ("73", 16, 0.999)])
def test_qnn_arithmetic_matches_the_simulator_on_the_gemm_ops(arch, bits, least, cache):
    """htp_config.arithmetic = "qnn": every Conv2d, DepthWiseConv2d, TransposeConv2d, Gemm and MatMul-with-weights
    case of the sweep with ``bits``-bit activations: at least the issue's 99.9% of codes identical, every difference
    one code. Measured (stop 27): 8-bit 100% on v68 and v73; 16-bit, int8 weights (spec/qnn_conv16.py; strided
    depthwise: spec/qnn_requant.py's 16-bit share), v68 100%, v73 99.95% (codes 0.002-0.004 below a half, the open
    rounding of docs/htp-fidelity.md's "The W8A16 bias in float32 (stop 27)")."""
    cases = [c for c in select(["conv", "conv_depthwise", "conv_transpose", "gemm", "matmul_const"])
             if c.act_bitwidth == bits]
    assert len(cases) >= 10
    same = total = 0
    for case in cases:
        prep = case.prepare()
        r = harness.run_prepared(prep, arch, cache=cache, qdq=harness.export_bytes(prep), arithmetic="qnn")
        assert r.refusal is None and r.error is None, r.line()
        assert r.max_diff <= 1, r.line()
        same += round(r.identical * r.n)
        total += r.n
    print(f"v{arch} {bits}-bit: {same}/{total} codes identical with arithmetic='qnn'")
    assert same / total >= least
