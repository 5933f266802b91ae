"""A small quantized conv net shared by the profiling tests: four 3x3 convolutions, a pool and a classifier,
converted and quantized with qnn-onnx-converter; ``conv2``'s weights can be overridden to 4 bits."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

CHANNELS = (3, 16, 16, 16, 16)


def build_model() -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    inits, nodes = [], []
    x = "input"
    for k in range(4):
        cin, cout = CHANNELS[k], CHANNELS[k + 1]
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (9 * cin))).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{k + 1}"),
                  numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"b{k + 1}")]
        nodes += [helper.make_node("Conv", [x, f"w{k + 1}", f"b{k + 1}"], [f"c{k + 1}"], pads=[1, 1, 1, 1],
                                   name=f"conv{k + 1}"),
                  helper.make_node("Relu", [f"c{k + 1}"], [f"r{k + 1}"], name=f"relu{k + 1}")]
        x = f"r{k + 1}"
    inits += [numpy_helper.from_array((rng.standard_normal((10, 16)) * 0.3).astype(np.float32), "wf"),
              numpy_helper.from_array(np.zeros(10, np.float32), "bf")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"),
              helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "wf", "bf"], ["output"], transB=1, name="fc")]
    g = helper.make_graph(nodes, "profnet", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 24, 24])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _convert(work: Path, stem: str, overrides: dict | None) -> Path:
    from openqnn.cli import onnx_converter

    argv = ["--input_network", str(work / "profnet.onnx"), "--output_path", str(work / f"{stem}.cpp"),
            "--input_list", str(work / "input_list.txt")]
    if overrides is not None:
        (work / f"{stem}_overrides.json").write_text(json.dumps(overrides))
        argv += ["--quantization_overrides", str(work / f"{stem}_overrides.json")]
    with contextlib.redirect_stdout(io.StringIO()):
        assert onnx_converter.main(argv) == 0
    return work / f"{stem}_net.json"


@pytest.fixture(scope="session")
def profnet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ONNX model, its input list (4 seeded inputs), the 8-bit model and one with conv2's weights at 4 bits."""
    work = tmp_path_factory.mktemp("profnet")
    model = build_model()
    onnx.save(model, work / "profnet.onnx")
    rng = np.random.default_rng(11)
    for i in range(4):
        rng.standard_normal((1, 3, 24, 24)).astype(np.float32).tofile(work / f"in{i}.raw")
    (work / "input_list.txt").write_text("".join(f"{work / f'in{i}.raw'}\n" for i in range(4)))
    w2 = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w2"))
    m = float(np.abs(w2).max())
    four_bit = {"activation_encodings": {},
                "param_encodings": {"w2": [{"bitwidth": 4, "min": -m, "max": m, "is_symmetric": "True"}]}}
    return {"dir": work, "onnx": work / "profnet.onnx", "list": work / "input_list.txt",
            "q8": _convert(work, "q8", None), "q4": _convert(work, "q4", four_bit)}
