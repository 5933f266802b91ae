"""Small traps of the Python API: bare-array feeds, silent cpu fallback on htp, save() writing what the
converter writes, and the guide's validate_quantization_range."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import make_model
from openqnn.cli import net_run, onnx_converter

# the guide's quantization_config.json (its "// quantization_config.json" title line is not part of the file)
SEED_OVERRIDES = {
    "activation_encodings": {"conv1/Relu:0": {"bitwidth": 8, "max": 6.0, "min": 0.0, "scale": 0.023529,
                                              "offset": 0}},
    "param_encodings": {"conv1.weight": {"bitwidth": 8, "max": 2.5, "min": -2.5, "scale": 0.019608,
                                         "offset": 127}},
    "activation_bitwidth": 8, "param_bitwidth": 8, "bias_bitwidth": 32,
}


def _conv_model(two_inputs: bool = False):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "conv1.weight")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "conv1.bias")
    nodes = [helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c"], ["r"], name="relu")]
    inputs = [("input", TensorProto.FLOAT, [1, 3, 8, 8])]
    if two_inputs:
        nodes.append(helper.make_node("Add", ["r", "bias_in"], ["output"], name="add"))
        inputs.append(("bias_in", TensorProto.FLOAT, [1, 4, 8, 8]))
    else:
        nodes.append(helper.make_node("Identity", ["r"], ["output"], name="out"))
    return make_model(nodes, inputs, [("output", TensorProto.FLOAT, [1, 4, 8, 8])], [w, b])


@pytest.fixture(scope="module")
def graph() -> openqnn.Graph:
    return openqnn.convert(_conv_model())


def _calibration(n: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"input": rng.random((1, 3, 8, 8), dtype=np.float32)} for _ in range(n)]


def test_bare_array_for_a_one_input_model(graph: openqnn.Graph) -> None:
    x = np.random.default_rng(2).random((1, 3, 8, 8), dtype=np.float32)
    sess = openqnn.Session(graph)
    np.testing.assert_array_equal(sess.run(x)["output"], sess.run({"input": x})["output"])


def test_bare_array_for_a_two_input_model_is_a_clear_error() -> None:
    sess = openqnn.Session(openqnn.convert(_conv_model(two_inputs=True)))
    with pytest.raises(openqnn.InputDataError, match=r"2 inputs \(input, bias_in\).*dict"):
        sess.run(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(openqnn.InputDataError, match="not list"):
        sess.run([np.zeros((1, 3, 8, 8), np.float32)])  # type: ignore[arg-type]


def test_htp_fallback_is_said_once_per_session(graph: openqnn.Graph, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "quantization_config.json"
    path.write_text(json.dumps(SEED_OVERRIDES))
    from openqnn.quantization.encodings import read_encodings

    seed_only = openqnn.quantize(graph, None, overrides=read_encodings(path))  # one weight encoding
    x = _calibration(1)[0]
    with caplog.at_level(logging.WARNING, logger="openqnn"):
        sess = openqnn.Session(seed_only, backend="htp")
        sess.run(x)
        sess.run(x)
    said = [r.getMessage() for r in caplog.records if "fall back to cpu" in r.getMessage()]
    n = len(seed_only.nodes)
    assert len(said) == 1, said
    assert said[0].startswith(f"htp: {n} of {n} node(s) fall back to cpu: ") and "--log_level info" in said[0]
    assert "has no encoding" in said[0]  # the first nodes' reasons
    assert len(sess.fallbacks) == n

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="openqnn"):
        full = openqnn.Session(openqnn.quantize(graph, _calibration()), backend="htp")
        full.run(x)
    assert not [r for r in caplog.records if "fall back" in r.getMessage()] and full.fallbacks == []


def test_htp_fallback_is_said_on_the_command_line(graph: openqnn.Graph, tmp_path: Path,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(_conv_model().SerializeToString())
    (tmp_path / "quantization_config.json").write_text(json.dumps(SEED_OVERRIDES))
    assert onnx_converter.main(["--input_network", str(onnx_path), "--output_path", str(tmp_path / "m.cpp"),
                                "--quantization_overrides", str(tmp_path / "quantization_config.json")]) == 0
    _calibration(1)[0]["input"].tofile(tmp_path / "in.raw")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'in.raw'}\n")
    capfd.readouterr()
    assert net_run.main(["--model", str(tmp_path / "m_net.json"), "--backend", "libQnnHtp.so", "--input_list",
                         str(tmp_path / "list.txt"), "--output_dir", str(tmp_path / "out")]) == 0
    err = [line for line in capfd.readouterr().err.splitlines() if "fall back to cpu" in line]
    assert len(err) == 1 and "node(s) fall back to cpu" in err[0], err


def test_save_writes_the_converters_files(graph: openqnn.Graph, tmp_path: Path) -> None:
    qgraph = openqnn.quantize(graph, _calibration())
    json_path, bin_path = openqnn.save(qgraph, tmp_path / "api" / "m.cpp")
    enc = openqnn.encodings_path(json_path)
    assert enc == tmp_path / "api" / "m_encodings.json" and enc.is_file() and bin_path.is_file()
    written = json.loads(enc.read_text())
    assert {e["name"] for e in written["param_encodings"]} >= {"conv1.weight"}
    assert written["activation_encodings"]

    # the converter writes the same set of files for the same quantization
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(_conv_model().SerializeToString())
    for i, feeds in enumerate(_calibration()):
        feeds["input"].tofile(tmp_path / f"c{i}.raw")
    (tmp_path / "cal.txt").write_text("".join(f"{tmp_path / f'c{i}.raw'}\n" for i in range(4)))
    assert onnx_converter.main(["--input_network", str(onnx_path), "--output_path", str(tmp_path / "cli" / "m.cpp"),
                                "--input_list", str(tmp_path / "cal.txt")]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(p.name for p in (tmp_path / "api").iterdir())
    cli_enc = json.loads((tmp_path / "cli" / "m_encodings.json").read_text())
    assert cli_enc["activation_encodings"] == written["activation_encodings"]

    # a float graph has no encodings file
    openqnn.save(graph, tmp_path / "float" / "m.cpp")
    assert sorted(p.name for p in (tmp_path / "float").iterdir()) == ["m.bin", "m.cpp", "m_net.json"]


def test_validate_quantization_range_is_public_and_names_its_offset() -> None:
    data = np.linspace(-1, 1, 101)
    assert "validate_quantization_range" in openqnn.__all__
    # the guide's positional offset is the zero point; qnn_offset is QNN's sign (-zero point)
    assert openqnn.validate_quantization_range(data, 2 / 255, 128, 8, 1e-4)
    assert openqnn.validate_quantization_range(data, 2 / 255, zero_point=128, threshold=1e-4)
    assert openqnn.validate_quantization_range(data, 2 / 255, qnn_offset=-128, threshold=1e-4)
    assert not openqnn.validate_quantization_range(data, 2 / 255, qnn_offset=128, threshold=1e-4)
    with pytest.raises(openqnn.InvalidConfigError, match="exactly one of"):
        openqnn.validate_quantization_range(data, 2 / 255, zero_point=128, qnn_offset=-128)
    with pytest.raises(openqnn.InvalidConfigError, match="scale"):
        openqnn.validate_quantization_range(data, float("nan"), zero_point=0)
