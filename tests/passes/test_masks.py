"""Attention masks as exporters write them: -inf, torch.finfo(float32).min or -1e9 on the way to a Softmax.

The convert pipeline makes them -1e4 (finite_attention_masks); the float model still matches ONNX Runtime,
quantization calibrates (it used to fail: "cannot set a range from an array without finite values"), the
quantized model keeps the mask (padded keys get no attention) and every node runs on htp.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import assert_matches_ort, make_model
from openqnn.passes.masks import MASK_VALUE

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
H, S, D = 2, 8, 16  # heads, keys, head dim
FINFO_MIN = float(np.finfo(np.float32).min)


def _c(name: str, value, dtype=np.float32):  # type: ignore[no-untyped-def]
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _attention(bias_nodes: list, inits: list, extra_out: bool = False):  # type: ignore[no-untyped-def]
    """scores [1, H, S, S] + mask bias ("bias", from int64 mask [1, S]) -> Softmax -> probs @ v."""
    nodes = [*bias_nodes,
             helper.make_node("Add", ["scores", "bias"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["y"])]
    return make_model(nodes, [("scores", F, [1, H, S, S]), ("mask", I64, [1, S])], [("y", F, [1, H, S, D])],
                      [*inits, _c("v", np.random.default_rng(3).standard_normal((1, H, S, D)))])


def _where_inf():  # type: ignore[no-untyped-def]
    """transformers >= 4.4x (sdpa masks): Where(mask, 0, -inf)."""
    return _attention([helper.make_node("Cast", ["mask"], ["keep"], to=B),
                       helper.make_node("Unsqueeze", ["keep", "axes"], ["keep4"]),
                       helper.make_node("Where", ["keep4", "zero", "neg"], ["bias"])],
                      [_c("axes", [1, 2], np.int64), _c("zero", [0.0]), _c("neg", [-np.inf])])


def _finfo_min():  # type: ignore[no-untyped-def]
    """Older BERT exports: (1 - mask) * finfo(float32).min."""
    return _attention([helper.make_node("Cast", ["mask"], ["m"], to=F),
                       helper.make_node("Unsqueeze", ["m", "axes"], ["m4"]),
                       helper.make_node("Sub", ["one", "m4"], ["inv"]),
                       helper.make_node("Mul", ["inv", "fmin"], ["bias"])],
                      [_c("axes", [1, 2], np.int64), _c("one", 1.0), _c("fmin", FINFO_MIN)])


def _masked_fill():  # type: ignore[no-untyped-def]
    """scores.masked_fill(mask == 0, -1e9) written as Where on the scores themselves."""
    nodes = [helper.make_node("Equal", ["mask", "zero_i"], ["pad"]),
             helper.make_node("Unsqueeze", ["pad", "axes"], ["pad4"]),
             helper.make_node("Where", ["pad4", "big", "scores"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["y"])]
    return make_model(nodes, [("scores", F, [1, H, S, S]), ("mask", I64, [1, S])], [("y", F, [1, H, S, D])],
                      [_c("zero_i", 0, np.int64), _c("axes", [1, 2], np.int64), _c("big", -1e9),
                       _c("v", np.random.default_rng(3).standard_normal((1, H, S, D)))])


BUILDERS = {"where_inf": _where_inf, "finfo_min": _finfo_min, "masked_fill": _masked_fill}


def _feeds(seed: int, n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(2, S + 1))
        mask = np.zeros((1, S), np.int64)
        mask[0, :k] = 1
        out.append({"scores": (3 * rng.standard_normal((1, H, S, S))).astype(np.float32), "mask": mask})
    return out


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_mask_constants_become_finite_and_values_match_ort(kind: str) -> None:
    model = BUILDERS[kind]()
    graph = openqnn.convert(model)
    statics = [t for t in graph.static_tensors() if t.dtype.is_float and t.data is not None]
    assert all(np.all(np.isfinite(t.data)) and np.abs(t.data).max() <= MASK_VALUE for t in statics)
    assert any(np.any(t.data == -MASK_VALUE) for t in statics)
    for f in _feeds(1, 3):  # every row keeps at least two keys: exp(-1e4) and exp(-inf) are both 0
        assert_matches_ort(model, f)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("kind", list(BUILDERS))
def test_masked_attention_quantizes_and_runs_on_htp(kind: str, bits: int) -> None:
    graph = openqnn.convert(BUILDERS[kind]())
    q = openqnn.quantize(graph, _feeds(1, 8), openqnn.QuantizerConfig(act_bitwidth=bits))
    test = _feeds(2, 8)
    for backend in ("cpu", "htp"):
        sess = openqnn.Session(q, backend=backend)
        if backend == "htp":
            assert sess.fallbacks == [], [(f.node, f.reason) for f in sess.fallbacks]
        for f in test:
            ref = openqnn.Session(graph).run(f)["y"]
            got = sess.run(f)["y"]
            a, b = got.ravel().astype(np.float64), ref.ravel().astype(np.float64)
            cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            assert cos > (0.999 if bits == 16 else 0.98), (backend, cos)


def test_probabilities_of_padded_keys_stay_zero_on_htp() -> None:
    graph = openqnn.convert(_where_inf())
    probe = graph.copy()
    probe.outputs = [*probe.outputs, next(n.outputs[0] for n in probe.nodes if n.op_type == "Softmax")]
    q = openqnn.quantize(probe, _feeds(1, 8), openqnn.QuantizerConfig(act_bitwidth=8))
    p_name = probe.outputs[-1]
    for f in _feeds(2, 4):
        p = openqnn.Session(q, backend="htp").run(f)[p_name]
        pad = ~f["mask"][0].astype(bool)
        assert np.all(p[..., pad] == 0.0)


def test_non_finite_constant_off_the_softmax_path_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    """-inf added to an activation that no Softmax reads is not a mask: the pass keeps it; quantization
    warns, naming the constant, instead of failing."""
    nodes = [helper.make_node("Max", ["x", "floor"], ["y"])]
    model = make_model(nodes, [("x", F, [1, 4])], [("y", F, [1, 4])], [_c("floor", [-np.inf, 0.0, 1.0, -2.0])])
    graph = openqnn.convert(model)
    floor = next(t for t in graph.static_tensors() if t.dtype.is_float)
    assert floor.data is not None and np.isneginf(floor.data[0])
    with caplog.at_level(logging.WARNING, logger="openqnn"):
        q = openqnn.quantize(graph, [{"x": np.array([[-3.0, 0.5, 2.0, -1.0]], np.float32)}])
    assert any(floor.name in r.getMessage() and "non-finite" in r.getMessage() for r in caplog.records)
    out = openqnn.Session(q).run({"x": np.array([[-3.0, 0.5, 2.0, -1.0]], np.float32)})["y"]
    assert np.all(np.isfinite(out))


def test_mask_values_seen_elsewhere_stay_as_they_are() -> None:
    """Only a mask whose values reach nothing but a Softmax input becomes finite: a graph output on the
    way (ONNX's attention tests expose the masked scores) or another consumer (an Equal against the
    minimum) would see the change."""
    as_output = _finfo_min()
    as_output.graph.output.append(helper.make_tensor_value_info("bias", F, [1, 1, 1, S]))
    compared = _finfo_min()
    compared.graph.node.append(helper.make_node("Equal", ["bias", "fmin"], ["is_min"]))
    compared.graph.output.append(helper.make_tensor_value_info("is_min", B, [1, 1, 1, S]))
    for model in (as_output, compared):
        graph = openqnn.convert(model)
        assert graph.tensors["fmin"].data.min() == FINFO_MIN
        assert_matches_ort(model, _feeds(0, 1)[0])
