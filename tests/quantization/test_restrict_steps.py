"""--restrict_quantization_steps MIN MAX: weight encodings that use only the signed integers [MIN, MAX]."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import data_of, encoding_of, make_model
from openqnn.backends.cpu.quantsim import fake_quantize_array
from openqnn.cli import onnx_converter
from openqnn.ir.tensor import Tensor
from openqnn.quantization.qdq import graph_to_onnx

_enc = encoding_of
_data = data_of



def _model(path: Path) -> None:
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 32)).astype(np.float32)
    w1[0, 0], w1[3, 5] = -9.0, 7.0  # outliers: a clipping range setting saturates them
    inits = [numpy_helper.from_array(w1, "fc1.weight"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "fc1.bias"),
             numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "fc2.weight")]
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "fc2.weight"], ["y"], transB=1)]
    onnx.save(make_model(nodes, [("x", TensorProto.FLOAT, [2, 32])], [("y", TensorProto.FLOAT, [2, 8])], inits,
                         opset=13), str(path))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("restrict")
    _model(root / "fc.onnx")
    rng = np.random.default_rng(1)
    (root / "cal").mkdir()
    for i in range(8):
        rng.standard_normal((2, 32)).astype(np.float32).tofile(root / "cal" / f"{i}.raw")
    (root / "cal.txt").write_text("".join(f"{root / 'cal' / f'{i}.raw'}\n" for i in range(8)))
    return {"root": root, "onnx": root / "fc.onnx", "cal": root / "cal.txt"}


def _convert(work: dict, name: str, *flags: str) -> openqnn.Graph:
    stem = work["root"] / name
    assert onnx_converter.main(["-i", str(work["onnx"]), "-o", f"{stem}.cpp", "--input_list", str(work["cal"]),
                                *flags]) == 0
    return openqnn.load(f"{stem}_net.json")


def _stored_weights(graph: openqnn.Graph) -> dict[str, np.ndarray]:
    """The signed integers the QDQ export stores for each weight."""
    model = graph_to_onnx(graph)
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0].endswith("weight_quantized"):
            out[n.input[0].removesuffix("_quantized")] = onnx.numpy_helper.to_array(inits[n.input[0]]).astype(np.int64)
    return out


def _ints(t: Tensor) -> np.ndarray:
    """The integers the simulation rounds a static tensor to (q in the encoding's unsigned domain)."""
    scale, offset = _enc(t).arrays(t.shape)
    return np.round(fake_quantize_array(_data(t), _enc(t)).astype(np.float64) / scale).astype(np.int64) - offset


def test_restrict_never_uses_minus_128(work: dict) -> None:
    flags = ["--param_quantizer_calibration", "entropy"]  # clips the outliers
    plain = _convert(work, "plain", *flags)
    restricted = _convert(work, "restricted", *flags, "--restrict_quantization_steps", "-127", "127")
    assert _stored_weights(plain)["fc1.weight"].min() == -128  # the clipped outlier saturates at -128
    for name, q in _stored_weights(restricted).items():
        assert q.min() >= -127 and q.max() <= 127, name
    for name in ("fc1.weight", "fc2.weight"):
        e = _enc(restricted.tensors[name])
        assert (e.qmin, e.qmax, e.offset) == (1, 255, (-128,))
        ints = _ints(restricted.tensors[name])
        assert ints.min() >= 1 and ints.max() <= 255
    assert _ints(restricted.tensors["fc1.weight"]).min() == 1  # -127 + 128: clamped there, not at 0
    # biases and activations keep their full ranges
    assert _enc(restricted.tensors["fc1.bias"]).qmin is None and _enc(restricted.tensors["h"]).qmin is None
    # the _net.json records it; a save / load round trip keeps it
    doc = json.loads((work["root"] / "restricted_net.json").read_text())
    qp = doc["graph"]["tensors"]["fc1.weight"]["quant_params"]
    assert (qp["qmin"], qp["qmax"]) == (1, 255)
    json_path, _ = openqnn.save(restricted, work["root"] / "again" / "m.cpp")
    again = openqnn.load(json_path)
    assert all(_enc(again.tensors[n]) == _enc(t) for n, t in restricted.tensors.items())
    enc = json.loads((work["root"] / "restricted_encodings.json").read_text())
    assert enc["quantizer_args"]["restrict_quantization_steps"] == [-127, 127]


def test_narrower_steps_change_the_scale(work: dict) -> None:
    full = _convert(work, "full")
    half = _convert(work, "half", "--restrict_quantization_steps", "-63", "63")
    for name in ("fc1.weight", "fc2.weight"):
        absmax = float(np.abs(_data(full.tensors[name])).max())
        assert _enc(full.tensors[name]).scale[0] == pytest.approx(absmax / 127)
        assert _enc(half.tensors[name]).scale[0] == pytest.approx(absmax / 63)
        q = _ints(half.tensors[name]) - 128
        assert q.min() == -63 or q.max() == 63
        assert q.min() >= -63 and q.max() <= 63
    # QNN's form: one quoted "MIN MAX" argument, hexadecimal
    hexed = _convert(work, "hex", "--restrict_quantization_steps", "-0x3F 0x3F")
    assert _enc(hexed.tensors["fc1.weight"]) == _enc(half.tensors["fc1.weight"])


def test_asymmetric_weights_and_per_block(work: dict) -> None:
    g = _convert(work, "asym", "--param_quantizer_schema", "asymmetric", "--restrict_quantization_steps", "-64", "63")
    t = g.tensors["fc1.weight"]
    lo, hi = float(_data(t).min()), float(_data(t).max())
    assert (_enc(t).qmin, _enc(t).qmax) == (64, 191)
    assert _enc(t).scale[0] == pytest.approx((hi - lo) / 127)
    ints = _ints(t)
    assert ints.min() == 64 and ints.max() == 191
    g = _convert(work, "block", "--weights_bitwidth", "4", "--weights_block_size", "8",
                 "--restrict_quantization_steps", "-7", "7")
    t = g.tensors["fc1.weight"]
    assert (_enc(t).block_size, _enc(t).qmin, _enc(t).qmax) == (8, 1, 15)
    ints = _ints(t)
    assert ints.min() >= 1 and ints.max() <= 15
    assert openqnn.load(work["root"] / "block_net.json").tensors["fc1.weight"].encoding == _enc(t)


@pytest.mark.parametrize("flags, needle", [
    (["0", "127"], "MIN < 0 < MAX"),
    (["-127", "0"], "MIN < 0 < MAX"),
    (["-129", "127"], "[-128, 127]"),
    (["-127", "128"], "[-128, 127]"),
    (["-127", "127", "--weights_bitwidth", "4"], "4-bit"),
    (["abc", "127"], "integers"),
    (["-1", "2", "3"], "two integers"),
])
def test_bad_steps_are_one_line_errors(work: dict, tmp_path: Path, capsys, flags: list[str], needle: str) -> None:
    rc = onnx_converter.main(["-i", str(work["onnx"]), "-o", str(tmp_path / "m.cpp"), "--input_list",
                              str(work["cal"]), "--restrict_quantization_steps", *flags])
    assert rc != 0
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "--restrict_quantization_steps" in lines[0] and needle in lines[0], lines[0]
    assert not list(tmp_path.glob("m*"))


def test_config_checks_steps() -> None:
    with pytest.raises(openqnn.InvalidConfigError, match="restrict_quantization_steps"):
        openqnn.QuantizerConfig(restrict_quantization_steps=(5, 127))
    with pytest.raises(openqnn.InvalidConfigError, match=r"\[-8, 7\]"):
        openqnn.QuantizerConfig(weights_bitwidth=4, restrict_quantization_steps=(-8, 8))
    assert openqnn.QuantizerConfig(weights_bitwidth=4, restrict_quantization_steps=(-8, 7))
