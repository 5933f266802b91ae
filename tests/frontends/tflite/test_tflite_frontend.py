"""The TFLite frontend: encodings from quantized tensors, custom ops, refusals, the API and the CLI."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from tfl_builder import Model, Op, T, build

import openqnn
from openqnn.errors import InvalidModelError, UnsupportedOpError
from openqnn.frontends.tflite import convert_tflite, read_tflite, supported_ops

FIXTURES = Path(__file__).parent / "fixtures"


def test_int8_tensors_become_qnn_encodings() -> None:
    path = FIXTURES / "conv_int8.tflite"
    m = read_tflite(path)
    g = convert_tflite(path)
    conv = next(n for n in g.nodes if n.op_type == "Conv2d")
    x, w, b = (g.tensors[i] for i in conv.inputs)
    src_in = m.tensors[m.inputs[0]]
    assert src_in.quant is not None and x.encoding is not None
    # int8 asymmetric is uint8 with the offset moved by 128
    assert x.encoding.bitwidth == 8 and x.encoding.offset == (-(src_in.quant.zero_point[0] + 128),)
    assert x.encoding.scale == src_in.quant.scale
    # per-channel symmetric int8 weights: axis moves with the layout ([cout,kh,kw,cin] -> [kh,kw,cin,cout])
    assert w.encoding is not None and w.encoding.axis == 3 and w.encoding.symmetric
    assert set(w.encoding.offset) == {-128} and len(w.encoding.scale) == w.shape[3]
    # int32 biases: signed, offset 0, scale s_in * s_w per channel
    assert b.encoding is not None and b.encoding.bitwidth == 32 and b.encoding.is_signed
    np.testing.assert_allclose(b.encoding.scale, np.asarray(w.encoding.scale) * x.encoding.scale[0], rtol=1e-6)
    # the dequantized weights quantize back to TFLite's integers
    src_w = next(t for t in m.tensors if t.data is not None and t.data.dtype == np.int8 and t.data.ndim == 4
                 and t.data.transpose(1, 2, 3, 0).shape == w.shape)
    q = np.round(w.data / np.asarray(w.encoding.scale)) - np.asarray(w.encoding.offset) - 128
    np.testing.assert_array_equal(q.astype(np.int64), src_w.data.transpose(1, 2, 3, 0).astype(np.int64))


def test_int16_activations_are_uint16_moved_by_32768() -> None:
    g = convert_tflite(FIXTURES / "conv_int16x8.tflite")
    x = g.tensors[g.inputs[0]]
    assert x.encoding is not None and x.encoding.bitwidth == 16 and x.encoding.offset == (-32768,)
    assert x.encoding.symmetric


def test_float16_weights_fold_into_float32() -> None:
    g = convert_tflite(FIXTURES / "conv_float16.tflite")
    assert g.count_ops() == {"Conv2d": 2, "Relu": 1}
    assert all(t.dtype.name == "FLOAT_32" and t.encoding is None for t in g.static_tensors())


def test_openqnn_convert_dispatches_on_the_suffix() -> None:
    g = openqnn.convert(FIXTURES / "pooling_float32.tflite")
    assert set(g.count_ops()) == {"PoolMax2d", "PoolAvg2d"}


def _add_model(op: Op) -> bytes:
    return build(Model([T("a", (1, 4)), T("b", (1, 4), np.ones((1, 4), np.float32)), T("c", (1, 4))], [op], [0], [2]))


def test_unsupported_op_names_itself_its_type_the_file_and_the_list(tmp_path: Path) -> None:
    path = tmp_path / "atan2.tflite"
    path.write_bytes(_add_model(Op("ATAN2", [0, 1], [2])))
    with pytest.raises(UnsupportedOpError) as e:
        convert_tflite(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(path) in msg and "operator 0 'c' (ATAN2)" in msg
    assert "supported ops: " in msg and "CONV_2D" in msg and "Convolution2DTransposeBias" in msg


@pytest.mark.parametrize(("code", "hint"), [("MaxPoolingWithArgmax2D", "MAX_POOL_2D"),
                                            ("MaxUnpooling2D", "RESIZE_NEAREST_NEIGHBOR"),
                                            ("MyOwnOp", "--out_node")])
def test_custom_op_refusal_says_what_to_do(tmp_path: Path, code: str, hint: str) -> None:
    path = tmp_path / "custom.tflite"
    path.write_bytes(_add_model(Op(code, [0, 1], [2], custom=True)))
    with pytest.raises(UnsupportedOpError, match=f"custom op {code} is not supported") as e:
        convert_tflite(path)
    assert hint in str(e.value) and str(path) in str(e.value) and "supported ops: " in str(e.value)


def test_mediapipe_transpose_conv_bias_is_converted(rng) -> None:
    """MediaPipe's Convolution2DTransposeBias is TRANSPOSE_CONV plus a bias: the same weights through both."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    path = FIXTURES / "transpose_conv_float32.tflite"
    m = read_tflite(path)
    tconv = m.ops[0]
    w = m.tensors[tconv.inputs[1]].data
    assert w is not None
    cout = w.shape[0]
    bias = rng.standard_normal(cout).astype(np.float32)
    x = rng.uniform(-1, 1, (1, 5, 5, 4)).astype(np.float32)
    it = litert.Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    want = it.get_tensor(it.get_output_details()[0]["index"]) + bias
    params = struct.pack("<iii", 1, 2, 2)  # TfLiteTransposeConvParams: SAME, stride_w 2, stride_h 2
    data = build(Model([T("x", (1, 5, 5, 4)), T("w", w.shape, w), T("b", (cout,), bias), T("y", (1, 10, 10, cout))],
                       [Op("Convolution2DTransposeBias", [0, 1, 2], [3], params, custom=True)], [0], [3]))
    g = convert_tflite(data)
    assert g.count_ops() == {"TransposeConv2d": 1}
    got = openqnn.Session(g, backend="cpu").run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_not_a_tflite_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(InvalidModelError, match=r"bad\.tflite: not a TFLite model"):
        convert_tflite(path)
    data = (FIXTURES / "conv_float32.tflite").read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InvalidModelError, match=r"bad\.tflite"):
        convert_tflite(path)


def test_input_dim_and_out_node_are_checked() -> None:
    path = FIXTURES / "conv_float32.tflite"
    with pytest.raises(openqnn.ConversionError, match="--input_dim names nope"):
        convert_tflite(path, input_dims={"nope": (1, 2, 3, 4)})
    with pytest.raises(openqnn.ConversionError, match="--out_node nope"):
        convert_tflite(path, out_nodes=["nope"])


def test_supported_ops_cover_the_fixtures() -> None:
    ops = set(supported_ops())
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "QUANTIZE", "DEQUANTIZE", "TRANSPOSE_CONV"} <= ops


def test_cli_writes_a_quantized_model(tmp_path: Path, capsys) -> None:
    from openqnn.cli import tflite_converter

    rc = tflite_converter.main(["-i", str(FIXTURES / "depthwise_int8.tflite"), "-o", str(tmp_path / "dw.cpp")])
    assert rc == 0
    for name in ("dw.cpp", "dw_net.json", "dw.bin", "dw_encodings.json"):
        assert (tmp_path / name).is_file(), name
    g = openqnn.load(tmp_path / "dw_net.json")
    assert g.count_ops() == {"DepthWiseConv2d": 2, "ReluMinMax": 1}


def test_cli_refusal_is_one_line(tmp_path: Path, capsys) -> None:
    from openqnn.cli import tflite_converter

    path = tmp_path / "custom.tflite"
    path.write_bytes(_add_model(Op("MaxUnpooling2D", [0, 1], [2], custom=True)))
    rc = tflite_converter.main(["-i", str(path), "-o", str(tmp_path / "x.cpp")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("error: ") and "MaxUnpooling2D" in err[0]
    assert not (tmp_path / "x.cpp").exists()
