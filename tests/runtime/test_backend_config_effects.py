"""Every backend config key does something, or is refused with the reason (docs/backend-config.md): the
guide's ``backend_config.json`` key by key, QNN's backend-extension form and ``--perf_profile``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import openqnn
from guide_backend_config import GUIDE_BACKEND_CONFIG as GUIDE
from helpers import make_model
from openqnn.backends.threads import ThreadPolicy, thread_policy
from openqnn.runtime.config import BackendConfig, CpuConfig, HtpConfig, read_backend_config


def _fc_model(n: int = 1024) -> openqnn.Graph:
    """x[1, n] -> FullyConnected (n x n weights: 1 MB at 8 bits) -> Relu."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32) / 32, "w")
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                       [("x", TensorProto.FLOAT, [1, n])], [("y", TensorProto.FLOAT, [1, n])], [w])
    return openqnn.convert(model)


@pytest.fixture(scope="module")
def fc() -> dict:
    graph = _fc_model()
    calib = [{"x": np.random.default_rng(i).standard_normal((1, 1024)).astype(np.float32)} for i in range(4)]
    return {"graph": graph, "q8": openqnn.quantize(graph, calib),
            "q16": openqnn.quantize(graph, calib, openqnn.QuantizerConfig(act_bitwidth=16)), "x": calib[0]}


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def nice(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """os.nice recorded, not applied (it cannot be undone in this process)."""
    calls: list[int] = []
    level = [0]

    def fake(inc: int) -> int:
        if inc:
            calls.append(inc)
        level[0] += inc
        return level[0]

    monkeypatch.setattr(os, "nice", fake)
    return calls


def test_the_guides_file_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "backend_config.json").write_text(json.dumps(GUIDE))
    config = read_backend_config(tmp_path / "backend_config.json")
    assert config.htp == HtpConfig(performance_mode="high_performance", precision_mode="int8", vtcm_mb=8,
                                   enable_dma=True)
    assert config.cpu == CpuConfig(num_threads=4, performance_mode="balanced", enable_fast_math=True)


def test_a_misspelled_key_is_refused_with_its_name(tmp_path: Path) -> None:
    for section, key in (("htp_config", "vtcm_MB"), ("cpu_config", "enable_fastmath"), ("gpu_config", "precison_mode")):
        (tmp_path / "c.json").write_text(json.dumps({section: {key: 1}}))
        with pytest.raises(openqnn.InvalidConfigError, match=rf"unknown key {section}\.{key}; valid keys: "):
            read_backend_config(tmp_path / "c.json")


def test_performance_mode_is_a_thread_count_and_priority(fc: dict, threads: None, nice: list[int]) -> None:
    assert thread_policy("default", cores=8) == ThreadPolicy(None, 0)
    assert thread_policy("high_performance", cores=8) == ThreadPolicy(8, 0)
    assert thread_policy("balanced", cores=8) == ThreadPolicy(4, 0)
    assert thread_policy("balanced", num_threads=3, cores=8) == ThreadPolicy(3, 0)  # num_threads wins
    assert thread_policy("power_saver", cores=8) == ThreadPolicy(1, 10)
    assert thread_policy("extreme_power_saver", cores=8) == ThreadPolicy(1, 19)
    torch.set_num_threads(2)
    openqnn.Session(fc["q8"], backend="htp", config=BackendConfig(htp=HtpConfig(performance_mode="power_saver")))
    assert torch.get_num_threads() == 1 and nice == [10]
    openqnn.Session(fc["graph"], config=BackendConfig(cpu=CpuConfig(performance_mode="low_power_saver")))
    assert nice == [10, 5]  # raised to 15, never lowered
    openqnn.Session(fc["graph"], config=BackendConfig(cpu=CpuConfig(performance_mode="burst")))
    assert nice == [10, 5] and torch.get_num_threads() == (os.cpu_count() or 1)


def test_num_threads_and_hvx_threads(fc: dict, threads: None) -> None:
    openqnn.Session(fc["graph"], config=BackendConfig(cpu=CpuConfig(num_threads=1, performance_mode="burst")))
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    openqnn.Session(fc["q8"], backend="htp", config=BackendConfig(htp=HtpConfig(hvx_threads=1)))
    assert torch.get_num_threads() == 1


def test_precision_mode_selects_at_prepare(fc: dict) -> None:
    x = fc["x"]
    def htp(graph: openqnn.Graph, mode: str) -> openqnn.Session:
        return openqnn.Session(graph, backend="htp", config=BackendConfig(htp=HtpConfig(precision_mode=mode)))

    htp(fc["q8"], "int8").run(x)
    htp(fc["q16"], "int16").run(x)
    with pytest.raises(openqnn.InvalidConfigError, match=r"precision_mode = 'int8', but activation '\w+' is 16-bit"):
        htp(fc["q16"], "int8")
    with pytest.raises(openqnn.InvalidConfigError, match=r"precision_mode = 'int16', but activation '\w+' is 8-bit"):
        htp(fc["q8"], "int16")
    mixed = htp(fc["q16"], "mixed").run(x)["y"]  # the default: the encodings as they are
    np.testing.assert_array_equal(mixed, openqnn.Session(fc["q16"], backend="htp").run(x)["y"])
    # fp16: the graph in half precision, encodings dropped: closer to fp32 than the 8-bit codes
    fp32 = openqnn.Session(fc["graph"]).run(x)["y"]
    half = htp(fc["q8"], "fp16").run(x)["y"]
    int8 = htp(fc["q8"], "int8").run(x)["y"]
    assert np.abs(half - fp32).max() < np.abs(int8 - fp32).max() / 4
    with pytest.raises(openqnn.InvalidConfigError, match="precision_mode = 'fp16' needs dsp_arch v69"):
        HtpConfig(precision_mode="fp16", dsp_arch="v68")


def test_vtcm_mb_bounds_the_memory_plan_and_enable_dma_streams_weights(fc: dict) -> None:
    def htp(**kw: object) -> openqnn.Session:
        return openqnn.Session(fc["q8"], backend="htp", config=BackendConfig(htp=HtpConfig(**kw)))  # type: ignore[arg-type]

    # the FullyConnected's 1 MB of weights and its activations do not fit in 1 MB of VTCM ...
    with pytest.raises(openqnn.InvalidConfigError, match=r"vtcm_mb = 1: node '[^']+' \(FullyConnected\) needs 1\.00 MB "
                                                         r"of VTCM \(activations 0\.00 MB \+ weights 1\.00 MB; set "
                                                         r"htp_config.enable_dma"):
        htp(vtcm_mb=1)
    with pytest.raises(openqnn.InvalidConfigError, match="FullyConnected"):
        openqnn.compile(fc["q8"], "htp", HtpConfig(vtcm_mb=1))
    # ... with DMA streaming the weights they do, as in 2 MB; unset, there is no bound
    htp(vtcm_mb=1, enable_dma=True).run(fc["x"])
    htp(vtcm_mb=2).run(fc["x"])
    htp().run(fc["x"])
    # a node forced to cpu uses no VTCM
    from openqnn.backends.partition import PlacementConfig

    openqnn.Session(fc["q8"], backend="htp", config=BackendConfig(PlacementConfig({"FullyConnected": "cpu"}),
                                                                  htp=HtpConfig(vtcm_mb=1)))


def test_enable_fast_math_runs_cpu_float_kernels_in_bfloat16(fc: dict) -> None:
    x = fc["x"]
    exact = openqnn.Session(fc["graph"]).run(x)["y"]
    fast_sess = openqnn.Session(fc["graph"], config=BackendConfig(cpu=CpuConfig(enable_fast_math=True)))
    fast = fast_sess.run(x)["y"]
    assert fast.dtype == np.float32 and not np.array_equal(fast, exact)
    cos = float(np.dot(fast.ravel(), exact.ravel()) / np.linalg.norm(fast) / np.linalg.norm(exact))
    assert cos > 0.999


def test_htp_keys_that_mean_nothing_here_are_refused_unless_neutral() -> None:
    HtpConfig(device_id=0, optimization_level=3)
    with pytest.raises(openqnn.InvalidConfigError, match="device_id = 1: openqnn emulates one HTP device"):
        HtpConfig(device_id=1)
    with pytest.raises(openqnn.InvalidConfigError, match=r"optimization_level \(QNN's O\) = 2: openqnn prepares one "
                                                         "plan"):
        HtpConfig(optimization_level=2)


def _extension(tmp_path: Path, ext: object, **top: object) -> Path:
    (tmp_path / "htp_ext.json").write_text(json.dumps(ext))
    doc = {"backend_extensions": {"shared_library_path": "libQnnHtpNetRunExtensions.so",
                                  "config_file_path": "htp_ext.json"}, **top}
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return tmp_path / "config.json"


def test_qnn_backend_extensions_are_read_into_htp_config(tmp_path: Path) -> None:
    ext = {"graphs": [{"graph_names": ["model"], "vtcm_mb": 4, "O": 3, "fp16_relaxed_precision": 1,
                       "hvx_threads": 2}],
           "devices": [{"device_id": 0, "soc_model": 43, "dsp_arch": "v73",
                        "cores": [{"core_id": 0, "perf_profile": "burst"}]}],
           "context": {"weight_sharing_enabled": False}}
    config = read_backend_config(_extension(tmp_path, ext))
    assert config.htp == HtpConfig(vtcm_mb=4, optimization_level=3, fp16_relaxed_precision=True, hvx_threads=2,
                                   device_id=0, soc_model=43, dsp_arch="v73", performance_mode="burst")
    assert read_backend_config(_extension(tmp_path, {"graphs": {"vtcm_mb": 0}})).htp.vtcm_mb is None  # 0: all of it
    refused = {
        "unknown key": ({"graphs": [{"vtcm": 4}]}, r"unknown key graphs\[0\]\.vtcm; valid keys: graph_names"),
        "dlbc": ({"graphs": [{"dlbc": 1}]}, r"graphs\[0\]\.dlbc is refused: deep-learning bandwidth compression"),
        "O 2": ({"graphs": [{"O": 2}]}, r"optimization_level \(QNN's O\) = 2"),
        "rpc": ({"devices": [{"cores": [{"rpc_control_latency": 100}]}]}, r"rpc_control_latency is refused: there is no RPC"),
        "core 1": ({"devices": [{"cores": [{"core_id": 1}]}]}, "one HTP core"),
        "two devices": ({"devices": [{}, {}]}, "emulates one HTP device"),
        "weight sharing": ({"context": {"weight_sharing_enabled": True}}, "weight_sharing_enabled is refused"),
        "section": ({"memory": {"mem_type": "shared_buffer"}}, "unknown section 'memory'"),
        "disagree": ({"graphs": [{"vtcm_mb": 4}, {"vtcm_mb": 2}]}, r"graphs\[1\]\.vtcm_mb = 2 contradicts 4"),
        "profile": ({"devices": [{"cores": [{"perf_profile": "turbo"}]}]}, r"performance_mode = 'turbo' is not valid"),
    }
    for case, (ext_doc, pattern) in refused.items():
        with pytest.raises(openqnn.InvalidConfigError, match=pattern):
            read_backend_config(_extension(tmp_path, ext_doc))
            pytest.fail(case)
    with pytest.raises(openqnn.InvalidConfigError, match=r"htp_config\.vtcm_mb is given twice"):
        read_backend_config(_extension(tmp_path, {"graphs": {"vtcm_mb": 4}}, htp_config={"vtcm_mb": 2}))
    (tmp_path / "gpu.json").write_text(json.dumps({"backend_extensions": {
        "shared_library_path": "libQnnGpuNetRunExtensions.so", "config_file_path": "htp_ext.json"}}))
    with pytest.raises(openqnn.InvalidConfigError, match="openqnn reads HTP backend extensions"):
        read_backend_config(tmp_path / "gpu.json")


def test_perf_profile_flag_sets_performance_mode(tmp_path: Path) -> None:
    from openqnn.cli.common import backend_config
    from openqnn.cli.net_run import build_parser

    (tmp_path / "c.json").write_text(json.dumps({"htp_config": {"performance_mode": "balanced"}}))
    args = build_parser().parse_args(["--input_list", "l.txt", "--perf_profile", "power_saver", "--config_file",
                                      str(tmp_path / "c.json"), "--disable_cpu_fallback"])
    config = backend_config(args)
    assert config.htp.performance_mode == "power_saver" and config.cpu.performance_mode == "power_saver"
    assert config.placement.disable_cpu_fallback
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--input_list", "l.txt", "--perf_profile", "warp"])
    assert isinstance(args, argparse.Namespace)


def _small_cnn() -> openqnn.Graph:
    """Conv -> Relu -> Conv: a convolution with an epilogue (the Relu) the plan's transformations fuse."""
    rng = np.random.default_rng(5)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) / 4, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32) / 4, "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"])]
    model = make_model(nodes, [("x", TensorProto.FLOAT, [1, 3, 8, 8])], [("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                       [w1, w2])
    return openqnn.convert(model)


def test_gpu_keys_have_effects(monkeypatch: pytest.MonkeyPatch, threads: None, nice: list[int]) -> None:
    """gpu_config's performance_mode is the host's thread policy and enable_transform_optimization the plan's
    fusions (one step per node without them, the same outputs); run on the CPU device, as without a GPU."""
    from openqnn.backends.gpu.config import DEVICE_ENV, GpuConfig

    monkeypatch.setenv(DEVICE_ENV, "cpu")
    graph = _small_cnn()
    x = {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    torch.set_num_threads(2)
    fused = openqnn.Session(graph, backend="gpu", config=BackendConfig(gpu=GpuConfig(performance_mode="power_saver")))
    assert torch.get_num_threads() == 1 and nice == [10]
    plain = openqnn.Session(graph, backend="gpu", config=BackendConfig(gpu=GpuConfig(enable_transform_optimization=False)))
    steps = lambda s: s._exe.plan.op_types  # noqa: E731
    assert len(steps(plain)) == len(graph.nodes) > len(steps(fused))
    np.testing.assert_allclose(fused.run(x)["y"], plain.run(x)["y"], rtol=1e-5, atol=1e-5)
