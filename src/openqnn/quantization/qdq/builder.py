"""The ONNX graph builder of the QDQ export (see :mod:`openqnn.quantization.qdq`).

:class:`_Exporter` builds the ONNX graph node by node: fresh value and node names, shared
initializers, static tensors as integer initializers -> DequantizeLinear (per-axis, per-block),
activations as QuantizeLinear -> DequantizeLinear (per-axis ones as arithmetic). ``HANDLERS`` maps
each IR op type to its translation; :mod:`.ops_compute` and :mod:`.ops_shape` fill it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from openqnn.errors import InvalidModelError
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import Encoding, TensorKind, qrange


class _Unsupported(Exception):
    """A node whose op (or attribute combination) has no ONNX mapping; the message says why."""


def _onnx_type(dtype: DType) -> int:
    return int(helper.np_dtype_to_tensor_dtype(dtype.numpy))


def _channel_first(rank: int) -> tuple[int, ...]:
    return (0, rank - 1, *range(1, rank - 1))


def _channel_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


_STORAGE = {(4, True): TensorProto.INT4, (4, False): TensorProto.UINT4, (8, True): TensorProto.INT8,
            (8, False): TensorProto.UINT8, (16, True): TensorProto.INT16, (16, False): TensorProto.UINT16,
            (32, True): TensorProto.INT32}
_WIDER: dict[int, int] = {TensorProto.INT8: TensorProto.INT16, TensorProto.UINT8: TensorProto.UINT16}
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
        self._consts: dict[tuple[str, tuple[int, ...] | None, bool], str] = {}
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

    def v(self, name: str, perm: Sequence[int] | None = None, wide: bool = False) -> str:
        """The ONNX name of IR tensor ``name``'s value, permuted by ``perm`` when given; ``wide``: a static
        8-bit tensor stored as 16-bit integers (:meth:`const`)."""
        t = self.graph.tensors[name]
        if t.kind is TensorKind.STATIC:
            return self.const(name, tuple(perm) if perm is not None else None, wide)
        x = self.value[name]
        return x if perm is None else self.transpose(x, perm)

    def operands(self, node: Node) -> list[str]:
        """``v`` of each input of an element-wise node; beside a 16-bit activation its 8-bit static operands
        are stored as 16-bit integers (the same values): ONNX Runtime's QDQ node unit of a binary op (PRelu,
        Pow, Add, ...) wants one integer type on its inputs, else QNN EP runs the op on floats."""
        wide = any(not self.graph.tensors[x].is_static and (e := self.graph.tensors[x].encoding) is not None
                   and e.bitwidth == 16 for x in node.inputs if x)
        return [self.v(x, wide=wide) for x in node.inputs]

    def const(self, name: str, perm: tuple[int, ...] | None = None, wide: bool = False) -> str:
        """A static tensor (pre-permuted by ``perm``): a float initializer, or integers -> DequantizeLinear.
        ``wide``: 8-bit per-tensor integers are written as 16-bit ones of scale s / 256 and codes (and zero
        point) times 256: the same values, in a 16-bit type."""
        t = self.graph.tensors[name]
        wide = wide and t.encoding is not None and t.encoding.bitwidth == 8 and len(t.encoding.scale) == 1
        key = (name, perm, wide)
        if key in self._consts:
            return self._consts[key]
        assert t.data is not None, name
        data = np.asarray(t.data)
        enc = t.encoding if t.dtype.is_float else None
        if enc is None:
            arr = data if perm is None else np.ascontiguousarray(np.transpose(data, perm))
            out = self.init(name, arr, exact=True) if perm is None else self.init(f"{name}_transposed", arr)
        else:
            q, elem, zp = _static_integers(name, data, enc)
            if wide:
                q, zp, elem = q.astype(np.int64) << 8, zp.astype(np.int64) << 8, _WIDER[elem]
                enc = replace(enc, scale=tuple(s / 256 for s in enc.scale))
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
        lo, hi = qrange(bits, signed)
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
    lo, hi = qrange(bits, signed)
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


# -- the registry of op translations (filled by ops_compute and ops_shape) ------------------------------

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

