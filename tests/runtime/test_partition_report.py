"""Placement, reported and forced: the partition report (Session, qnn-net-run's partition_report.json,
``openqnn info --backend``), ``disable_cpu_fallback``, ``openqnn.force_backend`` (sessions and contexts), and
the fallback region's conversions once per edge."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import openqnn
from helpers import make_model
from openqnn.backends.partition import PlacementConfig
from openqnn.cli import context_binary_generator, net_run
from openqnn.cli import main as openqnn_main
from openqnn.runtime.config import BackendConfig
from quantization import bert_data as bd

RNG = np.random.default_rng(0)


def _refused_model() -> openqnn.Graph:
    """x -> Relu -> r; r feeds two ops htp has no kernel for (LpNormalization, L2Norm in the IR -> a, ReduceSumSquare -> b);
    a feeds htp's Mul and another refused op (ReduceL2 -> d)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("LpNormalization", ["r"], ["a"], name="lpnorm", axis=-1, p=2),
             helper.make_node("ReduceSumSquare", ["r"], ["b"], name="sumsq", axes=[-1], keepdims=1),
             helper.make_node("Mul", ["a", "b"], ["c"], name="mul"),
             helper.make_node("ReduceL2", ["a"], ["d"], name="l2", axes=[-1], keepdims=1)]
    model = make_model(nodes, [("x", TensorProto.FLOAT, [2, 8])],
                       [("c", TensorProto.FLOAT, [2, 8]), ("d", TensorProto.FLOAT, [2, 1])], opset=13)
    return openqnn.convert(model)


@pytest.fixture(scope="module")
def refused() -> openqnn.Graph:
    return openqnn.quantize(_refused_model(), [{"x": RNG.standard_normal((2, 8)).astype(np.float32)}
                                               for _ in range(8)])


def _feeds() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)}


def test_automatic_fallback_is_reported_with_the_builders_reason(refused: openqnn.Graph) -> None:
    sess = openqnn.Session(refused, backend="htp")
    report = sess.partition_report()
    by_op = {n.op_type: n for n in report.nodes}
    assert [n.node for n in report.nodes] == [n.name for n in refused.nodes]
    assert by_op["Relu"].backend == "htp" and by_op["Relu"].reason == "supported"
    for op in ("L2Norm", "ReduceSumSquare", "ReduceL2"):
        assert by_op[op].backend == "cpu" and f"no htp kernel for {op}" in by_op[op].reason
    assert {n.op_type for n in report.fallbacks} == {"L2Norm", "ReduceSumSquare", "ReduceL2"}
    doc = report.to_json()
    assert doc["backend"] == "htp" and doc["nodes_per_backend"] == {"htp": 2, "cpu": 3}
    out = sess.run(_feeds())
    sim = openqnn.Session(refused).run(_feeds())
    for name in ("c", "d"):
        step = refused.tensors[name].encoding.scale[0]
        np.testing.assert_allclose(out[name], sim[name], atol=3 * step)


def test_disable_cpu_fallback_fails_naming_the_nodes(refused: openqnn.Graph) -> None:
    config = BackendConfig(PlacementConfig(disable_cpu_fallback=True))
    with pytest.raises(openqnn.UnsupportedOpError, match=r"3 node\(s\) would fall back.*lpnorm \(L2Norm\): no htp "
                                                         r"kernel for L2Norm.*sumsq.*l2"):
        openqnn.Session(refused, backend="htp", config=config)
    with pytest.raises(openqnn.UnsupportedOpError, match="lpnorm"):
        openqnn.compile(refused, "htp", config)
    # what the user forced is not a fallback: with every refused op forced, the model runs
    forced = BackendConfig(PlacementConfig({"L2Norm": "cpu", "ReduceSumSquare": "cpu", "ReduceL2": "cpu"}, True))
    assert {n.reason for n in openqnn.Session(refused, backend="htp", config=forced).partition_report().fallbacks} == {
        "forced"}


def test_conversions_happen_once_per_edge(refused: openqnn.Graph) -> None:
    exe = openqnn.Session(refused, backend="htp")._exe.exe  # type: ignore[attr-defined]
    kinds = [(p.kernel, p.inputs, p.outputs) for p in exe.step_plans]
    deq = [k for k in kinds if k[0] == "htp.edge_dequantize"]
    quant = [k for k in kinds if k[0] == "htp.edge_quantize"]
    # r is made by htp and read by two fallback nodes: one dequantize
    assert deq == [("htp.edge_dequantize", ("r",), ("r#float",))]
    # a (read by htp's Mul and by the fallback ReduceL2), b (read by Mul), d (an output): one quantize each
    assert sorted(k[2] for k in quant) == [("a",), ("b",), ("d",)]
    l2 = next(k for k in kinds if k[0] == "htp.cpu_fallback" and k[2] == ("d#float",))
    assert l2[1] == ("a#float",)  # between fallback nodes the tensor stays float
    assert exe.nodes == [(n.name, n.op_type) for n in refused.nodes]


def test_net_run_writes_the_report_and_disable_cpu_fallback_fails(refused: openqnn.Graph, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    json_path, _ = openqnn.save(refused, tmp_path / "m.cpp")
    _feeds()["x"].tofile(tmp_path / "x.raw")
    (tmp_path / "list.txt").write_text("x.raw\n")
    base = ["--model", str(json_path), "--backend", "htp", "--input_list", str(tmp_path / "list.txt")]
    assert net_run.main([*base, "--output_dir", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "partition_report.json").read_text())
    assert report["backend"] == "htp"
    rows = {r["node"]: r for r in report["nodes"]}
    assert rows["lpnorm"]["backend"] == "cpu" and "no htp kernel for L2Norm" in rows["lpnorm"]["reason"]
    assert rows["relu"] == {"node": "relu", "op_type": "Relu", "backend": "htp", "reason": "supported"}
    capsys.readouterr()
    assert net_run.main([*base, "--output_dir", str(tmp_path / "out2"), "--disable_cpu_fallback"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "lpnorm (L2Norm)" in err and "Traceback" not in err
    assert not (tmp_path / "out2").exists()
    # the same as a config key
    (tmp_path / "cfg.json").write_text(json.dumps({"openqnn": {"disable_cpu_fallback": True}}))
    assert net_run.main([*base, "--output_dir", str(tmp_path / "out3"), "--config_file", str(tmp_path / "cfg.json")]) == 2
    assert "lpnorm (L2Norm)" in capsys.readouterr().err
    # openqnn info prints the table
    assert openqnn_main.main(["info", str(json_path), "--backend", "htp"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["node", "op", "backend", "reason"]
    assert any(line.split()[:3] == ["lpnorm", "L2Norm", "cpu"] for line in table)
    assert table[-1] == "5 node(s): 2 on htp, 3 on cpu"


def test_force_backend_checks(refused: openqnn.Graph, tmp_path: Path) -> None:
    with pytest.raises(openqnn.InvalidConfigError, match="'Relu' is forced to gpu, but a htp session runs nodes on "
                                                         "cpu or htp"):
        openqnn.Session(refused, backend="htp", config=BackendConfig(PlacementConfig({"Relu": "gpu"})))
    with pytest.raises(openqnn.InvalidConfigError, match="'LayerNrom' is neither a node of graph"):
        openqnn.Session(refused, backend="htp", config=BackendConfig(PlacementConfig({"LayerNrom": "cpu"})))
    with pytest.raises(openqnn.UnsupportedOpError, match=r"node 'lpnorm' \(L2Norm\) is forced to htp.*no htp kernel"):
        openqnn.Session(refused, backend="htp", config=BackendConfig(PlacementConfig({"lpnorm": "htp"})))
    # a node's name wins over its op type; forced to the session's own backend reads "forced"
    config = BackendConfig(PlacementConfig({"Relu": "cpu", "relu": "htp"}))
    rows = {n.node: n for n in openqnn.Session(refused, backend="htp", config=config).partition_report().nodes}
    assert (rows["relu"].backend, rows["relu"].reason) == ("htp", "forced")
    (tmp_path / "bad.json").write_text(json.dumps({"openqnn": {"force_backend": {"Relu": "npu"}}}))
    with pytest.raises(openqnn.InvalidConfigError, match=r"openqnn.force_backend.Relu = 'npu' is not a backend"):
        openqnn.Session(refused, backend="htp", config=_read(tmp_path / "bad.json"))
    (tmp_path / "typo.json").write_text(json.dumps({"openqnn": {"force_backends": {}}}))
    with pytest.raises(openqnn.InvalidConfigError, match=r"unknown key openqnn.force_backends"):
        _read(tmp_path / "typo.json")


def _read(path: Path) -> BackendConfig:
    from openqnn.runtime.config import read_backend_config

    return read_backend_config(path)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("encoder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_path = bd.export_bert(root, bd.realistic_bert(seed=0, score_std=3.0))
    graph = openqnn.convert(onnx_path, input_dims={"input_ids": (bd.BATCH, bd.SEQ),
                                                   "attention_mask": (bd.BATCH, bd.SEQ)})
    q = openqnn.quantize(graph, bd.token_batches(seed=1, sequences=16),
                         openqnn.QuantizerConfig(act_bitwidth=16, use_per_channel_quantization=True,
                                                 use_per_row_quantization=True))
    return {"root": root, "graph": graph, "q": q, "test": bd.token_batches(seed=2, sequences=16)}


def test_transformer_encoder_with_layernorm_forced_to_cpu(encoder: dict, tmp_path: Path) -> None:
    """The issue's check: a quantized encoder on htp with LayerNorm forced to cpu lists those nodes as
    forced and stays within cosine 0.99 of fp32; a context compiled so holds them as fallback steps."""
    q, test = encoder["q"], encoder["test"]
    layernorms = [n.name for n in q.nodes if n.op_type == "LayerNorm"]
    assert layernorms
    (tmp_path / "cfg.json").write_text(json.dumps({"openqnn": {"force_backend": {"LayerNorm": "cpu"}}}))
    config = _read(tmp_path / "cfg.json")
    sess = openqnn.Session(q, backend="htp", config=config)
    report = sess.partition_report()
    forced = [n for n in report.nodes if n.reason == "forced"]
    assert [n.node for n in forced] == layernorms and {n.backend for n in forced} == {"cpu"}
    assert all(n.backend == "htp" for n in report.nodes if n.op_type != "LayerNorm")
    ref = bd.run_batches(openqnn.Session(encoder["graph"]).run, test)
    ours = bd.run_batches(sess.run, test)
    cos = bd.cosines(ours, ref, bd.concat(test, "attention_mask"))
    assert cos.min() >= 0.99, cos.min()

    ctx = openqnn.compile(q, "htp", config)
    steps = ctx.graph().steps
    assert [s.node for s in steps if s.attrs.get("reason") == "forced"] == layernorms
    path = ctx.save(tmp_path / "enc.bin")
    opened = openqnn.Session(path)
    assert opened.partition_report() == report
    np.testing.assert_array_equal(bd.run_batches(opened.run, test[:1]), bd.run_batches(sess.run, test[:1]))


def test_context_binary_generator_forces_placement(encoder: dict, tmp_path: Path) -> None:
    json_path, _ = openqnn.save(encoder["q"], tmp_path / "enc.cpp")
    (tmp_path / "cfg.json").write_text(json.dumps({"openqnn": {"force_backend": {"LayerNorm": "cpu"}}}))
    assert context_binary_generator.main(["--model", str(json_path), "--backend", "htp", "--output_dir",
                                          str(tmp_path / "ctx"), "--config_file", str(tmp_path / "cfg.json")]) == 0
    report = openqnn.Session(tmp_path / "ctx" / "htp_context.bin").partition_report()
    assert {n.op_type for n in report.nodes if n.reason == "forced"} == {"LayerNorm"}
