"""Per-block (blockwise) and LPBQ weight encodings: the converter flag, the quantizer, overrides, the
encodings file, the _net.json, the cpu simulation and the QDQ export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import data_of, encoding_of, make_model, ort_session
from openqnn.backends.cpu import CpuBackend
from openqnn.backends.cpu.quantsim import fake_quantize_array
from openqnn.cli import main as openqnn_main
from openqnn.cli import net_run, onnx_converter
from openqnn.ir.tensor import Encoding
from openqnn.quantization.qdq import graph_to_onnx
from quantization.digits import digits_split, train_digits_cnn

ort = pytest.importorskip("onnxruntime")

BLOCKED = {"onnx::Conv_40": (32, 16 // 8), "10.weight": (64, 512 // 8), "12.weight": (10, 64 // 8)}  # (C, blocks)


_enc = encoding_of
_data = data_of



@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _input_list(root: Path, name: str, xs: np.ndarray) -> Path:
    d = root / name
    d.mkdir()
    for i in range(len(xs)):
        xs[i:i + 1].tofile(d / f"{i}.raw")
    (root / f"{name}.txt").write_text("".join(f"{d / f'{i}.raw'}\n" for i in range(len(xs))))
    return root / f"{name}.txt"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("per_block_digits")
    train_digits_cnn(root / "digits.onnx")
    xtr, _, xte, yte = digits_split()
    float_graph = openqnn.convert(root / "digits.onnx")
    plan = CpuBackend().prepare(float_graph)
    fp32 = float(np.mean([plan.run({"image": xte[i:i + 1]})["logits"].argmax() == yte[i] for i in range(len(xte))]))
    return {"root": root, "onnx": root / "digits.onnx", "cal": _input_list(root, "cal", xtr[:50]),
            "test": _input_list(root, "test", xte), "y": yte, "xte": xte, "fp32": fp32 * 100}


def _convert_and_run(digits: dict, name: str, *flags: str) -> tuple[float, Path]:
    root = digits["root"]
    stem = root / name
    assert onnx_converter.main(["-i", str(digits["onnx"]), "-o", f"{stem}.cpp", "--input_list", str(digits["cal"]),
                                *flags]) == 0
    out = root / f"out_{name}"
    assert net_run.main(["--model", f"{stem}_net.json", "--input_list", str(digits["test"]),
                         "--output_dir", str(out)]) == 0
    preds = [np.fromfile(out / f"Result_{i}" / "logits.raw", np.float32).argmax() for i in range(len(digits["y"]))]
    acc = float(np.mean(np.array(preds) == digits["y"])) * 100
    print(f"digits {name}: {acc:.2f}% top-1 (fp32 {digits['fp32']:.2f}%)")
    return acc, stem


_FLAGS = {"w4_block8": ("--weights_bitwidth", "4", "--weights_block_size", "8"),
          "w4_lpbq": ("--weights_bitwidth", "4", "--weights_block_size", "8", "--weights_block_scale_bitwidth", "4")}


def _model(digits: dict, name: str) -> Path:
    """The stem of the ``name`` model: the one an earlier test converted, or converted now (``pytest -n`` may run
    this test on another worker)."""
    stem = digits["root"] / name
    if not Path(f"{stem}_net.json").is_file():
        assert onnx_converter.main(["-i", str(digits["onnx"]), "-o", f"{stem}.cpp", "--input_list",
                                    str(digits["cal"]), *_FLAGS[name]]) == 0
    return stem


def _same_after_save_load(graph: openqnn.Graph, tmp: Path) -> openqnn.Graph:
    json_path, _ = openqnn.save(graph, tmp / "again.cpp")
    again = openqnn.load(json_path)
    for name, t in graph.tensors.items():
        assert _enc(again.tensors[name]) == _enc(t), name
    return again


def test_w4_per_block_digits_cli(digits: dict, tmp_path: Path) -> None:
    acc, stem = _convert_and_run(digits, "w4_block8", *_FLAGS["w4_block8"])
    assert acc >= digits["fp32"] - 3.0, (acc, digits["fp32"])
    enc = json.loads(Path(f"{stem}_encodings.json").read_text())
    params = {e["name"]: e for e in enc["param_encodings"]}
    for name, (channels, blocks) in BLOCKED.items():
        e = params[name]
        assert (e["enc_type"], e["bw"], e["block_size"], e["is_sym"]) == ("PER_BLOCK", 4, 8, True)
        assert len(e["scale"]) == len(e["offset"]) == channels * blocks and set(e["offset"]) == {-8}
    # the first convolution (1 input channel) and the depthwise one cannot be blocked: per-channel
    assert params["onnx::Conv_37"]["enc_type"] == params["7.weight"]["enc_type"] == "PER_CHANNEL"
    assert enc["quantizer_args"]["weights_block_size"] == 8
    net = json.loads(Path(f"{stem}_net.json").read_text())
    qp = net["graph"]["tensors"]["10.weight"]["quant_params"]
    assert qp["encoding"] == "QNN_QUANTIZATION_ENCODING_BLOCK"
    assert {k: qp["block_scale_offset"][k] for k in ("axis", "block_axis", "block_size")} == {
        "axis": 0, "block_axis": 1, "block_size": 8}
    graph = openqnn.load(f"{stem}_net.json")
    w = graph.tensors["onnx::Conv_40"]  # IR filter [kh, kw, cin, cout]: channels on 3, blocks along cin (2)
    assert (_enc(w).axis, _enc(w).block_axis, _enc(w).block_size) == (3, 2, 8)
    _same_after_save_load(graph, tmp_path)
    # per-block is finer than per-row: the FC weight's error is smaller than with one scale per row
    data = _data(graph.tensors["10.weight"])
    absmax = np.abs(data).max(axis=1, keepdims=True)
    row = np.clip(np.round(data / (absmax / 7)), -8, 7) * (absmax / 7)
    block_err = np.abs(fake_quantize_array(data, _enc(graph.tensors["10.weight"])) - data).mean()
    assert block_err < np.abs(row - data).mean()


def test_lpbq_digits_cli(digits: dict, tmp_path: Path) -> None:
    acc, stem = _convert_and_run(digits, "w4_lpbq", *_FLAGS["w4_lpbq"])
    assert acc >= digits["fp32"] - 3.0, (acc, digits["fp32"])
    enc = json.loads(Path(f"{stem}_encodings.json").read_text())
    params = {e["name"]: e for e in enc["param_encodings"]}
    for name, (channels, blocks) in BLOCKED.items():
        e = params[name]
        assert (e["enc_type"], e["bw"], e["compressed_bw"], e["block_size"]) == ("LPBQ", 8, 4, 8)
        assert len(e["scale"]) == channels and set(e["offset"]) == {-128}
        ints = np.asarray(e["per_block_int_scale"]).reshape(channels, blocks)
        assert ints.min() >= 1 and (ints.max(axis=1) == 16).all()
    net = json.loads(Path(f"{stem}_net.json").read_text())
    qp = net["graph"]["tensors"]["12.weight"]["quant_params"]
    assert qp["encoding"] == "QNN_QUANTIZATION_ENCODING_BLOCKWISE_EXPANSION"
    be = qp["blockwise_expansion"]
    assert (be["num_blocks_per_axis"], be["block_scale_bitwidth"], len(be["scale_offsets"])) == (8, 4, 10)
    graph = _same_after_save_load(openqnn.load(f"{stem}_net.json"), tmp_path)
    e = _enc(graph.tensors["12.weight"])
    cs, ints, _ = e.lpbq_factors(graph.tensors["12.weight"].shape)
    np.testing.assert_array_equal(np.asarray(e.scale), (cs[:, None] * ints).reshape(-1))


@pytest.mark.parametrize("name", ["w4_block8", "w4_lpbq"])
def test_encodings_file_round_trip(digits: dict, name: str, tmp_path: Path) -> None:
    """The written encodings file, given back as overrides, reproduces every weight encoding."""
    stem = _model(digits, name)
    assert onnx_converter.main(["-i", str(digits["onnx"]), "-o", str(tmp_path / "back.cpp"),
                                "--quantization_overrides", f"{stem}_encodings.json"]) == 0
    a, b = openqnn.load(f"{stem}_net.json"), openqnn.load(tmp_path / "back_net.json")
    statics = [n for n, t in a.tensors.items() if t.is_static and t.encoding is not None]
    assert len(statics) == 10
    for n in statics:
        assert _enc(b.tensors[n]) == _enc(a.tensors[n]), n


def test_qdq_export_runs_in_onnxruntime(digits: dict, tmp_path: Path) -> None:
    stem = _model(digits, "w4_block8")
    out = tmp_path / "digits_qdq.onnx"
    assert openqnn_main.main(["export-onnx", f"{stem}_net.json", "-o", str(out)]) == 0
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    inits = {t.name: t for t in model.graph.initializer}
    blocked = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
               and any(a.name == "block_size" for a in n.attribute)]
    assert len(blocked) == 3
    conv = next(n for n in blocked if len(inits[n.input[0]].dims) == 4)
    assert inits[conv.input[0]].dims == [32, 16, 3, 3] and inits[conv.input[1]].dims == [32, 2, 3, 3]
    assert inits[conv.input[0]].data_type == TensorProto.INT4
    graph = openqnn.load(f"{stem}_net.json")
    plan = CpuBackend().prepare(graph)
    sess = ort_session(out)  # unfused: exact on CPUs without VNNI too
    xs = digits["xte"][:100]
    sim = np.concatenate([plan.run({"image": xs[i:i + 1]})["logits"] for i in range(len(xs))])
    ours = np.concatenate([sess.run(["logits"], {"image": xs[i:i + 1]})[0] for i in range(len(xs))])
    lsb = _enc(graph.tensors["logits"]).scale[0]
    assert np.mean(sim.argmax(1) == ours.argmax(1)) >= 0.99
    assert np.abs(sim - ours).max() <= 2 * lsb + 1e-6


def test_bad_block_flags_are_one_line_errors(digits: dict, tmp_path: Path, capsys) -> None:
    def error(*flags: str) -> str:
        rc = onnx_converter.main(["-i", str(digits["onnx"]), "-o", str(tmp_path / "bad.cpp"), "--input_list",
                                  str(digits["cal"]), *flags])
        assert rc != 0
        lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("WARNING")]
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    line = error("--weights_block_size", "5")  # 16 input channels of the second convolution
    assert "--weights_block_size 5" in line and "'onnx::Conv_40'" in line and "16" in line
    assert "--weights_block_size" in error("--weights_block_size", "0")
    assert "--weights_block_size" in error("--weights_block_scale_bitwidth", "4")
    assert not list(tmp_path.glob("bad*"))


# -- a small fully connected model: FullyConnected and a batched MatMul with static weights ---------

def _fc_model(path: Path) -> None:
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 32)).astype(np.float32) * np.linspace(0.1, 2.0, 32, dtype=np.float32)
    inits = [numpy_helper.from_array(w1, "fc.weight"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "fc.bias"),
             numpy_helper.from_array(np.asarray([2, 2, 16], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((2, 16, 8)).astype(np.float32), "mm.weight")]
    nodes = [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["r3"]),
             helper.make_node("MatMul", ["r3", "mm.weight"], ["y"])]
    onnx.save(make_model(nodes, [("x", TensorProto.FLOAT, [4, 32])], [("y", TensorProto.FLOAT, [2, 2, 8])], inits,
                         opset=13), str(path))


@pytest.fixture(scope="module")
def fc(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("per_block_fc")
    _fc_model(root / "fc.onnx")
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((24, 4, 32)).astype(np.float32)
    return {"root": root, "onnx": root / "fc.onnx", "cal": _input_list(root, "cal", xs[:16]), "xs": xs[16:]}


def _manual_blocks(w: np.ndarray, channel_axis: int, block_axis: int, bs: int, bits: int) -> np.ndarray:
    """Symmetric min-max fake quantization of each block, written out plainly."""
    x = np.moveaxis(w.astype(np.float64), (channel_axis, block_axis), (0, 1)).copy()
    out = np.empty_like(x)
    half = (1 << (bits - 1)) - 1
    for c in range(x.shape[0]):
        for b in range(0, x.shape[1], bs):
            blk = x[c, b:b + bs]
            s = max(np.abs(blk).max(), 5e-5) / half
            out[c, b:b + bs] = np.clip(np.round(blk / s), -half - 1, half) * s
    return np.moveaxis(out, (0, 1), (channel_axis, block_axis)).astype(w.dtype)


def test_fc_and_matmul_per_block(fc: dict, tmp_path: Path) -> None:
    assert onnx_converter.main(["-i", str(fc["onnx"]), "-o", str(tmp_path / "fc.cpp"), "--input_list",
                                str(fc["cal"]), "--weights_bitwidth", "4", "--weights_block_size", "8",
                                "--param_quantizer_calibration", "min-max"]) == 0  # _manual_blocks: absmax ranges
    graph = openqnn.load(tmp_path / "fc_net.json")
    ops = {n.op_type for n in graph.nodes}
    assert {"FullyConnected", "MatMul"} <= ops
    fcw, mmw = graph.tensors["fc.weight"], graph.tensors["mm.weight"]
    assert fcw.shape == (16, 32) and mmw.shape == (2, 16, 8)
    assert (_enc(fcw).axis, _enc(fcw).block_axis, len(_enc(fcw).scale)) == (0, 1, 16 * 4)
    assert (_enc(mmw).axis, _enc(mmw).block_axis, len(_enc(mmw).scale)) == (2, 1, 8 * 2)
    for t in (fcw, mmw):
        e = _enc(t)
        assert e.axis is not None and e.block_axis is not None
        expected = _manual_blocks(_data(t), e.axis, e.block_axis, 8, 4)
        np.testing.assert_allclose(fake_quantize_array(_data(t), _enc(t)), expected, rtol=1e-6, atol=1e-7)
    # the bias takes input scale x each channel's largest block scale
    b = _enc(graph.tensors["fc.bias"])
    x_scale = _enc(graph.tensors["x"]).scale[0]
    np.testing.assert_allclose(b.scale, x_scale * np.asarray(_enc(fcw).scale).reshape(16, 4).max(axis=1))
    # the QDQ model (blocked DequantizeLinear on a rank-3 weight too) agrees with the simulation
    model = graph_to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    sess = ort_session(model)
    plan = CpuBackend().prepare(graph)
    lsb = _enc(graph.tensors["y"]).scale[0]
    for x in fc["xs"]:
        assert np.abs(sess.run(None, {"x": x})[0] - plan.run({"x": x})["y"]).max() <= 2 * lsb + 1e-6


def _overrides(tmp_path: Path, entries: list[dict]) -> Path:
    p = tmp_path / "over.json"
    p.write_text(json.dumps({"version": "1.0.0", "activation_encodings": [], "param_encodings": entries}))
    return p


def test_per_block_and_lpbq_overrides(fc: dict, tmp_path: Path) -> None:
    scales = [0.01 * (1 + i % 5) for i in range(16 * 4)]
    ints = [1 + (i * 7) % 16 for i in range(8 * 2)]
    ints[::2] = [16] * 8  # each channel reaches 2^4: an LPBQ encoding
    over = _overrides(tmp_path, [
        {"name": "fc.weight", "enc_type": "PER_BLOCK", "dtype": "INT", "bw": 4, "is_sym": True, "block_size": 8,
         "scale": scales, "offset": [-8] * 64},
        {"name": "mm.weight", "enc_type": "LPBQ", "dtype": "INT", "bw": 8, "compressed_bw": 4, "is_sym": True,
         "block_size": 8, "scale": [0.002 * (c + 1) for c in range(8)], "offset": [-128] * 8,
         "per_block_int_scale": ints},
    ])
    assert onnx_converter.main(["-i", str(fc["onnx"]), "-o", str(tmp_path / "o.cpp"), "--input_list", str(fc["cal"]),
                                "--quantization_overrides", str(over)]) == 0
    graph = openqnn.load(tmp_path / "o_net.json")
    e = _enc(graph.tensors["fc.weight"])
    assert (e.bitwidth, e.axis, e.block_axis, e.block_size, e.scale) == (4, 0, 1, 8, tuple(scales))
    m = _enc(graph.tensors["mm.weight"])  # [2, 16, 8]: channels on axis 2, blocks of 8 along axis 1
    assert (m.bitwidth, m.axis, m.block_axis, m.block_scale_bitwidth) == (4, 2, 1, 4)
    expected = (np.asarray([0.002 * (c + 1) for c in range(8)])[:, None] * np.asarray(ints).reshape(8, 2)).reshape(-1)
    np.testing.assert_allclose(m.scale, expected, rtol=1e-12)
    assert set(m.offset) == {-8}
    enc = json.loads((tmp_path / "o_encodings.json").read_text())
    written = {x["name"]: x for x in enc["param_encodings"]}
    assert written["mm.weight"]["per_block_int_scale"] == ints and written["fc.weight"]["enc_type"] == "PER_BLOCK"


@pytest.mark.parametrize("entry, needles", [
    ({"name": "fc.weight", "enc_type": "PER_BLOCK", "bw": 4, "is_sym": True, "block_size": 8,
      "scale": [0.1] * 60, "offset": [-8] * 60}, ["fc.weight", "60 per-block values", "16 channels x 4 blocks"]),
    ({"name": "fc.weight", "enc_type": "PER_BLOCK", "bw": 4, "is_sym": True, "block_size": 5,
      "scale": [0.1] * 64, "offset": [-8] * 64}, ["fc.weight", "block_size 5", "does not divide its 32"]),
    ({"name": "fc.bias", "enc_type": "PER_BLOCK", "bw": 8, "is_sym": True, "block_size": 4,
      "scale": [0.1] * 4, "offset": [-128] * 4}, ["fc.bias", "only weights of Conv2d"]),
    ({"name": "fc.weight", "enc_type": "PER_BLOCK", "bw": 4, "is_sym": True,
      "scale": [0.1] * 64, "offset": [-8] * 64}, ["fc.weight", "block_size"]),
    ({"name": "mm.weight", "enc_type": "LPBQ", "bw": 8, "compressed_bw": 4, "is_sym": True, "block_size": 8,
      "scale": [0.1] * 8, "offset": [-128] * 8, "per_block_int_scale": [17] * 16}, ["mm.weight", "[1, 16]"]),
])
def test_bad_per_block_overrides(fc: dict, tmp_path: Path, capsys, entry: dict, needles: list[str]) -> None:
    over = _overrides(tmp_path, [entry])
    rc = onnx_converter.main(["-i", str(fc["onnx"]), "-o", str(tmp_path / "o.cpp"), "--input_list", str(fc["cal"]),
                              "--quantization_overrides", str(over)])
    assert rc != 0
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# -- the IR encoding itself ---------------------------------------------------------------------

def test_encoding_layout_and_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="block_size and block_axis"):
        Encoding(4, (0.1, 0.2), (-8, -8), 0, True, block_size=2)
    with pytest.raises(ValueError, match="channel axis"):
        Encoding(4, (0.1,), (-8,), None, True, block_size=2, block_axis=1)
    enc = Encoding(4, tuple(float(i + 1) for i in range(6)), (-8,) * 6, 3, True, block_size=2, block_axis=2)
    shape = (1, 1, 4, 3)  # [kh, kw, cin, cout]: 3 channels x 2 blocks of 2 input channels
    assert enc.shape_error(shape) is None
    assert "6 per-block values" in (enc.shape_error((1, 1, 4, 2)) or "")
    assert "does not divide" in (enc.shape_error((1, 1, 5, 3)) or "")
    scale, _ = enc.arrays(shape)
    # channel c, input channel k -> scale[c * blocks + k // 2]
    expected = np.asarray([[c * 2 + k // 2 + 1 for c in range(3)] for k in range(4)], dtype=np.float64)
    np.testing.assert_array_equal(np.broadcast_to(scale, shape)[0, 0], expected)
    # a _net.json whose block encoding does not fit its tensor is refused, naming the tensor
    g = openqnn.convert(_tiny_fc(tmp_path))
    g.tensors["w"].encoding = Encoding(8, (0.1,) * 4, (-128,) * 4, 0, True, block_size=4, block_axis=1)
    json_path, _ = openqnn.save(g, tmp_path / "tiny.cpp")
    assert _enc(openqnn.load(json_path).tensors["w"]).block_size == 4
    doc = json.loads(json_path.read_text())
    doc["graph"]["tensors"]["w"]["quant_params"]["block_scale_offset"]["block_size"] = 2
    json_path.write_text(json.dumps(doc))
    with pytest.raises(openqnn.InvalidModelError, match=r"'w'.*4 per-block values"):
        openqnn.load(json_path)


def _tiny_fc(tmp_path: Path) -> Path:
    w = numpy_helper.from_array(np.ones((2, 8), np.float32), "w")
    m = make_model([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], [("x", TensorProto.FLOAT, [1, 8])],
                   [("y", TensorProto.FLOAT, [1, 2])], [w], opset=13)
    onnx.save(m, str(tmp_path / "tiny.onnx"))
    return tmp_path / "tiny.onnx"
