"""Frontend behaviour: external data, old-style initializer inputs, names, dtypes, layouts."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.reference
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import assert_matches_ort, make_model

F = TensorProto.FLOAT


def _fc_model(opset: int = 13) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "fc.weight")
    b = numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "fc.bias")
    nodes = [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"])]
    return make_model(nodes, [("x", F, [2, 64])], [("y", F, [2, 32])], [w, b], opset=opset)


def test_external_data(tmp_path, rng) -> None:
    m = _fc_model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data",
                    size_threshold=0)
    assert (tmp_path / "ext.data").is_file()
    g = openqnn.convert(path)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    ref = onnx.reference.ReferenceEvaluator(_fc_model()).run(None, {"x": x})[0]
    np.testing.assert_allclose(openqnn.Session(g).run({"x": x})["y"], ref, rtol=1e-4, atol=1e-5)


def test_missing_external_data_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "ext.onnx"
    onnx.save_model(_fc_model(), str(path), save_as_external_data=True, location="ext.data", size_threshold=0)
    (tmp_path / "ext.data").unlink()
    with pytest.raises(openqnn.InvalidModelError, match="external data"):
        openqnn.convert(path)


def test_initializers_listed_as_inputs_are_weights(rng) -> None:
    m = _fc_model(opset=9)
    m.graph.input.extend([helper.make_tensor_value_info("fc.weight", F, [64, 32]),
                          helper.make_tensor_value_info("fc.bias", F, [32])])
    g = openqnn.convert(m)
    assert g.inputs == ["x"]
    assert_matches_ort(m, {"x": rng.standard_normal((2, 64)).astype(np.float32)})


def test_weights_keep_their_onnx_names() -> None:
    g = openqnn.convert(_fc_model())
    assert "fc.weight" in g.tensors and g.tensors["fc.weight"].shape == (32, 64)


def test_opset_out_of_range_is_refused() -> None:
    m = _fc_model()
    m.opset_import[0].version = 6
    with pytest.raises(openqnn.UnsupportedOpError, match="opset 6"):
        openqnn.convert(m)


@pytest.mark.parametrize("dtype", [TensorProto.INT64, TensorProto.INT32, TensorProto.FLOAT16, TensorProto.DOUBLE])
def test_input_dtypes_survive(dtype, rng) -> None:
    nodes = [helper.make_node("Add", ["x", "x"], ["y"])]
    m = make_model(nodes, [("x", dtype, [3, 4])], [("y", dtype, [3, 4])], opset=13)
    x = (rng.standard_normal((3, 4)) * 10).astype(onnx.helper.tensor_dtype_to_np_dtype(dtype))
    assert_matches_ort(m, {"x": x})


def test_channel_last_output_keeps_onnx_layout_and_name(rng) -> None:
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["conv/out:0"])]
    m = make_model(nodes, [("x", F, [1, 3, 5, 7])], [("conv/out:0", F, [1, 4, 5, 7])], [w])
    g = openqnn.convert(m)
    assert g.outputs == ["conv/out:0"] and g.tensors["conv/out:0"].shape == (1, 4, 5, 7)
    assert_matches_ort(m, {"x": rng.standard_normal((1, 3, 5, 7)).astype(np.float32)})


def test_dynamic_weight_conv(rng) -> None:
    """A filter computed at run time (an input) is laid out by an IR Transpose, not folded."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 1, 0, 1], strides=[1, 2])]
    m = make_model(nodes, [("x", F, [1, 2, 6, 6]), ("w", F, [3, 2, 3, 3])], [("y", F, None)])
    assert_matches_ort(m, {"x": rng.standard_normal((1, 2, 6, 6)).astype(np.float32),
                           "w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32)})
