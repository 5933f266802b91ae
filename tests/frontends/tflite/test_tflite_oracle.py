"""The TFLite oracle: the fixtures (small Keras models written by make_fixtures.py) run in LiteRT's
interpreter and, imported, in openqnn.

- integer models (int8, 16x8): LiteRT's reference kernels (``BUILTIN_REF``) against htp in TFLite
  arithmetic, on integer inputs and outputs: byte-identical, except the ops in ``DIFFERS`` (why: there,
  and in docs/converters/tflite.md);
- float models (float32, float16 weights): LiteRT's kernels against the cpu backend, rtol 1e-3.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import openqnn
from openqnn.backends.htp.config import HtpConfig
from openqnn.frontends.tflite import convert_tflite
from openqnn.runtime.config import BackendConfig

litert = pytest.importorskip("ai_edge_litert.interpreter")

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
INTEGER = [(m, v) for m, e in MANIFEST["models"].items() for v in ("int8", "int16x8")
           if not e["variants"][v].startswith("refused")]
FLOAT = [(m, v) for m in MANIFEST["models"] for v in ("float32", "float16")]

# (model, variant) -> (largest difference in codes, why). Everything else is byte-identical.
DIFFERS = {
    ("dense", "int16x8"): (1, "SOFTMAX int16: TFLite's reference SoftmaxInt16 interpolates 513-entry exp and "
                              "1/(1+x) tables in fixed point; htp computes its 16-bit softmax otherwise"),
    ("logistic", "int16x8"): (1, "LOGISTIC int16: TFLite interpolates a 513-entry sigmoid table; htp looks a "
                                 "65536-entry table built in float up"),
    ("tanh", "int16x8"): (2, "TANH int16: as LOGISTIC int16 (TFLite's interpolated 513-entry table)"),
    ("resize_bilinear", "int8"): (1, "RESIZE_BILINEAR int8 with half-pixel centers: TFLite's ResizeBilinearInteger "
                                     "computes the source coordinates and weights in 10-bit fixed point; htp's "
                                     "interpolation rounds them otherwise"),
}
# ops whose latest version LiteRT's reference resolver lacks: run with its default kernels instead
NOT_IN_REF = {"upsample_nearest"}


def _interpreter(path: Path, reference: bool):
    kind = litert.OpResolverType.BUILTIN_REF if reference else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = litert.Interpreter(model_path=str(path), experimental_op_resolver_type=kind)
    it.allocate_tensors()
    return it


def _run_litert(path: Path, feeds: list[np.ndarray], reference: bool) -> list[np.ndarray]:
    it = _interpreter(path, reference)
    for d, x in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [np.array(it.get_tensor(d["index"])) for d in it.get_output_details()]


def _inputs(path: Path, seed: int) -> list[np.ndarray]:
    """Seeded inputs in [-1, 1] (the representative range), quantized with the input's own parameters."""
    rng = np.random.default_rng(seed)
    feeds = []
    for d in _interpreter(path, False).get_input_details():
        x = rng.uniform(-1, 1, d["shape"]).astype(np.float32)
        if d["dtype"] != np.float32:
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(d["dtype"])
        feeds.append(x)
    return feeds


@pytest.mark.parametrize(("model", "variant"), INTEGER, ids=[f"{m}-{v}" for m, v in INTEGER])
def test_integer_model_matches_litert_on_htp(model: str, variant: str) -> None:
    path = FIXTURES / f"{model}_{variant}.tflite"
    graph = convert_tflite(path)
    sess = openqnn.Session(graph, backend="htp", config=BackendConfig(htp=HtpConfig(arithmetic="tflite")))
    assert not sess.fallbacks, [f.reason for f in sess.fallbacks]  # every op runs as integers on htp
    shift, native = (128, np.uint8) if variant == "int8" else (32768, np.uint16)
    worst = 0
    for seed in (1, 2):
        feeds = _inputs(path, seed)
        # htp's native integers are QNN's unsigned ones: TFLite's signed integers moved by 128 / 32768
        out = sess.run({n: (x.astype(np.int64) + shift).astype(native) for n, x in zip(graph.inputs, feeds)},
                       native_inputs=True, native_outputs=True)
        ours = [out[n].astype(np.int64) - shift for n in graph.outputs]
        theirs = _run_litert(path, feeds, reference=model not in NOT_IN_REF)
        for a, b in zip(ours, theirs):
            assert a.shape == b.shape
            worst = max(worst, int(np.abs(a - b.astype(np.int64)).max()))
    allowed = DIFFERS.get((model, variant), (0, ""))[0]
    assert worst <= allowed, f"{model} {variant}: {worst} codes off LiteRT's reference kernels"


@pytest.mark.parametrize(("model", "variant"), FLOAT, ids=[f"{m}-{v}" for m, v in FLOAT])
def test_float_model_matches_litert(model: str, variant: str) -> None:
    path = FIXTURES / f"{model}_{variant}.tflite"
    graph = convert_tflite(path)
    assert all(t.encoding is None for t in graph.tensors.values())
    feeds = _inputs(path, 3)
    out = openqnn.Session(graph, backend="cpu").run(dict(zip(graph.inputs, feeds)))
    for name, ref in zip(graph.outputs, _run_litert(path, feeds, reference=False)):
        np.testing.assert_allclose(out[name], ref, rtol=1e-3, atol=1e-3 * float(np.abs(ref).max()))


def test_saved_quantized_model_runs_the_same() -> None:
    """The converter's artifacts (_net.json, .bin, _encodings.json) hold TFLite's integers: reloaded, htp
    computes the same bits as on the converted graph."""
    import tempfile

    path = FIXTURES / "conv_int8.tflite"
    graph = convert_tflite(path)
    feeds = {graph.inputs[0]: (_inputs(path, 1)[0].astype(np.int64) + 128).astype(np.uint8)}
    want = openqnn.Session(graph, backend="htp").run(feeds, native_inputs=True, native_outputs=True)
    with tempfile.TemporaryDirectory() as d:
        json_path, _ = openqnn.save(graph, Path(d) / "conv.cpp")
        got = openqnn.Session(json_path, backend="htp").run(feeds, native_inputs=True, native_outputs=True)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
