"""htp's rewrite of a MatMul's computed right operand (src/openqnn/backends/htp/rewrite.py): under QNN's
arithmetic the op that computes in[1] (through Reshape / Transpose) writes it as int8 (zero point 128 as an
8-bit code) at its own scale; graph outputs keep the model's encoding. No simulator needed (the simulator's
side: tests/fidelity/test_qnn_matmul.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from openqnn.backends.htp import HtpBackend
from openqnn.backends.htp.config import HtpConfig
from openqnn.backends.htp.rewrite import INT8_WINDOW, INT8_ZERO, int8_right_operands, rewrite_for
from openqnn.backends.htp.spec.qnn_matmul import QnnMatMulSpec
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Encoding, Tensor, TensorKind
from openqnn.ops.build import emit


def _enc(scale: float, zp: int) -> Encoding:
    return Encoding(8, (float(scale),), (-int(zp),))


def _attention_graph(zk: int = 123, expose_k: bool = False, k_from_input: bool = False) -> Graph:
    """q [1, 2, 8, 8] @ kᵀ where k = FullyConnected(x [8, 32]) -> Reshape [1, 8, 2, 8] -> Transpose [1, 2, 8, 8]
    (or, ``k_from_input``, k a graph input [1, 8, 2, 8]); k's encoding (zero point ``zk``) is narrower than
    its values, so it saturates where int8 does not."""
    rng = np.random.default_rng(0)
    g = Graph("attn")
    g.add_tensor(Tensor("q", (1, 2, 8, 8), DType.FLOAT_32, TensorKind.APP_WRITE, encoding=_enc(0.02, 130)))
    g.inputs.append("q")
    if k_from_input:
        g.add_tensor(Tensor("k", (1, 8, 2, 8), DType.FLOAT_32, TensorKind.APP_WRITE, encoding=_enc(0.05, zk)))
        g.inputs.append("k")
        kr = "k"
    else:
        g.add_tensor(Tensor("x", (8, 32), DType.FLOAT_32, TensorKind.APP_WRITE, encoding=_enc(0.03, 128)))
        g.inputs.append("x")
        w = rng.integers(0, 256, (16, 32)).astype(np.uint8)
        g.add_tensor(Tensor("w", (16, 32), DType.UINT_8, TensorKind.STATIC, w,
                            Encoding(8, (0.01,), (-128,), symmetric=True)))
        (k,) = emit(g, "FullyConnected", ["x", "w"], {})
        g.tensors[k].encoding = _enc(0.05, zk)
        (kr,) = emit(g, "Reshape", [k], {"shape": [1, 8, 2, 8]})
        g.tensors[kr].encoding = _enc(0.05, zk)
        if expose_k:
            g.outputs.append(k)
    (kt,) = emit(g, "Transpose", [kr], {"perm": [0, 2, 3, 1]})
    g.tensors[kt].encoding = g.tensors[kr].encoding
    (y,) = emit(g, "MatMul", ["q", kt], {})
    g.tensors[y].encoding = _enc(0.1, 120)
    g.outputs.insert(0, y)
    for o in g.outputs:
        g.tensors[o].kind = TensorKind.APP_READ
    return g


def _run(g: Graph, arch: str, feeds: dict[str, np.ndarray], arithmetic: str = "qnn", path: str = "fast"
         ) -> dict[str, np.ndarray]:
    exe = HtpBackend(HtpConfig(dsp_arch=arch, arithmetic=arithmetic), path=path).prepare(g)
    return {k: np.asarray(v).astype(np.int64) for k, v in exe.run(feeds, native_inputs=True, native_outputs=True).items()}


def _feeds(g: Graph, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.integers(0, 256, g.tensors[n].shape).astype(np.uint8) for n in g.inputs}


def test_rewrite_clones_the_producer_chain_at_zero_point_128() -> None:
    g = _attention_graph()
    r = int8_right_operands(g)
    assert r is not g and g.nodes[-1].inputs[1] == next(n for n in g.nodes if n.op_type == "Transpose").outputs[0]
    mm = next(n for n in r.nodes if n.op_type == "MatMul")
    prod = {o: n for n in r.nodes for o in n.outputs}
    chain, cur = [], mm.inputs[1]
    while cur in prod:
        chain.append(prod[cur].op_type)
        assert r.tensors[cur].encoding.offset == (-INT8_ZERO,)
        assert r.tensors[cur].encoding.scale == (0.05,)
        cur = prod[cur].inputs[0]
    assert chain == ["Transpose", "Reshape", "FullyConnected"]
    # the originals, read by nothing else, are gone; the scale and everything else kept
    assert [n.op_type for n in r.nodes] == ["FullyConnected", "Reshape", "Transpose", "MatMul"]
    assert r.outputs == g.outputs and r.inputs == g.inputs


@pytest.mark.parametrize("zk", [110, 111, 145, 148])
def test_rewrite_leaves_a_zero_point_more_than_16_from_128(zk: int) -> None:
    """QNN writes in[1] as int8 only where the model's zero point is within 128 +- 16 (v68 and v73 probes: 112-144
    int8, 110-111 and 145-148 the model's encoding, the 64-token encoder's layer 0 value at 110)."""
    assert INT8_WINDOW == 16
    g = _attention_graph(zk=zk)
    assert int8_right_operands(g) is g


@pytest.mark.parametrize("zk", [112, 123, 144])
def test_rewrite_takes_a_zero_point_within_16_of_128(zk: int) -> None:
    g = _attention_graph(zk=zk)
    r = int8_right_operands(g)
    mm = next(n for n in r.nodes if n.op_type == "MatMul")
    assert r.tensors[mm.inputs[1]].encoding.offset == (-INT8_ZERO,)


def test_rewrite_keeps_a_graph_output_in_the_models_encoding() -> None:
    g = _attention_graph(expose_k=True)
    r = int8_right_operands(g)
    assert [n.op_type for n in r.nodes].count("FullyConnected") == 2
    k = g.outputs[1]
    assert r.tensors[k].encoding == g.tensors[k].encoding
    feeds = _feeds(g)
    ours = _run(g, "v73", feeds)
    # the exposed k: the model's encoding (the same FullyConnected rule either way on v73 with zk's zero point)
    assert ours[k].min() == 0 and ours[k].max() == 255


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_matmul_reads_the_producers_int8_values(arch: str) -> None:
    """The MatMul's codes are QNN's MatMul spec of the producer's values at zero point 128 (the FullyConnected's
    output written with offset -128), not of the codes of the model's encoding (which saturate at -123 / 132)."""
    g = _attention_graph()
    feeds = _feeds(g)
    y = g.outputs[0]
    got = _run(g, arch, feeds)[y]
    # the producer's int8 values: the same graph with the chain re-encoded, k exposed
    h = g.copy()
    kt = next(n for n in h.nodes if n.op_type == "MatMul").inputs[1]
    for t in [n.outputs[0] for n in h.nodes if n.op_type != "MatMul"]:
        h.tensors[t].encoding = dataclasses.replace(h.tensors[t].encoding, offset=(-INT8_ZERO,))
    h.outputs.append(kt)
    h.tensors[kt].kind = TensorKind.APP_READ
    v = _run(h, arch, feeds, "qnn")[kt] - INT8_ZERO
    spec = QnnMatMulSpec.of(arch, float(np.float32(0.02)) * float(np.float32(0.05)) / float(np.float32(0.1)), 120)
    want = spec.apply_np(feeds["q"].astype(np.int64) - 130, v)
    assert np.array_equal(got, want)
    # the model's codes saturate: reading them instead gives other codes (the test sees the difference)
    sat = np.clip(v + 123, 0, 255) - 123
    assert not np.array_equal(sat, v)
    assert not np.array_equal(spec.apply_np(feeds["q"].astype(np.int64) - 130, sat), got)


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_fast_path_equals_the_reference(arch: str) -> None:
    g = _attention_graph(expose_k=True)
    feeds = _feeds(g, 3)
    fast, ref = _run(g, arch, feeds), _run(g, arch, feeds, path="reference")
    assert fast.keys() == ref.keys()
    for k in fast:
        assert np.array_equal(fast[k], ref[k]), k


def test_rewrite_only_where_established() -> None:
    g = _attention_graph()
    assert rewrite_for(g, "v73", "tflite") is g
    assert rewrite_for(g, "v69", "qnn") is g
    assert rewrite_for(g, "v68", "qnn") is not g
    # a right operand that is a graph input (through data movement) is left to the MatMul's run-time conversion
    gi = _attention_graph(k_from_input=True)
    assert int8_right_operands(gi) is gi
    # one already at zero point 128 needs nothing
    z = _attention_graph(zk=128)
    assert int8_right_operands(z) is z
