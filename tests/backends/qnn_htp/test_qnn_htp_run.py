"""qnn-htp runs a quantized model on QNN's own HTP (its simulator here): through Session and qnn-net-run, within
one code of openqnn's htp, in htp's I/O conventions; a model QNN refuses, a float model and a missing wheel are
one-line errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import openqnn
from helpers import make_model
from openqnn.backends import SPECS, backend_spec, create_backend
from openqnn.backends.qnn_htp import QnnHtpConfig, config, provider
from openqnn.backends.qnn_htp.backend import QnnHtpBackend
from openqnn.backends.qnn_htp.export import qnn_model
from openqnn.cli import net_run
from openqnn.ir.graph import Graph
from openqnn.runtime.config import BackendConfig, parse_backend_config

needs_qnn = pytest.mark.skipif(provider.missing() is not None, reason=f"QNN's HTP cannot run here: {provider.missing()}")
Feeds = list[dict[str, np.ndarray]]


@needs_qnn
def test_session_is_within_one_code_of_htp(qgraph: Graph, feeds: Feeds) -> None:
    qnn = openqnn.Session(qgraph, backend="qnn-htp")
    htp = openqnn.Session(qgraph, backend="htp", config=BackendConfig(htp=openqnn.backends.htp.HtpConfig(dsp_arch="v73")))
    assert qnn.fallbacks == [] and qnn.backend.capabilities.native_integer_io
    same = total = 0
    for feed in feeds:
        ours = qnn.run(feed, native_outputs=True)["output"]
        ref = htp.run(feed, native_outputs=True)["output"]
        assert ours.dtype == ref.dtype == np.uint8 and ours.shape == ref.shape == (1, 4, 5, 5)
        assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
        same, total = same + int((ours == ref).sum()), total + ours.size
        # float outputs are the codes dequantized; codes fed natively give what their floats give
        enc = qgraph.tensors["output"].encoding
        assert enc is not None
        floats = qnn.run(feed)["output"]
        assert floats.dtype == np.float32
        np.testing.assert_allclose(floats, (ours.astype(np.float64) + enc.offset[0]) * enc.scale[0], rtol=1e-6)
        ienc = qgraph.tensors["input"].encoding
        assert ienc is not None
        codes = np.clip(np.round(feed["input"] / ienc.scale[0]) - ienc.offset[0], 0, 255).astype(np.uint8)
        assert np.array_equal(qnn.run({"input": codes}, native_inputs=True, native_outputs=True)["output"], ours)
    assert same / total > 0.8  # measured: 91% of the 300 codes identical on v73


@needs_qnn
def test_net_run_cli(qmodel: Path, feeds: Feeds, tmp_path: Path) -> None:
    args = ["--model", str(qmodel), "--backend", "qnn-htp", "--input_list", str(tmp_path / "input_list.txt")]
    assert net_run.main([*args, "--output_dir", str(tmp_path / "out")]) == 0
    assert net_run.main([*args, "--output_dir", str(tmp_path / "native"), "--use_native_output_files"]) == 0
    sess = openqnn.Session(qmodel, backend="qnn-htp")
    for i, feed in enumerate(feeds):
        got = np.fromfile(tmp_path / "out" / f"Result_{i}" / "output.raw", np.float32)
        np.testing.assert_array_equal(got, sess.run(feed)["output"].ravel())
        native = np.fromfile(tmp_path / "native" / f"Result_{i}" / "output_native.raw", np.uint8)
        np.testing.assert_array_equal(native, sess.run(feed, native_outputs=True)["output"].ravel())


def test_quantized_io_reaches_qnn(qgraph: Graph) -> None:
    """QNN is given integer inputs and outputs: the QDQ export's edge QuantizeLinear / DequantizeLinear go."""
    model, codes = qnn_model(qgraph)
    assert set(codes) == {"input", "output"}
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.UINT8
    first = next(n for n in model.graph.node if "input" in n.input)
    last = next(n for n in model.graph.node if "output" in n.output)
    assert (first.op_type, last.op_type) == ("DequantizeLinear", "QuantizeLinear")


@needs_qnn
def test_a_refused_op_is_one_line_naming_it() -> None:
    model = make_model([helper.make_node("Erf", ["x"], ["y"], name="the_erf")], [("x", TensorProto.FLOAT, [1, 8])],
                       [("y", TensorProto.FLOAT, [1, 8])])
    rng = np.random.default_rng(0)
    graph = openqnn.quantize(openqnn.convert(model), [{"x": rng.standard_normal((1, 8)).astype(np.float32)}])
    with pytest.raises(openqnn.UnsupportedOpError, match=r"QNN's HTP \(v73\) refused graph .*Erf") as e:
        openqnn.Session(graph, backend="qnn-htp")
    assert "\n" not in str(e.value)


@needs_qnn
def test_a_float_model_says_quantize_first(float_graph: Graph) -> None:
    with pytest.raises(openqnn.InvalidConfigError, match=r"the model is float .* quantize it"):
        openqnn.Session(float_graph, backend="qnn-htp")


def test_missing_wheel_says_what_to_install(qgraph: Graph, qmodel: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # the registry entry of a build without the wheel: not creatable, and why
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    spec = config._spec()
    assert spec.create is None and "pip install onnxruntime-qnn" in spec.unavailable
    monkeypatch.setitem(SPECS, "qnn-htp", spec)
    with pytest.raises(openqnn.InvalidConfigError, match=r"--backend qnn-htp: .*pip install onnxruntime-qnn"):
        create_backend("qnn-htp")
    monkeypatch.undo()
    # the wheel gone after the registry was built (or broken): the backend says it once, as one line
    monkeypatch.setitem(sys.modules, "onnxruntime_qnn", None)
    assert "pip install onnxruntime-qnn" in (provider.missing() or "")
    with pytest.raises(openqnn.InvalidConfigError, match=r"qnn-htp backend runs Qualcomm's QNN HTP: .*pip install"):
        QnnHtpBackend().prepare(qgraph)
    assert net_run.main(["--model", str(qmodel), "--backend", "qnn-htp", "--input_list",
                         str(tmp_path / "input_list.txt"), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pip install onnxruntime-qnn" in err and err.count("\n") == 1


def test_names_and_config_section(tmp_path: Path) -> None:
    assert backend_spec("qnn-htp").name == "qnn-htp"
    assert backend_spec("libQnnHtp.so").name == "htp"  # QNN's library name stays openqnn's htp
    assert backend_spec("/opt/ort/libonnxruntime_providers_qnn.so").name == "qnn-htp"
    assert SPECS["qnn-htp"].config_section == "qnn_htp_config"
    cfg = parse_backend_config({"qnn_htp_config": {"soc_model": 57, "vtcm_mb": 4}})
    assert cfg.qnn_htp == QnnHtpConfig(soc_model=57, vtcm_mb=4) == cfg.section("qnn-htp")
    assert BackendConfig(qnn_htp=QnnHtpConfig(dsp_arch="v68")).section("qnn-htp").dsp_arch == "v68"
    with pytest.raises(openqnn.InvalidConfigError, match=r"qnn_htp_config.dsp_arch v79 contradicts soc_model 43"):
        parse_backend_config({"qnn_htp_config": {"dsp_arch": "v79", "soc_model": 43}})
    with pytest.raises(openqnn.InvalidConfigError, match=r"unknown key qnn_htp_config.htp_arch"):
        parse_backend_config({"qnn_htp_config": {"htp_arch": "73"}})
