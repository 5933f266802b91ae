"""Caffe (``.prototxt`` + ``.caffemodel``) -> an in-memory ONNX model -> the ONNX frontend.

Each Caffe layer becomes the ONNX ops with its exact semantics, so layouts, shape inference and every op's
translation are the ONNX frontend's; what is Caffe's own is settled here:

- pooling rounds up (Caffe's ``round_mode: CEIL`` default; the last window starts inside the input or its
  left pad) and an average divides by the taps inside the input plus its pads (``count_include_pad``);
- ``BatchNorm``'s statistics are divided by its third blob (the moving-average scale factor); ``Scale`` /
  ``Bias`` broadcast their blob (or second bottom) over the axes after theirs;
- ``Eltwise`` SUM weighs its bottoms by ``coeff``; ``LRN`` across channels is ONNX's (alpha over size), within a
  channel it is ``x * (1 + alpha * avgpool(x^2))^-beta``;
- in-place layers (``top == bottom``) give each write of a blob its own tensor; the last write keeps the
  blob's name, so outputs and ``--out_node`` use Caffe's blob names;
- ``PriorBox`` is constant for the net's input shapes and becomes a static tensor computed here.

Layers only the TRAIN phase includes are dropped. With ``--out_node`` only the layers those blobs need are
converted, so a net whose tail has a layer openqnn refuses (SSD's ``DetectionOutput``) converts up to it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper

from openqnn.errors import ConversionError, InvalidModelError, OpenQnnError, UnsupportedOpError
from openqnn.frontends.base import FrontendOptions
from openqnn.frontends.caffe.schema import message_class
from openqnn.ir.graph import Graph

log = logging.getLogger("openqnn.converter")

__all__ = ["LAYERS", "CaffeNet", "convert_caffe", "prior_boxes", "read_net", "to_onnx"]

OPSET = 13


@dataclass(frozen=True)
class CaffeNet:
    """A Caffe model on disk: its ``.prototxt`` and (optional for a weightless net) its ``.caffemodel``."""

    prototxt: Path
    caffemodel: Path | None = None

    @classmethod
    def of(cls, prototxt: str | os.PathLike[str], caffemodel: str | os.PathLike[str] | None = None) -> CaffeNet:
        """``caffemodel`` defaults to the ``.caffemodel`` beside the ``.prototxt`` with its stem, when there is one."""
        p = Path(prototxt)
        if caffemodel is None:
            beside = p.with_suffix(".caffemodel")
            return cls(p, beside if beside.is_file() else None)
        return cls(p, Path(caffemodel))


def read_net(net: CaffeNet) -> tuple[Any, dict[str, list[np.ndarray]]]:
    """The parsed ``.prototxt`` (a ``NetParameter``) and the weights by layer name from the ``.caffemodel``."""
    if not net.prototxt.is_file():
        raise InvalidModelError(f"{net.prototxt}: no such Caffe .prototxt file")
    proto = message_class("NetParameter")()
    try:
        text_format.Parse(net.prototxt.read_text(), proto, allow_unknown_field=True)
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise InvalidModelError(f"{net.prototxt}: not a Caffe net definition ({str(e).splitlines()[0]})") from None
    if proto.layers and not proto.layer:
        raise InvalidModelError(f"{net.prototxt}: a V1 (layers {{ type: ENUM }}) net definition; upgrade it with "
                                "Caffe's upgrade_net_proto_text, then convert the upgraded .prototxt")
    weights: dict[str, list[np.ndarray]] = {}
    if net.caffemodel is not None:
        if not net.caffemodel.is_file():
            raise InvalidModelError(f"{net.caffemodel}: no such Caffe .caffemodel file")
        trained = message_class("NetParameter")()
        try:
            trained.ParseFromString(net.caffemodel.read_bytes())
        except Exception as e:  # protobuf's DecodeError and friends
            raise InvalidModelError(f"{net.caffemodel}: not a Caffe .caffemodel ({type(e).__name__})") from None
        for layer in [*trained.layer, *trained.layers]:
            if layer.blobs:
                weights[layer.name] = [_blob(b, f"{net.caffemodel}: layer '{layer.name}'") for b in layer.blobs]
    return proto, weights


def _blob(b: Any, where: str) -> np.ndarray:
    if b.HasField("shape"):
        shape = tuple(int(d) for d in b.shape.dim)
    else:  # legacy 4-D blobs
        shape = tuple(int(d) for d in (b.num, b.channels, b.height, b.width))
    data = np.asarray(b.double_data if len(b.double_data) else b.data, dtype=np.float32)
    if data.size != int(np.prod(shape, dtype=np.int64)):
        raise InvalidModelError(f"{where}: a blob of shape {list(shape)} holds {data.size} values")
    return data.reshape(shape)


def convert_caffe(source: CaffeNet | str | os.PathLike[str], options: FrontendOptions) -> Graph:
    """The IR graph (before passes) of a Caffe net; see the module docstring."""
    from openqnn.frontends.onnx.frontend import convert_onnx

    net = source if isinstance(source, CaffeNet) else CaffeNet.of(source)
    model = to_onnx(net, options.input_dims, options.out_nodes)
    try:
        graph = convert_onnx(model, options.input_dims, options.out_nodes or None, options.name or net.prototxt.stem)
    except OpenQnnError as e:
        raise type(e)(f"{net.prototxt}: {e}") from None
    graph.metadata["source"] = str(net.prototxt)
    graph.metadata["producer"] = "caffe"
    return graph


class _Builder:
    """The ONNX graph under construction: nodes, initializers, and each Caffe blob's current tensor."""

    def __init__(self, where: Path, weights: dict[str, list[np.ndarray]]) -> None:
        self.where = where
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.shapes: dict[str, tuple[int, ...]] = {}  # known static shapes (the inputs', those asked for)
        self.blob: dict[str, str] = {}  # Caffe blob -> its current ONNX tensor
        self.names: set[str] = set()  # tensor names taken
        self.node_names: set[str] = set()
        self.final: dict[tuple[int, str], bool] = {}  # (layer index, top) -> the blob's last write
        self.layer: Any = None
        self.index = 0

    # -- names and values
    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def const(self, value: np.ndarray | Sequence[float] | Sequence[int], suffix: str, dtype: Any = np.float32) -> str:
        name = self.unique(f"{self.layer.name}_{suffix}")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def bottom(self, i: int = 0) -> str:
        name = self.layer.bottom[i]
        if name not in self.blob:
            raise self.fail(f"its bottom '{name}' is no earlier layer's top nor a net input")
        return self.blob[name]

    def blobs(self, count: int) -> list[np.ndarray]:
        got = self.weights.get(self.layer.name, [])
        if len(got) < count:
            raise self.fail(f"it needs {count} weight blob(s), the .caffemodel has {len(got)} for it"
                            + ("" if got else "; give the .caffemodel (-b/--caffe_bin)"))
        return got

    def top_name(self, i: int = 0) -> str:
        """The ONNX name for the layer's ``i``-th top: the blob's own name on its last write (reserved for it),
        else the writing layer's name (an earlier write of an in-place blob)."""
        top = self.layer.top[i]
        if self.final.get((self.index, top)):
            return top
        return self.unique(self.layer.name if self.layer.name != top else f"{top}_{self.layer.type.lower()}")

    def node(self, op: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, **attrs: Any) -> list[str]:
        """One ONNX node; ``outputs`` a count of fresh intermediate tensors, or their names."""
        if isinstance(outputs, int):
            outputs = [self.unique(f"{self.layer.name}_{op.lower()}") for _ in range(outputs)]
        name, i = self.layer.name, 1  # the layer's first node is named for it (errors and --out_node name it)
        while name in self.node_names:
            name, i = f"{self.layer.name}_{op.lower()}_{i}", i + 1
        self.node_names.add(name)
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=name, **attrs))
        return list(outputs)

    def out(self, op: str, inputs: Sequence[str], **attrs: Any) -> None:
        """The layer's last node: its output is the layer's (single) top."""
        name = self.top_name(0)
        self.node(op, inputs, [name], **attrs)
        self.blob[self.layer.top[0]] = name

    def bind(self, tensor: str, i: int = 0) -> None:
        """The layer's ``i``-th top is ``tensor`` (through an Identity named for the top)."""
        name = self.top_name(i)
        self.node("Identity", [tensor], [name])
        self.blob[self.layer.top[i]] = name

    def fail(self, why: str) -> ConversionError:
        return ConversionError(f"{self.where}: layer '{self.layer.name}' ({self.layer.type}): {why}")

    def shape_of(self, tensor: str) -> tuple[int, ...]:
        """``tensor``'s static shape: the ONNX frontend converts the graph so far with ``tensor`` as its output
        (ONNX's own shape inference lacks Caffe's and openqnn's ceil-mode pooling rule)."""
        from openqnn.frontends.onnx.frontend import convert_onnx

        if tensor in self.shapes:
            return self.shapes[tensor]
        g = helper.make_graph(self.nodes, "shapes", self.inputs,
                              [helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None)], self.inits)
        try:
            graph = convert_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)]))
        except OpenQnnError as e:
            raise self.fail(f"the shape of its input '{tensor}' cannot be found ({e})") from None
        self.shapes[tensor] = tuple(graph.output_tensors()[0].shape)
        return self.shapes[tensor]


Translation = Callable[[_Builder, Any], None]
LAYERS: dict[str, Translation] = {}


def layer(*types: str) -> Callable[[Translation], Translation]:
    def add(fn: Translation) -> Translation:
        for t in types:
            if t in LAYERS:
                raise ValueError(f"Caffe layer type {t} is registered twice")
            LAYERS[t] = fn
        return fn
    return add


_REFUSED = {
    "DetectionOutput": "SSD's box decoding and NMS; cut the net before it with --out_node (e.g. the mbox_loc, "
                       "mbox_conf_flatten and mbox_priorbox blobs) and decode the boxes on the host",
    "Python": "it runs Python code; cut the net before it with --out_node",
}
_SKIPPED = {"Accuracy", "SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "Silence"}


def to_onnx(net: CaffeNet, input_dims: Any = None, out_nodes: Sequence[str] = ()) -> onnx.ModelProto:
    """The Caffe net as an ONNX model (float32, NCHW, opset 13) with Caffe's semantics (module docstring)."""
    proto, weights = read_net(net)
    b = _Builder(net.prototxt, weights)
    layers = [lay for lay in proto.layer if _in_test_phase(lay)]
    for name, shape in _net_inputs(proto, layers, dict(input_dims or {})):
        b.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        b.shapes[name] = tuple(shape)
        b.blob[name] = name
        b.names.add(name)
    layers = _needed(layers, out_nodes, net.prototxt)
    last: dict[str, int] = {}
    for i, lay in enumerate(layers):
        for top in lay.top:
            last[top] = i
    inputs = set(b.blob)
    b.final = {(i, top): True for top, i in last.items()}
    b.names.update(last)
    consumed: set[str] = set()
    for i, lay in enumerate(layers):
        b.layer, b.index = lay, i
        if lay.type == "Input":
            continue
        if lay.type in _SKIPPED:
            continue
        if lay.type in _REFUSED:
            raise UnsupportedOpError(f"{net.prototxt}: layer '{lay.name}' of type '{lay.type}' is not supported "
                                     f"({_REFUSED[lay.type]}); the Caffe converter supports {', '.join(sorted(LAYERS))}")
        fn = LAYERS.get(lay.type)
        if fn is None:
            raise UnsupportedOpError(f"{net.prototxt}: layer '{lay.name}' of type '{lay.type}' is not supported; the "
                                     f"Caffe converter supports {', '.join(sorted(LAYERS))}; cut the net before it "
                                     "with --out_node")
        consumed.update(b.blob.get(x, "") for x in lay.bottom if x not in lay.top)
        fn(b, lay)
    outputs = [b.blob[t] for t in dict.fromkeys(t for lay in layers for t in lay.top)
               if t in b.blob and b.blob[t] not in consumed and b.blob[t] not in inputs]
    g = helper.make_graph(b.nodes, proto.name or net.prototxt.stem, b.inputs,
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], b.inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="openqnn-caffe")


def _in_test_phase(lay: Any) -> bool:
    test = 1
    if lay.include and not any(not r.HasField("phase") or r.phase == test for r in lay.include):
        return False
    return not any(r.HasField("phase") and r.phase == test for r in lay.exclude)


def _net_inputs(proto: Any, layers: list[Any], dims: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = []
    for i, name in enumerate(proto.input):
        if i < len(proto.input_shape):
            shape = tuple(int(d) for d in proto.input_shape[i].dim)
        else:
            shape = tuple(int(d) for d in proto.input_dim[4 * i:4 * i + 4])
        out.append((name, shape))
    for lay in layers:
        if lay.type == "Input":
            for j, top in enumerate(lay.top):
                shapes = lay.input_param.shape
                dims_of = shapes[j if j < len(shapes) else 0].dim if shapes else []
                out.append((top, tuple(int(d) for d in dims_of)))
    return [(name, tuple(dims.get(name, shape))) for name, shape in out]


def _needed(layers: list[Any], out_nodes: Sequence[str], where: Path) -> list[Any]:
    """The layers the ``out_nodes`` blobs (or layers) need, in order; all of them without ``out_nodes``."""
    if not out_nodes:
        return layers
    by_layer = {lay.name: list(lay.top) for lay in layers}
    need = {t for o in out_nodes for t in by_layer.get(o, [o])}
    keep = []
    for lay in reversed(layers):
        if need & set(lay.top):
            keep.append(lay)
            need |= set(lay.bottom)
    return keep[::-1]


# -- layers -----------------------------------------------------------------------------------------------


def _hw(p: Any, single: str, prefix: str, default: int) -> list[int]:
    """Caffe's ``single`` (repeated in Convolution, one value in Pooling) or ``<prefix>_h`` + ``<prefix>_w``,
    as [h, w]."""
    if p.HasField(f"{prefix}_h") or p.HasField(f"{prefix}_w"):
        return [int(getattr(p, f"{prefix}_h")), int(getattr(p, f"{prefix}_w"))]
    v = getattr(p, single)
    if isinstance(v, int):
        return [int(v)] * 2 if p.HasField(single) else [default] * 2
    vals = [int(x) for x in v] or [default]
    return vals * 2 if len(vals) == 1 else vals


def _conv_attrs(b: _Builder, p: Any) -> dict[str, Any]:
    kernel = _hw(p, "kernel_size", "kernel", 0)
    if 0 in kernel or len(kernel) != 2:
        raise b.fail(f"kernel {kernel}: openqnn converts 2-D convolutions with a kernel size")
    pads = _hw(p, "pad", "pad", 0)
    strides = _hw(p, "stride", "stride", 1)
    dil = [int(d) for d in p.dilation] or [1]
    dil = dil * 2 if len(dil) == 1 else dil
    return {"kernel_shape": kernel, "pads": [*pads, *pads], "strides": strides, "dilations": dil,
            "group": int(p.group)}


@layer("Convolution", "Deconvolution")
def _convolution(b: _Builder, lay: Any) -> None:
    p = lay.convolution_param
    attrs = _conv_attrs(b, p)
    blobs = b.blobs(2 if p.bias_term else 1)
    inputs = [b.bottom(), b.const(blobs[0], "weight")]
    if p.bias_term:
        inputs.append(b.const(blobs[1].reshape(-1), "bias"))
    b.out("Conv" if lay.type == "Convolution" else "ConvTranspose", inputs, **attrs)


@layer("InnerProduct")
def _inner_product(b: _Builder, lay: Any) -> None:
    p = lay.inner_product_param
    blobs = b.blobs(2 if p.bias_term else 1)
    w = blobs[0].reshape(blobs[0].shape[-2:]) if blobs[0].ndim > 2 else blobs[0]
    flat = b.node("Flatten", [b.bottom()], axis=int(p.axis))[0] if p.axis == 1 else None
    if flat is None:
        raise b.fail(f"axis {p.axis}: openqnn converts InnerProduct over axis 1")
    inputs = [flat, b.const(w, "weight")]
    if p.bias_term:
        inputs.append(b.const(blobs[1].reshape(-1), "bias"))
    b.out("Gemm", inputs, transB=0 if p.transpose else 1)


@layer("Pooling")
def _pooling(b: _Builder, lay: Any) -> None:
    p = lay.pooling_param
    method = {0: "Max", 1: "Average"}.get(int(p.pool))
    if method is None:
        raise b.fail("STOCHASTIC pooling is a training-time layer; openqnn converts MAX and AVE")
    if p.global_pooling:
        b.out(f"Global{method}Pool", [b.bottom()])
        return
    kernel = _hw(p, "kernel_size", "kernel", 0)
    pads = _hw(p, "pad", "pad", 0)
    strides = [int(p.stride_h), int(p.stride_w)] if p.HasField("stride_h") or p.HasField("stride_w") \
        else [int(p.stride)] * 2
    attrs: dict[str, Any] = {"kernel_shape": kernel, "pads": [*pads, *pads], "strides": strides,
                             "ceil_mode": 1 if p.round_mode == 0 else 0}
    if method == "Average":
        attrs["count_include_pad"] = 1
    b.out(f"{method}Pool", [b.bottom()], **attrs)


@layer("ReLU")
def _relu(b: _Builder, lay: Any) -> None:
    slope = float(lay.relu_param.negative_slope)
    if slope:
        b.out("LeakyRelu", [b.bottom()], alpha=slope)
    else:
        b.out("Relu", [b.bottom()])


@layer("PReLU")
def _prelu(b: _Builder, lay: Any) -> None:
    slope = b.blobs(1)[0].reshape(-1)
    b.out("PRelu", [b.bottom(), b.const(slope.reshape(-1, 1, 1) if slope.size > 1 else slope, "slope")])


_UNARY = {"Sigmoid": "Sigmoid", "TanH": "Tanh", "AbsVal": "Abs", "BNLL": "Softplus"}


@layer(*_UNARY)
def _unary(b: _Builder, lay: Any) -> None:
    b.out(_UNARY[lay.type], [b.bottom()])


@layer("ELU")
def _elu(b: _Builder, lay: Any) -> None:
    b.out("Elu", [b.bottom()], alpha=float(lay.elu_param.alpha))


@layer("Clip")
def _clip(b: _Builder, lay: Any) -> None:
    p = lay.clip_param
    b.out("Clip", [b.bottom(), b.const(np.float32(p.min), "min"), b.const(np.float32(p.max), "max")])


@layer("Dropout", "Split")
def _identity(b: _Builder, lay: Any) -> None:
    x = b.bottom()
    for i in range(len(lay.top)):
        b.bind(x, i)


@layer("BatchNorm")
def _batch_norm(b: _Builder, lay: Any) -> None:
    mean, var, factor = (b.blobs(3)[i] for i in range(3))
    f = float(factor.reshape(-1)[0])
    f = 0.0 if f == 0 else 1.0 / f
    mean, var = mean.reshape(-1) * f, var.reshape(-1) * f
    ones = np.ones_like(mean)
    b.out("BatchNormalization", [b.bottom(), b.const(ones, "scale"), b.const(np.zeros_like(mean), "bias"),
                                 b.const(mean, "mean"), b.const(var, "var")], epsilon=float(lay.batch_norm_param.eps))


def _broadcast(value: np.ndarray, axis: int, rank: int) -> np.ndarray:
    """A Scale/Bias blob covering axes ``[axis, axis + value.ndim)`` of a rank-``rank`` input, for broadcasting."""
    axis = axis % rank if rank else axis
    return value.reshape(value.shape + (1,) * (rank - axis - value.ndim))


@layer("Scale", "Bias")
def _scale(b: _Builder, lay: Any) -> None:
    p = lay.scale_param if lay.type == "Scale" else lay.bias_param
    x = b.bottom()
    op = "Mul" if lay.type == "Scale" else "Add"
    blobs = b.weights.get(lay.name, [])
    rank = len(b.shape_of(x))
    if len(lay.bottom) == 2:
        other = b.bottom(1)
        other_rank = len(b.shape_of(other))
        axis = int(p.axis) % rank
        if rank - axis - other_rank:
            other = b.node("Reshape", [other, b.const([0] * other_rank + [1] * (rank - axis - other_rank), "shape",
                                                      np.int64)])[0]
        y = b.node(op, [x, other])[0]
    else:
        first = b.blobs(1)[0]
        y = b.node(op, [x, b.const(_broadcast(first, int(p.axis), rank), "scale" if op == "Mul" else "bias")])[0]
    if lay.type == "Scale" and p.bias_term:
        bias = blobs[1 if len(lay.bottom) == 1 else 0] if blobs else None
        if bias is None:
            raise b.fail("bias_term is set but the .caffemodel has no bias blob for it")
        y = b.node("Add", [y, b.const(_broadcast(bias, int(p.axis), rank), "bias")])[0]
    b.bind(y)


@layer("Eltwise")
def _eltwise(b: _Builder, lay: Any) -> None:
    p = lay.eltwise_param
    xs = [b.bottom(i) for i in range(len(lay.bottom))]
    op = int(p.operation)
    if op == 1 and p.coeff:
        if len(p.coeff) != len(xs):
            raise b.fail(f"{len(p.coeff)} coeff for {len(xs)} bottoms")
        xs = [x if c == 1 else b.node("Mul", [x, b.const(np.float32(c), "coeff")])[0] for x, c in zip(xs, p.coeff)]
    if op == 2:
        b.out("Max", xs)
        return
    onnx_op = "Mul" if op == 0 else "Add"
    y = xs[0]
    for x in xs[1:-1]:
        y = b.node(onnx_op, [y, x])[0]
    if len(xs) > 1:
        b.out(onnx_op, [y, xs[-1]])
    else:
        b.bind(y)


@layer("Concat")
def _concat(b: _Builder, lay: Any) -> None:
    p = lay.concat_param
    axis = int(p.axis) if p.HasField("axis") or not p.HasField("concat_dim") else int(p.concat_dim)
    b.out("Concat", [b.bottom(i) for i in range(len(lay.bottom))], axis=axis)


@layer("Softmax")
def _softmax(b: _Builder, lay: Any) -> None:
    b.out("Softmax", [b.bottom()], axis=int(lay.softmax_param.axis))


@layer("LRN")
def _lrn(b: _Builder, lay: Any) -> None:
    p = lay.lrn_param
    size = int(p.local_size)
    if p.norm_region == 0:
        b.out("LRN", [b.bottom()], size=size, alpha=float(p.alpha), beta=float(p.beta), bias=float(p.k))
        return
    x = b.bottom()  # WITHIN_CHANNEL: x * (1 + alpha * mean of x^2 over a size x size window, zero padded)^-beta
    sq = b.node("Mul", [x, x])[0]
    pad = (size - 1) // 2
    avg = b.node("AveragePool", [sq], kernel_shape=[size, size], pads=[pad, pad, pad, pad], strides=[1, 1],
                 count_include_pad=1)[0]
    scaled = b.node("Mul", [avg, b.const(np.float32(p.alpha), "alpha")])[0]
    base = b.node("Add", [scaled, b.const(np.float32(1.0), "one")])[0]
    inv = b.node("Pow", [base, b.const(np.float32(-p.beta), "beta")])[0]
    b.out("Mul", [x, inv])


@layer("Flatten")
def _flatten(b: _Builder, lay: Any) -> None:
    p = lay.flatten_param
    x = b.bottom()
    shape = b.shape_of(x)
    rank = len(shape)
    start, end = int(p.axis) % rank, int(p.end_axis) % rank
    new = [*shape[:start], int(np.prod(shape[start:end + 1], dtype=np.int64)), *shape[end + 1:]]
    b.out("Reshape", [x, b.const(new, "shape", np.int64)])


@layer("Reshape")
def _reshape(b: _Builder, lay: Any) -> None:
    p = lay.reshape_param
    x = b.bottom()
    shape = b.shape_of(x)
    rank = len(shape)
    axis = rank + 1 + int(p.axis) if p.axis < 0 else int(p.axis)  # Caffe: -1 is past the last axis
    end = rank if p.num_axes == -1 else axis + int(p.num_axes)
    dims = [int(d) for d in p.shape.dim]
    mid = [shape[axis + i] if d == 0 else d for i, d in enumerate(dims)]
    new = [*shape[:axis], *mid, *shape[end:]]
    if new.count(-1) == 1:
        known = int(np.prod([d for d in new if d != -1], dtype=np.int64))
        new[new.index(-1)] = int(np.prod(shape, dtype=np.int64)) // max(known, 1)
    b.out("Reshape", [x, b.const(new, "shape", np.int64)])


@layer("Slice")
def _slice(b: _Builder, lay: Any) -> None:
    p = lay.slice_param
    x = b.bottom()
    axis = int(p.axis) if p.HasField("axis") or not p.HasField("slice_dim") else int(p.slice_dim)
    points = [int(s) for s in p.slice_point]
    if not points:
        size = b.shape_of(x)[axis]
        step = size // len(lay.top)
        points = [step * i for i in range(1, len(lay.top))]
    if len(points) != len(lay.top) - 1:
        raise b.fail(f"{len(points)} slice_point for {len(lay.top)} tops")
    bounds = [0, *points, 2**62]
    axes = b.const([axis], "axes", np.int64)
    for i in range(len(lay.top)):
        y = b.node("Slice", [x, b.const([bounds[i]], "starts", np.int64), b.const([bounds[i + 1]], "ends", np.int64),
                             axes])[0]
        b.bind(y, i)


@layer("Power")
def _power(b: _Builder, lay: Any) -> None:
    p = lay.power_param
    y = b.bottom()
    if p.scale != 1:
        y = b.node("Mul", [y, b.const(np.float32(p.scale), "scale")])[0]
    if p.shift != 0:
        y = b.node("Add", [y, b.const(np.float32(p.shift), "shift")])[0]
    if p.power != 1:
        y = b.node("Pow", [y, b.const(np.float32(p.power), "power")])[0]
    b.bind(y)


@layer("Permute")
def _permute(b: _Builder, lay: Any) -> None:
    x = b.bottom()
    order = [int(o) for o in lay.permute_param.order]
    rank = len(b.shape_of(x))
    order += [a for a in range(rank) if a not in order]
    b.out("Transpose", [x], perm=order)


@layer("Normalize")
def _normalize(b: _Builder, lay: Any) -> None:
    p = lay.norm_param
    x = b.bottom()
    rank = len(b.shape_of(x))
    axes = list(range(1, rank)) if p.across_spatial else [1]
    sq = b.node("Mul", [x, x])[0]
    total = b.node("ReduceSum", [sq, b.const(axes, "axes", np.int64)], keepdims=1)[0]
    norm = b.node("Sqrt", [b.node("Add", [total, b.const(np.float32(p.eps), "eps")])[0]])[0]
    y = b.node("Div", [x, norm])[0]
    scale = b.blobs(1)[0].reshape(-1)
    b.out("Mul", [y, b.const(scale.reshape((-1,) + (1,) * (rank - 2)) if scale.size > 1 else scale, "scale")])


@layer("PriorBox")
def _prior_box(b: _Builder, lay: Any) -> None:
    p = lay.prior_box_param
    feat = b.shape_of(b.bottom(0))
    image = b.shape_of(b.bottom(1))
    b.bind(b.const(prior_boxes(p, feat[-2:], image[-2:]), "priors"))


def prior_boxes(p: Any, feature_hw: Sequence[int], image_hw: Sequence[int]) -> np.ndarray:
    """SSD's ``PriorBox`` output for a feature map and image size: ``[1, 2, H * W * priors * 4]`` (the boxes, then
    their variances), as its layer computes them (``prior_box_layer.cpp``)."""
    lh, lw = (int(v) for v in feature_hw)
    if p.HasField("img_h") or p.HasField("img_w"):
        ih, iw = float(p.img_h), float(p.img_w)
    elif p.HasField("img_size"):
        ih = iw = float(p.img_size)
    else:
        ih, iw = (float(v) for v in image_hw)
    if p.HasField("step_h") or p.HasField("step_w"):
        sh, sw = float(p.step_h), float(p.step_w)
    elif p.HasField("step"):
        sh = sw = float(p.step)
    else:
        sh, sw = ih / lh, iw / lw
    ratios = [1.0]
    for ar in p.aspect_ratio:
        if any(abs(ar - r) < 1e-6 for r in ratios):
            continue
        ratios.append(float(ar))
        if p.flip:
            ratios.append(1.0 / float(ar))
    boxes: list[float] = []
    off = float(p.offset)
    for h in range(lh):
        for w in range(lw):
            cx, cy = (w + off) * sw, (h + off) * sh
            for s, min_size in enumerate(p.min_size):
                sizes = [(min_size, min_size)]
                if len(p.max_size) > s:
                    side = math.sqrt(min_size * p.max_size[s])
                    sizes.append((side, side))
                for ar in ratios:
                    if abs(ar - 1.0) < 1e-6:
                        continue
                    sizes.append((min_size * math.sqrt(ar), min_size / math.sqrt(ar)))
                for bw, bh in sizes:
                    boxes += [(cx - bw / 2) / iw, (cy - bh / 2) / ih, (cx + bw / 2) / iw, (cy + bh / 2) / ih]
    out = np.asarray(boxes, dtype=np.float32)
    if p.clip:
        out = np.clip(out, 0.0, 1.0)
    var = [float(v) for v in p.variance] or [0.1]
    variances = np.tile(np.asarray(var if len(var) == 4 else var[:1] * 4, dtype=np.float32), out.size // 4)
    return np.stack([out, variances])[None]
