"""Steps as data for the element-wise and normalization kernels: each quantized single-op graph's step
carries a StepPlan whose attributes survive JSON, and binding the plan read back (its arrays
read-only, as from a context) does no prepare-time analysis and gives the bits of the step prepare
made, on both paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_elementwise import BW, Spec, _calibrate_output, _enc, _feeds, _graph, _param_enc, _rand_enc

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext, elementwise, normalization
from openqnn.backends.htp.kernels.registry import bind_step, storage_dtype
from openqnn.backends.plan import StepPlan
from openqnn.ir import Graph
from openqnn.ir.tensor import Encoding


def _no_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("prepare-time work while binding a plan")

    for name in ("quantize_multiplier", "_per_code", "act_params", "operand_params"):
        monkeypatch.setattr(elementwise, name, refuse)
    for name in ("quantize_multiplier", "act_params", "static_real", "_pow2_exponent"):
        monkeypatch.setattr(normalization, name, refuse)


def _round_trip(g: Graph, feeds: dict[str, np.ndarray], kernel: str, monkeypatch: pytest.MonkeyPatch) -> StepPlan:
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS["v73"]))
    plan = step.plan
    assert plan is not None and plan.kernel == kernel and plan.op_type == node.op_type
    assert list(plan.inputs) == step.inputs and list(plan.outputs) == list(node.outputs)
    arrays = {}
    for k, v in plan.stored_arrays().items():
        a = np.array(v)
        a.flags.writeable = False
        arrays[k] = a
    back = StepPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)), arrays)
    assert back.to_json() == plan.to_json()
    with monkeypatch.context() as m:
        _no_analysis(m)
        again = bind_step(back)
    ref_in = [np.asarray(feeds[x], np.int64) for x in step.inputs]
    bits = [g.tensors[x].encoding.bitwidth for x in step.inputs]  # type: ignore[union-attr]

    def fast_in() -> list[torch.Tensor]:
        return [torch.from_numpy(x.copy()).to(storage_dtype(b)) for x, b in zip(ref_in, bits)]

    want = step.reference(*ref_in)
    np.testing.assert_array_equal(again.reference(*ref_in), want)
    np.testing.assert_array_equal(step.fast(*fast_in()).numpy().astype(np.int64), want)
    got = again.fast(*fast_in())
    assert got.dtype == storage_dtype(g.tensors[node.outputs[0]].encoding.bitwidth)  # type: ignore[union-attr]
    np.testing.assert_array_equal(got.numpy().astype(np.int64), want)
    return plan


def _run(g: Graph, kernel: str, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch,
         fixed_out: Encoding | None = None) -> StepPlan:
    feeds = _feeds(g, rng)
    if fixed_out is None:
        _calibrate_output(g, feeds, g.tensors[g.inputs[0]].encoding.bitwidth, rng)  # type: ignore[union-attr]
    else:
        g.tensors["out"].encoding = fixed_out
    return _round_trip(g, feeds, kernel, monkeypatch)


@pytest.fixture(params=["tables", "direct"])
def fast_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "direct":
        monkeypatch.setattr(elementwise, "_TABLE_MAX", 0)
    return str(request.param)


# -- element-wise ------------------------------------------------------------------------------

_BINARY = {"ElementWiseAdd": "htp.add", "ElementWiseSubtract": "htp.add", "ElementWiseMultiply": "htp.multiply",
           "ElementWiseDivide": "htp.divide", "ElementWiseMaximum": "htp.max_min",
           "ElementWiseMinimum": "htp.max_min"}


@pytest.mark.parametrize("bw", BW)
@pytest.mark.parametrize("op", sorted(_BINARY))
def test_binary_plans(op: str, bw: int, fast_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng([bw, len(op)])
    c1 = rng.uniform(0.5, 2.0, (1,))
    c4 = rng.uniform(0.5, 2.0, (3, 1))
    for other in [((2, 3, 4), _rand_enc(rng, bw), None), ((3, 1), _rand_enc(rng, bw), None),
                  ((1,), _param_enc(c1), c1), ((3, 1), _param_enc(c4), c4)]:
        plan = _run(_graph(op, [((2, 3, 4), _rand_enc(rng, bw), None), other]), _BINARY[op], rng, monkeypatch)
        one_code_space = other[2] is not None and other[2].size == 1
        tabled = fast_mode == "tables" and (bw == 8 or one_code_space) and (other[2] is None or one_code_space)
        assert ("table" in plan.arrays) == tabled
        if tabled and other[2] is None:
            assert plan.arrays["table"].size == 1 << 16


@pytest.mark.parametrize("bw", BW)
@pytest.mark.parametrize("op,attrs", [("Relu", {}), ("ReluMinMax", {"min_value": -0.25, "max_value": 0.5})])
def test_relu_plans(op: str, attrs: dict, bw: int, fast_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(bw)
    _run(_graph(op, [((2, 5, 7), _rand_enc(rng, bw), None)], attrs), "htp.relu", rng, monkeypatch)
    enc = _enc(-1.0, 3.0, bw)
    _run(_graph(op, [((2, 5, 7), enc, None)], attrs), "htp.relu_clip", rng, monkeypatch, fixed_out=enc)
    if op == "Relu":
        enc = _enc(0.0, 3.0, bw)
        _run(_graph(op, [((2, 5, 7), enc, None)], attrs), "htp.relu_noop", rng, monkeypatch, fixed_out=enc)


@pytest.mark.parametrize("bw", BW)
def test_prelu_plans(bw: int, fast_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(10 + bw)
    shape = (2, 3, 4, 8)
    coeff = rng.uniform(0.0, 0.5, (8,))
    alpha = np.array([-0.2])
    specs: list[tuple[Spec, str]] = [(((8,), _param_enc(coeff), coeff), "htp.prelu"),
                                     (((1,), _param_enc(alpha), alpha), "htp.leaky_relu"),
                                     (((4, 8), _rand_enc(rng, bw), None), "htp.prelu")]
    for spec, kernel in specs:
        _run(_graph("Prelu", [(shape, _rand_enc(rng, bw), None), spec]), kernel, rng, monkeypatch)


# -- softmax and normalizations -------------------------------------------------------------------

@pytest.mark.parametrize("bw", BW)
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_plans(op: str, bw: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng([bw, len(op)])
    kernel = "htp.softmax" if op == "Softmax" else "htp.log_softmax"
    for shape, attrs in [((2, 3, 10), {"axis": -1}), ((4, 6, 5), {"axis": 1}), ((3, 8), {"axis": 1, "beta": -1.5})]:
        enc = _enc(float(rng.uniform(-25.0, -1.0)), float(rng.uniform(0.5, 10.0)), bw)
        g = _graph(op, [(shape, enc, None)], attrs)
        if op == "Softmax":  # the power-of-two output encoding, then a calibrated one
            plan = _run(g, kernel, rng, monkeypatch, fixed_out=Encoding(bw, (1.0 / (1 << bw),), (0,)))
            assert "f" in plan.attrs
        plan = _run(g, kernel, rng, monkeypatch)
        assert plan.arrays["exp"].size == 1 << bw


@pytest.mark.parametrize("bw", BW)
def test_norm_plans(bw: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(20 + bw)
    gam, bet = rng.uniform(0.3, 1.7, (16,)), rng.uniform(-0.5, 0.5, (16,))
    params: list[Spec] = [((16,), _param_enc(gam), gam), ((16,), _param_enc(bet), bet)]
    x: Spec = ((2, 5, 16), _rand_enc(rng, bw), None)
    _run(_graph("LayerNorm", [x, *params], {"axes": [-1], "epsilon": 1e-5}), "htp.norm", rng, monkeypatch)
    _run(_graph("LayerNorm", [x], {"axes": [1, 2], "epsilon": 1e-5}), "htp.norm", rng, monkeypatch)
    _run(_graph("RmsNorm", [x, params[0]], {"axes": [-1], "epsilon": 1e-6}), "htp.norm", rng, monkeypatch)
    w, b = rng.uniform(-2.0, 2.0, (8,)), rng.uniform(-1.0, 1.0, (8,))
    cparams: list[Spec] = [((8,), _param_enc(w), w), ((8,), _param_enc(b), b)]
    x4: Spec = ((2, 3, 4, 8), _rand_enc(rng, bw), None)
    _run(_graph("InstanceNorm", [x4, *cparams]), "htp.norm", rng, monkeypatch)
    _run(_graph("GroupNorm", [x4, *cparams], {"group": 2}), "htp.norm", rng, monkeypatch)
    plan = _run(_graph("Batchnorm", [x4, *cparams]), "htp.batchnorm", rng, monkeypatch)
    assert plan.arrays["multiplier"].shape == (1,)
    per_channel = Encoding(8, tuple(float(abs(v)) / 127 + 1e-6 for v in w), (-128,) * 8, axis=0, symmetric=True)
    plan = _run(_graph("Batchnorm", [x4, ((8,), per_channel, w), cparams[1]]), "htp.batchnorm", rng, monkeypatch)
    assert plan.arrays["multiplier"].shape == (8,)
    _run(_graph("Batchnorm", [x4, ((8,), _param_enc(w, 16), w), cparams[1]]), "htp.batchnorm", rng, monkeypatch)
