"""openqnn.BackendSelector: the guide's scoring on the registries' figures, and the measured choice on a small
CNN with its table. No timing is asserted; the choices asserted follow from accuracy and the power proxy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import make_model
from openqnn.backends import SPECS
from openqnn.backends.cpu.kernels import KERNELS
from openqnn.backends.htp.kernels import HTP_KERNELS
from openqnn.runtime.selection import PJ_PER_MAC, count_macs, describe_model

GUIDE_INFO = {"operations": ["Conv2d", "ReLU", "Dense"], "max_tensor_size": 4 * 1024 * 1024, "precision": "int8"}
BOTH = {"power_critical": True, "performance_critical": True}


def _cnn() -> Any:
    rng = np.random.default_rng(0)

    def init(name: str, *shape: int) -> Any:
        return numpy_helper.from_array((0.3 * rng.standard_normal(shape)).astype(np.float32), name)

    f = TensorProto.FLOAT
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["fl"]),
             helper.make_node("Gemm", ["fl", "wf", "bf"], ["y"], transB=1)]
    inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("wf", 10, 128), init("bf", 10)]
    return make_model(nodes, [("x", f, [1, 3, 8, 8])], [("y", f, [1, 10])], inits)


@pytest.fixture(scope="module")
def graph() -> openqnn.Graph:
    return openqnn.convert(_cnn())


def _calibration(n: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [{"x": rng.random((1, 3, 8, 8), dtype=np.float32)} for _ in range(n)]


def test_the_guides_example_picks_htp_from_this_installations_figures() -> None:
    selector = openqnn.BackendSelector()
    assert selector.select_optimal_backend(GUIDE_INFO, BOTH) == "htp"
    caps = selector.backend_capabilities
    assert set(caps["htp"]["supported_ops"]) == set(HTP_KERNELS)
    assert set(caps["cpu"]["supported_ops"]) == set(KERNELS)
    assert caps["htp"]["max_tensor_size"] == 8 * 1024 * 1024 and caps["htp"]["preferred_precision"] == "int8"
    assert caps["gpu"]["preferred_precision"] == "fp16"
    # the guide's arithmetic: 30 + 25 + 0.9 x 25 + 20, 30 + 25 + 0.6 x 25, 30 + 25 + 0.4 x 25
    want = {"htp": 97.5, "gpu": 70.0, "cpu": 65.0}
    if "qnn-htp" in selector.backend_capabilities:  # QNN's own HTP, where onnxruntime-qnn is installed: the same
        want["qnn-htp"] = 97.5  # figures as htp; htp comes first in the registry, so it wins the tie
    assert selector.scores(GUIDE_INFO, BOTH) == want


def test_op_support_comes_from_the_kernel_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    info = {"operations": ["Conv2d", "TopK"], "max_tensor_size": 1024}  # TopK: a cpu kernel, no htp kernel
    assert "TopK" in KERNELS and "TopK" not in HTP_KERNELS
    ours = ("cpu", "gpu", "htp")  # (qnn-htp, where installed, takes every op its QDQ export writes, TopK too)
    scores = openqnn.BackendSelector(ours).scores(info, {"power_critical": True})
    assert scores["htp"] == 25 + 0.9 * 25 and scores["cpu"] == 30 + 25 + 0.4 * 25
    assert openqnn.BackendSelector(ours).select_optimal_backend(info, {}) == "gpu"  # a tie goes to the leaner one
    monkeypatch.setitem(HTP_KERNELS, "TopK", HTP_KERNELS["Relu"])
    assert openqnn.BackendSelector(ours).select_optimal_backend(info, {}) == "htp"


def test_a_graph_is_model_info(graph: openqnn.Graph) -> None:
    info = describe_model(graph)
    assert {"Conv2d", "Relu", "FullyConnected"} <= set(info["operations"])
    assert info["max_tensor_size"] == 10 * 128 * 4 and info["precision"] == "fp32"
    assert count_macs(graph) == 8 * 8 * 8 * 27 + 10 * 128
    assert openqnn.BackendSelector().select_optimal_backend(graph, BOTH) == "htp"


def test_bad_constraints_and_backends_are_clear_errors() -> None:
    with pytest.raises(openqnn.InvalidConfigError, match="constraint 'max_latency' is not known; use power_critical"):
        openqnn.BackendSelector().scores(GUIDE_INFO, {"max_latency": 3})
    with pytest.raises(openqnn.InvalidConfigError, match="constraint min_cosine = 'high' must be a number"):
        openqnn.BackendSelector().scores(GUIDE_INFO, {"min_cosine": "high"})
    with pytest.raises(openqnn.InvalidConfigError, match="unknown backend 'npu'"):
        openqnn.BackendSelector(["npu"])
    with pytest.raises(openqnn.InvalidConfigError, match="model_info needs 'operations'"):
        openqnn.BackendSelector().scores({"ops": []})


def test_measured_choice_is_a_table_and_a_choice(graph: openqnn.Graph) -> None:
    sel = openqnn.BackendSelector().select_backend(graph, _calibration(), {"min_cosine": 0.99})
    assert [r.backend for r in sel.rows] == list(SPECS)
    cpu, htp, gpu = sel.row("cpu"), sel.row("htp"), sel.row("gpu")
    assert cpu.available and cpu.precision == "fp32" and cpu.cosine == pytest.approx(1.0) and cpu.max_abs_error == 0.0
    assert htp.available and htp.precision == "int8" and htp.cosine is not None and 0.99 < htp.cosine < 1
    assert htp.latency_ms is not None and htp.latency_ms > 0
    macs = count_macs(graph)
    assert htp.energy_uj == pytest.approx(macs * PJ_PER_MAC["int8"] * 1e-6)
    assert cpu.energy_uj == pytest.approx(macs * PJ_PER_MAC["fp32"] * 1e-6)
    if SPECS["gpu"].why_unavailable() is not None:
        assert not gpu.available and gpu.verdict.startswith("not available here: the gpu backend needs")
    assert sel.choice in SPECS  # whichever measured fastest here (QNN's simulator too, where installed)
    assert sel.row(sel.choice).verdict.startswith("chosen: the fastest")
    table = str(sel)
    lines = table.splitlines()
    assert lines[1].split() == ["backend", "available", "precision", "latency", "ms", "cosine", "max", "error",
                                "energy", "uJ", "verdict"]
    assert lines[-1] == f"choice: {sel.choice}" and len(lines) == 2 + len(SPECS) + 1


def test_the_constraints_decide(graph: openqnn.Graph) -> None:
    selector = openqnn.BackendSelector(["cpu", "htp"])
    lean = selector.select_backend(graph, _calibration(), {"power_critical": True}, repeats=1)
    assert lean.choice == "htp" and "least energy" in lean.row("htp").verdict
    assert lean.row("cpu").verdict == "meets the constraints; htp is leaner"
    exact = selector.select_backend(graph, _calibration(), {"min_cosine": 0.999999999, "power_critical": True},
                                    repeats=1)
    assert exact.choice == "cpu" and exact.row("htp").verdict.startswith("accuracy: cosine")
    none = selector.select_backend(graph, _calibration(), {"max_latency_ms": 0}, repeats=1)
    assert none.choice is None and all(r.verdict.startswith("too slow") for r in none.rows)
    assert str(none).endswith("choice: none meets the constraints")


def test_gpu_rows_run_where_the_backend_runs(graph: openqnn.Graph, monkeypatch: pytest.MonkeyPatch) -> None:
    from openqnn.backends.gpu.config import DEVICE_ENV, GpuConfig

    monkeypatch.setenv(DEVICE_ENV, "cpu")
    sel = openqnn.BackendSelector(["gpu", "cpu"]).select_backend(
        graph, _calibration(2), configs={"gpu": GpuConfig(precision_mode="fp16")}, repeats=1)
    gpu = sel.row("gpu")
    assert gpu.available and gpu.precision == "fp16" and gpu.cosine is not None and gpu.cosine > 0.9999
    assert gpu.energy_uj == pytest.approx(count_macs(graph) * PJ_PER_MAC["fp16"] * 1e-6)
