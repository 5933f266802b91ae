"""Shared test helpers: build ONNX models, run them through openqnn and ONNX Runtime, compare."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

import openqnn


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[tuple[str, int, Sequence[int]]],
    outputs: Sequence[tuple[str, int, Sequence[int] | None]],
    initializers: Sequence[onnx.TensorProto] = (),
    opset: int = 17,
) -> onnx.ModelProto:
    """A one-graph ONNX model; inputs/outputs are (name, TensorProto elem type, shape)."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, None if s is None else list(s)) for n, t, s in outputs],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 9)
    return model


def ort_session(model: onnx.ModelProto | str | os.PathLike[str], *, exact: bool = True, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session. ``exact`` (the default) turns ORT's graph optimizations off, so a QDQ
    model runs unfused (DequantizeLinear, the float op, QuantizeLinear): the oracle for integer results
    on every CPU. Its fused int8 kernels (``exact=False``) saturate u8s8 pair sums in int16 on x86 CPUs
    without VNNI and are then off by many codes; use them only for speed or float checks."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    if exact:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def ort_run(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return ort_session(model, exact=False).run(None, dict(feeds))


def openqnn_run(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], backend: str = "cpu") -> list[np.ndarray]:
    graph = openqnn.convert(model)
    out = openqnn.Session(graph, backend=backend).run(dict(feeds))
    return [out[o.name] for o in model.graph.output]


def assert_matches_ort(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], rtol: float = 1e-4,
                       atol: float = 1e-5) -> list[np.ndarray]:
    """Run ``model`` on openqnn's cpu backend and on ONNX Runtime; outputs must agree in value and dtype."""
    ours = openqnn_run(model, feeds)
    ref = ort_run(model, feeds)
    for o, a, b in zip(model.graph.output, ours, ref):
        assert a.dtype == b.dtype, f"{o.name}: dtype {a.dtype} != ORT's {b.dtype}"
        assert a.shape == b.shape, f"{o.name}: shape {a.shape} != ORT's {b.shape}"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=o.name)
    return ours


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


def encoding_of(t):  # type: ignore[no-untyped-def]
    """A tensor's encoding, asserting it has one."""
    assert t.encoding is not None, t.name
    return t.encoding


def data_of(t) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A static tensor's data, asserting it has some."""
    assert t.data is not None, t.name
    return t.data


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened, in float64."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def padded_token_feed(rng: np.random.Generator, seq: int, vocab: int, pad: int = 0) -> dict[str, np.ndarray]:
    """One text input as tokenizers give it: ids in [3, vocab) for a random length of 4..seq, ``pad`` after
    it, and the attention mask of ones over the real tokens."""
    n = int(rng.integers(4, seq + 1))
    ids = rng.integers(3, vocab, (1, seq))
    ids[0, n:] = pad
    mask = np.zeros((1, seq), np.int64)
    mask[0, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}
