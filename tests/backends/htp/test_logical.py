"""htp kernels of logical.py (Select, And/Or/Xor/Not, comparisons, IsNan/IsInf, integer arithmetic),
CumulativeSum and Cast between integers and quantized floats: fast path == reference (bit for bit), and
the reference against numpy on the dequantized / raw values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext
from openqnn.ir import DType, Graph, Tensor, TensorKind
from openqnn.ir.tensor import Encoding
from openqnn.ops.build import emit
from openqnn.quantization.encodings import math as qmath

ARCH = ARCHS["v73"]


def _enc(lo: float, hi: float, bw: int) -> Encoding:
    s, o = qmath.asymmetric(lo, hi, bw)
    return Encoding(bw, (float(s),), (int(o),))


def _graph(op: str, ins: list[tuple[str, tuple[int, ...], DType, Encoding | None, np.ndarray | None]],
           out_enc: Encoding | None = None, attrs: dict | None = None) -> Graph:
    g = Graph("g")
    for name, shape, dt, enc, data in ins:
        if data is None:
            t = g.add_tensor(Tensor(name, shape, dt, TensorKind.APP_WRITE))
            g.inputs.append(name)
        else:
            t = g.add_constant(name, np.asarray(data, dtype=dt.numpy))
        t.encoding = enc
    (out,) = emit(g, op, [i[0] for i in ins], attrs or {}, outputs=["out"])
    g.tensors[out].kind = TensorKind.APP_READ
    g.tensors[out].encoding = out_enc
    g.outputs.append(out)
    return g


def _run(g: Graph, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The step's reference and fast results (asserted equal); returns the reference."""
    step = HTP_KERNELS[g.nodes[0].op_type](g.nodes[0], HtpBuildContext(g, ARCH))
    ref = np.asarray(step.reference(*[feeds[n] for n in step.inputs]))
    fast = step.fast(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in step.inputs])
    np.testing.assert_array_equal(np.asarray(fast.cpu().numpy(), dtype=ref.dtype), ref)
    return ref


def _codes(rng: np.random.Generator, shape: tuple[int, ...], bw: int) -> np.ndarray:
    return rng.integers(0, 1 << bw, shape).astype(np.int64)


def _deq(q: np.ndarray, enc: Encoding) -> np.ndarray:
    return (q + enc.offset[0]) * enc.scale[0]


@pytest.mark.parametrize("bw", [8, 16])
def test_select_requantizes_both_branches_to_the_output(bw: int) -> None:
    rng = np.random.default_rng(0)
    ea, eo = _enc(-3, 5, bw), _enc(-1e4, 5, bw)
    g = _graph("ElementWiseSelect", [("c", (2, 1, 6), DType.BOOL_8, None, None),
                                     ("a", (2, 3, 6), DType.FLOAT_32, ea, None),
                                     ("b", (1,), DType.FLOAT_32, _enc(-1e4, 0, 8), np.array([-1e4]))], eo)
    c = rng.random((2, 1, 6)) < 0.5
    a = _codes(rng, (2, 3, 6), bw)
    got = _run(g, {"c": c, "a": a})
    want = np.where(c, _deq(a, ea), -1e4)
    assert np.abs(_deq(got, eo) - want).max() <= eo.scale[0] * 1.01
    assert np.all(got[np.broadcast_to(~c, got.shape)] == 0)  # the mask value is the lowest code


@pytest.mark.parametrize("op", ["ElementWiseAnd", "ElementWiseOr", "ElementWiseXor"])
def test_logic_on_bools(op: str) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 5)) < 0.5, rng.random((1, 5)) < 0.5
    g = _graph(op, [("a", (3, 5), DType.BOOL_8, None, None), ("b", (1, 5), DType.BOOL_8, None, None)])
    fn = {"ElementWiseAnd": np.logical_and, "ElementWiseOr": np.logical_or, "ElementWiseXor": np.logical_xor}[op]
    np.testing.assert_array_equal(_run(g, {"a": a, "b": b}), fn(a, b))
    g = _graph("ElementWiseNot", [("a", (3, 5), DType.BOOL_8, None, None)])
    np.testing.assert_array_equal(_run(g, {"a": a}), ~a)


@pytest.mark.parametrize("op,fn", [("ElementWiseEqual", np.equal), ("ElementWiseLess", np.less),
                                   ("ElementWiseGreaterEqual", np.greater_equal)])
def test_integer_comparisons_and_arithmetic_are_exact(op: str, fn) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    ids = rng.integers(-3, 4, (2, 16)).astype(np.int64)
    g = _graph(op, [("a", (2, 16), DType.INT_64, None, None), ("b", (), DType.INT_64, None, np.array(1))])
    np.testing.assert_array_equal(_run(g, {"a": ids}), fn(ids, 1))
    big = rng.integers(-(1 << 40), 1 << 40, (2, 16)).astype(np.int64)
    for arith, f in (("ElementWiseAdd", np.add), ("ElementWiseSubtract", np.subtract),
                     ("ElementWiseMultiply", np.multiply)):
        g = _graph(arith, [("a", (2, 16), DType.INT_64, None, None), ("b", (2, 16), DType.INT_64, None, None)])
        np.testing.assert_array_equal(_run(g, {"a": big, "b": ids}), f(big, ids))


@pytest.mark.parametrize("bw", [8, 16])
def test_quantized_comparison_follows_the_real_values(bw: int) -> None:
    rng = np.random.default_rng(3)
    ea, eb = _enc(-2, 6, bw), _enc(-5, 1, bw)
    g = _graph("ElementWiseGreater", [("a", (64,), DType.FLOAT_32, ea, None), ("b", (64,), DType.FLOAT_32, eb, None)])
    a, b = _codes(rng, (64,), bw), _codes(rng, (64,), bw)
    got = _run(g, {"a": a, "b": b})
    ra, rb = _deq(a, ea), _deq(b, eb)
    clear = np.abs(ra - rb) > 2 * max(ea.scale[0], eb.scale[0])  # ties within the grid may go either way
    np.testing.assert_array_equal(got[clear], (ra > rb)[clear])


def test_isnan_of_codes_is_false() -> None:
    g = _graph("ElementWiseIsNan", [("a", (4,), DType.FLOAT_32, _enc(0, 1, 8), None)])
    assert not _run(g, {"a": np.arange(4, dtype=np.int64)}).any()


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_cumulative_sum_of_integers(exclusive: bool, reverse: bool) -> None:
    x = np.random.default_rng(4).integers(0, 2, (2, 16)).astype(np.int32)
    g = _graph("CumulativeSum", [("x", (2, 16), DType.INT_32, None, None)],
               attrs={"axis": 1, "exclusive": exclusive, "reverse": reverse})
    v = x[:, ::-1] if reverse else x
    want = np.cumsum(v, axis=1) - (v if exclusive else 0)
    np.testing.assert_array_equal(_run(g, {"x": x}), want[:, ::-1] if reverse else want)


@pytest.mark.parametrize("bw", [8, 16])
def test_cast_between_integers_and_codes(bw: int) -> None:
    eo = _enc(0, 1, bw)
    g = _graph("Cast", [("m", (8,), DType.INT_64, None, None)], eo, {"dtype": DType.FLOAT_32})
    m = np.array([0, 1, 1, 0, 2, -1, 1 << 40, 1], dtype=np.int64)
    got = _run(g, {"m": m})
    np.testing.assert_allclose(_deq(got, eo), np.clip(m, 0, 1), atol=eo.scale[0] / 2)
    ei = _enc(-4, 4, bw)
    g = _graph("Cast", [("x", (16,), DType.FLOAT_32, ei, None)], None, {"dtype": DType.INT_32})
    q = _codes(np.random.default_rng(5), (16,), bw)
    np.testing.assert_array_equal(_run(g, {"x": q}), np.trunc(_deq(q, ei)).astype(np.int32))
