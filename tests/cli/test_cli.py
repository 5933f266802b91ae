"""The command-line tools end to end, and their one-line errors on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import make_model
from openqnn.cli import main as openqnn_main
from openqnn.cli import net_run, onnx_converter


def _conv_model(path: Path) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv.weight")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv.bias")
    nodes = [helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["relu/out:0"])]
    m = make_model(nodes, [("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                   [("relu/out:0", TensorProto.FLOAT, None)], [w, b], opset=13)
    onnx.save(m, str(path))
    return m


@pytest.fixture
def model(tmp_path: Path) -> Path:
    p = tmp_path / "m.onnx"
    _conv_model(p)
    return p


def _convert(model: Path, tmp_path: Path, *extra: str) -> int:
    return onnx_converter.main(["--input_network", str(model), "--output_path", str(tmp_path / "m.cpp"), *extra])


def test_convert_and_net_run_match_onnxruntime(model: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    assert _convert(model, tmp_path, "--input_dim", "input", "2,3,8,8") == 0
    assert (tmp_path / "m_net.json").is_file() and (tmp_path / "m.bin").is_file()
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((2, 3, 8, 8)).astype(np.float32) for _ in range(3)]
    lines = []
    for i, x in enumerate(xs):
        x.tofile(tmp_path / f"in{i}.raw")
        lines.append(f"input:={tmp_path / f'in{i}.raw'}" if i == 1 else str(tmp_path / f"in{i}.raw"))
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    rc = net_run.main(["--model", str(tmp_path / "m_net.json"), "--backend", "libQnnCpu.so", "--input_list",
                       str(tmp_path / "list.txt"), "--output_dir", str(tmp_path / "out")])
    assert rc == 0
    sess = ort.InferenceSession(str(model))
    for i, x in enumerate(xs):
        got = np.fromfile(tmp_path / "out" / f"Result_{i}" / "relu_out_0.raw", dtype=np.float32)
        np.testing.assert_allclose(got, sess.run(None, {"input": x})[0].reshape(-1), rtol=1e-4, atol=1e-5)


def test_native_output_files_and_num_inferences(model: Path, tmp_path: Path) -> None:
    assert _convert(model, tmp_path, "--input_dim", "input", "1,3,8,8") == 0
    np.ones((1, 3, 8, 8), np.float32).tofile(tmp_path / "x.raw")
    (tmp_path / "list.txt").write_text("x.raw\n")
    rc = net_run.main(["--model", str(tmp_path / "m_net.json"), "--input_list", str(tmp_path / "list.txt"),
                       "--output_dir", str(tmp_path / "out"), "--use_native_output_files", "--num_inferences", "5"])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["Result_0", "partition_report.json"]
    assert (tmp_path / "out" / "Result_0" / "relu_out_0_native.raw").stat().st_size == 4 * 4 * 8 * 8


def test_dynamic_dim_without_input_dim_becomes_one(model: Path, tmp_path: Path, capsys) -> None:
    assert _convert(model, tmp_path) == 0
    assert "dim 0 (batch) is dynamic; using 1" in capsys.readouterr().err
    import openqnn

    assert openqnn.load(tmp_path / "m_net.json").tensors["input"].shape == (1, 3, 8, 8)


def test_seed_flags_are_recorded(model: Path, tmp_path: Path) -> None:
    assert _convert(model, tmp_path, "--target_device", "hexagon", "--optimization_level", "high") == 0
    import json

    doc = json.loads((tmp_path / "m_net.json").read_text())
    assert doc["metadata"]["target_device"] == "hexagon"
    assert doc["metadata"]["optimization_level"] == "high"
    assert doc["converter_command"].startswith("qnn-onnx-converter --input_network")


def test_dry_run_writes_nothing(model: Path, tmp_path: Path, capsys) -> None:
    assert _convert(model, tmp_path, "--dry_run") == 0
    assert "Conv2d" in capsys.readouterr().out
    assert not (tmp_path / "m_net.json").exists()


def test_out_node_selects_outputs(model: Path, tmp_path: Path) -> None:
    assert _convert(model, tmp_path, "--out_node", "c") == 0
    import openqnn

    g = openqnn.load(tmp_path / "m_net.json")
    assert g.outputs == ["c"] and "Relu" not in g.op_types()


# -- bad input: one line, non-zero exit, no traceback, nothing written ---------------------------------


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


def test_truncated_onnx(model: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(model.read_bytes()[:100])
    assert onnx_converter.main(["-i", str(bad), "-o", str(tmp_path / "bad.cpp")]) != 0
    assert "bad.onnx" in _error_line(capsys)
    assert not list(tmp_path.glob("bad*json")) and not (tmp_path / "bad.bin").exists()


def test_garbage_onnx(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"\x00\xff" * 50)
    assert onnx_converter.main(["-i", str(bad)]) != 0
    assert "junk.onnx" in _error_line(capsys)


def test_missing_model_file(tmp_path: Path, capsys) -> None:
    assert onnx_converter.main(["-i", str(tmp_path / "nope.onnx")]) != 0
    assert "nope.onnx" in _error_line(capsys)


def test_unsupported_op_names_node_domain_and_opset(tmp_path: Path, capsys) -> None:
    node = helper.make_node("FancyOp", ["x"], ["y"], name="my_node", domain="com.example")
    m = make_model([node], [("x", TensorProto.FLOAT, [1, 4])], [("y", TensorProto.FLOAT, [1, 4])])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(m, str(tmp_path / "u.onnx"))
    assert onnx_converter.main(["-i", str(tmp_path / "u.onnx")]) != 0
    line = _error_line(capsys)
    assert "my_node" in line and "FancyOp" in line and "com.example" in line


def test_unsupported_standard_op_lists_supported(tmp_path: Path, capsys) -> None:
    node = helper.make_node("StringNormalizer", ["x"], ["y"], name="sn")
    m = make_model([node], [("x", TensorProto.FLOAT, [1, 4])], [("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(m, str(tmp_path / "u.onnx"))
    assert onnx_converter.main(["-i", str(tmp_path / "u.onnx")]) != 0
    line = _error_line(capsys)
    assert "StringNormalizer" in line and "opset 17" in line and "supported ops:" in line and "Conv" in line


def test_input_dim_contradicting_model(model: Path, tmp_path: Path, capsys) -> None:
    assert _convert(model, tmp_path, "--input_dim", "input", "1,3,9,8") != 0
    line = _error_line(capsys)
    assert "--input_dim input" in line and "contradicts" in line
    assert not (tmp_path / "m_net.json").exists()


def test_input_dim_unknown_name(model: Path, tmp_path: Path, capsys) -> None:
    assert _convert(model, tmp_path, "--input_dim", "image", "1,3,8,8") != 0
    assert "image" in _error_line(capsys)


def _converted(model: Path, tmp_path: Path) -> Path:
    assert _convert(model, tmp_path, "--input_dim", "input", "1,3,8,8") == 0
    return tmp_path / "m_net.json"


def test_raw_file_of_wrong_size(model: Path, tmp_path: Path, capsys) -> None:
    net = _converted(model, tmp_path)
    np.ones(10, np.float32).tofile(tmp_path / "x.raw")
    (tmp_path / "list.txt").write_text("x.raw\n")
    rc = net_run.main(["--model", str(net), "--input_list", str(tmp_path / "list.txt"), "--output_dir",
                       str(tmp_path / "out")])
    assert rc != 0
    line = _error_line(capsys)
    assert "x.raw" in line and "'input'" in line
    assert not (tmp_path / "out").exists()


def test_missing_file_in_input_list(model: Path, tmp_path: Path, capsys) -> None:
    net = _converted(model, tmp_path)
    np.ones((1, 3, 8, 8), np.float32).tofile(tmp_path / "x.raw")
    (tmp_path / "list.txt").write_text("x.raw\nmissing.raw\n")
    rc = net_run.main(["--model", str(net), "--input_list", str(tmp_path / "list.txt"), "--output_dir",
                       str(tmp_path / "out")])
    assert rc != 0
    line = _error_line(capsys)
    assert "missing.raw" in line and "list.txt:2" in line
    assert not (tmp_path / "out").exists()


def test_unknown_backend(model: Path, tmp_path: Path, capsys) -> None:
    net = _converted(model, tmp_path)
    (tmp_path / "list.txt").write_text("x.raw\n")
    rc = net_run.main(["--model", str(net), "--backend", "libQnnDsp.so", "--input_list", str(tmp_path / "list.txt")])
    assert rc != 0
    line = _error_line(capsys)
    assert "libQnnDsp.so" in line and "cpu" in line


def test_bad_backend_config_key(model: Path, tmp_path: Path, capsys) -> None:
    net = _converted(model, tmp_path)
    np.ones((1, 3, 8, 8), np.float32).tofile(tmp_path / "x.raw")
    (tmp_path / "list.txt").write_text("x.raw\n")
    (tmp_path / "cfg.json").write_text('{"cpu_config": {"num_threads": 2, "turbo": true}}')
    rc = net_run.main(["--model", str(net), "--input_list", str(tmp_path / "list.txt"), "--config_file",
                       str(tmp_path / "cfg.json")])
    assert rc != 0
    assert "cpu_config.turbo" in _error_line(capsys)


def test_seed_backend_config_is_accepted(model: Path, tmp_path: Path) -> None:
    net = _converted(model, tmp_path)
    np.ones((1, 3, 8, 8), np.float32).tofile(tmp_path / "x.raw")
    (tmp_path / "list.txt").write_text("x.raw\n")
    (tmp_path / "cfg.json").write_text("""{
      "htp_config": {"device_id": 0, "performance_mode": "high_performance", "precision_mode": "int8",
                     "vtcm_mb": 8, "enable_dma": true},
      "gpu_config": {"device_id": 0, "performance_mode": "sustained_high_performance", "precision_mode": "fp16",
                     "enable_transform_optimization": true},
      "cpu_config": {"num_threads": 2, "performance_mode": "balanced", "enable_fast_math": true}}""")
    rc = net_run.main(["--model", str(net), "--input_list", str(tmp_path / "list.txt"), "--config_file",
                       str(tmp_path / "cfg.json"), "--output_dir", str(tmp_path / "out")])
    assert rc == 0


def test_debug_shows_traceback(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "openqnn.cli.onnx_converter", "-i", str(tmp_path / "nope.onnx"),
                        "--debug"], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_openqnn_info_and_ops(model: Path, tmp_path: Path, capsys) -> None:
    net = _converted(model, tmp_path)
    assert openqnn_main.main(["info", str(net)]) == 0
    assert "Conv2d" in capsys.readouterr().out
    assert openqnn_main.main(["ops"]) == 0
    assert "Conv" in capsys.readouterr().out


@pytest.mark.parametrize("tool", sorted(openqnn_main.TOOLS))
def test_openqnn_subcommands_are_the_qnn_tools(tool: str, capsys) -> None:
    """``openqnn <tool>`` takes ``qnn-<tool>``'s flags (its own parser, named as the subcommand)."""
    with pytest.raises(SystemExit) as done:
        openqnn_main.main([tool, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: openqnn {tool} ")


def test_openqnn_subcommand_runs_the_tool(model: Path, tmp_path: Path) -> None:
    net = _converted(model, tmp_path)
    assert openqnn_main.main(["context-binary-generator", "--model", str(net), "--backend", "cpu", "--output_dir",
                              str(tmp_path / "ctx")]) == 0
    assert openqnn_main.main(["context-binary-utility", "--context_binary", str(tmp_path / "ctx" / "cpu_context.bin"),
                              "--json_file", str(tmp_path / "meta.json")]) == 0
    assert (tmp_path / "meta.json").stat().st_size > 0
    assert openqnn_main.main(["context-binary-utility", "--context_binary", str(tmp_path / "none.bin"),
                              "--json_file", str(tmp_path / "x.json")]) == 2


@pytest.mark.parametrize("argv", [
    ["qnn-net-run", "--model", "m_net.json", "--bogus"],
    ["qnn-onnx-converter", "-i", "m.onnx", "--act_bitwidth", "12"],
    ["qnn-context-binary-utility"],
    ["openqnn", "frobnicate"],
    ["openqnn", "convert", "--weights_bitwidth", "3"],
])
def test_refused_flags_are_one_line(argv: list[str]) -> None:
    """argparse's own refusals too: one line naming the flag, exit status 2, no usage block."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which(argv[0]) or str(Path(sys.executable).parent / argv[0])
    r = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "--help" in lines[0] and not r.stdout
