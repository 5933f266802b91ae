"""QNN's MatMul of two 8-bit activations (openqnn's spec, src/openqnn/backends/htp/spec/qnn_matmul.py):

- against the HTP simulator: random products over K, zero points (in[1]'s columns that fit int8, and
  columns that do not, on either side) and multipliers, every output code equal, v68 and v73 (skipped
  without the onnxruntime-qnn wheel);
- openqnn's htp kernel under ``arithmetic: "qnn"``: the fast path gives the reference's bits, the reference is
  the spec, the plan carries the spec's table (binding derives nothing), and "tflite" keeps TFLite's arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels.linear import build_matmul
from openqnn.backends.htp.kernels.registry import HtpBuildContext, bind_step, storage_dtype
from openqnn.backends.htp.spec.qnn_matmul import F_MAX, F_ONE, QnnMatMulSpec, column_factor, matmul_spec_for
from openqnn.backends.plan import StepPlan
from openqnn.ir import DType, Graph, Tensor, TensorKind
from openqnn.ir.tensor import Encoding
from openqnn.ops.build import emit
from tests.fidelity.harness import simulator_missing
from tests.fidelity.matmul_probe import candidates, random_case, sim_codes

_missing = simulator_missing()
needs_simulator = pytest.mark.skipif(_missing is not None, reason=_missing or "")

# (K, za, zb): zb = 128 (every column fits int8), near 128 (a few values do not), far from it on either side
CASES = [(1, 128, 0), (2, 37, 200), (8, 0, 128), (32, 200, 120), (64, 90, 100), (128, 30, 140), (32, 128, 250),
         (16, 0, 0)]


# -- the spec against the simulator ---------------------------------------------------------------

@needs_simulator
@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize(("k", "za", "zb"), CASES)
def test_act_act_matmul_matches_the_simulator(arch: str, k: int, za: int, zb: int) -> None:
    rng = np.random.default_rng(1000 * k + za + zb)
    for target in (6.0, 40.0):  # output spreads: multipliers of different exponents
        case = random_case(rng, k, za, zb, target)
        sim = sim_codes(arch, np.asarray(case["qa"]), np.asarray(case["qb"]), float(case["sa"]), za,  # type: ignore[arg-type]
                        float(case["sb"]), zb, float(case["so"]), int(case["zo"]))  # type: ignore[arg-type, call-overload]
        got = candidates(arch, case)
        print(f"v{arch} K={k} za={za} zb={zb}: " + ", ".join(f"{n} {np.mean(c == sim):.4%}" for n, c in got.items()))
        np.testing.assert_array_equal(got["spec"], sim)


# -- the spec's own properties ---------------------------------------------------------------------

def test_columns_that_fit_int8_are_used_as_they_are() -> None:
    rng = np.random.default_rng(0)
    v = rng.integers(-128, 128, size=(3, 17, 5))
    spec = QnnMatMulSpec.of("v73", 0.003, 130)
    w, f = spec.column_weights(v)
    assert (f == F_ONE).all()
    np.testing.assert_array_equal(w, v)


def test_a_column_that_does_not_fit_is_requantized_to_int8() -> None:
    rng = np.random.default_rng(1)
    v = rng.integers(-255, 256, size=(64, 40))
    spec = QnnMatMulSpec.of("v68", 0.01, 3)
    w, f = spec.column_weights(v)
    assert w.min() >= -128 and w.max() <= 127
    assert f.min() >= F_ONE and f.max() <= F_MAX
    fac = np.maximum(np.maximum(v.max(0) / 127, -v.min(0) / 128), 1.0)
    np.testing.assert_array_equal(f, np.floor(fac * F_ONE + 0.5))
    assert np.abs(w - v / (f / F_ONE)).max() <= 0.5 + 1e-3  # a rounding of v / f (the 16-bit reciprocal's)
    assert column_factor(np.array([[255], [0]])).item() == F_MAX


def test_the_spec_is_established_for_8_bits_on_v68_and_v73_only() -> None:
    assert matmul_spec_for("v73", "qnn", 0.01, 0, 8, 8, 8) is not None
    assert matmul_spec_for("v68", "qnn", 0.01, 0, 8, 8, 8) is not None
    assert matmul_spec_for("v73", "tflite", 0.01, 0, 8, 8, 8) is None
    assert matmul_spec_for("v75", "qnn", 0.01, 0, 8, 8, 8) is None
    assert matmul_spec_for("v73", "qnn", 0.01, 0, 8, 16, 8) is None


# -- openqnn's htp kernel --------------------------------------------------------------------------

def _graph(rng: np.random.Generator, a_shape: tuple[int, ...], b_shape: tuple[int, ...], ta: bool, tb: bool,
           zb: int) -> tuple[Graph, dict[str, np.ndarray]]:
    """A MatMul of two 8-bit activations (in[1]'s zero point ``zb``) and random input codes."""
    g = Graph("g")
    encs = [Encoding(8, (float(rng.uniform(0.01, 0.05)),), (-int(rng.integers(0, 256)),)),
            Encoding(8, (float(rng.uniform(0.01, 0.05)),), (-zb,))]
    for i, (shape, enc) in enumerate(zip((a_shape, b_shape), encs)):
        t = g.add_tensor(Tensor(f"x{i}", shape, DType.FLOAT_32, TensorKind.APP_WRITE))
        t.encoding = enc
        g.inputs.append(t.name)
    (out,) = emit(g, "MatMul", ["x0", "x1"], {"transpose_in0": ta, "transpose_in1": tb}, outputs=["out"])
    g.tensors[out].kind = TensorKind.APP_READ
    g.outputs.append(out)
    k = a_shape[-2] if ta else a_shape[-1]
    spread = 0.03 * 0.03 * 74.0 * 74.0 * np.sqrt(k) / 40.0
    g.tensors[out].encoding = Encoding(8, (float(rng.uniform(0.5, 2.0) * spread),), (-int(rng.integers(90, 170)),))
    q = {n: rng.integers(0, 256, size=g.tensors[n].shape).astype(np.int64) for n in g.inputs}
    return g, q


def _independent_spec(g: Graph, arch: str, q: dict[str, np.ndarray], ta: bool, tb: bool) -> np.ndarray:
    """The spec's codes computed here from the encodings (float32 scales, as QNN takes them)."""
    ea, eb, eo = (g.tensors[n].encoding for n in ("x0", "x1", "out"))
    assert ea is not None and eb is not None and eo is not None
    f32 = lambda s: float(np.float32(s[0]))  # noqa: E731
    spec = QnnMatMulSpec.of(arch, f32(ea.scale) * f32(eb.scale) / f32(eo.scale), -eo.offset[0])
    av = q["x0"] + ea.offset[0]
    bv = q["x1"] + eb.offset[0]
    return spec.apply_np(np.swapaxes(av, -1, -2) if ta else av, np.swapaxes(bv, -1, -2) if tb else bv)


def _run(step, g: Graph, q: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    ins = [q[n] for n in step.inputs]
    ref = np.asarray(step.reference(*ins))
    fast = step.fast(*[torch.from_numpy(x).to(storage_dtype(8)) for x in ins])
    assert fast.dtype == torch.uint8
    return ref, fast.numpy().astype(np.int64)


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("seed", range(8))
def test_htp_matmul_fast_equals_reference_equals_the_spec(arch: str, seed: int) -> None:
    rng = np.random.default_rng(4200 + seed)
    m, k, n = (int(v) for v in rng.integers(1, 40, size=3))
    ta, tb = bool(rng.random() < 0.3), bool(rng.random() < 0.5)
    heads = int(rng.integers(1, 4))
    a_shape = (2, heads, k, m) if ta else (2, heads, m, k)
    b_lead = (heads,) if rng.random() < 0.5 else (1,)
    b_shape = (*b_lead, n, k) if tb else (*b_lead, k, n)
    zb = int(rng.choice([128, 120, 60, 0, 255, 200]))
    g, q = _graph(rng, a_shape, b_shape, ta, tb, zb)
    for mode in (None, "float64"):
        step = build_matmul(g.nodes[0], HtpBuildContext(g, ARCHS[arch], arithmetic="qnn"), mode)
        assert step.plan is not None and step.plan.attrs["kind"] == "qnn_act_act"
        ref, fast = _run(step, g, q)
        np.testing.assert_array_equal(fast, ref)
        np.testing.assert_array_equal(ref, _independent_spec(g, arch, q, ta, tb))


def test_a_plan_carries_the_spec_and_binding_derives_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    g, q = _graph(rng, (2, 9, 33), (2, 33, 7), False, False, 10)
    step = build_matmul(g.nodes[0], HtpBuildContext(g, ARCHS["v73"], arithmetic="qnn"))
    plan = step.plan
    assert plan is not None and plan.arrays["qnn_mm"].shape == (6, F_MAX - F_ONE + 1)
    ref, _ = _run(step, g, q)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the spec derived again while binding")

    monkeypatch.setattr(QnnMatMulSpec, "of", refuse)
    again = StepPlan(plan.kernel, plan.node, plan.op_type, plan.inputs, plan.outputs, dict(plan.attrs),
                     {key: np.array(v) for key, v in plan.arrays.items()})
    ref2, fast2 = _run(bind_step(again, torch.device("cpu")), g, q)
    np.testing.assert_array_equal(ref2, ref)
    np.testing.assert_array_equal(fast2, ref)


def test_tflite_arithmetic_keeps_the_exact_accumulator() -> None:
    rng = np.random.default_rng(8)
    g, q = _graph(rng, (1, 6, 20), (1, 20, 5), False, False, 0)
    step = build_matmul(g.nodes[0], HtpBuildContext(g, ARCHS["v73"], arithmetic="tflite"))
    assert step.plan is not None and step.plan.attrs["kind"] in ("act_act", "float64")
    ref, fast = _run(step, g, q)
    np.testing.assert_array_equal(fast, ref)


# -- a computed right operand (src/openqnn/backends/htp/rewrite.py), against the simulator ----------

@needs_simulator
@pytest.mark.parametrize("arch", ["68", "73"])
def test_bert_attention_matches_the_simulator_with_int8_right_operands(arch: str) -> None:
    """The BERT case with every quantized activation a graph output (``model_layers``): the key and the value
    that FullyConnected -> Reshape -> Transpose computes for Q.K^T and softmax x V are written as int8 (zero
    point 128), so every code of every tensor is the simulator's, v68 and v73 (82-89% of Q.K^T on v68, 95-99%
    on v73 from the written codes)."""
    from tests.fidelity.model_layers import layer_results

    res = layer_results(arch, feeds=2, variant="a8_pc_calibrated")  # (the attention mask's wide Add form)
    assert sum(r.op == "MatMul" for r in res) == 8
    off = [(r.op, r.name, r.identical, r.max) for r in res if r.identical < 1.0]
    assert not off, off


@needs_simulator
@pytest.mark.parametrize("arch", ["68", "73"])
def test_bert_64_tokens_value_of_zero_point_110_keeps_its_encoding(arch: str) -> None:
    """The 64-token encoder (``--full``): layer 0's value has zero point 110, more than 16 from 128, and QNN
    leaves it in the model's encoding (the MatMul converts its out-of-range columns at run time); the other
    keys and values (zero points 121-131) are written as int8. Every code of layers 0 and 1 (v73: up to
    layer 0's second LayerNorm, whose one row of 64 the open rsqrt detail moves) is the simulator's (98.7% of
    layer 0's softmax x V on v73, 83.6% on v68, with the value written as int8)."""
    from tests.fidelity.model_layers import layer_results

    res = layer_results(arch, feeds=2, full=True, variant="a8_pc_calibrated")
    names = [r.name for r in res]
    last = names.index("/layers.0/ln2/LayerNormalization_output_0" if arch == "73" else
                       "/layers.2/ln2/LayerNormalization_output_0")
    off = [(r.op, r.name, r.identical, r.max) for r in res[:last] if r.identical < 1.0 and r.name.startswith("/")]
    assert not off, off


# -- two 16-bit activations (src/openqnn/backends/htp/spec/qnn_matmul16.py) -------------------------

CASES16 = [(1, 32768, 32768), (2, 12000, 20000), (4, 50000, 43960), (16, 0, 0), (64, 65535, 3), (128, 30720, 59007)]


@needs_simulator
@pytest.mark.parametrize("arch", ["68", "73"])
def test_the_16_bit_conversion_of_the_right_operand_matches_the_simulator(arch: str) -> None:
    """Every uint16 code of in[1] read back as the uint8 code QNN EP's Convert gave it: the spec's conversion
    gives all of them; exact rounding of the value misses some (0.4-0.8%)."""
    from tests.fidelity.matmul16_probe import convert_probe

    for sb, zb in ((3e-4, 20000), (0.0123, 30726), (1e-5, 3)):
        got = convert_probe(arch, sb, zb)
        print(f"v{arch} sb={sb} zb={zb}: {got}")
        assert got["spec"] == 1.0
        assert got["exact"] < 0.997


@needs_simulator
@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize(("k", "za", "zb"), CASES16)
def test_16_bit_act_act_matmul_matches_the_simulator(arch: str, k: int, za: int, zb: int) -> None:
    """Random products of uint16 codes: v68 every code (but 3 in 10^4 fitted, a float32 rounding of the folded
    zero point; a column in the probes), v73 all but values within 0.007 of a .5 (the W8A16 convolution's open
    rounding): at least 99.7% per case, where exact rounding of the converted product gives 1-98%."""
    from tests.fidelity.matmul16_probe import random_probe

    rng = np.random.default_rng(77 + 1000 * k + za % 997 + zb % 991)
    got = random_probe(arch, rng, k, za, zb)
    print(f"v{arch} K={k} za={za} zb={zb}: {got}")
    assert got["spec"] >= 0.997
    assert got["spec"] > got["exact (converted)"]


def _graph16(rng: np.random.Generator, a_shape: tuple[int, ...], b_shape: tuple[int, ...], ta: bool, tb: bool
             ) -> tuple[Graph, dict[str, np.ndarray]]:
    """A MatMul of two 16-bit activations with random encodings and input codes."""
    g = Graph("g")
    encs = [Encoding(16, (float(rng.uniform(1e-4, 1e-3)),), (-int(rng.integers(16000, 50000)),)) for _ in range(2)]
    for i, (shape, enc) in enumerate(zip((a_shape, b_shape), encs)):
        t = g.add_tensor(Tensor(f"x{i}", shape, DType.FLOAT_32, TensorKind.APP_WRITE))
        t.encoding = enc
        g.inputs.append(t.name)
    (out,) = emit(g, "MatMul", ["x0", "x1"], {"transpose_in0": ta, "transpose_in1": tb}, outputs=["out"])
    g.tensors[out].kind = TensorKind.APP_READ
    g.outputs.append(out)
    k = a_shape[-2] if ta else a_shape[-1]
    s8 = encs[1].scale[0] * 257.0
    spread = encs[0].scale[0] * s8 * 19000.0 * 74.0 * np.sqrt(k) / 5000.0  # about 5000 codes of spread
    g.tensors[out].encoding = Encoding(16, (float(rng.uniform(0.5, 2.0) * spread),), (-int(rng.integers(20000, 45000)),))
    q = {n: rng.integers(0, 65536, size=g.tensors[n].shape).astype(np.int64) for n in g.inputs}
    return g, q


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("seed", range(6))
def test_htp_16_bit_matmul_fast_equals_reference_equals_the_spec(arch: str, seed: int) -> None:
    from openqnn.backends.htp.spec.qnn_matmul16 import QnnMatMul16Spec

    rng = np.random.default_rng(5200 + seed)
    m, k, n = (int(v) for v in rng.integers(1, 40, size=3))
    ta, tb = bool(rng.random() < 0.3), bool(rng.random() < 0.5)
    heads = int(rng.integers(1, 4))
    a_shape = (2, heads, k, m) if ta else (2, heads, m, k)
    b_lead = (heads,) if rng.random() < 0.5 else (1,)
    b_shape = (*b_lead, n, k) if tb else (*b_lead, k, n)
    g, q = _graph16(rng, a_shape, b_shape, ta, tb)
    ea, eb, eo = (g.tensors[name].encoding for name in ("x0", "x1", "out"))
    assert ea is not None and eb is not None and eo is not None
    spec = QnnMatMul16Spec.of(arch, ea.scale[0], eb.scale[0], -eb.offset[0], eo.scale[0], -eo.offset[0])
    qa = np.swapaxes(q["x0"], -1, -2) if ta else q["x0"]
    qb = np.swapaxes(q["x1"], -1, -2) if tb else q["x1"]
    want = spec.apply_np(qa, -ea.offset[0], qb)
    for mode in (None, "float64"):
        step = build_matmul(g.nodes[0], HtpBuildContext(g, ARCHS[arch], arithmetic="qnn"), mode)
        assert step.plan is not None and step.plan.attrs["kind"] == "qnn_act_act16"
        ins = [q[name] for name in step.inputs]
        ref = np.asarray(step.reference(*ins))
        fast = step.fast(*[torch.from_numpy(x).to(storage_dtype(16)) for x in ins]).numpy().astype(np.int64)
        np.testing.assert_array_equal(fast, ref)
        np.testing.assert_array_equal(ref, want)
    assert ((want > 0) & (want < 65535)).mean() > 0.75  # (the outputs do not all saturate)
    step = build_matmul(g.nodes[0], HtpBuildContext(g, ARCHS[arch], arithmetic="tflite"))
    assert step.plan is not None and step.plan.attrs["kind"] == "float64"


def test_the_16_bit_spec_is_established_for_v68_and_v73_only() -> None:
    from openqnn.backends.htp.spec.qnn_matmul16 import convert_codes, converted_encoding, matmul16_spec_for

    args = (1e-3, 2e-3, 30000, 1.0, 32768)
    assert matmul16_spec_for("v73", "qnn", *args, 16, 16, 16) is not None
    assert matmul16_spec_for("v68", "qnn", *args, 16, 16, 16) is not None
    assert matmul16_spec_for("v75", "qnn", *args, 16, 16, 16) is None
    assert matmul16_spec_for("v73", "tflite", *args, 16, 16, 16) is None
    assert matmul16_spec_for("v73", "qnn", *args, 16, 16, 8) is None
    s8, z8 = converted_encoding(2e-3, 30000)
    assert abs(s8 / (2e-3 * 65535 / 255) - 1) < 1e-6 and z8 == round(30000 * 255 / 65535)
    q = np.arange(65536)
    b8 = convert_codes(q, 30000, z8)
    assert b8.min() == 0 and b8.max() == 255 and (np.diff(b8) >= 0).all()
    exact = np.clip(np.floor((q - 30000) * 2e-3 / s8 + z8 + 0.5), 0, 255)
    assert 0 < np.count_nonzero(b8 != exact) < 0.01 * q.size and np.abs(b8 - exact).max() == 1
