"""qnn-context-binary-generator --backend qnn-htp writes a real QNN context binary for the asked HTP, and
qnn-context-binary-utility reads its metadata back through QNN's libQnnSystem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import openqnn
from openqnn.backends.qnn_htp import provider
from openqnn.cli import context_binary_generator, context_binary_utility, net_run
from openqnn.ir.graph import Graph

needs_qnn = pytest.mark.skipif(provider.missing() is not None, reason=f"QNN's HTP cannot run here: {provider.missing()}")
Feeds = list[dict[str, np.ndarray]]


def _generate(model: Path, out: Path, qnn_config: dict[str, Any], name: str = "convnet") -> Path:
    cfg = out.parent / f"{name}_config.json"
    cfg.write_text(json.dumps({"qnn_htp_config": qnn_config}))
    assert context_binary_generator.main(["--model", str(model), "--backend", "qnn-htp", "--output_dir", str(out),
                                          "--binary_file", name, "--config_file", str(cfg)]) == 0
    return out / f"{name}_qnn.bin"


def _metadata(binary: Path) -> dict[str, Any]:
    out = binary.with_suffix(".json")
    assert context_binary_utility.main(["--context_binary", str(binary), "--json_file", str(out)]) == 0
    return json.loads(out.read_text())


def _qnn_tensor(info: dict[str, Any], graph: Graph, name: str) -> None:
    """A tensor of QNN's metadata is the graph's: name, dims, 8-bit fixed point, its encoding (QNN's sign)."""
    t, enc = graph.tensors[name], graph.tensors[name].encoding
    assert enc is not None
    assert (info["name"], info["dims"], info["dtype"]) == (name, list(t.shape), "UFIXED_POINT_8")
    assert info["encoding"] == {"kind": "SCALE_OFFSET", "scale": [float(np.float32(enc.scale[0]))],
                                "offset": [enc.offset[0]]}


@needs_qnn
def test_v73_context_binary_and_its_metadata(qmodel: Path, qgraph: Graph, feeds: Feeds, tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    binary = _generate(qmodel, out, {"dsp_arch": "v73"})
    assert sorted(p.name for p in out.iterdir()) == ["convnet.onnx", "convnet_qnn.bin", "input_specs.json",
                                                    "quantization_config.json"]
    specs = json.loads((out / "input_specs.json").read_text())
    assert [t["name"] for t in specs["inputs"]] == ["input"] and specs["outputs"][0]["encoding"]["bitwidth"] == 8

    info = _metadata(binary)
    assert (info["format"], info["backend"], info["backend_id"]) == ("qnn", "HTP", 6)
    assert (info["dsp_arch"], info["soc_model"]) == ("v73", 43)  # v73 without a soc_model: QNN's SM8550
    assert info["size"] == binary.stat().st_size > info["context_blob_size"] > 0
    assert info["core_api_version"].startswith("2.") and info["build_id"].startswith("v2.")
    (graph,) = info["graphs"]
    assert graph["name"] and len(graph["inputs"]) == len(graph["outputs"]) == 1
    _qnn_tensor(graph["inputs"][0], qgraph, "input")
    _qnn_tensor(graph["outputs"][0], qgraph, "output")
    assert graph["htp"]["vtcm_size"] > 0

    # the context is QNN's own: ONNX Runtime's EPContext model beside it loads it and runs what Session runs
    ctx = provider.qnn_session(str(out / "convnet.onnx"), "73")
    sess = openqnn.Session(qgraph, backend="qnn-htp")
    enc = qgraph.tensors["input"].encoding
    assert enc is not None
    for feed in feeds:
        codes = np.clip(np.round(feed["input"] / enc.scale[0]) - enc.offset[0], 0, 255).astype(np.uint8)
        (got,) = ctx.run(None, {"input": codes})
        np.testing.assert_array_equal(got, sess.run({"input": codes}, native_inputs=True, native_outputs=True)["output"])


@needs_qnn
def test_net_run_says_a_qnn_context_is_not_openqnns(qmodel: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    binary = _generate(qmodel, tmp_path / "ctx", {"dsp_arch": "v73"})
    assert net_run.main(["--retrieve_context", str(binary), "--input_list", str(tmp_path / "input_list.txt"),
                         "--output_dir", str(tmp_path / "out")]) == 2
    assert "not an openqnn context binary" in capsys.readouterr().err and not (tmp_path / "out").exists()


@needs_qnn
def test_soc_model_picks_the_htp(qmodel: Path, tmp_path: Path) -> None:
    info = _metadata(_generate(qmodel, tmp_path / "ctx", {"soc_model": 57, "vtcm_mb": 2}))
    assert (info["dsp_arch"], info["soc_model"]) == ("v75", 57)
    assert info["graphs"][0]["htp"]["vtcm_size"] == 2 << 20


def test_one_graph_per_qnn_context_and_bad_configs(qmodel: Path, qgraph: Graph, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ctx"
    args = ["--model", str(qmodel), "--backend", "qnn-htp", "--output_dir", str(out)]
    if provider.missing() is None:
        other, _ = openqnn.save(qgraph, tmp_path / "other.cpp")
        assert context_binary_generator.main([*args, "--model", str(other)]) == 2
        assert "writes one graph per QNN context binary" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"qnn_htp_config": {"dsp_arch": "v70"}}))
    assert context_binary_generator.main([*args, "--config_file", str(tmp_path / "bad.json")]) == 2
    assert "qnn_htp_config.dsp_arch = 'v70' is not valid" in capsys.readouterr().err
    assert not out.exists()


@needs_qnn
def test_utility_tells_a_file_that_is_no_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk_qnn.bin"
    junk.write_bytes(b"\x00\x00\x00\x02" + bytes(range(200)))
    assert context_binary_utility.main(["--context_binary", str(junk), "--json_file", str(tmp_path / "x.json")]) == 2
    assert "not an openqnn context binary" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
