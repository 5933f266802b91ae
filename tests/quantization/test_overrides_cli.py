"""Overrides files and the converter's quantization errors, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from openqnn.cli import onnx_converter

SEED_CONFIG = {
    "activation_encodings": {
        "conv1/Relu:0": {"bitwidth": 8, "max": 6.0, "min": 0.0, "scale": 0.023529, "offset": 0},
    },
    "param_encodings": {
        "conv1.weight": {"bitwidth": 8, "max": 2.5, "min": -2.5, "scale": 0.019608, "offset": 127},
    },
    "activation_bitwidth": 8,
    "param_bitwidth": 8,
    "bias_bitwidth": 32,
}


@pytest.fixture(scope="module")
def simple(tmp_path_factory) -> Path:
    from openqnn.demo import export_simple_model

    root = tmp_path_factory.mktemp("seed")
    export_simple_model(root / "simple_model.onnx")
    return root


def _error(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_seed_command_with_overrides(simple: Path, capsys) -> None:
    """The seed's converter command, flag for flag: overrides alone quantize the named tensors."""
    cfg = simple / "quantization_config.json"
    cfg.write_text(json.dumps(SEED_CONFIG, indent=2))
    rc = onnx_converter.main(["--input_network", str(simple / "simple_model.onnx"), "--output_path",
                              str(simple / "simple_model.cpp"), "--input_dim", "input", "1,3,224,224",
                              "--quantization_overrides", str(cfg)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "conv1/Relu:0" in err  # named tensor not in the model: one warning lists it
    assert "stays float" in err
    enc = json.loads((simple / "simple_model_encodings.json").read_text())
    (w,) = enc["param_encodings"]
    assert w["name"] == "conv1.weight" and w["bw"] == 8
    assert w["scale"][0] == pytest.approx(5.0 / 255, rel=1e-6) and w["offset"] == [-128]
    assert enc["activation_encodings"] == []
    import openqnn

    g = openqnn.load(simple / "simple_model_net.json")
    assert g.tensors["conv1.weight"].encoding is not None
    assert g.tensors["conv2.weight"].encoding is None


def test_offsets_fitting_neither_convention_are_refused(simple: Path, tmp_path: Path, capsys) -> None:
    bad = json.loads(json.dumps(SEED_CONFIG))
    bad["param_encodings"]["conv1.weight"]["offset"] = 40
    (tmp_path / "q.json").write_text(json.dumps(bad))
    rc = onnx_converter.main(["-i", str(simple / "simple_model.onnx"), "-o", str(tmp_path / "m.cpp"),
                              "--quantization_overrides", str(tmp_path / "q.json")])
    assert rc != 0
    line = _error(capsys)
    assert "conv1.weight" in line and "q.json" in line
    assert not list(tmp_path.glob("m*"))


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not valid JSON"),
    (json.dumps({"activation_encodings": {"x": {"bitwidth": 7, "min": 0, "max": 1}}}), "bitwidth 7"),
    (json.dumps({"param_encodings": {"conv1.weight": [{"bitwidth": 8, "min": -1, "max": 1}] * 5}}), "per-channel"),
    (json.dumps({"activation_encodings": {}, "surprise": 1}), "surprise"),
])
def test_bad_overrides(simple: Path, tmp_path: Path, capsys, content: str, needle: str) -> None:
    (tmp_path / "q.json").write_text(content)
    rc = onnx_converter.main(["-i", str(simple / "simple_model.onnx"), "-o", str(tmp_path / "m.cpp"),
                              "--quantization_overrides", str(tmp_path / "q.json")])
    assert rc != 0
    assert needle in _error(capsys)
    assert not list(tmp_path.glob("m*"))


def test_calibration_file_of_wrong_size(simple: Path, tmp_path: Path, capsys) -> None:
    np.zeros(10, np.float32).tofile(tmp_path / "c.raw")
    (tmp_path / "cal.txt").write_text("c.raw\n")
    rc = onnx_converter.main(["-i", str(simple / "simple_model.onnx"), "-o", str(tmp_path / "m.cpp"),
                              "--input_list", str(tmp_path / "cal.txt")])
    assert rc != 0
    assert "c.raw" in _error(capsys)
    assert not list(tmp_path.glob("m*"))


def test_empty_input_list(simple: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "cal.txt").write_text("\n# nothing\n")
    rc = onnx_converter.main(["-i", str(simple / "simple_model.onnx"), "-o", str(tmp_path / "m.cpp"),
                              "--input_list", str(tmp_path / "cal.txt")])
    assert rc != 0
    assert "no inference lines" in _error(capsys)


def test_disallowed_bitwidth_flag(simple: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        onnx_converter.main(["-i", str(simple / "simple_model.onnx"), "--act_bitwidth", "12"])
    assert e.value.code != 0


def test_validate_quantization_range_helper() -> None:
    from openqnn.quantization import validate_quantization_range

    data = np.linspace(-1, 1, 1001)
    assert validate_quantization_range(data, scale=2 / 255, offset=128, bitwidth=8, threshold=1e-4)
    assert not validate_quantization_range(data, scale=0.5, offset=2, bitwidth=8, threshold=1e-4)
