"""htp integer kernels of Conv2d, DepthWiseConv2d, TransposeConv2d, FullyConnected and MatMul.

For each op, over seeded random shapes, strides, pads, dilations, groups and encodings (per-tensor
and per-channel, 4/8/16-bit weights, 8/16-bit activations, asymmetric weights, biases on the
accumulator's scale, float biases, no bias): the fast (torch) path gives exactly the bits of the
reference (numpy int64) spec, and the dequantized result is within two output steps of the cpu
backend's quantization simulation. A few graphs run through HtpBackend, fast against reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import openqnn
from openqnn.backends.htp import HtpBackend, native
from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.config import HtpConfig
from openqnn.backends.htp.fixedpoint import INT32_MAX, INT32_MIN
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext, Unsupported
from openqnn.backends.htp.kernels import conv as conv_mod
from openqnn.backends.htp.kernels import gemm as gemm_mod
from openqnn.backends.htp.kernels.conv import build_conv2d, build_transpose_conv2d
from openqnn.backends.htp.kernels.gemm import int8_split
from openqnn.backends.htp.kernels.linear import build_fully_connected, build_matmul
from openqnn.backends.htp.kernels.registry import storage_dtype
from openqnn.backends.htp.kernels.requant import Requant
from openqnn.ir import DType, Graph, Tensor, TensorKind
from openqnn.ir.tensor import Encoding
from openqnn.ops.build import emit
from openqnn.quantization.encodings import math as qmath

V73, V69 = ARCHS["v73"], ARCHS["v69"]
BUILDERS = {"Conv2d": build_conv2d, "DepthWiseConv2d": build_conv2d, "TransposeConv2d": build_transpose_conv2d,
            "FullyConnected": build_fully_connected, "MatMul": build_matmul}


# -- helpers -------------------------------------------------------------------------------------

def _act_enc(rng: np.random.Generator, bw: int) -> Encoding:
    mag = float(np.exp(rng.uniform(-1.5, 1.5)))
    lo = 0.0 if rng.random() < 0.25 else -mag * rng.uniform(0.05, 1.0)
    s, o = qmath.asymmetric(lo, mag * rng.uniform(0.1, 1.0), bw)
    return Encoding(bw, (float(s),), (int(o),))


def _w_enc(w: np.ndarray, bw: int, axis: int | None, symmetric: bool = True) -> Encoding:
    red = tuple(i for i in range(w.ndim) if i != axis) if axis is not None else None
    if symmetric:
        s, o = qmath.symmetric(np.abs(w).max(axis=red), bw)
    else:
        s, o = qmath.asymmetric(w.min(axis=red), w.max(axis=red), bw)
    s, o = np.atleast_1d(s), np.atleast_1d(o)
    return Encoding(bw, tuple(float(v) for v in s), tuple(int(v) for v in o), axis if s.size > 1 else None,
                    symmetric)


def _deq(q: np.ndarray, enc: Encoding) -> np.ndarray:
    return (np.asarray(q, np.float64) + enc.offset[0]) * enc.scale[0]


def _qrand(rng: np.random.Generator, shape: tuple[int, ...], enc: Encoding) -> np.ndarray:
    return rng.integers(0, 1 << enc.bitwidth, size=shape).astype(np.int64)


class Case:
    """A one-node quantized graph, its quantized input(s) and the float simulation's output."""

    def __init__(self, op: str, inputs: list[tuple[int, ...]], attrs: dict, rng: np.random.Generator, *,
                 xbw: int = 8, obw: int | None = None, weight: np.ndarray | None = None, wbw: int = 8,
                 w_axis: int | None = None, w_sym: bool = True, bias: str = "acc", act_act: bool = False):
        g = Graph("g")
        self.graph, self.rng = g, rng
        self.slack = 0.0  # a bias requantized to the accumulator's scale may be off by half its quantum
        names = []
        for i, shape in enumerate(inputs):
            t = g.add_tensor(Tensor(f"x{i}", shape, DType.FLOAT_32, TensorKind.APP_WRITE))
            t.encoding = _act_enc(rng, xbw if i == 0 or not act_act else int(rng.choice([8, xbw])))
            g.inputs.append(t.name)
            names.append(t.name)
        if weight is not None:
            w = g.add_constant("w", weight.astype(np.float32))
            w.encoding = _w_enc(weight, wbw, w_axis, w_sym)
            names.append(w.name)
            if bias != "none" and op != "MatMul":
                b = g.add_constant("b", rng.normal(size=(self._cout(op, weight, attrs),)).astype(np.float32))
                if bias == "acc":  # what the quantizer gives: 32-bit, scale s_x * s_w
                    sx = g.tensors["x0"].encoding.scale[0]
                    sw = np.asarray(w.encoding.scale)
                    if op == "TransposeConv2d" and sw.size > 1:
                        sw = np.tile(sw, attrs.get("group", 1))
                    acc = tuple(float(sx * s) for s in sw)
                    b.encoding = Encoding(32, acc, (0,) * len(acc), 0 if len(acc) > 1 else None, True, True)
                elif bias == "int8":
                    b.encoding = _w_enc(b.data, 8, None)
                if bias != "acc":
                    self.slack = 0.5 * g.tensors["x0"].encoding.scale[0] * max(w.encoding.scale)
                names.append(b.name)
        (out,) = emit(g, op, names, attrs, outputs=["out"])
        g.tensors[out].kind = TensorKind.APP_READ
        g.outputs.append(out)
        # input integers, and the output encoding from the float result's range
        self.q = {n: _qrand(rng, g.tensors[n].shape, g.tensors[n].encoding) for n in g.inputs}
        self.feeds = {n: _deq(self.q[n], g.tensors[n].encoding).astype(np.float32) for n in g.inputs}
        y = openqnn.Session(g).run(self.feeds)[out].astype(np.float64)
        lo, hi = float(min(y.min(), 0.0)), float(max(y.max(), 0.0))
        shrink = rng.uniform(0.6, 1.05)  # some outputs saturate
        s, o = qmath.asymmetric(lo * shrink, hi * shrink, obw or xbw)
        g.tensors[out].encoding = Encoding(obw or xbw, (float(s),), (int(o),))
        self.out_enc = g.tensors[out].encoding
        self.float_out = openqnn.Session(g).run(self.feeds)[out].astype(np.float64)  # simulation (quantized out)

    @staticmethod
    def _cout(op: str, weight: np.ndarray, attrs: dict) -> int:
        if op == "FullyConnected":
            return weight.shape[0]
        return weight.shape[3] * (attrs.get("group", 1) if op == "TransposeConv2d" else 1)

    def check(self, arch=V73, mode: str | None = None, steps: float = 2.0, arithmetic: str = "tflite") -> np.ndarray:
        node = self.graph.nodes[0]
        step = BUILDERS[node.op_type](node, HtpBuildContext(self.graph, arch, arithmetic=arithmetic), mode)
        ins = [self.q[n] for n in step.inputs]
        ref = np.asarray(step.reference(*ins))
        fast = step.fast(*[torch.from_numpy(q).to(storage_dtype(self.graph.tensors[n].encoding.bitwidth))
                           for n, q in zip(step.inputs, ins)])
        assert fast.dtype == storage_dtype(self.out_enc.bitwidth)
        got = fast.numpy().astype(np.int64)
        assert got.shape == ref.shape == self.graph.tensors["out"].shape
        mismatch = np.argwhere(got != ref)
        assert mismatch.size == 0, f"fast != reference at {len(mismatch)} positions, first {mismatch[0]}"
        assert ref.min() >= 0 and ref.max() < (1 << self.out_enc.bitwidth)
        err = np.abs(_deq(ref, self.out_enc) - self.float_out).max()
        assert err <= steps * self.out_enc.scale[0] + self.slack + 1e-6, \
            f"{err / self.out_enc.scale[0]:.2f} steps from float"
        return ref


def _conv_attrs(rng: np.random.Generator, k: tuple[int, int]) -> dict:
    pads = [[int(rng.integers(0, k[0])), int(rng.integers(0, k[0]))], [int(rng.integers(0, k[1])), int(rng.integers(0, k[1]))]]
    return {"stride": [int(rng.integers(1, 3)), int(rng.integers(1, 3))], "pad_amount": pads,
            "dilation": [int(rng.integers(1, 3)), int(rng.integers(1, 3))]}


def _variant(rng: np.random.Generator) -> dict:
    """Random precision and encoding choices."""
    xbw = int(rng.choice([8, 8, 16]))
    wbw = int(rng.choice([4, 8, 8, 8, 16]))
    return {"xbw": xbw, "obw": int(rng.choice([xbw, xbw, 8, 16])), "wbw": wbw,
            "w_sym": bool(rng.random() < 0.8) or wbw != 8, "bias": str(rng.choice(["acc", "acc", "float", "int8", "none"]))}


# -- convolutions --------------------------------------------------------------------------------

@pytest.fixture(params=["fused", "onednn", "im2col", "float32", "float32_im2col"])
def conv_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Convolutions run through native/int8.c's fused kernels where they apply (AVX-512 VNNI), else
    oneDNN's int8 convolution where it applies, else the im2col GEMM; ``float32``: as on a CPU without
    fast int8 products (AVX2), oneDNN's float32 convolution where exact, ``float32_im2col`` the im2col
    GEMM in float32 (over chunks of the reduction where one float32 sum could be inexact)."""
    if request.param == "fused" and not (native.library() is None or native.int8_available()):
        pytest.skip("this CPU has no AVX-512 VNNI: the fused int8 kernels are not built")
    if request.param != "fused":
        monkeypatch.setattr(native, "int8_available", lambda: False)
    if request.param != "onednn":
        monkeypatch.setattr(conv_mod, "_onednn_qconv_ok", lambda device: False)
    if request.param.startswith("float32"):
        monkeypatch.setattr(gemm_mod, "_INT8_FASTER", False)
    if request.param == "float32_im2col":
        monkeypatch.setattr(conv_mod, "_mkldnn_ok", lambda device: False)
    return str(request.param)


@pytest.fixture
def fused_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The fused int8 kernels' runs (kernel class names), to check that a test reached them."""
    calls: list[str] = []
    for cls in (native.Int8Gemm, native.Int8Depthwise):
        def counted(self, *args, _run=cls.run, **kw):  # type: ignore[no-untyped-def]
            calls.append(type(self).__name__)
            return _run(self, *args, **kw)
        monkeypatch.setattr(cls, "run", counted)
    return calls


def _expect_fused(conv_impl: str, requant_impl: str, calls: list[str], kernel: str) -> None:
    if conv_impl == "fused" and requant_impl == "native":
        assert kernel in calls, f"the fused {kernel} kernel did not run"
    else:
        assert not calls


@pytest.mark.parametrize("seed", range(24))
def test_conv2d(seed: int, conv_impl: str) -> None:
    rng = np.random.default_rng(seed)
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    group = int(rng.choice([1, 1, 2, 3]))
    cin, cout = group * int(rng.integers(1, 6)), group * int(rng.integers(1, 6))
    attrs = {**_conv_attrs(rng, (kh, kw)), "group": group}
    xshape = (int(rng.integers(1, 3)), int(rng.integers(kh * 2, 12)), int(rng.integers(kw * 2, 12)), cin)
    w = rng.normal(size=(kh, kw, cin // group, cout))
    v = _variant(rng)
    Case("Conv2d", [xshape], attrs, rng, weight=w, w_axis=3 if rng.random() < 0.5 else None, **v).check()


@pytest.mark.parametrize("seed", range(12))
def test_depthwise(seed: int, conv_impl: str) -> None:
    rng = np.random.default_rng(100 + seed)
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    c, mult = int(rng.integers(1, 9)), int(rng.choice([1, 1, 2]))
    attrs = _conv_attrs(rng, (kh, kw))
    xshape = (int(rng.integers(1, 3)), int(rng.integers(kh * 2, 14)), int(rng.integers(kw * 2, 14)), c)
    w = rng.normal(size=(kh, kw, 1, c * mult))
    Case("DepthWiseConv2d", [xshape], attrs, rng, weight=w, w_axis=3 if rng.random() < 0.6 else None,
         **_variant(rng)).check()


@pytest.mark.parametrize("seed", range(10))
def test_depthwise_wide(seed: int, conv_impl: str, requant_impl: str, fused_calls: list[str]) -> None:
    """Depthwise convolutions over many channels (whole and partial blocks of 16 / 64), kernels wider
    than 4 taps, strides, dilations and asymmetric pads: 8-bit, the fused kernel's domain."""
    rng = np.random.default_rng(700 + seed)
    c = int(rng.choice([16, 24, 33, 64, 70, 144]))
    kh, kw = [(3, 3), (3, 3), (5, 5), (1, 7), (2, 3)][seed % 5]
    attrs = _conv_attrs(rng, (kh, kw))
    xshape = (int(rng.integers(1, 3)), int(rng.integers(kh * 2, 20)), int(rng.integers(kw * 2, 20)), c)
    Case("DepthWiseConv2d", [xshape], attrs, rng, weight=rng.normal(size=(kh, kw, 1, c)),
         w_axis=3 if seed % 2 else None, bias=str(rng.choice(["acc", "float", "none"]))).check()
    _expect_fused(conv_impl, requant_impl, fused_calls, "Int8Depthwise")


@pytest.mark.parametrize("seed", range(12))
def test_pointwise(seed: int, conv_impl: str, requant_impl: str, fused_calls: list[str]) -> None:
    """Unpadded 1x1 convolutions (one GEMM; strided ones of the pixels they visit): depths and widths
    around the kernel's blocks of 4 input and 16 / 64 output channels, row counts around its tiles of
    6 rows; 8-bit and 16-bit outputs."""
    rng = np.random.default_rng(800 + seed)
    cin = int(rng.choice([1, 3, 4, 16, 37, 64, 130]))
    cout = int(rng.choice([1, 15, 16, 24, 70, 129]))
    xshape = (int(rng.integers(1, 3)), int(rng.integers(1, 14)), int(rng.integers(1, 14)), cin)
    stride = [1, 1] if seed < 6 else [int(v) for v in rng.integers(1, 4, size=2)]
    attrs = {"stride": stride, "pad_amount": [[0, 0], [0, 0]], "dilation": [1, 1], "group": 1}
    Case("Conv2d", [xshape], attrs, rng, weight=rng.normal(size=(1, 1, cin, cout)), w_axis=3 if seed % 2 else None,
         obw=16 if seed % 4 == 3 else 8, bias=str(rng.choice(["acc", "float", "none"]))).check()
    _expect_fused(conv_impl, requant_impl, fused_calls, "Int8Gemm")


@pytest.mark.parametrize("seed", range(4))
def test_conv2d_grouped_as_depthwise(seed: int) -> None:
    """Conv2d with group == channels runs as a depthwise convolution."""
    rng = np.random.default_rng(150 + seed)
    c = int(rng.integers(2, 8))
    attrs = {**_conv_attrs(rng, (3, 3)), "group": c}
    w = rng.normal(size=(3, 3, 1, c * int(rng.integers(1, 3))))
    Case("Conv2d", [(1, 9, 8, c)], attrs, rng, weight=w, w_axis=3, **_variant(rng)).check()


def transpose_conv_case(seed: int) -> Case:
    """A random TransposeConv2d (kernel, groups, stride, dilation, padding, output padding, encodings)."""
    rng = np.random.default_rng(200 + seed)
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    group = int(rng.choice([1, 1, 2]))
    cin, cout_g = group * int(rng.integers(1, 5)), int(rng.integers(1, 5))
    stride = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
    dil = [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
    pads = [[int(rng.integers(0, kh)), int(rng.integers(0, kh))], [int(rng.integers(0, kw)), int(rng.integers(0, kw))]]
    outpad = [int(rng.integers(0, max(stride[0], dil[0]))), int(rng.integers(0, max(stride[1], dil[1])))]
    attrs = {"stride": stride, "dilation": dil, "pad_amount": pads, "output_padding": outpad, "group": group}
    xshape = (int(rng.integers(1, 3)), int(rng.integers(2, 8)), int(rng.integers(2, 8)), cin)
    w = rng.normal(size=(kh, kw, cin, cout_g))
    return Case("TransposeConv2d", [xshape], attrs, rng, weight=w, w_axis=3 if rng.random() < 0.5 else None,
                **_variant(rng))


@pytest.mark.parametrize("seed", range(12))
def test_transpose_conv2d(seed: int) -> None:
    transpose_conv_case(seed).check()


def test_conv_int8_split_input_channels() -> None:
    """Deep reductions of large weights whose float32 accumulator could pass 2^24 run oneDNN's
    convolution on parts of the input channels, summed in int32."""
    rng = np.random.default_rng(11)
    attrs = {"stride": [1, 1], "pad_amount": [[1, 1], [1, 1]], "dilation": [1, 1], "group": 1}
    w = rng.choice([-1.0, 1.0], size=(3, 3, 256, 8)) * rng.uniform(0.9, 1.0, size=(3, 3, 256, 8))
    case = Case("Conv2d", [(1, 5, 6, 256)], attrs, rng, weight=w, w_axis=3)
    zx = -int(case.graph.tensors["x0"].encoding.offset[0])
    wq = np.round(w / np.asarray(case.graph.tensors["w"].encoding.scale)).astype(np.int64)
    assert conv_mod.qconv_bound(wq, zx).max() >= 1 << 24  # one part would not be exact
    parts = conv_mod.channel_parts(wq, zx, groups=1)
    assert parts is not None and [(a, b) for a, b, _ in parts] == [(0, 64), (64, 128), (128, 192), (192, 256)]
    assert all(bound.max() < 1 << 24 for _, _, bound in parts)
    assert conv_mod.channel_parts(wq, zx, groups=2) is None  # grouped convolutions are not split
    case.check()


def test_conv_resnet_block_size() -> None:
    """ResNet / MobileNet-like layers, large enough for the large-tensor code paths (scratch buffers)."""
    rng = np.random.default_rng(7)
    attrs = {"stride": [1, 1], "pad_amount": [[1, 1], [1, 1]], "dilation": [1, 1], "group": 1}
    w = rng.normal(size=(3, 3, 64, 64)) * 0.05
    Case("Conv2d", [(1, 24, 24, 64)], attrs, rng, weight=w, w_axis=3).check()
    Case("Conv2d", [(1, 24, 24, 64)], attrs, rng, weight=w, w_sym=False).check()
    Case("Conv2d", [(1, 24, 24, 64)], attrs, rng, weight=w, xbw=16).check()
    dw = {"stride": [1, 1], "pad_amount": [[0, 1], [1, 1]], "dilation": [1, 1]}
    Case("DepthWiseConv2d", [(1, 24, 24, 64)], dw, rng, weight=rng.normal(size=(3, 3, 1, 64)), w_axis=3).check()


@pytest.mark.parametrize("op", ["Conv2d", "DepthWiseConv2d", "TransposeConv2d"])
def test_conv_float64_mode(op: str) -> None:
    """The exact float64 GEMMs (non-CPU devices) give the same bits."""
    rng = np.random.default_rng(300)
    for _ in range(3):
        attrs = _conv_attrs(rng, (3, 3))
        if op == "TransposeConv2d":
            attrs.update(output_padding=[0, 0], group=1)
        elif op == "Conv2d":
            attrs["group"] = 1
        w = rng.normal(size=(3, 3, 1, 8)) if op == "DepthWiseConv2d" else rng.normal(size=(3, 3, 4, 4))
        Case(op, [(1, 9, 9, 4)], attrs, rng, weight=w, w_axis=3, **_variant(rng)).check(mode="float64")


# -- FullyConnected and MatMul ------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(12))
def test_fully_connected(seed: int) -> None:
    rng = np.random.default_rng(400 + seed)
    k, units = int(rng.integers(1, 40)), int(rng.integers(1, 20))
    lead = tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(1, 3))))
    w = rng.normal(size=(units, k))
    case = Case("FullyConnected", [(*lead, k)], {"keep_dims": bool(rng.random() < 0.5)}, rng, weight=w,
                w_axis=0 if rng.random() < 0.5 else None, **_variant(rng))
    case.check()
    case.check(mode="float64")


@pytest.mark.parametrize("op", ["FullyConnected", "Conv2d"])
def test_float32_gemm_over_chunks_of_the_reduction(op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where int8 products are slow (AVX2) the GEMM runs in float32; a reduction whose float32 sums could pass
    2^24 (here 2304 products of up to 255 x 127) runs as chunks of 1024 added in int32: the same bits."""
    monkeypatch.setattr(native, "int8_available", lambda: False)
    monkeypatch.setattr(conv_mod, "_onednn_qconv_ok", lambda device: False)
    monkeypatch.setattr(conv_mod, "_mkldnn_ok", lambda device: False)
    monkeypatch.setattr(gemm_mod, "_INT8_FASTER", False)
    chunked: list[int] = []
    real = gemm_mod.ConvCore._chunked

    def spy(self, a):  # type: ignore[no-untyped-def]
        chunked.append(len(self.f32_rows))
        return real(self, a)

    monkeypatch.setattr(gemm_mod.ConvCore, "_chunked", spy)
    rng = np.random.default_rng(7)
    common = {"xbw": 8, "obw": 8, "wbw": 8, "w_sym": True, "bias": "acc"}
    if op == "FullyConnected":
        k = 2304
        case = Case(op, [(5, k)], {"keep_dims": True}, rng, weight=np.sign(rng.normal(size=(6, k))), w_axis=0,
                    **common)
    else:
        k = 3 * 3 * 256
        attrs = {**_conv_attrs(rng, (3, 3)), "group": 1}
        case = Case(op, [(1, 6, 6, 256)], attrs, rng, weight=np.sign(rng.normal(size=(3, 3, 256, 4))), w_axis=3,
                    **common)
    case.check()
    assert chunked and chunked[0] == -(-k // gemm_mod.F32_CHUNK)


@pytest.mark.parametrize("seed", range(10))
def test_matmul_static(seed: int) -> None:
    rng = np.random.default_rng(500 + seed)
    m, k, n = (int(v) for v in rng.integers(1, 12, size=3))
    tb = bool(rng.random() < 0.4)
    ta = bool(rng.random() < 0.3)
    lead = tuple(int(d) for d in rng.integers(1, 4, size=int(rng.integers(0, 3))))
    a_shape = (*lead, k, m) if ta else (*lead, m, k)
    w = rng.normal(size=(n, k) if tb else (k, n))
    per_channel = rng.random() < 0.5
    v = _variant(rng)
    v.pop("bias")
    Case("MatMul", [a_shape], {"transpose_in0": ta, "transpose_in1": tb}, rng, weight=w,
         w_axis=(0 if tb else 1) if per_channel else None, **v).check()


@pytest.mark.parametrize("seed", range(10))
def test_matmul_act_act(seed: int) -> None:
    rng = np.random.default_rng(600 + seed)
    m, k, n = (int(v) for v in rng.integers(1, 20, size=3))
    ta, tb = bool(rng.random() < 0.3), bool(rng.random() < 0.5)
    heads = int(rng.integers(1, 4))
    a_shape = (2, heads, k, m) if ta else (2, heads, m, k)
    b_shape = ((heads, n, k) if tb else (heads, k, n)) if rng.random() < 0.5 else ((1, n, k) if tb else (1, k, n))
    xbw = int(rng.choice([8, 8, 16]))
    case = Case("MatMul", [a_shape, b_shape], {"transpose_in0": ta, "transpose_in1": tb}, rng, xbw=xbw,
                obw=int(rng.choice([8, xbw])), act_act=True)
    case.check()
    case.check(mode="float64")


def test_matmul_static_left_and_batched_weight() -> None:
    """Layouts that take the float64 matmul: a static left operand, a weight with batch dimensions."""
    rng = np.random.default_rng(700)
    g = Graph("g")
    x = g.add_tensor(Tensor("x0", (3, 5, 4), DType.FLOAT_32, TensorKind.APP_WRITE, encoding=_act_enc(rng, 8)))
    g.inputs.append(x.name)
    c = g.add_constant("c", rng.normal(size=(6, 5)).astype(np.float32))
    c.encoding = _w_enc(c.data, 8, None, symmetric=False)
    w = g.add_constant("w", rng.normal(size=(3, 4, 2)).astype(np.float32))
    w.encoding = _w_enc(w.data, 8, None)
    (y0,) = emit(g, "MatMul", ["c", "x0"], {}, outputs=["y0"])
    (y1,) = emit(g, "MatMul", ["x0", "w"], {}, outputs=["y1"])
    for y in (y0, y1):
        g.tensors[y].encoding = _act_enc(rng, 8)
        node = next(nd for nd in g.nodes if nd.outputs == [y])
        step = HTP_KERNELS["MatMul"](node, HtpBuildContext(g, V73))
        q = _qrand(rng, x.shape, x.encoding)
        ref = step.reference(q)
        assert np.array_equal(step.fast(torch.from_numpy(q).to(torch.uint8)).numpy().astype(np.int64), ref)


# -- requantization, weights, errors -------------------------------------------------------------

@pytest.mark.parametrize("wide", [False, True])
def test_requant_forms_exact(wide: bool, requant_impl: str) -> None:
    """Each fast requantization form (float64 fold, window, int64; in C or as PyTorch ops) equals
    the spec on dense ranges of accumulators around the rounding-sensitive places (ties of both
    roundings included)."""
    rng = np.random.default_rng(800 + wide)
    modes, natives = set(), set()
    for trial in range(120):
        c = int(rng.integers(1, 4))
        real = np.exp(rng.uniform(np.log(1e-5), np.log(3.0), size=c))
        if trial % 4 == 0:
            real[:] = 2.0 ** float(rng.integers(-14, 2))  # M = 2^30: srdhm ties on every other value
        obw = int(rng.choice([8, 16]))
        zo = int(rng.integers(0, 1 << obw)) if rng.random() < 0.7 else 0
        bound = int(10 ** rng.uniform(2, 12.5 if wide else 9.3))
        off = rng.integers(-bound // 2, bound // 2 + 1, size=c) if rng.random() < 0.7 else np.zeros(c, np.int64)
        try:
            rq = Requant(real, zo, obw, wide, torch.device("cpu"))
        except Unsupported:
            continue
        dtype = torch.int64 if wide or bound >= INT32_MAX else torch.int32
        if dtype == torch.int32 and bound + int(np.abs(off).max()) < (1 << 24) and trial % 3 == 0:
            dtype = torch.float32  # a float32 accumulator (oneDNN's int8 convolution) holds these exactly
        fn = rq.fast(off, [(1, np.full(c, float(bound)))], dtype)
        modes.add(rq.mode)
        natives.add(rq.native)
        cols = []
        for ch in range(c):
            centers = [0, int(-zo / real[ch]), int((rq.qmax - zo) / real[ch])]
            vals = np.concatenate([np.arange(ct - 3000, ct + 3000) for ct in centers]) - off[ch]
            cols.append(np.clip(vals, -bound, bound))
        t = np.stack(cols, axis=1)
        ref = rq.reference(t + off)
        got = fn(torch.from_numpy(t).to(dtype)).numpy().astype(np.int64)
        assert np.array_equal(got, ref), (rq.mode, real, zo, obw, bound, off)
        small = fn(torch.from_numpy(t[:500]).to(dtype)).numpy().astype(np.int64)  # the small-tensor path
        assert np.array_equal(small, ref[:500]), (rq.mode, real, zo, obw, bound, off)
    assert modes >= ({"float64", "int64"} if wide else {"float64", "window", "int64"})
    if not wide:  # (the wide cases here hand in int64 accumulators, which only PyTorch takes)
        assert (True in natives) == (requant_impl == "native")


def test_blocked_and_small_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large accumulators are requantized in blocks of rows, small ones with fewer ops: shrunk
    thresholds run both code paths on small graphs."""
    from openqnn.backends.htp.kernels import requant as requant_mod

    monkeypatch.setattr(requant_mod, "BLOCK", 96)
    monkeypatch.setattr(requant_mod, "SMALL", 40)
    rng = np.random.default_rng(950)
    attrs = {"stride": [1, 1], "pad_amount": [[1, 1], [1, 1]], "dilation": [1, 1]}
    for xbw in (8, 16):
        w = rng.normal(size=(3, 3, 6, 8))
        Case("Conv2d", [(2, 7, 9, 6)], {**attrs, "group": 1}, rng, weight=w, w_axis=3, xbw=xbw).check()
        Case("Conv2d", [(2, 7, 9, 6)], {**attrs, "group": 1}, rng, weight=w, w_sym=False, xbw=xbw).check()
        Case("DepthWiseConv2d", [(1, 9, 9, 6)], attrs, rng, weight=rng.normal(size=(3, 3, 1, 6)), xbw=xbw).check()
        Case("FullyConnected", [(40, 12)], {}, rng, weight=rng.normal(size=(7, 12)), xbw=xbw).check()
        Case("MatMul", [(2, 20, 9), (2, 9, 11)], {}, rng, xbw=xbw, act_act=True).check()


def test_scratch_inside_and_outside_inference_mode() -> None:
    """The executable runs steps under torch.inference_mode; direct calls (tests) do not."""
    rng = np.random.default_rng(960)
    attrs = {"stride": [1, 1], "pad_amount": [[1, 1], [1, 1]], "dilation": [1, 1], "group": 1}
    case = Case("Conv2d", [(1, 40, 40, 8)], attrs, rng, weight=rng.normal(size=(3, 3, 8, 16)))
    with torch.inference_mode():
        case.check()
    case.check()
    with torch.inference_mode():
        case.check()


def test_requant_multi_term_and_saturation() -> None:
    rng = np.random.default_rng(900)
    rq = Requant(np.array([3e-4, 7e-6, 0.02]), 1234, 16, True, torch.device("cpu"))
    ts = [rng.integers(-2**31, 2**31, size=(500, 3)), rng.integers(-2**20, 2**20, size=(500, 1))]
    coefs = [np.array([256, 256, 256]), np.array([-5, 7, 0])]
    off = np.array([10**6, -3, 0])
    fn = rq.fast(off, [(coefs[0], np.full(3, 2.0**31)), (coefs[1], np.full(3, 2.0**20))], torch.int64)
    ref = rq.reference(off + coefs[0] * ts[0] + coefs[1] * ts[1])
    assert np.array_equal(fn(*[torch.from_numpy(t) for t in ts]).numpy(), ref)
    # 8-bit: accumulators beyond int32 saturate first (the spec's int32 accumulator)
    rq8 = Requant(np.array([0.7, 2.5]), 3, 8, False, torch.device("cpu"))
    big = np.array([[INT32_MAX + 5, INT32_MIN - 5], [-(2**40), 2**40], [100, -100]], dtype=np.int64)
    fn8 = rq8.fast(np.array([0, 0]), [(1, np.full(2, 2.0**41))], torch.int64)
    assert np.array_equal(fn8(torch.from_numpy(big)).numpy().astype(np.int64), rq8.reference(big))


def test_int8_split() -> None:
    rng = np.random.default_rng(1000)
    for lo, hi in ((-128, 127), (0, 255), (-200, 40), (-30000, 30000), (0, 65535)):
        w = rng.integers(lo, hi + 1, size=(17, 5))
        parts, b0 = int8_split(w)
        assert all(p.dtype == np.int8 for _, p in parts)
        assert np.array_equal(sum(c * p.astype(np.int64) for c, p in parts) - b0, w)
        assert (len(parts) == 1) == (hi - lo <= 255)
        assert (not b0.any()) == (lo >= -128 and hi <= 127)


def test_unsupported() -> None:
    rng = np.random.default_rng(1100)
    attrs = {"stride": [1, 1], "pad_amount": [[0, 0], [0, 0]], "dilation": [1, 1], "group": 1}
    case = Case("Conv2d", [(1, 5, 5, 3)], attrs, rng, weight=rng.normal(size=(3, 3, 3, 4)), wbw=16)
    g = case.graph
    node = g.nodes[0]
    with pytest.raises(Unsupported, match="16-bit"):
        build_conv2d(node, HtpBuildContext(g, V69))
    build_conv2d(node, HtpBuildContext(g, V73))
    enc = g.tensors["out"].encoding
    g.tensors["out"].encoding = None
    with pytest.raises(Unsupported, match="no encoding"):
        build_conv2d(node, HtpBuildContext(g, V73))
    g.tensors["out"].encoding = enc
    g.tensors["w"].encoding = None
    with pytest.raises(Unsupported, match="no encoding"):
        build_conv2d(node, HtpBuildContext(g, V73))
    # per-channel activations
    g2 = Case("FullyConnected", [(2, 6)], {}, rng, weight=rng.normal(size=(3, 6))).graph
    x = g2.tensors["x0"]
    x.encoding = Encoding(8, (0.1, 0.1), (0, 0), 1)
    with pytest.raises(Unsupported, match="per-channel"):
        build_fully_connected(g2.nodes[0], HtpBuildContext(g2, V73))
    # weights as a run-time input
    g3 = Graph("g")
    for name, shape in (("x", (2, 6)), ("w", (3, 6))):
        g3.add_tensor(Tensor(name, shape, DType.FLOAT_32, TensorKind.APP_WRITE, encoding=_act_enc(rng, 8)))
        g3.inputs.append(name)
    (y,) = emit(g3, "FullyConnected", ["x", "w"], {}, outputs=["y"])
    g3.tensors[y].encoding = _act_enc(rng, 8)
    with pytest.raises(Unsupported, match="not static"):
        build_fully_connected(g3.nodes[0], HtpBuildContext(g3, V73))


# -- through the backend ----------------------------------------------------------------------

def _small_net(rng: np.random.Generator, xbw: int) -> Graph:
    """conv -> depthwise -> transpose conv -> matmul (x itself) -> fully connected, all quantized."""
    g = Graph("net")
    g.add_tensor(Tensor("x", (1, 8, 8, 4), DType.FLOAT_32, TensorKind.APP_WRITE))
    g.inputs.append("x")

    def const(name: str, shape: tuple[int, ...]) -> str:
        return g.add_constant(name, (rng.normal(size=shape) * 0.3).astype(np.float32)).name

    c = {"stride": [1, 1], "pad_amount": [[1, 1], [1, 1]], "dilation": [1, 1]}
    (h,) = emit(g, "Conv2d", ["x", const("w1", (3, 3, 4, 6)), const("b1", (6,))], {**c, "group": 1})
    (h,) = emit(g, "DepthWiseConv2d", [h, const("w2", (3, 3, 1, 6)), const("b2", (6,))], {**c, "stride": [2, 2]})
    (h,) = emit(g, "TransposeConv2d", [h, const("w3", (2, 2, 6, 5)), const("b3", (5,))],
                {"stride": [2, 2], "pad_amount": [[0, 0], [0, 0]], "dilation": [1, 1], "output_padding": [0, 0],
                 "group": 1})
    (h,) = emit(g, "Reshape", [h], {"shape": [1, 64, 5]})
    (h2,) = emit(g, "MatMul", [h, h], {"transpose_in0": True})
    (y,) = emit(g, "FullyConnected", [h2, const("w4", (7, 5)), const("b4", (7,))], {}, outputs=["y"])
    g.tensors[y].kind = TensorKind.APP_READ
    g.outputs.append(y)
    from openqnn.quantization import QuantizerConfig, quantize

    data = [{"x": rng.normal(size=(1, 8, 8, 4)).astype(np.float32)} for _ in range(4)]
    return quantize(g, data, QuantizerConfig(act_bitwidth=xbw, use_per_channel_quantization=xbw == 8))


@pytest.mark.parametrize("arithmetic", ["qnn", "tflite"])
@pytest.mark.parametrize("xbw", [8, 16])
def test_backend_fast_equals_reference(xbw: int, arithmetic: str) -> None:
    rng = np.random.default_rng(1200 + xbw)
    g = _small_net(rng, xbw)
    x = {"x": rng.normal(size=(1, 8, 8, 4)).astype(np.float32)}
    cfg = HtpConfig(arithmetic=arithmetic)
    fast = HtpBackend(cfg, path="fast").prepare(g)
    ref = HtpBackend(cfg, path="reference").prepare(g)
    ours = {f.op_type for f in fast.exe.fallbacks} & {"Conv2d", "DepthWiseConv2d", "TransposeConv2d", "MatMul",
                                                       "FullyConnected"}
    assert not ours, fast.exe.fallbacks
    a = fast.run(x, native_outputs=True)["y"]
    b = ref.run(x, native_outputs=True)["y"]
    assert np.array_equal(a, b)
    sim = openqnn.Session(g).run(x)["y"]
    if xbw == 16 and arithmetic == "qnn":
        # QNN's 16-bit arithmetic is far from the real-valued chain by design (its W8A16 convolutions floor the low
        # bytes' sums, spec/qnn_conv16.py; its MatMul of two 16-bit activations reads in[1] as 8 bits,
        # spec/qnn_matmul16.py): the closeness below is TFLite's arithmetic's
        fast = HtpBackend(HtpConfig(arithmetic="tflite"), path="fast").prepare(g)
    deq = fast.run(x)["y"]
    step = g.tensors["y"].encoding.scale[0]
    assert np.abs(deq - sim).max() <= 4 * step  # a chain of five ops: a few steps at most
