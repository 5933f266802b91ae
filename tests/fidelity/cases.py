"""Fidelity cases: seeded single-op ONNX models for every op family openqnn's htp backend runs, in
quantization variants, and whole models (the guide's SimpleModel, ResNet-18, MobileNetV2, the
BERT-style encoder of benchmarks/zoo.py).

A :class:`Case` is a recipe (float model, input distribution, quantizer settings); :meth:`Case.prepare`
converts and quantizes it with openqnn and draws the evaluation inputs, snapped to the grid of their
encoding (see harness.py).

Variants (the ``variant`` string):

- ``a8`` / ``a16``: 8- or 16-bit activations (min-max calibration, asymmetric);
- ``pt`` / ``pc`` / ``pr``: per-tensor, per-channel or per-row (FullyConnected) 8-bit weights, for ops
  that have weights;
- ``odd``: calibration and evaluation data on a skewed range (about [-0.37, 2.9] times the case's
  magnitude), so zero points sit far from the middle of the range (about 29 of 255) and scales are no
  round numbers.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["CASES", "Case", "Prepared", "model_cases", "op_cases", "select"]

FLOAT = TensorProto.FLOAT


# ---------------------------------------------------------------------------------------------
# the recipe


@dataclass(frozen=True)
class Case:
    name: str  # unique: "<op>/<geometry>/<variant>"
    op: str  # the report's row: an ONNX op (lower case) or a model name
    kernel: str  # the htp kernel family it exercises (htp.conv2d, htp.lut, ...) or "model"
    variant: str
    build: Callable[[], tuple[onnx.ModelProto | Path, dict[str, tuple[int, ...]] | None]]
    inputs: Callable[[np.random.Generator], dict[str, np.ndarray]]
    act_bitwidth: int = 8
    per_channel: bool = False
    per_row: bool = False
    model: bool = False  # a whole model: the report adds top-1 agreement
    n_calib: int = 4
    n_eval: int = 2
    narrow_sums: bool = True  # QuantizerConfig.narrow_sum_operands

    @property
    def seed(self) -> int:
        # (a "_calibrated" variant draws the data of the case it varies: the same calibration and inputs)
        return zlib.crc32(self.name.replace("_calibrated", "").encode())

    def config(self) -> Any:
        import openqnn

        return openqnn.QuantizerConfig(act_bitwidth=self.act_bitwidth, use_per_channel_quantization=self.per_channel,
                                       use_per_row_quantization=self.per_row,
                                       narrow_sum_operands=self.narrow_sums)

    def prepare(self) -> Prepared:
        """Convert and quantize with openqnn; draw the evaluation feeds (snapped to their encodings)."""
        import openqnn

        src, dims = self.build()
        g = openqnn.convert(src, input_dims=dims)
        rng = np.random.default_rng(self.seed)
        calib = [self.inputs(rng) for _ in range(self.n_calib)]
        gq = openqnn.quantize(g, calib, self.config())
        sim_feeds, oq_feeds = [], []
        for _ in range(self.n_eval):
            s, o = snap(gq, self.inputs(rng))
            sim_feeds.append(s)
            oq_feeds.append(o)
        return Prepared(self, gq, sim_feeds, oq_feeds)


@dataclass
class Prepared:
    case: Case
    graph: Any  # openqnn's quantized Graph
    sim_feeds: list[dict[str, np.ndarray]] = field(default_factory=list)  # floats on the grid, for the simulator
    oq_feeds: list[dict[str, np.ndarray]] = field(default_factory=list)  # the same as codes, for openqnn


def snap(graph: Any, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(float feed on its encodings' grid, the same as native codes): ``q = clip(rint(x / s) - offset)``,
    ``x' = float32(s) * float32(q + offset)`` (ONNX Runtime's DequantizeLinear); inputs without an
    encoding pass as they are."""
    sim, oq = {}, {}
    for name, x in feed.items():
        enc = graph.tensors[name].encoding
        if enc is None or not np.issubdtype(np.asarray(x).dtype, np.floating):
            sim[name] = oq[name] = x
            continue
        assert len(enc.scale) == 1, f"{name}: a per-axis input encoding"
        s, off = np.float32(enc.scale[0]), int(enc.offset[0])
        q = np.clip(np.rint(np.asarray(x, np.float64) / float(s)) - off, 0, (1 << enc.bitwidth) - 1).astype(np.int64)
        sim[name] = (s * (q + off).astype(np.float32)).astype(np.float32)
        oq[name] = q.astype(np.uint8 if enc.bitwidth == 8 else np.uint16)
    return sim, oq


# ---------------------------------------------------------------------------------------------
# single-op models


def _model(nodes: Sequence[onnx.NodeProto], inputs: dict[str, Sequence[int]], outputs: Sequence[str],
           inits: Sequence[onnx.TensorProto] = (), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "fidelity",
                              [helper.make_tensor_value_info(n, FLOAT, list(s)) for n, s in inputs.items()],
                              [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in outputs],
                              list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = min(m.ir_version, 9)
    return m


def _f(name: str, a: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def _i(name: str, a: Sequence[int] | int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a, np.int64), name)


def _weights(rng: np.random.Generator, shape: Sequence[int], fan_in: int) -> np.ndarray:
    """Random weights whose output channels (axis 0) differ in magnitude (so per-channel matters)."""
    w = rng.standard_normal(shape) / np.sqrt(fan_in)
    return w * np.exp(rng.uniform(-1.0, 1.0, (shape[0],) + (1,) * (len(shape) - 1)))


@dataclass(frozen=True)
class OpSpec:
    """One single-op geometry: ``make(rng)`` -> (nodes, inputs, outputs, initializers, opset)."""

    op: str
    kernel: str
    geometry: str
    make: Callable[[np.random.Generator], tuple[list[onnx.NodeProto], dict[str, Sequence[int]], list[str],
                                                 list[onnx.TensorProto], int]]
    weights: bool = False  # has weights: per-tensor and per-channel variants
    per_row: bool = False  # also a per-row variant (FullyConnected)
    dist: str = "normal"  # "normal", "positive" (log, sqrt, reciprocal ...), "nonzero"
    scale: float = 1.0  # input magnitude


def _draw(rng: np.random.Generator, shape: Sequence[int], dist: str, odd: bool, scale: float) -> np.ndarray:
    if dist == "positive":
        lo, hi = (0.05, 3.7) if odd else (0.1, 2.0)
        x = rng.uniform(lo, hi, shape)
    elif odd:
        x = rng.uniform(-0.37, 2.9, shape)
    else:
        x = rng.standard_normal(shape)
    if dist == "nonzero":
        x = np.where(np.abs(x) < 0.25, np.sign(x + 1e-9) * 0.25, x)
    return (x * scale).astype(np.float32)


def _unary(op: str, shape: Sequence[int] = (1, 5, 7, 9), opset: int = 17, **attrs: Any):
    def make(rng: np.random.Generator):
        return [helper.make_node(op, ["x"], ["y"], **attrs)], {"x": shape}, ["y"], [], opset
    return make


def _binary(op: str, a: Sequence[int] = (1, 5, 7, 9), b: Sequence[int] = (1, 5, 7, 9), opset: int = 17):
    def make(rng: np.random.Generator):
        return [helper.make_node(op, ["x", "z"], ["y"])], {"x": a, "z": b}, ["y"], [], opset
    return make


def _conv(cin: int, cout: int, k: int, *, stride: int = 1, pad: int = 0, dilation: int = 1, group: int = 1,
          hw: tuple[int, int] = (7, 9), bias: bool = True):
    def make(rng: np.random.Generator):
        w = _weights(rng, (cout, cin // group, k, k), cin // group * k * k)
        inits = [_f("w", w)] + ([_f("b", rng.uniform(-0.2, 0.2, cout))] if bias else [])
        node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], kernel_shape=[k, k],
                                strides=[stride] * 2, pads=[pad] * 4, dilations=[dilation] * 2, group=group)
        return [node], {"x": (1, cin, *hw)}, ["y"], inits, 17
    return make


def _conv_transpose(cin: int, cout: int, k: int, stride: int, pad: int, out_pad: int):
    def make(rng: np.random.Generator):
        w = np.swapaxes(_weights(rng, (cout, cin, k, k), cin * k * k), 0, 1)  # ONNX: [cin, cout, k, k]
        node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[k, k], strides=[stride] * 2,
                                pads=[pad] * 4, output_padding=[out_pad] * 2)
        return [node], {"x": (1, cin, 7, 9)}, ["y"], [_f("w", w), _f("b", rng.uniform(-0.2, 0.2, cout))], 17
    return make


def _gemm(batch: int, cin: int, cout: int):
    def make(rng: np.random.Generator):
        w = _weights(rng, (cout, cin), cin)
        node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
        return [node], {"x": (batch, cin)}, ["y"], [_f("w", w), _f("b", rng.uniform(-0.2, 0.2, cout))], 17
    return make


def _matmul_const(shape: Sequence[int], cout: int):
    def make(rng: np.random.Generator):
        w = _weights(rng, (cout, shape[-1]), shape[-1]).T
        return [helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": shape}, ["y"], [_f("w", w)], 17
    return make


def _with_inits(op: str, shape: Sequence[int], inits: Callable[[np.random.Generator], list[onnx.TensorProto]],
                opset: int = 17, **attrs: Any):
    def make(rng: np.random.Generator):
        ts = inits(rng)
        return [helper.make_node(op, ["x", *(t.name for t in ts)], ["y"], **attrs)], {"x": shape}, ["y"], ts, opset
    return make


def _norm(op: str, shape: Sequence[int], param_shape: Sequence[int], opset: int = 17, **attrs: Any):
    return _with_inits(op, shape, lambda r: [_f("g", r.uniform(0.5, 1.5, param_shape)),
                                             _f("b", r.uniform(-0.3, 0.3, param_shape))], opset, **attrs)


def _batchnorm(c: int):
    return _with_inits("BatchNormalization", (1, c, 7, 9), lambda r: [
        _f("g", r.uniform(0.5, 1.5, c)), _f("b", r.uniform(-0.3, 0.3, c)),
        _f("m", r.uniform(-0.2, 0.2, c)), _f("v", r.uniform(0.5, 2.0, c))])


def _resize(mode: str, ctm: str, scales: Sequence[float], nearest: str = "round_prefer_floor"):
    def make(rng: np.random.Generator):
        node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode=mode, coordinate_transformation_mode=ctm,
                                nearest_mode=nearest)
        return [node], {"x": (1, 5, 7, 9)}, ["y"], [_f("s", scales)], 17
    return make


def _concat(shapes: Sequence[Sequence[int]], axis: int):
    def make(rng: np.random.Generator):
        names = [f"x{i}" for i in range(len(shapes))]
        return ([helper.make_node("Concat", names, ["y"], axis=axis)], dict(zip(names, shapes)), ["y"], [], 17)
    return make


def _split():
    def make(rng: np.random.Generator):
        node = helper.make_node("Split", ["x", "sp"], ["y0", "y1"], axis=1)
        return [node], {"x": (1, 6, 7, 9)}, ["y0", "y1"], [_i("sp", [2, 4])], 17
    return make


def _where():
    def make(rng: np.random.Generator):
        nodes = [helper.make_node("Greater", ["x", "z"], ["c"]), helper.make_node("Where", ["c", "x", "z"], ["y"])]
        return nodes, {"x": (1, 5, 7, 9), "z": (1, 5, 7, 9)}, ["y"], [], 17
    return make


def _greater_cast():
    def make(rng: np.random.Generator):
        nodes = [helper.make_node("Greater", ["x", "z"], ["c"]), helper.make_node("Cast", ["c"], ["y"], to=FLOAT)]
        return nodes, {"x": (1, 5, 7, 9), "z": (1, 5, 7, 9)}, ["y"], [], 17
    return make


def _topk():
    def make(rng: np.random.Generator):
        node = helper.make_node("TopK", ["x", "k"], ["y", "idx"], axis=-1)
        return [node], {"x": (1, 5, 17)}, ["y", "idx"], [_i("k", [3])], 17
    return make


def _op_specs() -> list[OpSpec]:
    u, b = _unary, _binary
    s = OpSpec
    specs = [
        # convolutions
        s("conv", "htp.conv2d", "3to17_k3_s2_p1", _conv(3, 17, 3, stride=2, pad=1), weights=True),
        s("conv", "htp.conv2d", "5to64_k3_d2_p2", _conv(5, 64, 3, pad=2, dilation=2), weights=True),
        s("conv", "htp.conv2d", "17to5_k1_nobias", _conv(17, 5, 1, bias=False), weights=True),
        s("conv_depthwise", "htp.conv2d", "17_k3_p1", _conv(17, 17, 3, pad=1, group=17), weights=True),
        s("conv_depthwise", "htp.conv2d", "64_k3_s2_p1", _conv(64, 64, 3, stride=2, pad=1, group=64), weights=True),
        s("conv_transpose", "htp.transpose_conv2d", "5to3_k3_s2_p1_op1", _conv_transpose(5, 3, 3, 2, 1, 1),
          weights=True),
        # linear
        s("gemm", "htp.fully_connected", "3x64to17", _gemm(3, 64, 17), weights=True, per_row=True),
        s("matmul_const", "htp.fully_connected", "1x5x64to17", _matmul_const((1, 5, 64), 17), weights=True,
          per_row=True),
        s("matmul", "htp.matmul", "1x5x17_by_1x17x9", b("MatMul", (1, 5, 17), (1, 17, 9))),
        # element-wise
        s("add", "htp.add", "same", b("Add")),
        s("add", "htp.add", "bcast_c", b("Add", (1, 5, 7, 9), (1, 5, 1, 1))),
        s("sub", "htp.add", "same", b("Sub")),
        s("mul", "htp.multiply", "same", b("Mul")),
        s("mul", "htp.multiply", "bcast_c", b("Mul", (1, 5, 7, 9), (1, 5, 1, 1))),
        s("div", "htp.divide", "same", b("Div"), dist="nonzero"),
        s("max", "htp.max_min", "same", b("Max")),
        s("min", "htp.max_min", "same", b("Min")),
        s("relu", "htp.relu", "1x5x7x9", u("Relu")),
        s("clip", "htp.relu", "0_6", _with_inits("Clip", (1, 5, 7, 9), lambda r: [_f("lo", 0.0), _f("hi", 6.0)]),
          scale=4.0),
        s("prelu", "htp.prelu", "slope_c", _with_inits("PRelu", (1, 5, 7, 9),
                                                       lambda r: [_f("sl", r.uniform(0.05, 0.4, (5, 1, 1)))])),
        s("leaky_relu", "htp.leaky_relu", "0.1", u("LeakyRelu", alpha=0.1)),
        # pooling
        s("maxpool", "htp.pool_max", "k3_s2_p1", u("MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)),
        s("maxpool", "htp.pool_max", "k2_s2", u("MaxPool", kernel_shape=[2, 2], strides=[2, 2])),
        s("avgpool", "htp.pool_avg", "k3_s2_p1_excl", u("AveragePool", kernel_shape=[3, 3], strides=[2, 2],
                                                        pads=[1] * 4, count_include_pad=0)),
        s("avgpool", "htp.pool_avg", "k3_s1_p1_incl", u("AveragePool", kernel_shape=[3, 3], pads=[1] * 4,
                                                        count_include_pad=1)),
        s("global_avgpool", "htp.pool_avg", "7x9", u("GlobalAveragePool")),
        # reductions
        s("reduce_mean", "htp.reduce_sum", "hw", u("ReduceMean", axes=[2, 3], keepdims=1)),
        s("reduce_mean", "htp.reduce_sum", "c_last", u("ReduceMean", shape=(1, 5, 17), axes=[-1], keepdims=1)),
        s("reduce_sum", "htp.reduce_sum", "hw", _with_inits("ReduceSum", (1, 5, 7, 9), lambda r: [_i("ax", [2, 3])],
                                                            keepdims=1)),
        s("reduce_max", "htp.reduce_minmax", "hw", u("ReduceMax", axes=[2, 3], keepdims=1)),
        s("reduce_min", "htp.reduce_minmax", "w", u("ReduceMin", axes=[3], keepdims=1)),
        # softmax and normalizations
        s("softmax", "htp.softmax", "1x5x17", u("Softmax", shape=(1, 5, 17), axis=-1), scale=2.0),
        s("softmax", "htp.softmax", "1x3x64", u("Softmax", shape=(1, 3, 64), axis=-1), scale=4.0),
        s("log_softmax", "htp.log_softmax", "1x5x17", u("LogSoftmax", shape=(1, 5, 17), axis=-1), scale=2.0),
        s("layernorm", "htp.norm", "1x5x17", _norm("LayerNormalization", (1, 5, 17), (17,), axis=-1), weights=True),
        s("layernorm", "htp.norm", "1x7x64", _norm("LayerNormalization", (1, 7, 64), (64,), axis=-1), weights=True),
        # BERT's 16 x 768: its graph output goes through the HTP's float16 output dequantization (harness.recover_output)
        s("layernorm", "htp.norm", "1x16x768", _norm("LayerNormalization", (1, 16, 768), (768,), axis=-1), weights=True),
        s("instancenorm", "htp.norm", "1x5x7x9", _norm("InstanceNormalization", (1, 5, 7, 9), (5,)), weights=True),
        s("groupnorm", "htp.norm", "1x6x7x9_g3", _norm("GroupNormalization", (1, 6, 7, 9), (6,), opset=21,
                                                       num_groups=3), weights=True),
        s("batchnorm", "htp.batchnorm", "1x5x7x9", _batchnorm(5), weights=True),
        # lookup tables
        s("rmsnorm", "htp.norm", "1x5x17", _with_inits("RMSNormalization", (1, 5, 17),
                                                        lambda r: [_f("g", r.uniform(0.5, 1.5, (17,)))], opset=23,
                                                        axis=-1), weights=True),
        s("l2norm", "htp.norm", "1x5x17", u("LpNormalization", shape=(1, 5, 17), axis=-1, p=2)),
        s("sigmoid", "htp.lut", "1x5x7x9", u("Sigmoid"), scale=3.0),
        s("tanh", "htp.lut", "1x5x7x9", u("Tanh"), scale=2.0),
        s("exp", "htp.lut", "1x5x7x9", u("Exp")),
        s("log", "htp.lut", "1x5x7x9", u("Log"), dist="positive"),
        s("sqrt", "htp.lut", "1x5x7x9", u("Sqrt"), dist="positive"),
        s("reciprocal", "htp.lut", "1x5x7x9", u("Reciprocal"), dist="positive"),
        s("gelu", "htp.lut", "1x5x7x9", u("Gelu", opset=20), scale=2.0),
        s("gelu", "htp.lut", "tanh_form", u("Gelu", opset=20, approximate="tanh"), scale=2.0),
        s("hardswish", "htp.lut", "1x5x7x9", u("HardSwish"), scale=3.0),
        s("hardsigmoid", "htp.lut", "1x5x7x9", u("HardSigmoid"), scale=3.0),
        s("elu", "htp.lut", "1x5x7x9", u("Elu"), scale=2.0),
        s("softplus", "htp.lut", "1x5x7x9", u("Softplus"), scale=2.0),
        s("mish", "htp.lut", "1x5x7x9", u("Mish", opset=18), scale=2.0),
        s("softsign", "htp.lut", "1x5x7x9", u("Softsign"), scale=2.0),
        s("selu", "htp.lut", "1x5x7x9", u("Selu"), scale=2.0),
        s("atan", "htp.lut", "1x5x7x9", u("Atan"), scale=2.0),
        s("abs", "htp.lut", "1x5x7x9", u("Abs")),
        s("neg", "htp.lut", "1x5x7x9", u("Neg")),
        s("sin", "htp.lut", "1x5x7x9", u("Sin"), scale=2.0),
        s("cos", "htp.lut", "1x5x7x9", u("Cos"), scale=2.0),
        s("erf", "htp.lut", "1x5x7x9", u("Erf")),
        s("pow2", "htp.lut", "exp2", _with_inits("Pow", (1, 5, 7, 9), lambda r: [_f("e", 2.0)])),
        # data movement
        s("concat", "htp.concat", "c5+3", _concat([(1, 5, 7, 9), (1, 3, 7, 9)], 1)),
        s("concat", "htp.concat", "w9+4", _concat([(1, 5, 7, 9), (1, 5, 7, 4)], 3)),
        s("split", "htp.split", "c2+4", _split()),
        s("resize", "htp.resize_filter", "nearest_x2_asym", _resize("nearest", "asymmetric", [1, 1, 2, 2], "floor")),
        s("resize", "htp.resize_float", "linear_x2_halfpix", _resize("linear", "half_pixel", [1, 1, 2, 2])),
        s("resize", "htp.resize_float", "linear_x2_align", _resize("linear", "align_corners", [1, 1, 2, 2])),
        s("reshape", "htp.reshape", "to_1x5x63", _with_inits("Reshape", (1, 5, 7, 9), lambda r: [_i("sh", [1, 5, 63])])),
        s("transpose", "htp.transpose", "nchw_to_nhwc", u("Transpose", perm=[0, 2, 3, 1])),
        s("gather", "htp.gather", "axis1", _with_inits("Gather", (1, 5, 7, 9), lambda r: [_i("ix", [3, 0, 4])],
                                                       axis=1)),
        s("slice", "htp.strided_slice", "step2", _with_inits("Slice", (1, 5, 7, 9), lambda r: [
            _i("st", [1, 0]), _i("en", [7, 9]), _i("ax", [2, 3]), _i("sp", [2, 2])])),
        s("tile", "htp.tile", "c2", _with_inits("Tile", (1, 5, 7, 9), lambda r: [_i("rep", [1, 2, 1, 1])])),
        s("pad", "htp.pad_constant", "1_2", _with_inits("Pad", (1, 5, 7, 9), lambda r: [
            _i("pads", [0, 0, 1, 2, 0, 0, 2, 1])], mode="constant")),
        s("depth_to_space", "htp.depth_space", "b2_dcr", u("DepthToSpace", shape=(1, 8, 7, 9), blocksize=2)),
        s("space_to_depth", "htp.depth_space", "b2", u("SpaceToDepth", shape=(1, 5, 8, 10), blocksize=2)),
        s("cumsum", "htp.cumsum", "w", _with_inits("CumSum", (1, 5, 7, 9), lambda r: [_i("ax", 3)])),
        s("gather_elements", "htp.gather_elements", "axis3", _with_inits(
            "GatherElements", (1, 5, 7, 9), lambda r: [_i("ix", r.integers(0, 9, (1, 5, 7, 4)))], axis=3)),
        s("cast_bool", "htp.cast_codes", "greater_to_float", _greater_cast()),
        # selection and comparison
        s("greater", "htp.compare", "same", b("Greater")),
        s("where", "htp.select", "greater", _where()),
        s("argmax", "htp.argmax", "c", u("ArgMax", axis=1, keepdims=1)),
        s("topk", "htp.topk", "k3", _topk()),
    ]
    return specs


def _variants(spec: OpSpec) -> Iterator[tuple[str, int, bool, bool, bool]]:
    """(variant name, act bitwidth, per-channel, per-row, odd range)."""
    if spec.weights:
        yield "a8_pt", 8, False, False, False
        yield "a8_pc", 8, True, False, False
        yield "a16_pt", 16, False, False, False
        yield "a16_pc", 16, True, False, False
        yield "a8_pc_odd", 8, True, False, True
        if spec.per_row:
            yield "a8_pr", 8, False, True, False
    else:
        yield "a8", 8, False, False, False
        yield "a16", 16, False, False, False
        yield "a8_odd", 8, False, False, True


def _op_case(spec: OpSpec, variant: str, bits: int, pc: bool, pr: bool, odd: bool) -> Case:
    name = f"{spec.op}/{spec.geometry}/{variant}"
    shapes: dict[str, Sequence[int]] = {}

    def build() -> tuple[onnx.ModelProto, None]:
        nodes, ins, outs, inits, opset = spec.make(np.random.default_rng(zlib.crc32(f"{spec.op}/{spec.geometry}".encode())))
        shapes.update(ins)
        return _model(nodes, ins, outs, inits, opset), None

    def inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
        if not shapes:
            build()
        return {n: _draw(rng, s, spec.dist, odd, spec.scale * (1.0 + 0.37 * i)) for i, (n, s) in enumerate(shapes.items())}

    return Case(name, spec.op, spec.kernel, variant, build, inputs, act_bitwidth=bits, per_channel=pc, per_row=pr)


def op_cases() -> list[Case]:
    return [_op_case(spec, *v) for spec in _op_specs() for v in _variants(spec)]


# ---------------------------------------------------------------------------------------------
# whole models

_MODEL_DIR: Path | None = None


def _model_dir() -> Path:
    global _MODEL_DIR
    if _MODEL_DIR is None:
        import tempfile

        _MODEL_DIR = Path(tempfile.mkdtemp(prefix="openqnn-fidelity-"))
    return _MODEL_DIR


def _export_simple(size: int) -> Path:
    """The guide's SimpleModel (openqnn.demo), exported at 1x3xSIZExSIZE (opset 11, no dynamo)."""
    import warnings

    import torch

    from openqnn.demo import build_simple_model

    path = _model_dir() / f"simple_{size}.onnx"
    if not path.exists():
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(build_simple_model(), (torch.zeros(1, 3, size, size),), str(path), opset_version=11,
                              input_names=["input"], output_names=["output"], dynamo=False)
    return path


def _zoo_model(name: str, size: int) -> Path:
    import warnings

    from benchmarks.zoo import MODELS, export

    d = _model_dir() / f"{name}_{size}"
    path = d / f"{name}.onnx"
    if not path.exists():
        d.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export(MODELS[name], d, size=size)
    return path


# name -> (small size, full size); CNNs: image side; bert: sequence length
MODEL_SIZES = {"simple": (32, 224), "resnet18": (64, 224), "mobilenet_v2": (64, 224), "bert": (16, 64)}


def _model_case(name: str, full: bool, variant: str = "a8_pc", n_eval: int = 4) -> Case:
    size = MODEL_SIZES[name][1 if full else 0]
    bits = 16 if variant.startswith("a16") else 8
    pc = "_pc" in variant

    if name == "simple":
        def build():
            return _export_simple(size), {"input": (1, 3, size, size)}

        def inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
            return {"input": rng.standard_normal((1, 3, size, size)).astype(np.float32)}
    else:
        from benchmarks.zoo import MODELS

        spec = MODELS[name]

        def build():
            path = _zoo_model(name, size)
            if spec.text:
                return path, {n: (1, size) for n in spec.input_names}
            return path, {"input": (1, 3, size, size)}

        def inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
            from benchmarks.zoo import make_inputs

            return make_inputs(spec, 1, size, seed=int(rng.integers(1 << 31)))

    tag = f"{name}/{size}/{variant}"
    # "_calibrated": every activation keeps its calibrated range (an attention mask's too: QNN's coarse Add form)
    return Case(tag, name, "model", variant, build, inputs, act_bitwidth=bits, per_channel=pc, model=True,
                n_eval=n_eval, narrow_sums="_calibrated" not in variant)


def model_cases(full: bool = False) -> list[Case]:
    cases = [_model_case("simple", full, "a8_pt"), _model_case("simple", full, "a8_pc"),
             _model_case("simple", full, "a16_pc")]
    cases += [_model_case(n, full) for n in ("resnet18", "mobilenet_v2", "bert")]
    cases += [_model_case("bert", full, "a8_pc_calibrated")]
    return cases


CASES: dict[str, Case] = {c.name: c for c in op_cases()}


def select(ops: Sequence[str] | None = None, variants: Sequence[str] | None = None) -> list[Case]:
    """Single-op cases whose op (or kernel family, e.g. ``htp.lut``) is in ``ops`` and whose variant is
    in ``variants`` (None: all)."""
    out = []
    for c in CASES.values():
        if ops and c.op not in ops and c.kernel not in ops and c.kernel.removeprefix("htp.") not in ops:
            continue
        if variants and c.variant not in variants:
            continue
        out.append(c)
    return out
