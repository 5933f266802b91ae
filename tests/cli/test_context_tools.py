"""qnn-context-binary-generator and qnn-net-run --retrieve_context, as the guide's step 3 uses them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import make_model
from openqnn.cli import context_binary_generator, net_run


@pytest.fixture
def float_model(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((0.3 * rng.standard_normal((4, 3, 3, 3))).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["output"])]
    graph = openqnn.convert(make_model(nodes, [("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                                       [("output", TensorProto.FLOAT, [1, 4, 8, 8])], [w]))
    json_path, _ = openqnn.save(graph, tmp_path / "model.cpp")
    for i in range(4):
        rng.random((1, 3, 8, 8), dtype=np.float32).tofile(tmp_path / f"in{i}.raw")
    (tmp_path / "input_data.txt").write_text("".join(f"{tmp_path / f'in{i}.raw'}\n" for i in range(4)))
    return json_path


def test_generator_and_retrieve_context(float_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "context_binaries"
    assert context_binary_generator.main(["--model", str(float_model), "--backend", "libQnnHtp.so", "--output_dir",
                                          str(out), "--input_list", str(tmp_path / "input_data.txt"),
                                          "--optimization_level", "high"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["htp_context.bin", "input_specs.json", "quantization_config.json"]
    specs = json.loads((out / "input_specs.json").read_text())
    assert specs["inputs"][0]["name"] == "input" and specs["inputs"][0]["encoding"]["bitwidth"] == 8
    assert json.loads((out / "quantization_config.json").read_text())["version"] == "1.0.0"

    assert net_run.main(["--retrieve_context", str(out / "htp_context.bin"), "--input_list",
                         str(tmp_path / "input_data.txt"), "--output_dir", str(tmp_path / "results")]) == 0
    sess = openqnn.Session(out / "htp_context.bin")
    for i in range(4):
        got = np.fromfile(tmp_path / "results" / f"Result_{i}" / "output.raw", np.float32)
        want = sess.run({"input": np.fromfile(tmp_path / f"in{i}.raw", np.float32).reshape(1, 3, 8, 8)})["output"]
        np.testing.assert_array_equal(got, want.ravel())


def test_generator_refusals_leave_nothing(float_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ctx"
    assert context_binary_generator.main(["--model", str(float_model), "--backend", "htp", "--output_dir", str(out)]) == 2
    assert "give --input_list" in capsys.readouterr().err and not out.exists()
    assert context_binary_generator.main(["--model", str(float_model), "--backend", "gpu", "--output_dir", str(out)]) == 2
    assert "cannot write context binaries yet" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    assert net_run.main(["--model", str(float_model), "--retrieve_context", "x.bin", "--input_list",
                         str(tmp_path / "input_data.txt")]) == 2
    assert "one of them" in capsys.readouterr().err


def test_utility_describes_each_graph(float_model: Path, tmp_path: Path) -> None:
    from openqnn.cli import context_binary_utility

    out = tmp_path / "ctx"
    assert context_binary_generator.main(["--model", str(float_model), "--backend", "htp", "--output_dir", str(out),
                                          "--input_list", str(tmp_path / "input_data.txt")]) == 0
    info_path = tmp_path / "info.json"
    assert context_binary_utility.main(["--context_binary", str(out / "htp_context.bin"),
                                        "--json_file", str(info_path)]) == 0
    info = json.loads(info_path.read_text())
    (graph,) = info["graphs"].values()
    assert [t["name"] for t in graph["inputs"]] == ["input"] and graph["inputs"][0]["shape"] == [1, 3, 8, 8]
    assert graph["outputs"][0]["encoding"]["bitwidth"] == 8 and graph["fallbacks"] == []
    assert graph["steps"] == sum(graph["kernels"].values()) and "htp.conv2d" in graph["kernels"]
    assert graph["array_count"] == len(graph["arrays"])


def test_generator_calibrates_a_partly_quantized_model_keeping_its_encodings(float_model: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The converter's --quantization_overrides without --input_list quantize a weight alone; the generator's
    --input_list calibrates the rest for htp, keeping that weight's encoding (as the guide's steps 1 and 3)."""
    from openqnn.quantization.encodings import read_encodings

    (tmp_path / "overrides.json").write_text(json.dumps({"param_encodings": {"w": [
        {"bitwidth": 8, "min": -1.0, "max": 1.0, "scale": 1 / 127, "offset": -127}]}}))
    partial = openqnn.quantize(openqnn.load(float_model), None, overrides=read_encodings(tmp_path / "overrides.json"))
    kept = partial.tensors["w"].encoding
    assert kept is not None and partial.tensors["output"].encoding is None
    json_path, _ = openqnn.save(partial, tmp_path / "partial.cpp")
    out = tmp_path / "ctx"
    assert context_binary_generator.main(["--model", str(json_path), "--backend", "htp", "--output_dir", str(out)]) == 2
    assert "only partly quantized" in capsys.readouterr().err and not out.exists()
    assert context_binary_generator.main(["--model", str(json_path), "--backend", "htp", "--output_dir", str(out),
                                          "--input_list", str(tmp_path / "input_data.txt")]) == 0
    from openqnn.runtime.context import open_context, step_summary

    (prepared,) = open_context(out / "htp_context.bin").graphs.values()
    assert step_summary(prepared)["fallbacks"] == []
    params = {e["name"]: e for e in json.loads((out / "quantization_config.json").read_text())["param_encodings"]}
    assert params["w"]["scale"] == pytest.approx(list(kept.scale), rel=1e-6)
