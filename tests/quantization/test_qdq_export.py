"""export-onnx: IR graphs, float or quantized, back to standard ONNX (QuantizeLinear/DequantizeLinear)
that ONNX Runtime runs, agreeing with openqnn's cpu backend and its quantization simulation."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

import openqnn
from helpers import ort_session
from openqnn.backends.cpu import CpuBackend
from openqnn.cli import main as cli
from openqnn.ir.graph import Graph
from openqnn.quantization import qdq
from openqnn.quantization.qdq import export_qdq, graph_to_onnx
from quantization.digits import digits_split, train_digits_cnn

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one thread runs them as fast, and steadily when other processes load the machine
    (PyTorch's OpenMP barriers and ONNX Runtime's spinning pool collapse under oversubscription)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _session(model: onnx.ModelProto | Path):
    """ONNX Runtime unfused (DequantizeLinear, float op, QuantizeLinear): exact on every CPU, where its
    fused int8 kernels saturate without VNNI (tests/helpers.py: ort_session)."""
    return ort_session(model)


def _export(graph: Graph) -> onnx.ModelProto:
    model = graph_to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("qdq_digits")
    train_digits_cnn(root / "digits.onnx")
    xtr, _, xte, yte = digits_split()
    graph = openqnn.convert(root / "digits.onnx")
    return {"root": root, "onnx": onnx.load(root / "digits.onnx"), "graph": graph, "xte": xte, "yte": yte,
            "cal": [{"image": xtr[i:i + 1]} for i in range(100)]}


def _quantized(digits: dict, key: str, **config) -> Graph:
    if key not in digits:
        digits[key] = openqnn.quantize(digits["graph"], digits["cal"], openqnn.QuantizerConfig(**config))
    return digits[key]


def _logits_sim(graph: Graph, images: np.ndarray) -> np.ndarray:
    plan = CpuBackend().prepare(graph)
    return np.concatenate([plan.run({"image": images[i:i + 1]})["logits"] for i in range(len(images))])


def _logits_ort(sess, images: np.ndarray) -> np.ndarray:
    return np.concatenate([sess.run(["logits"], {"image": images[i:i + 1]})[0] for i in range(len(images))])


# -- (1) float graphs round-trip ------------------------------------------------------------------

def test_float_digits_round_trip(digits: dict) -> None:
    model = _export(digits["graph"])
    src = digits["onnx"].graph
    # the source model's interface: names, NCHW input, output shape
    assert [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in model.graph.input] == \
        [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in src.input]
    assert [o.name for o in model.graph.output] == [o.name for o in src.output]
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Conv"] == 3 and ops["Gemm"] == 2 and ops["MaxPool"] == 1 and ops["Clip"] == 1
    assert not {"QuantizeLinear", "DequantizeLinear"} & set(ops)
    x = digits["xte"][:32]
    np.testing.assert_allclose(_logits_ort(_session(model), x), _logits_sim(digits["graph"], x), rtol=1e-4, atol=1e-5)


def _transformer_onnx(path: Path) -> None:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, d: int = 32, heads: int = 4):
            super().__init__()
            self.heads = heads
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, d = x.shape
            h = self.heads
            q, k, v = (z.reshape(b, t, h, d // h).transpose(1, 2) for z in self.qkv(self.ln1(x)).split(d, -1))
            a = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, -1)
            x = x + self.proj((a @ v).transpose(1, 2).reshape(b, t, d))
            return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Block().eval(), (torch.zeros(1, 8, 32),), str(path), input_names=["x"], output_names=["y"],
                          opset_version=17, dynamo=False)


@pytest.fixture(scope="module")
def transformer(tmp_path_factory) -> Graph:
    path = tmp_path_factory.mktemp("qdq_transformer") / "block.onnx"
    _transformer_onnx(path)
    return openqnn.convert(path)


def test_float_transformer_round_trip(transformer: Graph) -> None:
    assert {"MatMul", "Softmax", "LayerNorm", "FullyConnected", "Gelu", "Split"} <= set(transformer.op_types())
    model = _export(transformer)
    assert {"MatMul", "Softmax", "LayerNormalization", "Gemm", "Gelu", "Split"} <= {n.op_type for n in model.graph.node}
    sess, plan = _session(model), CpuBackend().prepare(transformer)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rng.standard_normal((1, 8, 32)).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], plan.run({"x": x})["y"], rtol=1e-4, atol=1e-5)


# -- (2), (3) quantized digits: ONNX Runtime agrees with the simulation -----------------------------

@pytest.mark.parametrize(("name", "config", "act_type"), [
    ("w8a8_per_channel", {"use_per_channel_quantization": True}, onnx.TensorProto.UINT8),
    ("w8a16", {"act_bitwidth": 16}, onnx.TensorProto.UINT16),
    ("w4a8_per_channel", {"weights_bitwidth": 4, "use_per_channel_quantization": True}, onnx.TensorProto.UINT8),
])
def test_quantized_digits_agree_with_simulation(digits: dict, name: str, config: dict, act_type: int) -> None:
    graph = _quantized(digits, name, **config)
    model = _export(graph)
    inits = {t.name: t for t in model.graph.initializer}
    quants = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quants and all(inits[n.input[2]].data_type == act_type for n in quants)
    # weights: signed integers (symmetric: zero point 0), per-channel along ONNX's output-channel axis
    static_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    conv_w = [n for n in static_dq if inits[n.input[0]].dims[-2:] == [3, 3]]
    assert len(conv_w) == 3
    w_type = onnx.TensorProto.INT4 if config.get("weights_bitwidth") == 4 else onnx.TensorProto.INT8
    for n in conv_w:
        assert inits[n.input[0]].data_type == w_type
        assert not onnx.numpy_helper.to_array(inits[n.input[2]]).any()
        if config.get("use_per_channel_quantization"):
            assert [a.i for a in n.attribute if a.name == "axis"] == [0]
            assert inits[n.input[1]].dims == [inits[n.input[0]].dims[0]]
    biases = [n for n in static_dq if inits[n.input[0]].data_type == onnx.TensorProto.INT32]
    assert len(biases) == 5  # 3 convolutions, 2 Gemms

    xte, yte = digits["xte"], digits["yte"]
    sim = _logits_sim(graph, xte)
    ours = _logits_ort(_session(model), xte)
    agreement = float(np.mean(ours.argmax(1) == sim.argmax(1))) * 100
    ort_acc = float(np.mean(ours.argmax(1) == yte)) * 100
    sim_acc = float(np.mean(sim.argmax(1) == yte)) * 100
    lsb = graph.tensors["logits"].encoding.scale[0]
    print(f"digits {name} QDQ: ORT/simulation top-1 agreement {agreement:.2f}% on {len(yte)} images; "
          f"ORT accuracy {ort_acc:.2f}%, simulation {sim_acc:.2f}%; "
          f"max |logit diff| {np.abs(ours - sim).max() / lsb:.2f} output LSB")
    assert agreement >= 99.0, agreement
    assert abs(ort_acc - sim_acc) <= 1.0
    assert np.abs(ours - sim).max() <= 2 * lsb + 1e-6  # the same grid, at most a rounding step or two apart


def test_quantized_transformer_agrees_with_simulation(transformer: Graph) -> None:
    rng = np.random.default_rng(1)
    cal = [{"x": rng.standard_normal((1, 8, 32)).astype(np.float32)} for _ in range(16)]
    graph = openqnn.quantize(transformer, cal, openqnn.QuantizerConfig(act_bitwidth=16, use_per_row_quantization=True))
    sess, plan = _session(_export(graph)), CpuBackend().prepare(graph)
    lsb = graph.tensors["y"].encoding.scale[0]
    for _ in range(4):
        x = rng.standard_normal((1, 8, 32)).astype(np.float32)
        assert np.abs(sess.run(None, {"x": x})[0] - plan.run({"x": x})["y"]).max() <= 2 * lsb + 1e-6


# -- (4) the command line and errors ----------------------------------------------------------------

def test_cli_export_onnx(digits: dict, tmp_path: Path, capsys) -> None:
    graph = _quantized(digits, "w8a8_per_channel", use_per_channel_quantization=True)
    json_path, _ = openqnn.save(graph, tmp_path / "model" / "digits.cpp")
    out = tmp_path / "export" / "digits_qdq.onnx"
    assert cli.main(["export-onnx", str(json_path), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["digits_qdq.onnx"]  # no temporary left behind
    x = digits["xte"][:16]
    np.testing.assert_array_equal(_logits_ort(_session(out), x), _logits_ort(_session(graph_to_onnx(graph)), x))


def test_cli_unmapped_op_is_a_one_line_error(digits: dict, tmp_path: Path, capsys, monkeypatch) -> None:
    json_path, _ = openqnn.save(digits["graph"], tmp_path / "digits.cpp")
    monkeypatch.delitem(qdq.HANDLERS, "Relu")  # an IR op without an ONNX mapping
    out = tmp_path / "out.onnx"
    assert cli.main(["export-onnx", str(json_path), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "node '/2/Relu'" in err[0] and "(Relu)" in err[0], err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["digits.bin", "digits.cpp", "digits_net.json"]


def test_unexpressible_attribute_names_node(tmp_path: Path) -> None:
    from openqnn.ir.dtype import DType
    from openqnn.ir.tensor import Tensor, TensorKind
    from openqnn.ops.build import emit

    g = Graph("pad")
    g.add_tensor(Tensor("x", (1, 4), DType.FLOAT_32, TensorKind.APP_WRITE))
    g.inputs = ["x"]
    g.outputs = emit(g, "Pad", ["x"], {"pad_amount": ((0, 0), (1, 1)), "scheme": 1}, name="mirror")
    with pytest.raises(openqnn.UnsupportedOpError, match=r"node 'mirror' \(Pad\).*mirror-symmetric"):
        export_qdq(g, tmp_path / "pad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_unusual_encodings(digits: dict) -> None:
    """A 4-bit activation (clamped after a uint8 DequantizeLinear) and a per-axis one (arithmetic) still
    match the simulation; a zero point outside the storage type is a clear error."""
    from openqnn.ir.tensor import Encoding

    g = _quantized(digits, "w8a8_per_channel", use_per_channel_quantization=True).copy()
    for name in ("/7/Conv_output_0", "/8/Clip_output_0"):
        g.tensors[name].encoding = Encoding(4, (g.tensors[name].encoding.scale[0] * 17,), (0,))
    t = g.tensors["/3/Conv_output_0"]
    assert t.encoding is not None
    t.encoding = Encoding(8, tuple(t.encoding.scale[0] * (1 + 0.01 * i) for i in range(32)), (0,) * 16 + (-3,) * 16,
                          axis=3)
    x = digits["xte"][:50]
    lsb = g.tensors["logits"].encoding.scale[0]
    assert np.abs(_logits_ort(_session(_export(g)), x) - _logits_sim(g, x)).max() <= lsb + 1e-6
    g.tensors["logits"].encoding = Encoding(8, (0.1,), (10,))
    with pytest.raises(openqnn.InvalidModelError, match=r"'logits'.*zero point -10"):
        graph_to_onnx(g)


def test_norm_units_for_qnn() -> None:
    """LayerNorm's beta is a 32-bit bias of scale s_in x s_gamma and a standalone BatchNorm exports as a
    BatchNormalization (the QDQ node units QNN EP forms: with an 8-bit beta, or as Mul + Add, QNN ran them
    on floats); ONNX Runtime still agrees with the simulation."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    f = lambda n, a: numpy_helper.from_array(np.asarray(a, np.float32), n)  # noqa: E731
    nodes = [helper.make_node("BatchNormalization", ["x", "bg", "bb", "bm", "bv"], ["h"]),
             helper.make_node("LayerNormalization", ["h", "g", "b"], ["y"], axis=-1)]
    inits = [f("bg", rng.uniform(0.5, 1.5, 5)), f("bb", rng.uniform(-0.3, 0.3, 5)), f("bm", rng.uniform(-0.2, 0.2, 5)),
             f("bv", rng.uniform(0.5, 2.0, 5)), f("g", rng.uniform(0.5, 1.5, 9)), f("b", rng.uniform(-0.3, 0.3, 9))]
    g = helper.make_graph(nodes, "norms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 7, 9])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    cal = [{"x": rng.standard_normal((1, 5, 7, 9)).astype(np.float32)} for _ in range(4)]
    for bits, pc in ((8, False), (16, False), (8, True)):
        cfg = openqnn.QuantizerConfig(act_bitwidth=bits, use_per_channel_quantization=pc)
        graph = openqnn.quantize(openqnn.convert(model), cal, cfg)
        ln = next(n for n in graph.nodes if n.op_type == "LayerNorm")
        beta, gamma, x = (graph.tensors[t].encoding for t in (ln.inputs[2], ln.inputs[1], ln.inputs[0]))
        assert beta is not None and gamma is not None and x is not None
        assert beta.bitwidth == 32 and beta.scale[0] == pytest.approx(x.scale[0] * gamma.scale[0])
        # gamma per tensor, per-channel quantization or not: QNN's HTP takes no per-axis gamma (uint8 codes:
        # graphAddNode fails; int8: QNN EP leaves it to the CPU), docs/htp-fidelity.md, LayerNorm section
        assert len(gamma.scale) == 1 and gamma.axis is None
        exported = _export(graph)
        ops = Counter(n.op_type for n in exported.graph.node)
        assert ops["BatchNormalization"] == 1 and "Mul" not in ops
        sess, plan = _session(exported), CpuBackend().prepare(graph)
        lsb = graph.tensors["y"].encoding.scale[0]
        for feed in cal:
            assert np.abs(sess.run(None, feed)[0] - plan.run(feed)["y"]).max() <= 2 * lsb + 1e-6
