"""The gpu backend: its numerics on the CPU device (``OPENQNN_GPU_DEVICE=cpu``: the same code, another torch
device), its CUDA-graph routing, and a clean refusal on a machine without a GPU. The tests marked ``cuda``
run only where PyTorch sees a GPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import cosine, make_model
from openqnn.backends import SPECS, create_backend
from openqnn.backends.cpu.kernels import KERNELS, BuildContext, Step
from openqnn.backends.gpu import cuda_graphs
from openqnn.backends.gpu.backend import FP32_OPS, GpuBackend, GpuExecutable
from openqnn.backends.gpu.config import DEVICE_ENV, GpuConfig
from openqnn.ir.graph import Node
from openqnn.runtime.config import BackendConfig

F = TensorProto.FLOAT
CUDA = torch.cuda.is_available()
cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def _net() -> Any:
    """conv -> relu -> depthwise conv -> global mean -> dense -> layer norm -> softmax."""
    rng = np.random.default_rng(0)

    def init(name: str, *shape: int, scale: float = 0.3) -> Any:
        return numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("ReduceMean", ["c2"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Gemm", ["m", "wf", "bf"], ["y"], transB=1),
             helper.make_node("LayerNormalization", ["y", "g", "bb"], ["n"], axis=-1),
             helper.make_node("Softmax", ["n"], ["prob"])]
    inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("w2", 8, 1, 3, 3), init("b2", 8), init("wf", 10, 8),
             init("bf", 10), init("g", 10, scale=1.0), init("bb", 10)]
    return make_model(nodes, [("x", F, [2, 3, 8, 8])], [("prob", F, [2, 10])], inits)


@pytest.fixture(autouse=True)
def on_cpu_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEVICE_ENV, "cpu")


@pytest.fixture(scope="module")
def graph() -> openqnn.Graph:
    return openqnn.convert(_net())


def _feeds(n: int = 3) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(5)
    return [{"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)} for _ in range(n)]


def _gpu(graph: openqnn.Graph, mode: str) -> openqnn.Session:
    return openqnn.Session(graph, backend="gpu", config=BackendConfig(gpu=GpuConfig(precision_mode=mode)))


def test_fp32_is_the_cpu_backend_bit_for_bit(graph: openqnn.Graph) -> None:
    cpu, gpu = openqnn.Session(graph, backend="cpu"), openqnn.Session(graph, backend="libQnnGpu.so")
    assert gpu.backend.name == "gpu" and not gpu.fallbacks
    for feeds in _feeds():
        np.testing.assert_array_equal(gpu.run(feeds)["prob"], cpu.run(feeds)["prob"])


@pytest.mark.parametrize("mode", ["fp16", "hybrid"])
def test_half_precision_modes_are_close_to_fp32(graph: openqnn.Graph, mode: str) -> None:
    ref, half = openqnn.Session(graph, backend="cpu"), _gpu(graph, mode)
    plan = half._exe.plan  # type: ignore[attr-defined]
    assert plan.float_dtype == torch.float16
    for feeds in _feeds():
        got, want = half.run(feeds)["prob"], ref.run(feeds)["prob"]
        assert got.dtype == np.float32
        assert np.abs(got - want).max() < 5e-3 and cosine(got, want) > 0.9999
        assert not np.array_equal(got, want)  # it did run in half


def _spy(op_type: str, seen: list[torch.dtype], monkeypatch: pytest.MonkeyPatch) -> None:
    builder = KERNELS[op_type]

    def spying(node: Node, ctx: BuildContext) -> Step:
        step = builder(node, ctx)
        fn = step.fn

        def run(*xs: torch.Tensor) -> Any:
            seen.append(xs[0].dtype)
            return fn(*xs)

        step.fn = run
        return step

    monkeypatch.setitem(KERNELS, op_type, spying)


@pytest.mark.parametrize(("mode", "softmax", "dense"), [("fp16", torch.float16, torch.float16),
                                                         ("hybrid", torch.float32, torch.float16),
                                                         ("fp32", torch.float32, torch.float32)])
def test_hybrid_runs_softmax_norms_and_reductions_in_fp32(graph: openqnn.Graph, monkeypatch: pytest.MonkeyPatch,
                                                          mode: str, softmax: torch.dtype, dense: torch.dtype) -> None:
    assert {"Softmax", "LayerNorm", "ReduceMean"} <= FP32_OPS
    seen: dict[str, list[torch.dtype]] = {op: [] for op in ("Softmax", "LayerNorm", "ReduceMean", "FullyConnected")}
    for op, log in seen.items():
        _spy(op, log, monkeypatch)
    _gpu(graph, mode).run(_feeds(1)[0])
    assert seen["Softmax"] == seen["LayerNorm"] == seen["ReduceMean"] == [softmax]
    assert seen["FullyConnected"] == [dense]


def test_a_quantized_model_in_fp16_runs_its_simulation_in_half(graph: openqnn.Graph) -> None:
    q = openqnn.quantize(graph, _feeds(4))
    ref, half = openqnn.Session(q, backend="cpu"), _gpu(q, "fp16")
    for feeds in _feeds():
        got, want = half.run(feeds)["prob"], ref.run(feeds)["prob"]
        assert cosine(got, want) > 0.999


def test_int8_mode_is_htp_bit_for_bit_on_the_device(graph: openqnn.Graph) -> None:
    q = openqnn.quantize(graph, _feeds(4), openqnn.QuantizerConfig(use_per_channel_quantization=True))
    htp, gpu = openqnn.Session(q, backend="htp"), _gpu(q, "int8")
    assert [f.node for f in gpu.fallbacks] == [f.node for f in htp.fallbacks]
    for feeds in _feeds():
        np.testing.assert_array_equal(gpu.run(feeds)["prob"], htp.run(feeds)["prob"])
    with pytest.raises(openqnn.InvalidConfigError, match="precision_mode = 'int8' runs quantized models"):
        _gpu(graph, "int8")


def test_unsupported_asks_the_builders(graph: openqnn.Graph) -> None:
    backend = GpuBackend(GpuConfig(), device="cpu")
    assert all(backend.unsupported(graph, n) is None for n in graph.nodes)


# -- CUDA graphs ------------------------------------------------------------------------------------

def test_cuda_graphs_only_for_small_batches_on_cuda() -> None:
    cuda_dev, cpu_dev = torch.device("cuda"), torch.device("cpu")
    assert cuda_graphs.use_cuda_graph(cuda_dev, [(1, 3, 224, 224)])
    assert cuda_graphs.use_cuda_graph(cuda_dev, [(cuda_graphs.MAX_BATCH, 16), ()])
    assert not cuda_graphs.use_cuda_graph(cuda_dev, [(cuda_graphs.MAX_BATCH + 1, 16)])
    assert not cuda_graphs.use_cuda_graph(cuda_dev, [(0, 16)])
    assert not cuda_graphs.use_cuda_graph(cpu_dev, [(1, 3, 224, 224)])


class _FakeCapture:
    """Stands in for CapturedRun off CUDA: captures once, then 'replays' by running eagerly."""

    made: list[_FakeCapture] = []
    fail = False

    def __init__(self, run: Any, inputs: Sequence[torch.Tensor]):
        if _FakeCapture.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.run, self.replays = run, 0
        _FakeCapture.made.append(self)

    def __call__(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        self.replays += 1
        return self.run(inputs)


@pytest.mark.parametrize("fail", [False, True])
def test_small_batches_replay_one_capture_and_a_failed_capture_runs_eagerly(
        graph: openqnn.Graph, monkeypatch: pytest.MonkeyPatch, fail: bool) -> None:
    monkeypatch.setattr(cuda_graphs, "use_cuda_graph", lambda device, shapes, max_batch: shapes[0][0] <= max_batch)
    monkeypatch.setattr(cuda_graphs, "CapturedRun", _FakeCapture)
    monkeypatch.setattr(_FakeCapture, "made", [])
    monkeypatch.setattr(_FakeCapture, "fail", fail)
    exe = GpuBackend(GpuConfig(), device="cpu").prepare(graph)
    assert isinstance(exe, GpuExecutable) and exe.captures
    ref = openqnn.Session(graph, backend="cpu")
    for feeds in _feeds():
        np.testing.assert_array_equal(exe.run(feeds)["prob"], ref.run(feeds)["prob"])
    if fail:
        assert not exe.captures and not _FakeCapture.made
    else:
        assert len(_FakeCapture.made) == 1 and _FakeCapture.made[0].replays == 3
    big = GpuExecutable(exe.plan, max_graph_batch=1)  # batch 2 > 1: eager
    assert not big.captures


# -- without a GPU ----------------------------------------------------------------------------------

@pytest.mark.skipif(CUDA, reason="this machine has a CUDA GPU")
def test_without_a_gpu_the_backend_is_one_clean_error(graph: openqnn.Graph, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(DEVICE_ENV)
    why = SPECS["gpu"].why_unavailable()
    assert why is not None and "NVIDIA GPU" in why
    with pytest.raises(openqnn.InvalidConfigError, match=r"--backend gpu: the gpu backend needs an NVIDIA GPU.*"
                                                         r"available here: cpu, htp"):
        create_backend("gpu")
    from openqnn.cli import net_run

    openqnn.save(graph, tmp_path / "m_net.json")
    _feeds(1)[0]["x"].tofile(tmp_path / "x.raw")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'x.raw'}\n")
    rc = net_run.main(["--model", str(tmp_path / "m_net.json"), "--backend", "libQnnGpu.so", "--input_list",
                       str(tmp_path / "list.txt"), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("error: ") and "NVIDIA GPU" in err[0], err
    assert "Traceback" not in "\n".join(err)
    from openqnn.runtime.placement import format_placement, placement

    report = format_placement(graph, placement(graph, ["gpu", "cpu"]))
    assert "gpu: not available here (the gpu backend needs an NVIDIA GPU" in report


# -- on a GPU -------------------------------------------------------------------------------------

@cuda
@pytest.mark.parametrize("mode", ["fp32", "fp16", "hybrid"])
def test_on_cuda_close_to_the_cpu_backend_and_captured(graph: openqnn.Graph, monkeypatch: pytest.MonkeyPatch,
                                                        mode: str) -> None:
    monkeypatch.delenv(DEVICE_ENV)
    ref, gpu = openqnn.Session(graph, backend="cpu"), _gpu(graph, mode)
    exe = gpu._exe
    assert isinstance(exe, GpuExecutable) and exe.plan.device.type == "cuda" and exe.captures
    for feeds in _feeds():
        got, want = gpu.run(feeds)["prob"], ref.run(feeds)["prob"]
        assert np.abs(got - want).max() < (1e-4 if mode == "fp32" else 5e-3)
    assert exe.captures  # the capture held
    eager = GpuExecutable(exe.plan, max_graph_batch=0)
    feeds = _feeds(1)[0]
    np.testing.assert_array_equal(eager.run(feeds)["prob"], gpu.run(feeds)["prob"])


@cuda
def test_on_cuda_int8_is_htp_bit_for_bit(graph: openqnn.Graph, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV)
    q = openqnn.quantize(graph, _feeds(4))
    htp, gpu = openqnn.Session(q, backend="htp"), _gpu(q, "int8")
    for feeds in _feeds():
        np.testing.assert_array_equal(gpu.run(feeds)["prob"], htp.run(feeds)["prob"])
