"""Regressions found by sweeping exported transformers (see tests/models/test_more_exports.py).

- PyTorch's dynamo exporter shares initializers with equal values: every all-zero bias of a freshly
  initialised MobileBERT became one tensor, used as the bias of several FullyConnected nodes (per-channel,
  scale s_in x s_w) and as an ElementWiseAdd operand (per-tensor), so the Add fell back to cpu on htp and
  the other FullyConnected nodes got a bias scale made for another input.
- DeBERTa masks the padded queries' rows of the attention scores as well as the padded keys: a fully
  masked row's maximum is the mask value (-1e4) and dragged the Softmax input's range down to it (W8A8
  min cosine 0.83).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import cosine, make_model

F = TensorProto.FLOAT


def _shared_bias_model():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((2, 8, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    three = np.array(3.0, np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b"], ["h1"]),
             helper.make_node("Mul", ["h1", "three"], ["h1s"]),
             helper.make_node("MatMul", ["h1s", "w2"], ["m2"]), helper.make_node("Add", ["m2", "b"], ["h2"]),
             helper.make_node("Add", ["h2", "b"], ["y"])]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (b, "b"), (three, "three"))]
    return make_model(nodes, [("x", F, [4, 8])], [("y", F, [4, 8])], inits)


def test_initializer_shared_by_biases_and_an_add_is_untied() -> None:
    graph = openqnn.convert(_shared_bias_model())
    assert graph.count_ops().get("FullyConnected") == 2
    rng = np.random.default_rng(1)
    cal = [{"x": rng.standard_normal((4, 8)).astype(np.float32)} for _ in range(8)]
    test = [{"x": rng.standard_normal((4, 8)).astype(np.float32)} for _ in range(4)]
    ref = [openqnn.Session(graph).run(f)["y"] for f in test]
    for bits in (8, 16):
        q = openqnn.quantize(graph, cal, openqnn.QuantizerConfig(
            act_bitwidth=bits, use_per_channel_quantization=True, use_per_row_quantization=True))
        biases = set()
        for node in q.nodes:
            if node.op_type == "FullyConnected":
                x, w, b = (q.tensors[n] for n in node.inputs)
                assert x.encoding and w.encoding and b.encoding
                np.testing.assert_allclose(b.encoding.scale, np.array(w.encoding.scale) * x.encoding.scale[0],
                                           rtol=1e-9)
                biases.add(b.name)
            if node.op_type == "ElementWiseAdd":
                enc = q.tensors[node.inputs[1]].encoding
                assert enc is not None and enc.axis is None
        assert len(biases) == 2  # one copy per FullyConnected (their inputs differ)
        sess = openqnn.Session(q, backend="htp")
        assert sess.fallbacks == [], [(f.node, f.reason) for f in sess.fallbacks]
        target = 0.995 if bits == 16 else 0.99
        for f, r in zip(test, ref):
            assert cosine(sess.run(f)["y"], r) > target
    assert graph.count_ops().get("FullyConnected") == 2 and "b_1" not in graph.tensors  # the input is untouched


def _masked_softmax_model():  # type: ignore[no-untyped-def]
    nodes = [helper.make_node("Where", ["keep", "s", "neg"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["p"], axis=-1)]
    neg = numpy_helper.from_array(np.array(-1e4, np.float32), "neg")
    return make_model(nodes, [("s", F, [1, 2, 8, 8]), ("keep", TensorProto.BOOL, [1, 1, 8, 8])],
                      [("p", F, [1, 2, 8, 8])], [neg])


def _masked_feeds(rng: np.random.Generator, n: int) -> list[dict[str, np.ndarray]]:
    out = []
    for _ in range(n):
        length = int(rng.integers(2, 8))
        valid = np.arange(8) < length
        keep = (valid[:, None] & valid[None, :])[None, None]  # padded queries' rows fully masked
        out.append({"s": (3 * rng.standard_normal((1, 2, 8, 8))).astype(np.float32), "keep": keep})
    return out


def test_fully_masked_softmax_rows_set_no_range_floor() -> None:
    graph = openqnn.convert(_masked_softmax_model())
    rng = np.random.default_rng(0)
    cal, test = _masked_feeds(rng, 8), _masked_feeds(rng, 4)
    q = openqnn.quantize(graph, cal, openqnn.QuantizerConfig(act_bitwidth=8))
    enc = q.tensors["masked"].encoding
    assert enc is not None
    lo = enc.scale[0] * (enc.int_range[0] + enc.offset[0])
    assert -100 < lo < -20, lo  # [lowest unmasked row max - 25, max], not down to the mask's -1e4
    ref = openqnn.Session(graph)
    for backend in ("cpu", "htp"):
        sess = openqnn.Session(q, backend=backend)
        for f in test:
            assert cosine(sess.run(f)["p"], ref.run(f)["p"]) > 0.99



def test_an_override_of_a_shared_initializer_applies_to_every_use(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """quantize gives the shared bias one copy per kind of use; an override naming it holds for every copy,
    as the model has one tensor."""
    import json

    from openqnn.quantization.encodings import read_encodings

    graph = openqnn.convert(_shared_bias_model())
    scale = float(np.abs(graph.tensors["b"].data).max()) / 60  # clips nothing; not what calibration picks
    (tmp_path / "o.json").write_text(json.dumps({"version": "1.0.0", "activation_encodings": [], "param_encodings": [
        {"name": "b", "bw": 8, "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": True, "offset": [-128],
         "scale": [scale]}]}))
    rng = np.random.default_rng(1)
    cal = [{"x": rng.standard_normal((4, 8)).astype(np.float32)} for _ in range(4)]
    q = openqnn.quantize(graph, cal, overrides=read_encodings(tmp_path / "o.json"))
    uses = {x for node in q.nodes for x in node.inputs if x == "b" or x.startswith("b_")}
    assert len(uses) == 3, uses  # two FullyConnected biases and an Add operand
    for name in uses:
        enc = q.tensors[name].encoding
        assert enc is not None and enc.bitwidth == 8 and np.allclose(enc.scale, scale), (name, enc)


def test_an_override_reaches_the_converters_copy_of_a_tied_weight(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Tied embeddings: one table gathered by token id and used as the output projection's weight. The
    converter keeps the table for the Gather and adds the FullyConnected weight as a new tensor; an override
    naming the model's initializer reaches both (per-tensor), or warns for a transposed copy (per-channel)."""
    import json

    from openqnn.quantization.encodings import read_encodings

    rng = np.random.default_rng(2)
    emb = (0.5 * rng.standard_normal((16, 8))).astype(np.float32)
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["h"]),
             helper.make_node("Gemm", ["h", "emb"], ["logits"], transB=1)]
    graph = openqnn.convert(make_model(nodes, [("ids", TensorProto.INT64, [4])], [("logits", F, [4, 16])],
                                       [numpy_helper.from_array(emb, "emb")]))
    scale = float(np.abs(emb).max()) / 100  # clips nothing; not what min-max calibration would choose
    (tmp_path / "o.json").write_text(json.dumps({"version": "1.0.0", "activation_encodings": [], "param_encodings": [
        {"name": "emb", "bw": 8, "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": True, "offset": [-128],
         "scale": [scale]}]}))
    cal = [{"ids": rng.integers(0, 16, 4)} for _ in range(4)]
    q = openqnn.quantize(graph, cal, overrides=read_encodings(tmp_path / "o.json"))
    uses = {x for node in q.nodes for x in node.inputs if x.startswith("emb")}
    assert len(uses) == 2, uses  # the Gather's table and the FullyConnected's weight
    for name in uses:
        enc = q.tensors[name].encoding
        assert enc is not None and np.allclose(enc.scale, scale), (name, enc)
