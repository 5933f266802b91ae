"""Whole models, exported from PyTorch (or written by hand at an old opset), converted by openqnn and
run on the cpu backend: outputs must match ONNX Runtime, and the converted graph must have the
expected structure (BatchNorm folded, the right number of convolutions, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from benchmarks.zoo import MODELS, export, make_inputs

import openqnn
from openqnn.backends.cpu.plan import Plan
from tests.models.zoo import caffe2_style_model

RTOL = 1e-3


def _ort(model: str | Path | onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)


def _check(model: str | Path | onnx.ModelProto, feeds: dict[str, np.ndarray], output_names: list[str]
           ) -> openqnn.Graph:
    """Convert with the feeds' shapes, run on cpu, compare every output with ORT; returns the graph."""
    graph = openqnn.convert(model, input_dims={k: v.shape for k, v in feeds.items()})
    ours = openqnn.Session(graph, backend="cpu").run(feeds)
    for name, ref in zip(output_names, _ort(model, feeds)):
        got = ours[name]
        assert got.dtype == ref.dtype and got.shape == ref.shape, (name, got.dtype, got.shape, ref.dtype, ref.shape)
        atol = 1e-4 * float(np.abs(ref).max())  # the outputs' scale differs by model
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=atol, err_msg=name)
    return graph


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo")


def _exported(name: str, size: int | None = None):
    @pytest.fixture(scope="session")
    def fixture(zoo_dir: Path) -> Path:
        return export(MODELS[name], zoo_dir, size)

    return fixture


simple_onnx = _exported("simple")
mobilenet_onnx = _exported("mobilenet_v2")
resnet18_onnx = _exported("resnet18")
resnet50_onnx = _exported("resnet50")
bert_onnx = _exported("bert", 64)


def test_simple_model(simple_onnx: Path) -> None:
    assert onnx.load(simple_onnx).opset_import[0].version == 11
    g = _check(simple_onnx, make_inputs(MODELS["simple"]), ["output"])
    assert g.count_ops().get("Conv2d") == 2


def test_mobilenet_v2(mobilenet_onnx: Path) -> None:
    g = _check(mobilenet_onnx, make_inputs(MODELS["mobilenet_v2"], 1, 224), ["logits"])
    ops = g.count_ops()
    assert "Batchnorm" not in ops
    # 17 inverted residual blocks: 16 expansion 1x1 + 17 depthwise + 17 projection, plus stem and head
    assert ops["Conv2d"] == 35 and ops["DepthWiseConv2d"] == 17
    assert ops["ReluMinMax"] == 35  # ReLU6 = Clip(0, 6)
    assert ops["ElementWiseAdd"] == 10  # the residual connections
    steps = Plan(g).op_types  # every ReLU6 and residual add runs inside its convolution's step
    assert "ReluMinMax" not in steps and "ElementWiseAdd" not in steps
    # the 16 expansions run with their depthwise convolutions and projections (the expanded tensor never written out,
    # the depthwise's read by the projection in cache), 10 with their residual add
    block = "Conv2d+ReluMinMax+DepthWiseConv2d+ReluMinMax+Conv2d"
    assert steps.count(block + "+ElementWiseAdd") == 10 and steps.count(block) == 6
    assert steps.count("DepthWiseConv2d+ReluMinMax") == 1 and "Conv2d+ElementWiseAdd" not in steps


def test_resnet18(resnet18_onnx: Path) -> None:
    g = _check(resnet18_onnx, make_inputs(MODELS["resnet18"], 1, 224), ["logits"])
    ops = g.count_ops()
    assert "Batchnorm" not in ops  # all 20 folded into the convolutions
    assert ops["Conv2d"] == 20 and ops["ElementWiseAdd"] == 8 and ops["FullyConnected"] == 1
    steps = Plan(g).op_types
    assert steps.count("Conv2d+ElementWiseAdd+Relu") == 8 and steps.count("Conv2d+Relu") == 9
    assert "Relu" not in steps and "ElementWiseAdd" not in steps


def test_resnet18_batch2(resnet18_onnx: Path) -> None:
    g = _check(resnet18_onnx, make_inputs(MODELS["resnet18"], 2, 224, seed=1), ["logits"])
    assert g.tensors[g.inputs[0]].shape == (2, 3, 224, 224)


def test_resnet50(resnet50_onnx: Path) -> None:
    g = _check(resnet50_onnx, make_inputs(MODELS["resnet50"], 1, 224), ["logits"])
    ops = g.count_ops()
    assert "Batchnorm" not in ops
    assert ops["Conv2d"] == 53 and ops["ElementWiseAdd"] == 16


@pytest.mark.parametrize("batch", [1, 2])
def test_bert_encoder(bert_onnx: Path, batch: int) -> None:
    feeds = make_inputs(MODELS["bert"], batch, 64, seed=batch)
    assert feeds["input_ids"].dtype == np.int64 and (feeds["attention_mask"] == 0).any()
    g = _check(bert_onnx, feeds, ["hidden", "pooled"])
    ops = g.count_ops()
    assert ops["Softmax"] == 4 and ops["LayerNorm"] == 9
    steps = Plan(g).op_types
    assert steps.count("FullyConnected*3") == 4  # query, key and value share one GEMM per layer
    # attention output and fc2 with their residuals and the LayerNorm after each; attention one step per layer
    assert steps.count("FullyConnected+ElementWiseAdd+LayerNorm") == 8
    assert steps.count("Attention") == 4 and steps.count("LayerNorm") == 1 and "Transpose" not in steps


def test_bert_mask_matters(bert_onnx: Path) -> None:
    """Padding must not change the kept positions' outputs; a different mask must change them."""
    feeds = make_inputs(MODELS["bert"], 1, 64)
    sess = openqnn.Session(openqnn.convert(bert_onnx, input_dims={k: v.shape for k, v in feeds.items()}))
    base = sess.run(feeds)["hidden"]
    keep = int(feeds["attention_mask"].sum())
    noise = dict(feeds, input_ids=feeds["input_ids"].copy())
    noise["input_ids"][0, keep:] = (noise["input_ids"][0, keep:] + 7) % 1000
    np.testing.assert_allclose(sess.run(noise)["hidden"][0, :keep], base[0, :keep], rtol=1e-4, atol=1e-5)
    full = dict(feeds, attention_mask=np.ones_like(feeds["attention_mask"]))
    assert not np.allclose(sess.run(full)["hidden"][0, :keep], base[0, :keep], rtol=1e-3, atol=1e-3)


def test_caffe2_style_opset9() -> None:
    model = caffe2_style_model()
    assert model.opset_import[0].version == 9
    assert {i.name for i in model.graph.initializer} <= {i.name for i in model.graph.input}
    feeds = {"data_0": np.random.default_rng(0).standard_normal((1, 3, 16, 16), dtype=np.float32)}
    g = _check(model, feeds, ["prob_1"])
    assert g.inputs == ["data_0"]  # the initializers listed as inputs are weights, not graph inputs
    ops = g.count_ops()
    assert "Batchnorm" not in ops and ops["Conv2d"] == 3


def test_benchmark_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m benchmarks`` machinery end to end on the seed's small model."""
    import torch
    from benchmarks import bench

    monkeypatch.setattr(bench, "_SETTLE_S", 0.0)
    lines: list[str] = []
    threads = torch.get_num_threads()
    try:
        results = bench.run(["simple"], [1, 2], threads=1, runs=2, warmup=1, rounds=1, echo=lines.append)
    finally:
        torch.set_num_threads(threads)
    assert [(r.model, r.batch) for r in results] == [("simple", 1), ("simple", 2)]
    assert all(r.openqnn_ms > 0 and r.ort_ms > 0 and r.torch_ms > 0 and r.max_rel_err < 1e-4 for r in results)
    assert "openqnn/ORT" in lines[-1] and "geometric mean" in lines[-1]


def test_context_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m benchmarks --contexts`` on the seed's small model: both backends, bit-identical contexts."""
    from benchmarks import __main__ as bench_main

    assert bench_main.main(["--contexts", "--quick", "--models", "simple"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("simple ")]
    assert [r[1] for r in rows] == ["htp", "cpu"] and all(r[-1] == "True" for r in rows)
