"""``openqnn deploy`` writes the guide's deployment folder ("Utgangsstruktur"), the same files as the guide's
separate commands, and ``openqnn.QNNInference`` runs it.

The guide's SimpleModel at 1x3x64x64 (exported as the guide does, dynamic batch) keeps each deploy to a few
seconds; the guide's own flags and shapes run in tests/test_guide_flow.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import openqnn
from helpers import cosine
from openqnn.cli import context_binary_generator, model_lib_generator, onnx_converter
from openqnn.cli import main as openqnn_main

SHAPE = (1, 3, 64, 64)
GUIDE_TREE = ["context_binaries/cpu_context.bin", "context_binaries/htp_context.bin", "input_specs.json",
              "model_optimized.so", "quantization_config.json"]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = openqnn_main.main(argv)
    return rc, out.getvalue(), err.getvalue()


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def simple(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, list[np.ndarray]]:
    """The guide's SimpleModel exported to ONNX at 64x64, and an input list of 4 random raw inputs."""
    import torch

    from openqnn.demo import build_simple_model

    work = tmp_path_factory.mktemp("deploy")
    model = build_simple_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(*SHAPE),), str(work / "simple_model.onnx"), export_params=True,
                          opset_version=11, do_constant_folding=True, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}}, dynamo=False)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(4)]
    for i, x in enumerate(xs):
        x.tofile(work / f"in{i}.raw")
    (work / "input_data.txt").write_text("".join(f"in{i}.raw\n" for i in range(4)))
    return work, model, xs


@pytest.fixture(scope="module")
def deployed(simple: tuple[Path, object, list[np.ndarray]]) -> tuple[Path, str, str]:
    work = simple[0]
    rc, out, err = run(["deploy", str(work / "simple_model.onnx"), "--input_list", str(work / "input_data.txt"),
                        "--input_dim", "input", ",".join(map(str, SHAPE)), "--backends", "htp,gpu,cpu",
                        "-o", str(work / "qnn_model") + "/"])
    assert rc == 0, err
    return work / "qnn_model", out, err


def test_deploy_writes_the_guides_tree(deployed: tuple[Path, str, str]) -> None:
    folder, out, err = deployed
    assert tree(folder) == GUIDE_TREE  # no gpu_context.bin, no work files, no temporary folders
    assert [ln for ln in out.splitlines() if ln] == [str(folder / f) for f in (
        "model_optimized.so", "context_binaries/htp_context.bin", "context_binaries/cpu_context.bin",
        "quantization_config.json", "input_specs.json")]
    gpu = [ln for ln in err.splitlines() if "gpu" in ln]
    assert len(gpu) == 1 and "not available" in gpu[0] and "gpu_context.bin" in gpu[0], err
    assert "error" not in err
    specs = json.loads((folder / "input_specs.json").read_text())
    (inp,) = specs["inputs"]
    assert inp["name"] == "input" and inp["shape"] == list(SHAPE) and inp["encoding"]["bitwidth"] == 8
    assert json.loads((folder / "quantization_config.json").read_text())["activation_encodings"]  # htp's, calibrated
    assert openqnn.load(folder / "model_optimized.so").input_tensors()[0].encoding is None  # the library stays float


def test_qnn_inference_on_the_deployment_matches_pytorch(deployed: tuple[Path, str, str],
                                                         simple: tuple[Path, object, list[np.ndarray]]) -> None:
    import torch

    folder = deployed[0]
    _, model, _ = simple
    x = np.random.default_rng(7).standard_normal(SHAPE).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()  # type: ignore[operator]

    engine = openqnn.QNNInference(folder / "model_optimized.so", backend="htp")
    assert engine.context == folder / "context_binaries" / "htp_context.bin" and engine.is_quantized
    result = engine.inference(x)
    assert isinstance(result, np.ndarray) and result.shape == (1, 10) and result.dtype == np.float32
    assert cosine(result, ref) >= 0.98
    # the guide's three steps give exactly what the session's own float I/O gives
    np.testing.assert_array_equal(result, openqnn.Session(engine.context).run(x)["output"])
    q = engine.preprocess_input(x)
    assert q.dtype == np.uint8 and q.shape == SHAPE
    # QNN's offset sign in the file, the zero point (the guide's sign) on the class
    enc = json.loads((folder / "input_specs.json").read_text())["inputs"][0]["encoding"]
    scale, offset = engine.input_scale, engine.input_offset
    assert scale == enc["scale"][0] and offset == -enc["offset"][0]
    assert scale is not None and offset is not None
    np.testing.assert_array_equal(q, np.clip(np.round(x.astype(np.float64) / scale + offset), 0, 255).astype(np.uint8))

    cpu = openqnn.QNNInference(folder / "model_optimized.so", backend="cpu")
    assert cpu.context == folder / "context_binaries" / "cpu_context.bin" and not cpu.is_quantized
    assert cpu.input_scale is None and cpu.output_offset is None
    np.testing.assert_allclose(cpu.inference({"input": x}), ref, rtol=1e-4, atol=1e-5)


def test_separate_commands_give_the_same_files(deployed: tuple[Path, str, str],
                                              simple: tuple[Path, object, list[np.ndarray]],
                                              tmp_path: Path) -> None:
    """The guide's commands one by one (converter, model library, a context per backend) make the same
    contexts, byte for byte, and the same JSON files."""
    folder = deployed[0]
    work, _, xs = simple
    dims = ",".join(map(str, SHAPE))
    with contextlib.redirect_stdout(io.StringIO()):
        assert onnx_converter.main(["--input_network", str(work / "simple_model.onnx"), "--output_path",
                                    str(tmp_path / "simple_model.cpp"), "--input_dim", "input", dims]) == 0
        assert model_lib_generator.main(["-c", str(tmp_path / "simple_model.cpp"), "-b",
                                         str(tmp_path / "simple_model.bin"), "-t", "x86_64-linux-clang", "-l",
                                         "model_optimized", "-o", str(tmp_path / "model_optimized.so")]) == 0
        for backend in ("libQnnHtp.so", "libQnnCpu.so"):
            assert context_binary_generator.main(["--model", str(tmp_path / "model_optimized.so"), "--backend",
                                                  backend, "--output_dir", str(tmp_path / backend),
                                                  "--input_list", str(work / "input_data.txt")]) == 0
    for backend, lib in (("htp", "libQnnHtp.so"), ("cpu", "libQnnCpu.so")):
        theirs, ours = tmp_path / lib / f"{backend}_context.bin", folder / "context_binaries" / f"{backend}_context.bin"
        assert theirs.read_bytes() == ours.read_bytes(), backend
        a, b = openqnn.Session(theirs), openqnn.Session(ours)
        for x in xs:
            np.testing.assert_array_equal(a.run(x)["output"], b.run(x)["output"])
    for f in ("quantization_config.json", "input_specs.json"):
        assert (tmp_path / "libQnnHtp.so" / f).read_bytes() == (folder / f).read_bytes(), f


def test_deploy_from_a_library_or_a_cpp(deployed: tuple[Path, str, str],
                                        simple: tuple[Path, object, list[np.ndarray]], tmp_path: Path) -> None:
    """A model library is copied as it is; a converted model's .cpp is compiled (cpu only: quick)."""
    folder = deployed[0]
    work, _, xs = simple
    rc, _, err = run(["deploy", str(folder / "model_optimized.so"), "--input_list", str(work / "input_data.txt"),
                      "--backends", "htp", "-o", str(tmp_path / "from_lib"), "--lib_name", "mine"])
    assert rc == 0, err
    assert tree(tmp_path / "from_lib") == ["context_binaries/htp_context.bin", "input_specs.json", "mine.so",
                                           "quantization_config.json"]
    assert (tmp_path / "from_lib" / "mine.so").read_bytes() == (folder / "model_optimized.so").read_bytes()
    assert ((tmp_path / "from_lib" / "context_binaries" / "htp_context.bin").read_bytes()
            == (folder / "context_binaries" / "htp_context.bin").read_bytes())

    graph = openqnn.load(folder / "model_optimized.so")
    openqnn.save(graph, tmp_path / "conv" / "model.cpp")
    rc, _, err = run(["deploy", str(tmp_path / "conv" / "model.cpp"), "--backends", "cpu", "-o",
                      str(tmp_path / "from_cpp")])
    assert rc == 0, err
    assert tree(tmp_path / "from_cpp") == ["context_binaries/cpu_context.bin", "input_specs.json",
                                           "model_optimized.so", "quantization_config.json"]
    engine = openqnn.QNNInference(tmp_path / "from_cpp" / "model_optimized.so", backend="cpu")
    np.testing.assert_array_equal(engine.inference(xs[0]), openqnn.Session(graph).run(xs[0])["output"])


@pytest.mark.parametrize("case", ["missing model", "unknown backend", "output is a file", "no backend available",
                                  "float model without --input_list", "not a model"])
def test_deploy_refusals_are_one_line_and_leave_nothing(case: str, simple: tuple[Path, object, list[np.ndarray]],
                                                        tmp_path: Path) -> None:
    work = simple[0]
    onnx_model = str(work / "simple_model.onnx")
    out = tmp_path / "out" / "qnn_model"
    dims = ["--input_dim", "input", ",".join(map(str, SHAPE))]
    argv, expect = {
        "missing model": (["deploy", str(tmp_path / "nope.onnx"), "-o", str(out)], "no such file"),
        "unknown backend": (["deploy", onnx_model, *dims, "--backends", "htp,npu", "-o", str(out)],
                            "--backends htp,npu: unknown backend 'npu'"),
        "output is a file": (["deploy", onnx_model, *dims, "-o", str(tmp_path / "out")], "is a file"),
        "no backend available": (["deploy", onnx_model, *dims, "--backends", "gpu", "-o", str(out)],
                                 "none of these backends"),
        "float model without --input_list": (["deploy", onnx_model, *dims, "--backends", "htp,cpu", "-o", str(out)],
                                             "give --input_list"),
        "not a model": (["deploy", str(work / "input_data.txt"), "-o", str(out)], "not a model deploy knows"),
    }[case]
    if case == "output is a file":
        (tmp_path / "out").write_text("mine")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc, stdout, err = run(argv)
    lines = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert rc == 2 and len(lines) == 1 and expect in lines[0], err
    assert "Traceback" not in err and stdout == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing made, nothing left behind
    if case == "output is a file":
        assert (tmp_path / "out").read_text() == "mine"


def test_qnn_inference_refuses_a_float_library_on_htp(deployed: tuple[Path, str, str], tmp_path: Path) -> None:
    """Without a context beside it, a float library cannot run on htp: the error says how to make one."""
    lib = tmp_path / "model_optimized.so"
    lib.write_bytes((deployed[0] / "model_optimized.so").read_bytes())
    with pytest.raises(openqnn.InvalidConfigError, match="--input_list"):
        openqnn.QNNInference(lib, backend="htp")
    with pytest.raises(openqnn.InvalidConfigError, match="no such file"):
        openqnn.QNNInference(tmp_path / "missing.so")
    engine = openqnn.QNNInference(lib, backend="cpu")  # prepared here, no context
    assert engine.context is None and not engine.is_quantized
    with pytest.raises(openqnn.InputDataError, match="unknown input"):
        engine.inference({"x": np.zeros(SHAPE, np.float32)})


def test_the_context_generator_says_when_a_context_runs_on_the_cpu_fallback(
        deployed: tuple[Path, str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A model quantized only in part (one weight's override, no calibration) prepares for htp with every
    node on the cpu fallback: qnn-context-binary-generator (and so deploy) says so once, as a session does."""
    import logging

    from openqnn.cli.context_binary_generator import _warn_fallbacks
    from openqnn.quantization.encodings import read_encodings

    graph = openqnn.load(deployed[0] / "model_optimized.so")
    (tmp_path / "overrides.json").write_text(json.dumps({"param_encodings": {"conv1.weight": [
        {"bitwidth": 8, "min": -2.5, "max": 2.5, "scale": 5 / 255, "offset": -128}]}}))
    partial = openqnn.quantize(graph, None, overrides=read_encodings(tmp_path / "overrides.json"))
    assert any(t.encoding is not None for t in partial.tensors.values())
    context = openqnn.compile(partial, "htp")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="openqnn"):
        _warn_fallbacks(context)
    warnings_ = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_) == 1 and f"of {len(partial.nodes)} node(s) fall back to cpu" in warnings_[0], warnings_
    assert sum("runs on cpu" in r.getMessage() for r in caplog.records) == len(partial.nodes)
