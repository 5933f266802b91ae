"""Conversion state shared by the TFLite op translations.

TFLite is channel-last already (NHWC activations), as the IR is, so there is no layout tracking: a
TFLite tensor maps to one IR tensor of the same shape. Quantized TFLite tensors (int8, uint8, int16)
become float IR tensors with an :class:`~openqnn.ir.Encoding` -- what :func:`openqnn.quantize` gives --
whose integers are TFLite's: int8 is QNN's uint8 with the offset moved by 128 (q_u8 = q_i8 + 128,
offset = -(zero_point + 128)), int16 is uint16 moved by 32768, int32 biases stay signed 32-bit. Constant
quantized tensors hold their dequantized values (``scale * (q - zero_point)``), which quantize back to
exactly TFLite's integers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from openqnn.errors import ConversionError
from openqnn.frontends.tflite.reader import TflModel, TflOp, TflTensor
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Encoding
from openqnn.ops.build import emit

log = logging.getLogger("openqnn.converter")

# TFLite element types quantized tensors hold: bitwidth and the shift onto QNN's unsigned integers
_QTYPES = {9: (8, 128), 3: (8, 0), 7: (16, 32768), 2: (32, 0), 4: (32, 0)}  # INT8, UINT8, INT16, INT32, INT64


def encoding_of(t: TflTensor, axis: int | None = None, where: str = "") -> Encoding | None:
    """The IR encoding of a quantized TFLite tensor (None for a float one). ``axis``: the IR axis of the
    tensor's quantized dimension where the IR holds it in another layout (weights)."""
    q = t.quant
    if q is None or t.type_code not in _QTYPES:
        return None
    bits, shift = _QTYPES[t.type_code]
    n = len(q.scale)
    if bits == 32:  # biases: signed, offset 0 (TFLite's int64 16x8 biases fit int32 in practice)
        if any(q.zero_point):
            raise ConversionError(f"{where}: 32-bit tensor '{t.name}' has a non-zero zero point; openqnn takes "
                                  "offset 0 for 32-bit (bias) encodings")
        return Encoding(32, q.scale, (0,) * n, (axis if axis is not None else q.axis) if n > 1 else None, True, True)
    offsets = tuple(-(z + shift) for z in q.zero_point)
    symmetric = all(z == 0 for z in q.zero_point) and shift != 0
    return Encoding(bits, q.scale, offsets, (axis if axis is not None else q.axis) if n > 1 else None, symmetric)


def dequantize(t: TflTensor, data: np.ndarray) -> np.ndarray:
    """A constant's real values: ``scale * (q - zero_point)`` along its quantized dimension (float32)."""
    q = t.quant
    if q is None or t.type_code not in _QTYPES:
        return data.astype(np.float32) if data.dtype == np.float16 else data
    shape = [1] * data.ndim
    if len(q.scale) > 1:
        shape[q.axis] = len(q.scale)
    scale = np.asarray(q.scale, dtype=np.float64).reshape(shape)
    zp = np.asarray(q.zero_point, dtype=np.float64).reshape(shape)
    real = ((data.astype(np.float64) - zp) * scale).astype(np.float32)
    if t.type_code in (2, 4):  # 32-bit biases: float32 holds q exactly below 2^23 (what static_q reads back)
        back = np.round(real.astype(np.float64) / scale) + zp
        if not np.array_equal(back, data.astype(np.float64)):
            log.warning("constant '%s': some of its 32-bit integers exceed float32's precision; htp may read them "
                        "one code off", t.name)
    return real


class TflContext:
    """The IR graph under construction and the TFLite tensor index -> IR tensor map."""

    def __init__(self, graph: Graph, model: TflModel):
        self.graph = graph
        self.model = model
        self.names: dict[int, str] = {}  # TFLite tensor -> IR tensor (activations and materialized constants)
        self.folded: dict[int, np.ndarray] = {}  # TFLite tensor -> real value computed at conversion
        self.op: TflOp | None = None

    # -- the current op -----------------------------------------------------------------------
    @property
    def cur(self) -> TflOp:
        if self.op is None:
            raise RuntimeError("no TFLite op is being translated")
        return self.op

    def where(self) -> str:
        op = self.op
        if op is None:
            return self.model.source
        out = self.model.tensors[op.outputs[0]].name if op.outputs else f"#{op.index}"
        kind = f"custom op {op.custom_code}" if op.name == "CUSTOM" else op.name
        return f"{self.model.source}: operator {op.index} '{out}' ({kind})"

    def fail(self, msg: str) -> ConversionError:
        return ConversionError(f"{self.where()}: {msg}")

    def t(self, index: int) -> TflTensor:
        """The TFLite tensor of input ``index`` of the current op."""
        i = self.cur.inputs[index]
        if i < 0:
            raise self.fail(f"input {index} is absent")
        return self.model.tensors[i]

    def out(self, index: int = 0) -> TflTensor:
        return self.model.tensors[self.cur.outputs[index]]

    def has(self, index: int) -> bool:
        return len(self.cur.inputs) > index and self.cur.inputs[index] >= 0

    def opt(self, name: str, default: Any = None) -> Any:
        """A builtin option (``Padding``, ``StrideW``, ...); ``default`` when the op has no options table."""
        o = self.cur.options
        return default if o is None or not hasattr(o, name) else getattr(o, name)()

    # -- constants ----------------------------------------------------------------------------
    def is_const(self, index: int) -> bool:
        t = self.t(index)
        return t.data is not None or t.index in self.folded

    def const(self, index: int, what: str = "") -> np.ndarray:
        """Input ``index``'s stored values (integers as stored: shapes, axes, paddings)."""
        t = self.t(index)
        if t.index in self.folded:
            return self.folded[t.index]
        if t.data is None:
            raise self.fail(f"input {index} ('{t.name}'{', ' + what if what else ''}) must be a constant; "
                            "computed values here are not supported")
        return t.data

    def real(self, index: int) -> np.ndarray:
        """Input ``index``'s real (dequantized) values."""
        t = self.t(index)
        return self.folded[t.index] if t.index in self.folded else dequantize(t, self.const(index))

    # -- IR tensors ---------------------------------------------------------------------------
    def x(self, index: int) -> str:
        """The IR tensor of input ``index`` (a constant becomes a STATIC tensor with its encoding)."""
        t = self.t(index)
        if t.index in self.names:
            return self.names[t.index]
        if t.data is None and t.index not in self.folded:
            raise self.fail(f"input {index} ('{t.name}') is produced by no earlier operator")
        name = self.static(index)
        self.names[t.index] = name
        return name

    def static(self, index: int, layout: Callable[[np.ndarray], np.ndarray] | None = None,
               axis: Sequence[int] | None = None) -> str:
        """A STATIC IR tensor of input ``index``'s real values, ``layout`` applied (weights), with its
        encoding; ``axis`` maps TFLite axes to IR axes (the IR position of each TFLite axis)."""
        t = self.t(index)
        data = self.real(index)
        if layout is not None:
            data = layout(data)
        made = self.graph.add_constant(t.name, np.ascontiguousarray(data))
        if t.quant is not None and t.index not in self.folded:
            ir_axis = axis[t.quant.axis] if axis is not None and len(t.quant.scale) > 1 else None
            made.encoding = encoding_of(t, ir_axis, self.where())
        return made.name

    # -- writing ------------------------------------------------------------------------------
    def emit(self, op_type: str, inputs: Sequence[str], attrs: dict[str, Any] | None = None,
             out: int | None = 0, num_outputs: int | None = None) -> list[str]:
        """Add an IR node. ``out``: the TFLite output it produces (named after it, with its encoding);
        None for an intermediate, which takes output 0's encoding."""
        tname = self.out(out if out is not None else 0).name
        names = None
        if out is not None:
            names = [self.graph.unique_name(tname)]
        made = emit(self.graph, op_type, inputs, attrs, name=tname, outputs=names, num_outputs=num_outputs)
        enc = encoding_of(self.out(out if out is not None else 0), None, self.where())
        for m in made:
            if self.graph.tensors[m].dtype.is_float:
                self.graph.tensors[m].encoding = enc
        if out is not None:
            self.names[self.cur.outputs[out]] = made[0]
        return made

    def bind(self, out: int, ir_name: str) -> None:
        self.names[self.cur.outputs[out]] = ir_name

    def fold(self, out: int, value: np.ndarray) -> None:
        """Output ``out`` is known at conversion: its real value."""
        self.folded[self.cur.outputs[out]] = np.asarray(value)


def ir_dtype(t: TflTensor) -> DType:
    """The IR type of a TFLite activation: float for quantized ones (their encoding says the rest)."""
    if t.quant is not None and t.type_code in (9, 3, 7):
        return DType.FLOAT_32
    dt = t.numpy_dtype
    if dt is None:
        raise ConversionError(f"tensor '{t.name}' has type {t.type_name}, which openqnn does not convert")
    return DType.from_numpy(dt)
