"""IR core: verifier, printer, model files round trip, unique names."""

from __future__ import annotations

import json

import numpy as np
import pytest

import openqnn
from openqnn.errors import InvalidModelError
from openqnn.ir import DType, Graph, Tensor, TensorKind, format_graph, verify
from openqnn.ops.build import emit


def _graph() -> Graph:
    g = Graph("g")
    g.add_tensor(Tensor("x", (1, 8, 8, 3), DType.FLOAT_32, TensorKind.APP_WRITE))
    g.inputs.append("x")
    w = g.add_constant("w", np.ones((3, 3, 3, 4), np.float32))
    (y,) = emit(g, "Conv2d", ["x", w.name], {"pad_amount": ((1, 1), (1, 1))}, name="conv")
    (z,) = emit(g, "Relu", [y], outputs=["out"])
    g.tensors[z].kind = TensorKind.APP_READ
    g.outputs.append(z)
    return g


def test_emit_infers_types_and_defaults() -> None:
    g = _graph()
    assert g.tensors["conv"].shape == (1, 8, 8, 4)
    assert g.nodes[0].attrs["stride"] == (1, 1) and g.nodes[0].attrs["group"] == 1
    verify(g)


def test_verifier_catches_wrong_recorded_shape() -> None:
    g = _graph()
    g.tensors["conv"].shape = (1, 8, 8, 5)
    with pytest.raises(InvalidModelError, match="conv"):
        verify(g)


def test_unknown_attribute_is_rejected() -> None:
    g = _graph()
    with pytest.raises(InvalidModelError, match="unknown attribute"):
        emit(g, "Relu", ["out"], {"alpha": 1.0})


def test_channel_mismatch_is_rejected() -> None:
    g = _graph()
    w = g.add_constant("w2", np.ones((1, 1, 5, 2), np.float32))
    with pytest.raises(InvalidModelError, match="channels"):
        emit(g, "Conv2d", ["out", w.name])


def test_unique_names() -> None:
    g = _graph()
    assert g.unique_name("conv") == "conv_1"
    assert g.unique_name("conv") == "conv_2"


def test_printer_mentions_every_node() -> None:
    text = format_graph(_graph())
    assert "Conv2d(%x, %w)" in text and "Relu(%conv)" in text and "return %out" in text


def test_model_files_round_trip(tmp_path) -> None:
    g = _graph()
    json_path, bin_path = openqnn.save(g, tmp_path / "m.cpp")
    assert json_path.name == "m_net.json" and bin_path.name == "m.bin"
    doc = json.loads(json_path.read_text())
    conv = doc["graph"]["nodes"]["conv"]
    assert conv["type"] == "Conv2d" and conv["tensor_params"]["pad_amount"]["data"] == [[1, 1], [1, 1]]
    assert doc["graph"]["tensors"]["w"]["type"] == "STATIC"
    g2 = openqnn.load(json_path)
    assert g2.count_ops() == g.count_ops()
    np.testing.assert_array_equal(g2.tensors["w"].data, g.tensors["w"].data)
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(openqnn.Session(g).run({"x": x})["out"], openqnn.Session(g2).run({"x": x})["out"])


def test_loading_a_corrupt_weights_file_names_it(tmp_path) -> None:
    json_path, bin_path = openqnn.save(_graph(), tmp_path / "m")
    bin_path.write_bytes(bin_path.read_bytes()[:40])
    with pytest.raises(InvalidModelError, match=r"m\.bin"):
        openqnn.load(json_path)


def test_loading_a_tampered_shape_is_caught(tmp_path) -> None:
    json_path, _ = openqnn.save(_graph(), tmp_path / "m")
    doc = json.loads(json_path.read_text())
    doc["graph"]["tensors"]["w"]["dims"] = [3, 3, 3, 5]
    json_path.write_text(json.dumps(doc))
    with pytest.raises(InvalidModelError, match="'w'"):
        openqnn.load(json_path)


def test_session_rejects_bad_feeds() -> None:
    s = openqnn.Session(_graph())
    with pytest.raises(openqnn.InputDataError, match="shape"):
        s.run({"x": np.zeros((1, 8, 8, 4), np.float32)})
    with pytest.raises(openqnn.InputDataError, match="unknown input"):
        s.run({"x": np.zeros((1, 8, 8, 3), np.float32), "y": np.zeros(1)})
