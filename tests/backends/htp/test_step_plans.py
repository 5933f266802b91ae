"""Steps as data (issue 12's first kernel family): a lookup-table step's plan is JSON plus named arrays,
survives the context binary container, and binds to the same bits without building its table again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

import openqnn
from helpers import make_model
from openqnn.backends.htp import HtpBackend
from openqnn.backends.htp.kernels import lut
from openqnn.backends.htp.kernels.registry import bind_step
from openqnn.backends.plan import StepPlan
from openqnn.runtime.context_format import read_context, write_context

F = TensorProto.FLOAT


def _quantized(bits: int) -> openqnn.Graph:
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Tanh", ["s"], ["t"]),
             helper.make_node("Softplus", ["t"], ["y"])]
    graph = openqnn.convert(make_model(nodes, [("x", F, [2, 3, 5])], [("y", F, [2, 3, 5])]))
    rng = np.random.default_rng(0)
    cal = [{"x": (4 * rng.standard_normal((2, 3, 5))).astype(np.float32)} for _ in range(4)]
    return openqnn.quantize(graph, cal, openqnn.QuantizerConfig(act_bitwidth=bits))


@pytest.mark.parametrize("bits", [8, 16])
def test_lut_steps_are_data_and_bind_back_to_the_same_bits(bits: int, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    graph = _quantized(bits)
    exe = HtpBackend().prepare(graph).exe  # type: ignore[attr-defined]
    plans = [p for p in exe.step_plans if p is not None]
    assert [p.kernel for p in plans] == ["htp.lut"] * 3 and all(p.arrays["table"].size == 1 << bits for p in plans)

    docs = json.loads(json.dumps([p.to_json() for p in plans], allow_nan=False))
    write_context(tmp_path / "luts.bin", backend="htp", arch="v73", graphs={"g": {"steps": docs}},
                  arrays={"g": {f"{i}/{k}": v for i, p in enumerate(plans) for k, v in p.stored_arrays().items()}})
    ctx = read_context(tmp_path / "luts.bin", backend="htp", arch="v73")
    stored = ctx.graphs["g"]

    # binding a plan read back does no prepare-time work: no table is built, no float kernel made
    for name in ("build_table", "float_kernel", "quantize_table"):
        monkeypatch.setattr(lut, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("prepare work on bind")))
    x = np.random.default_rng(1).integers(0, 1 << bits, (2, 3, 5))
    for i, (made, doc) in enumerate(zip(plans, stored.plan["steps"])):
        back = StepPlan.from_json(doc, {k.split("/", 1)[1]: v for k, v in stored.arrays.items()
                                        if k.startswith(f"{i}/")})
        assert back.to_json() == made.to_json()
        a, b = bind_step(made), bind_step(back)
        np.testing.assert_array_equal(a.reference(x), b.reference(x))
        dtype = torch.uint8 if bits == 8 else torch.int32
        np.testing.assert_array_equal(a.fast(torch.from_numpy(x).to(dtype)).numpy(),
                                      b.fast(torch.from_numpy(x).to(dtype)).numpy())
        np.testing.assert_array_equal(b.reference(x), b.fast(torch.from_numpy(x).to(dtype)).numpy())
        x = b.reference(x)


def test_a_plan_holds_data_only() -> None:
    with pytest.raises(TypeError):
        StepPlan("htp.lut", "n", "Sigmoid", ("x",), ("y",), {"fn": print})
    with pytest.raises(ValueError):
        StepPlan("htp.lut", "n", "Sigmoid", ("x",), ("y",), {"scale": float("nan")})
    with pytest.raises(openqnn.InvalidModelError, match=r"unknown htp kernel 'htp\.nope'"):
        bind_step(StepPlan("htp.nope", "n", "Sigmoid", ("x",), ("y",)))
