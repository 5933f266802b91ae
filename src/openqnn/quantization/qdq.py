"""Export an IR graph (quantized or float) as a standard ONNX model that ONNX Runtime runs.

    openqnn.quantization.qdq.export_qdq(openqnn.load("model_net.json"), "model_qdq.onnx")

Every encoding becomes QuantizeLinear / DequantizeLinear, so the exported model computes what the
cpu backend's quantization simulation computes (float ops between quantize-dequantize pairs):

* an encoded activation: ``Q -> DQ`` right after the op producing it (graph inputs: right after the
  input); 8-bit as uint8, 16-bit as uint16 (opset 21), zero_point = -offset. Signed encodings use
  int8 / int16. Other bitwidths use the next wider type and clamp after the DequantizeLinear.
  Per-axis activation encodings (only from overrides) are written as the equivalent arithmetic
  (Div, Round, Clip, Mul): ONNX Runtime folds an output QuantizeLinear into integer kernels that take
  one zero point only.
* an encoded static tensor (weights, biases, constants): integer initializer -> ``DQ``, per-axis
  with ``axis`` when the encoding has one. Symmetric encodings (offset -2^(bw-1)) are stored signed
  with zero_point 0 (int8, int4, int16), 32-bit biases as int32, others unsigned with
  zero_point = -offset. The integers are the ones the simulation rounds to (restricted encodings:
  within their restricted range). Per-block weight encodings use opset 21's blocked
  DequantizeLinear (``axis`` = the block axis, ``block_size``; the scale is shaped like the weight
  with that axis divided by the block size), which ONNX Runtime runs.

The IR is channel-last inside; the exported model runs convolutions, pools and other
channel-first ONNX ops between ``Transpose`` nodes (NHWC -> NCHW -> op -> NHWC), which ONNX Runtime's
optimizer cancels where they meet. Graph inputs and outputs keep the IR graph's (= the source
model's) names, shapes and layout. Ops without an ONNX mapping raise :class:`UnsupportedOpError`.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from openqnn.errors import InvalidModelError, UnsupportedOpError
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import Encoding, TensorKind

__all__ = ["HANDLERS", "OPSET", "export_qdq", "graph_to_onnx"]

OPSET = 21  # QuantizeLinear / DequantizeLinear with uint16, int16 and int4
IR_VERSION = 10  # the oldest IR version that opset 21 allows
_EXTERNAL_DATA_BYTES = 1 << 30  # larger initializers go to a <model>.onnx.data file (protobuf's 2 GB limit)
_INT64_MIN = -(1 << 63)


class _Unsupported(Exception):
    """A node whose op (or attribute combination) has no ONNX mapping; the message says why."""


def _onnx_type(dtype: DType) -> int:
    return int(helper.np_dtype_to_tensor_dtype(dtype.numpy))


def _channel_first(rank: int) -> tuple[int, ...]:
    return (0, rank - 1, *range(1, rank - 1))


def _channel_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


def _storage_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


_STORAGE = {(4, True): TensorProto.INT4, (4, False): TensorProto.UINT4, (8, True): TensorProto.INT8,
            (8, False): TensorProto.UINT8, (16, True): TensorProto.INT16, (16, False): TensorProto.UINT16,
            (32, True): TensorProto.INT32}
_NUMPY: dict[int, Any] = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8, TensorProto.INT16: np.int16,
          TensorProto.UINT16: np.uint16, TensorProto.INT32: np.int32}


def _int_tensor(name: str, values: np.ndarray, elem: int) -> TensorProto:
    """An integer initializer of ONNX type ``elem`` (4-bit types packed two to a byte, low nibble first)."""
    values = np.asarray(values)
    if elem in (TensorProto.INT4, TensorProto.UINT4):
        flat = (values.reshape(-1).astype(np.int64) & 0xF).astype(np.uint8)
        if flat.size % 2:
            flat = np.append(flat, np.uint8(0))
        packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)
        return helper.make_tensor(name, elem, list(values.shape), packed.tobytes(), raw=True)
    return numpy_helper.from_array(values.astype(_NUMPY[elem]), name)


class _Exporter:
    """Builds the ONNX graph node by node; ``value[ir_name]`` is the ONNX name holding that IR tensor's
    (quantize-dequantized) value."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.reserved = set(graph.tensors)  # IR tensor names: only the tensor itself takes one
        self.defined: set[str] = set()
        self.node_names = {n.name for n in graph.nodes}
        self.used_node_names: set[str] = set()
        self.value: dict[str, str] = {}
        self.scope = "export"
        self._consts: dict[tuple[str, tuple[int, ...] | None], str] = {}
        self._ints: dict[tuple[int, ...], str] = {}
        self._suffix: dict[str, int] = {}  # next suffix to try per base name (no quadratic search)

    # -- names, nodes, initializers ---------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A new value name based on ``base``."""
        cand, i = base, self._suffix.get(base, 1)
        while cand in self.reserved or cand in self.defined:
            cand, i = f"{base}_{i}", i + 1
        self._suffix[base] = i
        self.defined.add(cand)
        return cand

    def claim(self, name: str) -> str:
        """The IR tensor name ``name`` itself the first time; a fresh variant after."""
        if name in self.defined:
            return self.fresh(name)
        self.defined.add(name)
        return name

    def _node_name(self, name: str | None, op: str) -> str:
        if name is not None and name not in self.used_node_names:
            self.used_node_names.add(name)
            return name
        base = f"{self.scope}/{op}"
        cand, i = base, self._suffix.get(f"node:{base}", 1)
        while cand in self.used_node_names or cand in self.node_names:
            cand, i = f"{base}_{i}", i + 1
        self._suffix[f"node:{base}"] = i
        self.used_node_names.add(cand)
        return cand

    def add(self, op: str, inputs: Sequence[str], outputs: Sequence[str] | int = 1, name: str | None = None,
            **attrs: Any) -> list[str]:
        if isinstance(outputs, int):
            outputs = [self.fresh(f"{self.scope}/{op}_out") for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=self._node_name(name, op), **attrs))
        return list(outputs)

    def one(self, op: str, inputs: Sequence[str], out: str | None = None, name: str | None = None,
            **attrs: Any) -> str:
        return self.add(op, inputs, [out] if out else 1, name, **attrs)[0]

    def init(self, base: str, array: np.ndarray | TensorProto, exact: bool = False) -> str:
        """An initializer named ``base`` (an IR name, ``exact``) or after it."""
        name = self.claim(base) if exact else self.fresh(base)
        if isinstance(array, TensorProto):
            array.name = name
            self.inits.append(array)
        else:
            self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values: Sequence[int]) -> str:
        """A shared 1-D int64 initializer (shapes, axes, pads)."""
        key = tuple(int(v) for v in values)
        if key not in self._ints:
            self._ints[key] = self.init("const_i64", np.asarray(key, dtype=np.int64))
        return self._ints[key]

    def scalar(self, value: float, dtype: DType) -> str:
        return self.init(f"{self.scope}/scalar", np.asarray(value, dtype=dtype.numpy))

    def transpose(self, x: str, perm: Sequence[int], out: str | None = None) -> str:
        if list(perm) == list(range(len(perm))) and out is None:
            return x
        return self.one("Transpose", [x], out, perm=list(perm))

    # -- IR tensors ---------------------------------------------------------------------------
    def shape(self, name: str) -> tuple[int, ...]:
        return self.graph.tensors[name].shape

    def dtype(self, name: str) -> DType:
        return self.graph.tensors[name].dtype

    def v(self, name: str, perm: Sequence[int] | None = None) -> str:
        """The ONNX name of IR tensor ``name``'s value, permuted by ``perm`` when given."""
        t = self.graph.tensors[name]
        if t.kind is TensorKind.STATIC:
            return self.const(name, tuple(perm) if perm is not None else None)
        x = self.value[name]
        return x if perm is None else self.transpose(x, perm)

    def const(self, name: str, perm: tuple[int, ...] | None = None) -> str:
        """A static tensor (pre-permuted by ``perm``): a float initializer, or integers -> DequantizeLinear."""
        key = (name, perm)
        if key in self._consts:
            return self._consts[key]
        t = self.graph.tensors[name]
        assert t.data is not None, name
        data = np.asarray(t.data)
        enc = t.encoding if t.dtype.is_float else None
        if enc is None:
            arr = data if perm is None else np.ascontiguousarray(np.transpose(data, perm))
            out = self.init(name, arr, exact=True) if perm is None else self.init(f"{name}_transposed", arr)
        else:
            q, elem, zp = _static_integers(name, data, enc)
            axis = enc.axis
            block: tuple[np.ndarray, np.ndarray] | None = None
            if enc.per_block:  # opset 21 blocked DequantizeLinear: axis = the block axis
                block = _block_params(tuple(data.shape), enc, zp)
                axis = enc.block_axis
            if perm is not None:
                q = np.ascontiguousarray(np.transpose(q, perm))
                axis = perm.index(axis) if axis is not None else None
                if block is not None:
                    block = (np.ascontiguousarray(np.transpose(block[0], perm)),
                             np.ascontiguousarray(np.transpose(block[1], perm)))
            scope, self.scope = self.scope, name
            qname = self.init(f"{name}_quantized", _int_tensor("", q, elem))
            attrs: dict[str, Any] = {"axis": axis} if axis is not None and len(enc.scale) > 1 else {}
            if block is not None:
                sdt = np.float16 if t.dtype is DType.FLOAT_16 else np.float32
                s = self.init(f"{name}_scale", block[0].astype(sdt))
                z = self.init(f"{name}_zero_point", _int_tensor("", block[1], elem))
                attrs = {"axis": axis, "block_size": enc.block_size}
            else:
                s, z = self._scale_zp(enc, t.dtype, zp, elem)
            final = self.claim(name) if perm is None else self.fresh(f"{name}_transposed")
            if t.dtype is DType.FLOAT_64:
                y = self.one("DequantizeLinear", [qname, s, z], **attrs)
                out = self.one("Cast", [y], final, to=TensorProto.DOUBLE)
            else:
                out = self.one("DequantizeLinear", [qname, s, z], final, **attrs)
            self.scope = scope
        self._consts[key] = out
        return out

    # -- quantize / dequantize ----------------------------------------------------------------
    def _scale_zp(self, enc: Encoding, dtype: DType, zp: np.ndarray, elem: int) -> tuple[str, str]:
        sdt = np.float16 if dtype is DType.FLOAT_16 else np.float32
        per_axis = enc.axis is not None and len(enc.scale) > 1
        scale = np.asarray(enc.scale, dtype=np.float64).astype(sdt)
        zp = np.asarray(zp)
        if not per_axis:
            scale, zp = scale.reshape(()), zp.reshape(())
        return self.init(f"{self.scope}_scale", scale), self.init(f"{self.scope}_zero_point", _int_tensor("", zp, elem))

    def qdq(self, x: str, name: str, enc: Encoding, dtype: DType, out: str) -> str:
        """``x`` (IR tensor ``name``'s float value) quantize-dequantized by ``enc``, written to ``out``
        (a name already taken for it)."""
        if enc.axis is not None and len(enc.scale) > 1:
            return self._fake_quantize(x, name, enc, dtype, out)
        if enc.bitwidth > 16:
            raise InvalidModelError(f"tensor '{name}': a {enc.bitwidth}-bit activation encoding has no ONNX "
                                    "QuantizeLinear type (8 and 16 bits export)")
        signed = enc.is_signed
        bits = 8 if enc.bitwidth <= 8 else 16
        zp = -np.asarray(enc.offset, dtype=np.int64)
        lo, hi = _storage_range(bits, signed)
        if zp.min() < lo or zp.max() > hi:
            bad = int(zp.max() if zp.max() > hi else zp.min())
            raise InvalidModelError(
                f"tensor '{name}': encoding offset {-bad} means zero point {bad}, outside "
                f"{'int' if signed else 'uint'}{bits} [{lo}, {hi}]; ONNX QuantizeLinear cannot express it")
        elem = _STORAGE[(bits, signed)]
        scope, self.scope = self.scope, name
        s, z = self._scale_zp(enc, dtype, zp, elem)
        # clamp to the encoding's own (or restricted) range after the DequantizeLinear
        narrow = enc.bitwidth not in (8, 16) or enc.qmin is not None
        wide = dtype is DType.FLOAT_64  # QuantizeLinear takes float32 / float16
        if wide:
            x = self.one("Cast", [x], to=TensorProto.FLOAT)
        q = self.one("QuantizeLinear", [x, s, z], self.fresh(f"{name}_quantized"))
        y = self.one("DequantizeLinear", [q, s, z], None if narrow or wide else out)
        if narrow:
            qlo, qhi = enc.int_range
            sdt = np.float16 if dtype is DType.FLOAT_16 else np.float32
            y = self.one("Max", [y, self.init(f"{name}_min", np.asarray((qlo + enc.offset[0]) * enc.scale[0], sdt))])
            y = self.one("Min", [y, self.init(f"{name}_max", np.asarray((qhi + enc.offset[0]) * enc.scale[0], sdt))],
                         None if wide else out)
        if wide:
            y = self.one("Cast", [y], out, to=TensorProto.DOUBLE)
        self.scope = scope
        return y

    def _fake_quantize(self, x: str, name: str, enc: Encoding, dtype: DType, out: str) -> str:
        """A per-axis activation encoding as arithmetic: ``(clip(round(x / s) - offset) + offset) * s``.

        ONNX Runtime's QDQ fusion folds an output QuantizeLinear into QLinearConv / QLinearMatMul,
        whose output zero point must be a scalar, and then fails at run time on a per-axis one."""
        assert enc.axis is not None
        shape = [1] * self.graph.tensors[name].rank
        shape[enc.axis] = len(enc.scale)
        fdt = dtype.numpy
        scope, self.scope = self.scope, name
        s = self.init(f"{name}_scale", np.asarray(enc.scale, np.float64).astype(np.float32).astype(fdt).reshape(shape))
        off = self.init(f"{name}_offset", np.asarray(enc.offset, fdt).reshape(shape))
        qlo, qhi = enc.int_range
        q = self.one("Sub", [self.one("Round", [self.one("Div", [x, s])]), off])
        q = self.one("Clip", [q, self.init(f"{name}_qmin", np.asarray(qlo, fdt)),
                              self.init(f"{name}_qmax", np.asarray(qhi, fdt))])
        y = self.one("Mul", [self.one("Add", [q, off]), s], out)
        self.scope = scope
        return y

    def needs_qdq(self, name: str) -> bool:
        t = self.graph.tensors[name]
        return t.encoding is not None and t.dtype.is_float

    def outputs_of(self, node: Node) -> list[str]:
        """Names the node's ONNX translation writes: the IR names, or pre-quantization names to Q/DQ after."""
        return [self.fresh(f"{o}_prequant") if self.needs_qdq(o) else self.claim(o) for o in node.outputs]

    def settle(self, node: Node, raws: Sequence[str]) -> None:
        for o, raw in zip(node.outputs, raws):
            t = self.graph.tensors[o]
            if self.needs_qdq(o):
                assert t.encoding is not None
                self.value[o] = self.qdq(raw, o, t.encoding, t.dtype, self.claim(o))
            else:
                self.value[o] = raw


def _static_integers(name: str, data: np.ndarray, enc: Encoding) -> tuple[np.ndarray, int, np.ndarray]:
    """(stored integers, ONNX element type, zero points) of static ``data`` under ``enc``: the integers
    the simulation rounds to (restricted encodings: clamped to their range), shifted to signed storage
    for symmetric encodings. Zero points: one, one per channel, or (per-block) shaped to broadcast
    against ``data`` along its channel and block axes."""
    from openqnn.quantization.encodings import math as qmath

    bw = enc.bitwidth
    scale, offset = enc.arrays(tuple(data.shape))
    q = qmath.quantize(data, scale, offset, bw, enc.is_signed, enc.int_range)
    zp = -offset
    signed = enc.is_signed
    half = 1 << (bw - 1)
    if not signed and (bool(np.all(offset == -half)) or bw > 16):
        q, zp, signed = q - half, zp - half, True  # symmetric: signed storage, zero point 0
    bits = 4 if bw <= 4 else 8 if bw <= 8 else 16 if bw <= 16 else 32
    lo, hi = _storage_range(bits, signed)
    if bw > 32 or zp.min() < lo or zp.max() > hi:
        raise InvalidModelError(f"static tensor '{name}': its {bw}-bit encoding (offsets {offset.min()}..{offset.max()}) "
                                "has no ONNX DequantizeLinear zero point")
    if enc.axis is None or len(enc.scale) == 1:
        zp = zp.reshape(-1)[:1]
    elif not enc.per_block:
        zp = zp.reshape(-1)
    return q, _STORAGE[(bits, signed)], zp


def _block_params(shape: tuple[int, ...], enc: Encoding, zp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero point) of a per-block encoding as ONNX's blocked DequantizeLinear takes them: shaped
    like the tensor with its block axis divided by the block size (repeated along the other axes)."""
    assert enc.block_axis is not None and enc.block_size is not None
    scale, _ = enc.arrays(shape)
    pick = [slice(None)] * len(shape)
    pick[enc.block_axis] = slice(None, None, enc.block_size)
    s = np.broadcast_to(scale, shape)[tuple(pick)]
    z = np.broadcast_to(zp, shape)[tuple(pick)]
    return np.ascontiguousarray(s), np.ascontiguousarray(z)


# -- op translations ----------------------------------------------------------------------------------

Handler = Callable[[_Exporter, Node, list[str]], None]
HANDLERS: dict[str, Handler] = {}


def _handles(*op_types: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for op in op_types:
            HANDLERS[op] = fn
        return fn

    return register


def _present(node: Node, i: int) -> bool:
    return len(node.inputs) > i and bool(node.inputs[i])


def _pads(pad_amount: Sequence[Sequence[int]]) -> list[int]:
    return [int(p[0]) for p in pad_amount] + [int(p[1]) for p in pad_amount]


_CONVS = {"Conv2d": "Conv", "DepthWiseConv2d": "Conv", "Conv3d": "Conv",
          "TransposeConv2d": "ConvTranspose", "TransposeConv3d": "ConvTranspose"}


@_handles(*_CONVS)
def _conv(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x, w = node.inputs[0], node.inputs[1]
    rank = len(ex.shape(x))
    n = rank - 2
    a = node.attrs
    transposed = _CONVS[node.op_type] == "ConvTranspose"
    # IR filter [k..., cin/g, cout] (transposed: [k..., cin, cout/g]) -> ONNX [cout, cin/g, k...] ([cin, cout/g, k...])
    wperm = (n, n + 1, *range(n)) if transposed else (n + 1, n, *range(n))
    ins = [ex.v(x, _channel_first(rank)), ex.v(w, wperm)]
    if _present(node, 2):
        ins.append(ex.v(node.inputs[2]))
    group = ex.shape(x)[-1] if node.op_type == "DepthWiseConv2d" else a["group"]
    attrs: dict[str, Any] = {"kernel_shape": list(ex.shape(w)[:n]), "strides": list(a["stride"]),
                             "dilations": list(a["dilation"]), "pads": _pads(a["pad_amount"]), "group": int(group)}
    if transposed:
        attrs["output_padding"] = list(a["output_padding"])
    y = ex.one(_CONVS[node.op_type], ins, name=node.name, **attrs)
    ex.transpose(y, _channel_last(rank), outs[0])


_POOLS = {"PoolMax2d": "MaxPool", "PoolMax3d": "MaxPool", "PoolAvg2d": "AveragePool", "PoolAvg3d": "AveragePool",
          "PoolLp2d": "LpPool", "PoolMax2dWithIndices": "MaxPool"}


@_handles(*_POOLS)
def _pool(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    rank = len(ex.shape(x))
    a = node.attrs
    attrs: dict[str, Any] = {"kernel_shape": list(a["filter_size"]), "strides": list(a["stride"]),
                             "pads": _pads(a["pad_amount"]), "dilations": list(a["dilation"]),
                             "ceil_mode": int(a["rounding_mode"] == 1)}
    if node.op_type.startswith("PoolAvg"):
        attrs["count_include_pad"] = int(a["count_pad_for_edges"])
    if node.op_type == "PoolLp2d":
        attrs["p"] = int(a["p"])
    if node.op_type == "PoolMax2dWithIndices":
        attrs["storage_order"] = int(a["storage_order"])
    ys = ex.add(_POOLS[node.op_type], [ex.v(x, _channel_first(rank))], len(outs), name=node.name, **attrs)
    for y, out in zip(ys, outs):
        ex.transpose(y, _channel_last(rank), out)


@_handles("FullyConnected")
def _fully_connected(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    k = ex.shape(node.inputs[1])[1]
    xv = ex.v(x)
    if len(ex.shape(x)) != 2:
        xv = ex.one("Reshape", [xv, ex.ints((-1, k))])
    ins = [xv, ex.v(node.inputs[1])] + ([ex.v(node.inputs[2])] if _present(node, 2) else [])
    out_shape = ex.shape(node.outputs[0])
    if len(out_shape) == 2:
        ex.one("Gemm", ins, outs[0], name=node.name, transB=1)
    else:
        y = ex.one("Gemm", ins, name=node.name, transB=1)
        ex.one("Reshape", [y, ex.ints(out_shape)], outs[0])


def _swap_last(rank: int) -> tuple[int, ...]:
    return (*range(rank - 2), rank - 1, rank - 2)


@_handles("MatMul")
def _matmul(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ins = []
    for i, flag in ((0, "transpose_in0"), (1, "transpose_in1")):
        name = node.inputs[i]
        ins.append(ex.v(name, _swap_last(len(ex.shape(name))) if node.attrs[flag] else None))
    ex.one("MatMul", ins, outs[0], name=node.name)


_BINARY = {"ElementWiseAdd": "Add", "ElementWiseSubtract": "Sub", "ElementWiseMultiply": "Mul",
           "ElementWiseDivide": "Div", "ElementWisePower": "Pow", "ElementWiseMaximum": "Max",
           "ElementWiseMinimum": "Min", "ElementWiseAnd": "And", "ElementWiseOr": "Or", "ElementWiseXor": "Xor",
           "ElementWiseEqual": "Equal", "ElementWiseGreater": "Greater", "ElementWiseGreaterEqual": "GreaterOrEqual",
           "ElementWiseLess": "Less", "ElementWiseLessEqual": "LessOrEqual"}


@_handles(*_BINARY)
def _binary(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one(_BINARY[node.op_type], [ex.v(x) for x in node.inputs], outs[0], name=node.name)


@_handles("ElementWiseNotEqual")
def _not_equal(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Not", [ex.one("Equal", [ex.v(x) for x in node.inputs], name=node.name)], outs[0])


@_handles("ElementWiseFmod", "ElementWiseMod")
def _mod(ex: _Exporter, node: Node, outs: list[str]) -> None:
    a, b = (ex.v(x) for x in node.inputs)
    if node.op_type == "ElementWiseFmod":
        ex.one("Mod", [a, b], outs[0], name=node.name, fmod=1)
    elif not ex.dtype(node.inputs[0]).is_float:
        ex.one("Mod", [a, b], outs[0], name=node.name, fmod=0)
    else:  # Python's remainder (the divisor's sign): fmod, plus the divisor where the signs differ
        dt = ex.dtype(node.inputs[0])
        r = ex.one("Mod", [a, b], name=node.name, fmod=1)
        zero = ex.scalar(0.0, dt)
        differ = ex.one("Xor", [ex.one("Less", [r, zero]), ex.one("Less", [b, zero])])
        fix = ex.one("And", [ex.one("Not", [ex.one("Equal", [r, zero])]), differ])
        ex.one("Where", [fix, ex.one("Add", [r, b]), r], outs[0])


@_handles("ElementWiseFloorDiv")
def _floor_div(ex: _Exporter, node: Node, outs: list[str]) -> None:
    a, b = (ex.v(x) for x in node.inputs)
    dt = ex.dtype(node.inputs[0])
    if dt.is_float:
        ex.one("Floor", [ex.one("Div", [a, b], name=node.name)], outs[0])
        return
    a64, b64 = (ex.one("Cast", [t], to=TensorProto.DOUBLE) for t in (a, b))
    fl = ex.one("Floor", [ex.one("Div", [a64, b64], name=node.name)])
    ex.one("Cast", [fl], outs[0], to=_onnx_type(dt))


@_handles("ElementWiseBitShiftLeft", "ElementWiseBitShiftRight")
def _bit_shift(ex: _Exporter, node: Node, outs: list[str]) -> None:
    if ex.dtype(node.inputs[0]) not in (DType.UINT_8, DType.UINT_16, DType.UINT_32, DType.UINT_64):
        raise _Unsupported(f"ONNX BitShift takes unsigned integers, not {ex.dtype(node.inputs[0]).name}")
    direction = "LEFT" if node.op_type.endswith("Left") else "RIGHT"
    ex.one("BitShift", [ex.v(x) for x in node.inputs], outs[0], name=node.name, direction=direction)


_UNARY = {"ElementWiseAbs": "Abs", "ElementWiseNeg": "Neg", "ElementWiseExp": "Exp", "ElementWiseLog": "Log",
          "ElementWiseSquareRoot": "Sqrt", "ElementWiseSin": "Sin", "ElementWiseCos": "Cos",
          "ElementWiseTan": "Tan", "ElementWiseAsin": "Asin", "ElementWiseAcos": "Acos", "ElementWiseAtan": "Atan",
          "ElementWiseSinh": "Sinh", "ElementWiseCosh": "Cosh", "ElementWiseAsinh": "Asinh",
          "ElementWiseAcosh": "Acosh", "ElementWiseAtanh": "Atanh", "ElementWiseFloor": "Floor",
          "ElementWiseCeil": "Ceil", "ElementWiseRound": "Round", "ElementWiseSign": "Sign", "ElementWiseNot": "Not",
          "ElementWiseReciprocal": "Reciprocal", "ElementWiseErf": "Erf", "ElementWiseSoftplus": "Softplus",
          "ElementWiseSoftsign": "Softsign", "ElementWiseIsNan": "IsNaN", "Relu": "Relu", "Sigmoid": "Sigmoid",
          "Tanh": "Tanh", "HardSwish": "HardSwish", "Mish": "Mish", "Gelu": "Gelu", "Elu": "Elu", "Selu": "Selu",
          "Celu": "Celu", "HardSigmoid": "HardSigmoid", "ElementWiseIsInf": "IsInf"}
_UNARY_ATTRS = {"Gelu": {"approximate": "approximate"}, "Elu": {"alpha": "alpha"},
                "Selu": {"alpha": "alpha", "gamma": "gamma"}, "Celu": {"alpha": "alpha"},
                "HardSigmoid": {"alpha": "alpha", "beta": "beta"},
                "ElementWiseIsInf": {"detect_negative": "detect_negative", "detect_positive": "detect_positive"}}


@_handles(*_UNARY)
def _unary(ex: _Exporter, node: Node, outs: list[str]) -> None:
    attrs = {onnx_name: (int(v) if isinstance(v := node.attrs[ir_name], bool) else v)
             for ir_name, onnx_name in _UNARY_ATTRS.get(node.op_type, {}).items()}
    ex.one(_UNARY[node.op_type], [ex.v(node.inputs[0])], outs[0], name=node.name, **attrs)


@_handles("ElementWiseRsqrt")
def _rsqrt(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Reciprocal", [ex.one("Sqrt", [ex.v(node.inputs[0])], name=node.name)], outs[0])


@_handles("ReluMinMax")
def _relu_min_max(ex: _Exporter, node: Node, outs: list[str]) -> None:
    dt = ex.dtype(node.inputs[0])
    lo, hi = ex.scalar(node.attrs["min_value"], dt), ex.scalar(node.attrs["max_value"], dt)
    ex.one("Clip", [ex.v(node.inputs[0]), lo, hi], outs[0], name=node.name)


@_handles("Prelu")
def _prelu(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("PRelu", [ex.v(x) for x in node.inputs], outs[0], name=node.name)


@_handles("ElementWiseSelect")
def _select(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Where", [ex.v(x) for x in node.inputs], outs[0], name=node.name)


@_handles("Cast")
def _cast(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Cast", [ex.v(node.inputs[0])], outs[0], name=node.name, to=_onnx_type(node.attrs["dtype"]))


@_handles("Softmax", "LogSoftmax")
def _softmax(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = ex.v(node.inputs[0])
    if node.attrs["beta"] != 1.0:
        x = ex.one("Mul", [x, ex.scalar(node.attrs["beta"], ex.dtype(node.inputs[0]))])
    ex.one(node.op_type, [x], outs[0], name=node.name, axis=int(node.attrs["axis"]))


def _normalize(ex: _Exporter, x: str, axes: Sequence[int], eps: float, dt: DType) -> str:
    """(x - mean) / sqrt(var + eps) over ``axes``, in ONNX ops."""
    mean = ex.one("ReduceMean", [x, ex.ints(axes)], keepdims=1)
    d = ex.one("Sub", [x, mean])
    var = ex.one("ReduceMean", [ex.one("Mul", [d, d]), ex.ints(axes)], keepdims=1)
    return ex.one("Div", [d, ex.one("Sqrt", [ex.one("Add", [var, ex.scalar(eps, dt)])])])


@_handles("LayerNorm")
def _layer_norm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    shape, dt = ex.shape(x), ex.dtype(x)
    rank = len(shape)
    axes = sorted(a % rank for a in node.attrs["axes"])
    eps = node.attrs["epsilon"]
    norm_shape = tuple(shape[a] for a in axes)
    params = [node.inputs[i] if _present(node, i) else "" for i in (1, 2)]
    trailing = bool(axes) and axes == list(range(rank - len(axes), rank))
    if trailing and all(not p or ex.shape(p) == norm_shape for p in params):
        g = ex.v(params[0]) if params[0] else ex.init(f"{node.name}_ones", np.ones(norm_shape, dt.numpy))
        ins = [ex.v(x), g] + ([ex.v(params[1])] if params[1] else [])
        ex.one("LayerNormalization", ins, outs[0], name=node.name, axis=axes[0], epsilon=float(eps))
        return
    y = _normalize(ex, ex.v(x), axes, eps, dt)
    if params[0]:
        y = ex.one("Mul", [y, ex.v(params[0])])
    if params[1]:
        ex.one("Add", [y, ex.v(params[1])], outs[0])
    else:
        ex.one("Identity", [y], outs[0])


@_handles("Batchnorm")
def _batchnorm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x, w, b = (ex.v(t) for t in node.inputs[:3])  # channel-last: per-channel params broadcast on the last axis
    ex.one("Add", [ex.one("Mul", [x, w], name=node.name), b], outs[0])


@_handles("InstanceNorm")
def _instance_norm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    rank = len(ex.shape(x))
    if rank < 3:
        raise _Unsupported("InstanceNorm needs a rank >= 3 input")
    c = ex.shape(x)[-1]
    w, b = (ex.one("Reshape", [ex.v(t), ex.ints((c,))]) for t in node.inputs[1:3])
    y = ex.one("InstanceNormalization", [ex.v(x, _channel_first(rank)), w, b], name=node.name,
               epsilon=float(node.attrs["epsilon"]))
    ex.transpose(y, _channel_last(rank), outs[0])


@_handles("GroupNorm")
def _group_norm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    shape, dt = ex.shape(x), ex.dtype(x)
    rank, groups, c = len(shape), int(node.attrs["group"]), shape[-1]
    if rank < 2 or c % groups:
        raise _Unsupported(f"GroupNorm of {shape} in {groups} groups")
    cf = ex.v(x, _channel_first(rank))
    grouped = ex.one("Reshape", [cf, ex.ints((shape[0], groups, -1))], name=node.name)
    y = _normalize(ex, grouped, (2,), node.attrs["epsilon"], dt)
    y = ex.one("Reshape", [y, ex.ints(tuple(shape[p] for p in _channel_first(rank)))])
    y = ex.transpose(y, _channel_last(rank))
    g, b = (ex.one("Reshape", [ex.v(t), ex.ints((c,))]) for t in node.inputs[1:3])
    ex.one("Add", [ex.one("Mul", [y, g]), b], outs[0])


@_handles("Lrn")
def _lrn(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    rank = len(ex.shape(x))
    if rank != 4:
        raise _Unsupported(f"ONNX LRN on a rank-{rank} input")
    size = 2 * int(node.attrs["radius"]) + 1
    y = ex.one("LRN", [ex.v(x, _channel_first(rank))], name=node.name, size=size,
               alpha=float(node.attrs["alpha"]) * size, beta=float(node.attrs["beta"]), bias=float(node.attrs["bias"]))
    ex.transpose(y, _channel_last(rank), outs[0])


@_handles("L2Norm")
def _l2_norm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    rank, dt = len(ex.shape(x)), ex.dtype(x)
    axes = sorted({a % rank for a in node.attrs["axes"]})
    xv = ex.v(x)
    ss = ex.one("ReduceSumSquare", [xv, ex.ints(axes)], name=node.name, keepdims=1)
    ss = ex.one("Max", [ss, ex.scalar(node.attrs["epsilon"], dt)])
    ex.one("Mul", [xv, ex.one("Reciprocal", [ex.one("Sqrt", [ss])])], outs[0])


@_handles("LpNorm")
def _lp_norm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("LpNormalization", [ex.v(node.inputs[0])], outs[0], name=node.name, axis=int(node.attrs["axis"]),
           p=int(node.attrs["p"]))


_REDUCE = {"ReduceMax": "ReduceMax", "ReduceMin": "ReduceMin", "ReduceMean": "ReduceMean", "ReduceSum": "ReduceSum",
           "ReduceProd": "ReduceProd", "ReduceL1": "ReduceL1", "ReduceL2": "ReduceL2",
           "ReduceLogSumExp": "ReduceLogSumExp", "ReduceSumSquare": "ReduceSumSquare"}


@_handles(*_REDUCE)
def _reduce(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = ex.v(node.inputs[0])
    axes = node.attrs["axes"]
    if not axes:  # each element reduced on its own
        if node.op_type in ("ReduceL1", "ReduceL2"):
            ex.one("Abs", [x], outs[0], name=node.name)
        elif node.op_type == "ReduceSumSquare":
            ex.one("Mul", [x, x], outs[0], name=node.name)
        else:
            ex.one("Identity", [x], outs[0], name=node.name)
        return
    ex.one(_REDUCE[node.op_type], [x, ex.ints(axes)], outs[0], name=node.name,
           keepdims=int(node.attrs["keep_dims"]))


@_handles("Argmax", "Argmin")
def _arg_reduce(ex: _Exporter, node: Node, outs: list[str]) -> None:
    a = node.attrs
    y = ex.one("ArgMax" if node.op_type == "Argmax" else "ArgMin", [ex.v(node.inputs[0])], name=node.name,
               axis=int(a["axis"]), keepdims=int(a["keep_dims"]), select_last_index=int(a["select_last_index"]))
    ex.one("Cast", [y], outs[0], to=_onnx_type(ex.dtype(node.outputs[0])))


@_handles("CumulativeSum")
def _cumsum(ex: _Exporter, node: Node, outs: list[str]) -> None:
    axis = ex.init(f"{node.name}_axis", np.asarray(node.attrs["axis"], dtype=np.int64))
    ex.one("CumSum", [ex.v(node.inputs[0]), axis], outs[0], name=node.name,
           exclusive=int(node.attrs["exclusive"]), reverse=int(node.attrs["reverse"]))


@_handles("TopK")
def _topk(ex: _Exporter, node: Node, outs: list[str]) -> None:
    a = node.attrs
    _, idx = ex.add("TopK", [ex.v(node.inputs[0]), ex.ints((a["k"],))], [outs[0], ex.fresh(f"{outs[1]}_i64")],
                         name=node.name, axis=int(a["axis"]), largest=int(a["largest"]), sorted=int(a["sorted"]))
    ex.one("Cast", [idx], outs[1], to=_onnx_type(ex.dtype(node.outputs[1])))


@_handles("Resize")
def _resize(ex: _Exporter, node: Node, outs: list[str]) -> None:
    a = node.attrs
    x = node.inputs[0]
    in_shape = ex.shape(x)
    rank = len(in_shape)
    if a["nearest_mode"] == "simple":
        raise _Unsupported("nearest_mode 'simple' (ONNX opset < 11 Upsample rounding) has no ONNX Resize mode")
    perm = _channel_first(rank) if rank == 4 else tuple(range(rank))  # NHWC: resize NCHW
    attrs: dict[str, Any] = {"mode": a["interpolation_mode"], "coordinate_transformation_mode": a["transformation_mode"],
                             "nearest_mode": a["nearest_mode"], "cubic_coeff_a": float(a["cubic_coeff"]),
                             "exclude_outside": int(a["exclude_outside"]), "antialias": int(a["antialias"]),
                             "extrapolation_value": float(a["extrapolation_value"])}
    roi = ""
    if a["roi"]:
        r = list(a["roi"])
        roi = ex.init(f"{node.name}_roi", np.asarray([r[p] for p in perm] + [r[rank + p] for p in perm], np.float32))
    if a["scales"]:
        if any(int(np.floor(np.float32(sc) * n)) != o for sc, n, o in zip(a["scales"], in_shape, a["output_shape"])):
            raise _Unsupported(f"its scales {list(a['scales'])} do not give its output shape {list(a['output_shape'])} "
                               "(keep_aspect_ratio_policy); ONNX Resize takes scales or sizes, not both")
        scales = ex.init(f"{node.name}_scales", np.asarray([a["scales"][p] for p in perm], np.float32))
        ins = [ex.v(x, perm), roi, scales]
    else:
        ins = [ex.v(x, perm), roi, "", ex.ints([a["output_shape"][p] for p in perm])]
    y = ex.one("Resize", ins, name=node.name, **attrs)
    ex.transpose(y, _channel_last(rank) if rank == 4 else tuple(range(rank)), outs[0])


@_handles("Reshape")
def _reshape(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Reshape", [ex.v(node.inputs[0]), ex.ints(node.attrs["shape"])], outs[0], name=node.name, allowzero=1)


@_handles("Transpose")
def _transpose(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Transpose", [ex.v(node.inputs[0])], outs[0], name=node.name, perm=list(node.attrs["perm"]))


@_handles("Concat")
def _concat(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Concat", [ex.v(x) for x in node.inputs], outs[0], name=node.name, axis=int(node.attrs["axis"]))


@_handles("Split")
def _split(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    axis = int(node.attrs["axis"])
    bounds = [0, *node.attrs["split_index"], ex.shape(x)[axis]]
    sizes = [b - a for a, b in itertools.pairwise(bounds)]
    ex.add("Split", [ex.v(x), ex.ints(sizes)], outs, name=node.name, axis=axis)


@_handles("StridedSlice")
def _strided_slice(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ranges = node.attrs["ranges"]
    starts = [int(b) for b, _, _ in ranges]
    ends = [int(e) if e >= 0 else _INT64_MIN for _, e, _ in ranges]  # -1: past index 0 (negative strides)
    steps = [int(s) for _, _, s in ranges]
    ins = [ex.v(node.inputs[0]), ex.ints(starts), ex.ints(ends), ex.ints(range(len(ranges))), ex.ints(steps)]
    ex.one("Slice", ins, outs[0], name=node.name)


def _int64_indices(ex: _Exporter, name: str) -> str:
    v = ex.v(name)
    return v if ex.dtype(name) is DType.INT_64 else ex.one("Cast", [v], to=TensorProto.INT64)


@_handles("Gather", "GatherElements")
def _gather(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ins = [ex.v(x) for x in node.inputs]  # int32 or int64 indices
    ex.one(node.op_type, ins, outs[0], name=node.name, axis=int(node.attrs["axis"]))


@_handles("GatherNd")
def _gather_nd(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ins = [ex.v(node.inputs[0]), _int64_indices(ex, node.inputs[1])]
    ex.one("GatherND", ins, outs[0], name=node.name, batch_dims=int(node.attrs["batch_dims"]))


@_handles("ScatterElements", "ScatterNd")
def _scatter(ex: _Exporter, node: Node, outs: list[str]) -> None:
    idx = ex.v(node.inputs[1]) if node.op_type == "ScatterElements" else _int64_indices(ex, node.inputs[1])
    ins = [ex.v(node.inputs[0]), idx, ex.v(node.inputs[2])]
    attrs: dict[str, Any] = {"reduction": node.attrs["reduction"]}
    if node.op_type == "ScatterElements":
        attrs["axis"] = int(node.attrs["axis"])
    ex.one("ScatterElements" if node.op_type == "ScatterElements" else "ScatterND", ins, outs[0], name=node.name,
           **attrs)


_PAD_MODES = {0: "constant", 2: "reflect", 3: "edge"}


@_handles("Pad")
def _pad(ex: _Exporter, node: Node, outs: list[str]) -> None:
    scheme = node.attrs["scheme"]
    if scheme not in _PAD_MODES:
        raise _Unsupported("mirror-symmetric padding (scheme 1) has no ONNX Pad mode (constant, reflect, edge)")
    x = node.inputs[0]
    dt = ex.dtype(x)
    ins = [ex.v(x), ex.ints(_pads(node.attrs["pad_amount"]))]
    if scheme == 0:
        value = node.attrs["pad_constant_value"]
        ins.append(ex.scalar(value if dt.is_float else int(value), dt))
    ex.one("Pad", ins, outs[0], name=node.name, mode=_PAD_MODES[scheme])


@_handles("Tile")
def _tile(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Tile", [ex.v(node.inputs[0]), ex.ints(node.attrs["multiples"])], outs[0], name=node.name)


@_handles("DepthToSpace", "SpaceToDepth")
def _depth_space(ex: _Exporter, node: Node, outs: list[str]) -> None:
    bh, bw = node.attrs["block_size"]
    if bh != bw:
        raise _Unsupported(f"block size {bh}x{bw}: ONNX takes one square blocksize")
    attrs: dict[str, Any] = {"blocksize": int(bh)}
    if node.op_type == "DepthToSpace":
        attrs["mode"] = "CRD" if node.attrs["mode"] == 1 else "DCR"
    elif node.attrs["mode"] == 1:
        raise _Unsupported("SpaceToDepth in CRD mode")
    y = ex.one(node.op_type, [ex.v(node.inputs[0], _channel_first(4))], name=node.name, **attrs)
    ex.transpose(y, _channel_last(4), outs[0])


# -- the model ------------------------------------------------------------------------------------------

def graph_to_onnx(graph: Graph) -> onnx.ModelProto:
    """The ONNX model (opset 21) of an IR graph; encodings become QuantizeLinear / DequantizeLinear."""
    from openqnn import __version__

    ex = _Exporter(graph)
    inputs = []
    for name in graph.inputs:
        t = graph.tensors[name]
        inputs.append(helper.make_tensor_value_info(name, _onnx_type(t.dtype), list(t.shape)))
        ex.defined.add(name)
        ex.value[name] = name
        if ex.needs_qdq(name):
            assert t.encoding is not None
            ex.value[name] = ex.qdq(name, name, t.encoding, t.dtype, ex.fresh(f"{name}_qdq"))
    for node in graph.nodes:
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            raise UnsupportedOpError(f"cannot export node '{node.name}' ({node.op_type}) to ONNX: export-onnx has no "
                                     f"ONNX mapping for the IR op {node.op_type}")
        ex.scope = node.name
        outs = ex.outputs_of(node)
        try:
            handler(ex, node, outs)
        except _Unsupported as e:
            raise UnsupportedOpError(f"cannot export node '{node.name}' ({node.op_type}) to ONNX: {e}") from None
        ex.settle(node, outs)
    outputs = []
    for name in graph.outputs:
        t = graph.tensors[name]
        if t.kind is TensorKind.STATIC:
            ex.value[name] = ex.v(name)
        if ex.value[name] != name and name not in graph.inputs:
            ex.one("Identity", [ex.value[name]], ex.claim(name))
        outputs.append(helper.make_tensor_value_info(name, _onnx_type(t.dtype), list(t.shape)))
    onnx_graph = helper.make_graph(ex.nodes, graph.name, inputs, outputs, ex.inits)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="openqnn", producer_version=__version__)
    model.ir_version = IR_VERSION
    quant = graph.metadata.get("quantization")
    model.doc_string = ("openqnn export: QuantizeLinear/DequantizeLinear express the model's encodings" if quant
                        else "openqnn export of a float model")
    if quant:
        helper.set_model_props(model, {"openqnn.quantization": json.dumps(quant, sort_keys=True)})
    return model


def export_qdq(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write ``graph`` (quantized or float) as an ONNX model at ``path``; returns the path.

    The file is written under a temporary name and renamed, so a failure leaves no half-written
    model. Models whose initializers pass 1 GiB keep them in ``<path>.data`` beside it.
    """
    out = Path(path)
    model = graph_to_onnx(graph)
    out.parent.mkdir(parents=True, exist_ok=True)
    big = sum(t.nbytes for t in graph.static_tensors()) > _EXTERNAL_DATA_BYTES
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        tmp_model = Path(tmp) / out.name
        if big:
            data_name = f"{out.name}.data"
            onnx.save_model(model, str(tmp_model), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            os.replace(Path(tmp) / data_name, out.parent / data_name)
        else:
            tmp_model.write_bytes(model.SerializeToString())
        os.replace(tmp_model, out)
    return out
