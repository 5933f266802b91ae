"""htp integer kernels for pooling, reductions and data movement: the torch fast path equals the numpy
spec bit for bit, the dequantized result stays within about one output step of the float quantization
simulation (openqnn.Session on the cpu backend), and whole graphs give the same bits on both paths."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

import openqnn
from openqnn.backends.htp import HtpBackend
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext, QParams, Unsupported
from openqnn.backends.htp.kernels.reduce import mean_multiplier
from openqnn.backends.htp.kernels.registry import storage_dtype
from openqnn.errors import InvalidModelError
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Encoding, Tensor, TensorKind
from openqnn.ops.build import emit

ARCH = HtpBackend().arch


def _seed(*key: object) -> int:
    return zlib.crc32(repr(key).encode())


# -- building one-node graphs ---------------------------------------------------------------------

def enc(bits: int, scale: float, zp: int) -> Encoding:
    return Encoding(bits, (float(scale),), (-int(zp),))


def rand_enc(rng: np.random.Generator, bits: int, scale: float | None = None) -> Encoding:
    top = (1 << bits) - 1
    if scale is None:
        scale = float(rng.uniform(0.01, 0.1)) / (1 if bits == 8 else 256)
    return enc(bits, scale, int(rng.integers(top // 8, top - top // 8)))


def near(rng: np.random.Generator, e: Encoding, same: bool = False) -> Encoding:
    """``e`` itself, or an encoding of similar range."""
    if same:
        return e
    return rand_enc(rng, e.bitwidth, e.scale[0] * float(rng.uniform(0.6, 1.7)))


class In:
    """A graph input (or, with ``data``, a static tensor)."""

    def __init__(self, shape: Sequence[int], e: Encoding | None, dtype: DType = DType.FLOAT_32,
                 data: np.ndarray | None = None):
        self.shape, self.e, self.dtype, self.data = tuple(shape), e, dtype, data


def one_node(op: str, ins: Sequence[In], attrs: dict[str, Any], out_encs: Sequence[Encoding | None]) -> Graph:
    g = Graph("t")
    names = []
    for i, spec in enumerate(ins):
        name = f"in{i}"
        if spec.data is not None:
            g.add_tensor(Tensor(name, spec.shape, spec.dtype, TensorKind.STATIC, spec.data, spec.e))
        else:
            g.add_tensor(Tensor(name, spec.shape, spec.dtype, TensorKind.APP_WRITE, encoding=spec.e))
            g.inputs.append(name)
        names.append(name)
    outs = emit(g, op, names, attrs)
    for o, e in zip(outs, out_encs):
        g.tensors[o].encoding = e
        g.tensors[o].kind = TensorKind.APP_READ
    g.outputs = list(outs)
    return g


def rand_q(rng: np.random.Generator, shape: Sequence[int], e: Encoding) -> np.ndarray:
    return rng.integers(0, 1 << e.bitwidth, size=tuple(shape), dtype=np.int64)


def feeds_for(g: Graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Integer feeds: q values for quantized inputs, small integers for raw ones."""
    out = {}
    for name in g.inputs:
        t = g.tensors[name]
        if t.encoding is not None:
            out[name] = rand_q(rng, t.shape, t.encoding)
        else:
            out[name] = rng.integers(0, 3, size=t.shape).astype(t.dtype.numpy)  # valid indices everywhere
    return out


def dequant(q: np.ndarray, e: Encoding) -> np.ndarray:
    return (q.astype(np.float64) + e.offset[0]) * e.scale[0]


# -- checking -------------------------------------------------------------------------------------

def run_step(g: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The node's htp step on both paths; asserts identical bits and storage dtypes, returns the spec's."""
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCH))
    ref_in = [feeds[x] for x in step.inputs]
    fast_in = []
    for x in step.inputs:
        e = g.tensors[x].encoding
        t = torch.from_numpy(np.ascontiguousarray(feeds[x]))
        fast_in.append(t.to(storage_dtype(e.bitwidth)) if e is not None else t)
    ref, fast = step.reference(*ref_in), step.fast(*fast_in)
    refs = list(ref) if isinstance(ref, tuple) else [ref]
    fasts = list(fast) if isinstance(fast, tuple) else [fast]
    assert len(refs) == len(fasts) == len(node.outputs)
    for name, r, f in zip(node.outputs, refs, fasts):
        out = g.tensors[name]
        assert tuple(np.shape(r)) == out.shape == tuple(f.shape), name
        if out.encoding is not None:
            assert f.dtype == storage_dtype(out.encoding.bitwidth), (name, f.dtype)
            assert np.asarray(r).dtype == np.int64
            r_arr = np.asarray(r)
            assert r_arr.min(initial=0) >= 0 and r_arr.max(initial=0) < (1 << out.encoding.bitwidth)
        np.testing.assert_array_equal(np.asarray(r).astype(np.int64), f.numpy().astype(np.int64), err_msg=name)
    return [np.asarray(r) for r in refs]


def check(g: Graph, rng: np.random.Generator, tol_steps: float = 1.0, feeds: dict[str, np.ndarray] | None = None
          ) -> list[np.ndarray]:
    """fast == reference; dequantized result within ``tol_steps`` output steps of the float simulation."""
    feeds = feeds if feeds is not None else feeds_for(g, rng)
    outs = run_step(g, feeds)
    floats = {}
    for n, v in feeds.items():
        ne = g.tensors[n].encoding
        floats[n] = dequant(v, ne).astype(np.float32) if ne is not None else v
    sim = openqnn.Session(g).run(floats)
    for name, q in zip(g.outputs, outs):
        e = g.tensors[name].encoding
        if e is None:
            np.testing.assert_array_equal(q, sim[name], err_msg=name)
            continue
        ref = sim[name].astype(np.float64)
        err = np.abs(dequant(q, e) - ref) - 4e-7 * np.abs(ref)  # the simulation computes in float32
        limit = tol_steps * e.scale[0] * (1 + 1e-4)
        assert err.max(initial=0) <= limit, f"{name}: off by {err.max() / e.scale[0]:.3f} steps"
    return outs


def pool_attrs(rng: np.random.Generator, n: int) -> dict[str, Any]:
    k = [int(rng.integers(1, 4)) for _ in range(n)]
    d = [int(rng.integers(1, 3)) if rng.random() < 0.3 else 1 for _ in range(n)]
    return {
        "filter_size": k,
        "stride": [int(rng.integers(1, 4)) for _ in range(n)],
        "dilation": d,
        "pad_amount": [[int(rng.integers(0, kk)), int(rng.integers(0, kk))] for kk in k],
        "rounding_mode": int(rng.integers(0, 2)),
    }


# -- pooling --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("op", ["PoolMax2d", "PoolAvg2d"])
def test_pool2d(op: str, bits: int) -> None:
    rng = np.random.default_rng(_seed(op, bits))
    done = 0
    while done < 12:
        attrs = pool_attrs(rng, 2)
        if op == "PoolAvg2d":
            attrs["count_pad_for_edges"] = bool(rng.integers(0, 2))
        e = rand_enc(rng, bits)
        shape = (int(rng.integers(1, 3)), int(rng.integers(3, 10)), int(rng.integers(3, 10)), int(rng.integers(1, 5)))
        try:
            g = one_node(op, [In(shape, e)], attrs, [near(rng, e, same=done % 2 == 0)])
        except InvalidModelError:
            continue
        check(g, rng)
        done += 1


@pytest.mark.parametrize("op", ["PoolMax3d", "PoolAvg3d"])
def test_pool3d(op: str) -> None:
    rng = np.random.default_rng(3)
    done = 0
    while done < 4:
        attrs = pool_attrs(rng, 3)
        if op == "PoolAvg3d":
            attrs["count_pad_for_edges"] = bool(rng.integers(0, 2))
        bits = 8 if done % 2 else 16
        e = rand_enc(rng, bits)
        try:
            g = one_node(op, [In((1, 4, 5, 6, 3), e)], attrs, [near(rng, e, same=done < 2)])
        except InvalidModelError:
            continue
        check(g, rng)
        done += 1


def test_avg_pool_rounds_half_away_in_the_signed_domain() -> None:
    """TFLite's int8 AveragePool: (sum + n/2) / n on raw int8 values, mirrored below zero."""
    e = enc(8, 0.05, 130)  # int8 zero point 2
    g = one_node("PoolAvg2d", [In((1, 1, 2, 1), e)], {"filter_size": [1, 2], "stride": [1, 2]}, [e])
    for a, b in [(120, 121), (129, 130), (200, 201), (0, 3)]:
        (q,) = run_step(g, {"in0": np.array([a, b]).reshape(1, 1, 2, 1)})
        s8 = (a - 128) + (b - 128)
        want = (s8 + 1) // 2 if s8 > 0 else -((-s8 + 1) // 2)
        assert int(q.item()) == want + 128


def test_max_pool_never_picks_padding() -> None:
    e = enc(8, 0.1, 255)  # real 0 is the top of the range: every value is negative
    g = one_node("PoolMax2d", [In((1, 3, 3, 1), e)], {"filter_size": [3, 3], "pad_amount": [[1, 1], [1, 1]]}, [e])
    q = np.arange(9).reshape(1, 3, 3, 1)
    (out,) = run_step(g, {"in0": q})
    assert out.reshape(-1).tolist() == [4, 5, 5, 7, 8, 8, 7, 8, 8]


# -- reductions -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"])
def test_reduce(op: str, bits: int) -> None:
    rng = np.random.default_rng(_seed(op, bits))
    for i in range(8):
        rank = int(rng.integers(1, 5))
        shape = tuple(int(rng.integers(1, 7)) for _ in range(rank))
        axes = [a for a in range(rank) if rng.random() < 0.5] or [rank - 1]
        if i == 0 and rank == 4:
            axes = [1, 2]
        count = int(np.prod([shape[a] for a in axes]))
        e = rand_enc(rng, bits)
        if op == "ReduceSum":
            out = rand_enc(rng, bits, e.scale[0] * np.sqrt(count) * float(rng.uniform(0.7, 1.5)))
        else:
            out = near(rng, e, same=op in ("ReduceMax", "ReduceMin") and i % 2 == 0)
        g = one_node(op, [In(shape, e)], {"axes": axes, "keep_dims": bool(rng.integers(0, 2))}, [out])
        check(g, rng)


@pytest.mark.parametrize("bits", [8, 16])
def test_global_average_pool(bits: int) -> None:
    rng = np.random.default_rng(bits)
    e = rand_enc(rng, bits)
    g = one_node("ReduceMean", [In((2, 14, 14, 8), e)], {"axes": [1, 2], "keep_dims": True}, [near(rng, e)])
    check(g, rng)


def test_mean_multiplier_is_tflites_fold() -> None:
    # TFLite folds 1/n into the multiplier: (M0 << floor(log2 n)) / n, shift reduced by the same amount
    assert mean_multiplier(1.0, 4) == ((1 << 30 << 2) // 4, 1 - 2)
    m, s = mean_multiplier(0.3, 49)
    assert abs(m * 2.0 ** (s - 31) - 0.3 / 49) < 1e-9
    assert 1 << 29 <= m < 1 << 31


# -- data movement --------------------------------------------------------------------------------

def _movement_cases(rng: np.random.Generator, bits: int) -> list[tuple[str, list[In], dict[str, Any], int]]:
    """(op, inputs, attrs, number of outputs)."""
    e = rand_enc(rng, bits)
    x4 = In((2, 4, 6, 8), e)
    return [
        ("Reshape", [x4], {"shape": [8, 48]}, 1),
        ("Transpose", [x4], {"perm": [0, 3, 1, 2]}, 1),
        ("Tile", [In((2, 3, 4), e)], {"multiples": [1, 2, 3]}, 1),
        ("StridedSlice", [In((3, 5, 6), e)], {"ranges": [[0, 3, 2], [4, -1, -2], [1, 6, 2]]}, 1),
        ("StridedSlice", [In((3, 5, 6), e)], {"ranges": [[2, 0, -1], [0, 5, 1], [5, 1, -3]]}, 1),
        ("Split", [In((2, 7, 3), e)], {"axis": 1, "split_index": [2, 3]}, 3),
        ("DepthToSpace", [x4], {"block_size": [2, 2], "mode": 0}, 1),
        ("DepthToSpace", [x4], {"block_size": [2, 2], "mode": 1}, 1),
        ("SpaceToDepth", [x4], {"block_size": [2, 3], "mode": 0}, 1),
        ("Pad", [In((2, 4, 5), e)], {"pad_amount": [[0, 1], [2, 1], [3, 0]], "pad_constant_value": 0.37}, 1),
        ("Pad", [In((2, 4, 5), e)], {"pad_amount": [[0, 0], [3, 2], [1, 4]], "scheme": 1}, 1),
        ("Pad", [In((2, 4, 5), e)], {"pad_amount": [[1, 0], [3, 2], [1, 4]], "scheme": 2}, 1),
        ("Pad", [In((2, 4, 5), e)], {"pad_amount": [[0, 0], [2, 2], [1, 3]], "scheme": 3}, 1),
        ("Gather", [In((5, 6), e), In((2, 3), None, DType.INT_64, np.array([[0, 4, 2], [1, 1, 3]]))], {"axis": 0}, 1),
        ("Gather", [In((3, 5, 4), e), In((4,), None, DType.INT_32)], {"axis": 1}, 1),
        ("Gather", [In((10, 6), e, data=rng.standard_normal((10, 6)).astype(np.float32)), In((2, 3), None, DType.INT_64)],
         {"axis": 0}, 1),
        ("GatherElements", [In((3, 4), e), In((3, 4), None, DType.INT_64, rng.integers(0, 3, (3, 4)))], {"axis": 0}, 1),
        ("GatherElements", [In((3, 4), e), In((3, 2), None, DType.INT_64)], {"axis": 1}, 1),
        ("GatherNd", [In((4, 5, 6), e), In((3, 2), None, DType.INT_64, np.array([[1, -1], [3, 0], [0, 2]]))], {}, 1),
        ("GatherNd", [In((2, 5, 6), e), In((2, 4, 1), None, DType.INT_64)], {"batch_dims": 1}, 1),
        ("GatherNd", [In((3, 4), e), In((2, 2), None, DType.INT_32)], {}, 1),
    ]


@pytest.mark.parametrize("bits", [8, 16])
def test_movement_shared_encoding(bits: int) -> None:
    """Shared encodings: the integers move unchanged; results equal the simulation exactly."""
    rng = np.random.default_rng(bits)
    for op, ins, attrs, nout in _movement_cases(rng, bits):
        e = ins[0].e
        g = one_node(op, ins, attrs, [e] * nout)
        check(g, rng, tol_steps=0.0)


@pytest.mark.parametrize("bits", [8, 16])
def test_movement_requantizes(bits: int) -> None:
    """An output encoding that differs from the input's: the moved integers are requantized."""
    rng = np.random.default_rng(100 + bits)
    for op, ins, attrs, nout in _movement_cases(rng, bits):
        assert ins[0].e is not None
        g = one_node(op, ins, attrs, [near(rng, ins[0].e) for _ in range(nout)])
        check(g, rng)


@pytest.mark.parametrize("bits", [8, 16])
def test_concat_requantizes_each_input(bits: int) -> None:
    rng = np.random.default_rng(7 + bits)
    e0, e1 = rand_enc(rng, bits), rand_enc(rng, bits)
    out = rand_enc(rng, bits, max(e0.scale[0], e1.scale[0]) * 1.2)
    w = rng.standard_normal((2, 3, 4)).astype(np.float32)
    scales = tuple(float(v) for v in np.abs(w).max(axis=(0, 2)) / 120)
    static = Encoding(8, scales, (-128,) * 3, axis=1, symmetric=True)  # a per-axis static operand
    ins = [In((2, 3, 5), e0), In((2, 3, 4), static, data=w), In((2, 3, 2), e1), In((2, 3, 1), out)]
    g = one_node("Concat", ins, {"axis": -1}, [out])
    check(g, rng)


def test_identity_requantization_is_exact() -> None:
    """Equal scales with different zero points shift the integers exactly."""
    e, o = enc(8, 0.05, 100), enc(8, 0.05, 90)
    g = one_node("Reshape", [In((4, 8), e)], {"shape": [32]}, [o])
    q = np.arange(256).reshape(8, 32)[:4, :8].copy()
    (out,) = run_step(g, {"in0": q})
    np.testing.assert_array_equal(out, np.clip(q.reshape(-1) - 10, 0, 255))


def test_raw_integer_tensors_move_untouched() -> None:
    rng = np.random.default_rng(0)
    ids = In((2, 6), None, DType.INT_64)
    check(one_node("Reshape", [ids], {"shape": [3, 4]}, [None]), rng)
    check(one_node("Transpose", [ids], {"perm": [1, 0]}, [None]), rng)
    check(one_node("Gather", [ids, In((3,), None, DType.INT_64, np.array([5, 0, 2]))], {"axis": 1}, [None]), rng)
    check(one_node("Concat", [ids, In((2, 1), None, DType.INT_64, np.array([[7], [8]]))], {"axis": 1}, [None]), rng)
    check(one_node("Cast", [ids], {"dtype": DType.INT_32}, [None]), rng)
    e = enc(8, 0.1, 3)
    check(one_node("Cast", [In((3, 4), e)], {"dtype": DType.FLOAT_16}, [enc(8, 0.12, 10)]), rng)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("interp, mode, nearest_mode, antialias", [
    ("nearest", "asymmetric", "floor", False),
    ("nearest", "half_pixel", "round_prefer_floor", False),
    ("linear", "half_pixel", "round_prefer_floor", False),
    ("linear", "align_corners", "round_prefer_floor", False),
    ("linear", "pytorch_half_pixel", "round_prefer_floor", True),
    ("cubic", "half_pixel", "round_prefer_floor", False),
])
def test_resize(interp: str, mode: str, nearest_mode: str, antialias: bool, bits: int) -> None:
    rng = np.random.default_rng(_seed(interp, mode, bits))
    for out_hw in [(11, 7), (3, 4), (10, 10)]:
        e = rand_enc(rng, bits)
        attrs = {"output_shape": [2, *out_hw, 3], "interpolation_mode": interp, "transformation_mode": mode,
                 "nearest_mode": nearest_mode, "antialias": antialias}
        g = one_node("Resize", [In((2, 5, 6, 3), e)], attrs, [near(rng, e, same=interp == "nearest")])
        check(g, rng, tol_steps=0.0 if interp == "nearest" else 1.0)


def test_resize_linear_keeps_constants_exact() -> None:
    e = enc(16, 1e-3, 30000)
    attrs = {"output_shape": [1, 9, 13, 1], "interpolation_mode": "linear", "transformation_mode": "half_pixel"}
    g = one_node("Resize", [In((1, 4, 5, 1), e)], attrs, [e])
    (out,) = run_step(g, {"in0": np.full((1, 4, 5, 1), 12345)})
    assert (out == 12345).all()


# -- what falls back -------------------------------------------------------------------------------

def _unsupported(g: Graph) -> str:
    node = g.nodes[0]
    with pytest.raises(Unsupported) as info:
        HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCH))
    return str(info.value)


def test_unsupported() -> None:
    e = enc(8, 0.1, 3)
    assert "no encoding" in _unsupported(one_node("Reshape", [In((2, 3), None)], {"shape": [6]}, [None]))
    assert "no encoding" in _unsupported(one_node("Transpose", [In((2, 3), e)], {"perm": [1, 0]}, [None]))
    # integer <-> quantized float runs on htp (test_logical.py); to a float without an encoding does not
    assert "no encoding" in _unsupported(
        one_node("Cast", [In((2, 3), None, DType.INT_32)], {"dtype": DType.FLOAT_32}, [None]))
    assert "unquantized" in _unsupported(one_node("ReduceMean", [In((2, 3), None, DType.INT_32)], {"axes": [1]}, [None]))
    assert "linear" in _unsupported(one_node(
        "Resize", [In((1, 2, 2, 1), None, DType.INT_32)],
        {"output_shape": [1, 4, 4, 1], "interpolation_mode": "linear"}, [None]))
    per_axis = Encoding(8, (0.1, 0.2), (0, 0), axis=1)
    assert "per-axis" in _unsupported(one_node("PoolMax2d", [In((1, 2, 2, 2), per_axis)], {"filter_size": [2, 2]},
                                               [per_axis]))
    assert QParams.of(e).zero_point[0] == 3


# -- whole graphs through the backend -------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 16])
def test_backend_fast_equals_reference(bits: int) -> None:
    rng = np.random.default_rng(50 + bits)
    e = rand_enc(rng, bits)
    g = Graph("chain")
    g.add_tensor(Tensor("x", (1, 8, 10, 4), DType.FLOAT_32, TensorKind.APP_WRITE, encoding=e))
    g.inputs = ["x"]
    (t,) = emit(g, "Transpose", ["x"], {"perm": [0, 2, 1, 3]})
    (p,) = emit(g, "PoolAvg2d", [t], {"filter_size": [3, 3], "stride": [2, 2], "pad_amount": [[1, 1], [1, 1]]})
    (m,) = emit(g, "PoolMax2d", [t], {"filter_size": [2, 2], "stride": [2, 2], "rounding_mode": 1})
    (pd,) = emit(g, "Pad", [m], {"pad_amount": [[0, 0], [0, 0], [0, 0], [0, 1]]})
    (c,) = emit(g, "Concat", [p, pd], {"axis": 3})
    (r,) = emit(g, "Resize", [c], {"output_shape": [1, 10, 8, 9], "interpolation_mode": "linear"})
    (s,) = emit(g, "ReduceMean", [r], {"axes": [1, 2], "keep_dims": True})
    (y,) = emit(g, "Reshape", [s], {"shape": [1, 9]})
    g.tensors[t].encoding = e
    g.tensors[m].encoding = e
    g.tensors[pd].encoding = e
    for name in (p, c, r, s):
        g.tensors[name].encoding = near(rng, e)
    g.tensors[y].encoding = g.tensors[s].encoding
    g.tensors[y].kind = TensorKind.APP_READ
    g.outputs = [y]
    x = dequant(rand_q(rng, (1, 8, 10, 4), e), e).astype(np.float32)
    fast: Any = HtpBackend().prepare(g)
    ref: Any = HtpBackend(path="reference").prepare(g)
    assert not fast.exe.fallbacks
    a = fast.run({"x": x}, native_outputs=True)[y]
    b = ref.run({"x": x}, native_outputs=True)[y]
    np.testing.assert_array_equal(a, b)
    sim = openqnn.Session(g).run({"x": x})[y]
    out_e = g.tensors[y].encoding
    assert out_e is not None
    assert np.abs(dequant(a.astype(np.int64), out_e) - sim).max() <= 3 * out_e.scale[0]


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("hw", [(7, 7), (14, 14), (3, 100)])
def test_qnn_mean_over_h_and_w_by_table(arch: str, hw: tuple[int, int], requant_impl: str) -> None:
    """QNN's ReduceMean over axes 1 and 2 of uint8 codes reads its codes from a table of every possible sum on
    the fast path where the sums are taken in C (count * 255 < 2^16; 3x100 = 300 taps does not): the same bits
    as the spec, extremes included."""
    from openqnn.backends.htp.arch import ARCHS

    rng = np.random.default_rng(_seed("qnn_mean", arch, *hw))
    e = rand_enc(rng, 8)
    g = one_node("ReduceMean", [In((2, *hw, 40), e)], {"axes": [1, 2], "keep_dims": True}, [near(rng, e)])
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic="qnn"))
    assert step.plan is not None and step.plan.attrs.get("qnn") is not None
    q = rng.integers(0, 256, size=(2, *hw, 40), dtype=np.int64)
    q[0, ..., 0], q[1, ..., 1] = 0, 255
    ref = np.asarray(step.reference(q))
    fast = step.fast(torch.from_numpy(q.astype(np.uint8)))
    assert fast.dtype == torch.uint8 and tuple(fast.shape) == ref.shape
    np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
    assert (step.fast.__name__ == "fast_table") == (requant_impl == "native" and hw[0] * hw[1] * 255 < 1 << 16)
