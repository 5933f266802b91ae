"""The TensorFlow frontend against TensorFlow's own outputs (rtol 1e-3). TensorFlow is the optional
``tensorflow`` extra, absent from the dev environment: the tests that convert skip without it (they go
through TensorFlow's TFLite converter); the missing-framework error and the registration always run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import openqnn
from openqnn.errors import ConversionError, UnsupportedOpError
from openqnn.frontends.base import frontend_for

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
NEEDS_TF = "needs TensorFlow: pip install 'openqnn[tensorflow]'"
RTOL = 1e-3


def _tf():
    return pytest.importorskip("tensorflow", reason=NEEDS_TF)


def _run(graph, x: np.ndarray) -> np.ndarray:
    out = openqnn.Session(graph, backend="cpu").run({graph.inputs[0]: x})
    return np.asarray(out[graph.outputs[0]])


# ---- always: registration and the missing framework --------------------------------------------------------


@pytest.mark.parametrize("name", ["model.pb", "model.keras", "model.h5", "model_savedmodel"])
def test_tensorflow_models_go_to_the_tensorflow_frontend(name: str) -> None:
    assert frontend_for(FIXTURES / name if name != "model.h5" else "model.h5").name == "tensorflow"


def test_a_directory_that_is_no_saved_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"no frontend reads as a model.*saved_model\.pb"):
        frontend_for(tmp_path)


def test_missing_tensorflow_names_the_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow raises ImportError
    src = FIXTURES / "model.keras"
    with pytest.raises(ConversionError) as e:
        openqnn.convert(src)
    msg = str(e.value)
    assert "\n" not in msg and str(src) in msg and "pip install 'openqnn[tensorflow]'" in msg
    from openqnn.cli import tensorflow_converter

    assert tensorflow_converter.main(["-i", str(FIXTURES / "model_savedmodel"), "--dry_run"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'openqnn[tensorflow]'" in err[0]


# ---- with TensorFlow: against its outputs ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["savedmodel", "keras", "frozen"])
@pytest.mark.parametrize("name", ["cnn", "mlp", "transformer"])
def test_matches_tensorflow(name: str, kind: str, tmp_path: Path) -> None:
    _tf()
    import tf_models

    model = tf_models.build(name)
    x = tf_models.sample_input(model)
    want = np.asarray(model(x, training=False))
    path = tf_models.write(model, kind, tmp_path)
    graph = openqnn.convert(path)
    if kind == "frozen":
        ins, outs = tf_models.frozen_names(path)
        assert graph.inputs == ins and graph.outputs == outs
    else:
        assert graph.inputs == [model.inputs[0].name]
        assert graph.outputs == ["output_0" if kind == "savedmodel" else model.output_names[0]]
    np.testing.assert_allclose(_run(graph, x), want, rtol=RTOL, atol=1e-6)


def test_keras_object_and_input_dim(tmp_path: Path) -> None:
    _tf()
    import tf_models

    model = tf_models.build("mlp")
    x = np.random.default_rng(3).uniform(-1, 1, (3, 12)).astype(np.float32)
    graph = openqnn.convert(model, input_dims={"features": (3, 12)})
    assert graph.input_tensors()[0].shape == (3, 12)
    np.testing.assert_allclose(_run(graph, x), np.asarray(model(x)), rtol=RTOL, atol=1e-6)
    with pytest.raises(ConversionError, match="--input_dim names nope, but the model's inputs are features"):
        openqnn.convert(model, input_dims={"nope": (1, 12)})


def test_frozen_graph_out_node_cuts_the_graph(tmp_path: Path) -> None:
    _tf()
    import tf_models

    model = tf_models.build("mlp")
    path = tf_models.write(model, "frozen", tmp_path)
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(path.read_bytes())
    relu = next(n.name for n in gd.node if n.op == "Relu")
    graph = openqnn.convert(path, out_nodes=[relu])
    assert graph.outputs == [relu] and "Tanh" not in graph.op_types()
    with pytest.raises(ConversionError, match="--out_node nothere: no node of that name"):
        openqnn.convert(path, out_nodes=["nothere"])


def test_unsupported_op_names_node_type_file_and_list(tmp_path: Path) -> None:
    tf = _tf()

    class Det(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 3, 3), tf.float32, name="m")])
        def __call__(self, m):
            return {"det": tf.linalg.det(m, name="the_det") * 2.0}

    obj = Det()
    path = tmp_path / "det_savedmodel"
    tf.saved_model.save(obj, str(path), signatures=obj.__call__)
    with pytest.raises(UnsupportedOpError) as e:
        openqnn.convert(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "the_det" in msg and "MatrixDeterminant" in msg
    assert "FULLY_CONNECTED" in msg and "CONV_2D" in msg


@pytest.mark.parametrize("name", ["model_savedmodel", "model.keras", "model.pb"])
def test_committed_fixtures(name: str) -> None:
    """The committed models against the committed TensorFlow outputs (converting still needs TensorFlow)."""
    _tf()
    x = np.load(FIXTURES / "mlp_input.npy")
    want = np.load(FIXTURES / "mlp_output.npy")
    graph = openqnn.convert(FIXTURES / name)
    np.testing.assert_allclose(_run(graph, x), want, rtol=RTOL, atol=1e-6)
