"""Read a ``.tflite`` flatbuffer into plain data: tensors (shape, type, constant data, quantization) and
operators (builtin name or custom code, inputs, outputs, options), of the main subgraph.

The generated schema code comes from the ``tflite`` package (flatbuffers' Python output for TFLite's
schema.fbs); nothing of TensorFlow or LiteRT is needed. Everything the translations read goes through
here, so they never touch flatbuffer tables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openqnn.errors import InvalidModelError

__all__ = ["TflModel", "TflOp", "TflQuant", "TflTensor", "read_tflite"]

# TFLite TensorType -> numpy dtype (schema.fbs' enum order)
_NUMPY = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
          9: np.int8, 10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16}
TYPE_NAMES = {0: "FLOAT32", 1: "FLOAT16", 2: "INT32", 3: "UINT8", 4: "INT64", 5: "STRING", 6: "BOOL", 7: "INT16",
              8: "COMPLEX64", 9: "INT8", 10: "FLOAT64", 11: "COMPLEX128", 12: "UINT64", 13: "RESOURCE",
              14: "VARIANT", 15: "UINT32", 16: "UINT16", 17: "INT4", 18: "BFLOAT16"}


@dataclass(frozen=True)
class TflQuant:
    """A tensor's affine quantization: real = scale * (q - zero_point), per ``axis`` when several."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int


@dataclass
class TflTensor:
    index: int
    name: str
    shape: tuple[int, ...]
    type_code: int
    data: np.ndarray | None  # constant data (raw stored values, not dequantized)
    quant: TflQuant | None

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type_code, str(self.type_code))

    @property
    def numpy_dtype(self) -> np.dtype | None:
        t = _NUMPY.get(self.type_code)
        return None if t is None else np.dtype(t)


@dataclass
class TflOp:
    index: int
    name: str  # builtin operator name (CONV_2D, ...) or "CUSTOM"
    custom_code: str  # the custom op's name; "" for builtins
    inputs: list[int]  # tensor indices, -1 for an absent optional input
    outputs: list[int]
    options: Any = None  # the builtin options table (tflite.<Name>Options), None when the op has none
    custom_options: bytes = b""

    @property
    def label(self) -> str:
        return self.custom_code if self.name == "CUSTOM" else self.name


@dataclass
class TflModel:
    source: str
    tensors: list[TflTensor]
    ops: list[TflOp]
    inputs: list[int]
    outputs: list[int]
    description: str = ""
    version: int = 0
    subgraphs: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    # the main subgraph's first SignatureDef: its input and output keys -> tensor indices (TensorFlow's
    # converter writes one; the keys are the source model's names, the tensors' own names are mangled)
    signature_inputs: dict[str, int] = field(default_factory=dict)
    signature_outputs: dict[str, int] = field(default_factory=dict)


def _schema() -> Any:
    try:
        import tflite
    except ImportError:
        raise InvalidModelError("reading .tflite files needs the 'tflite' schema package, a dependency of openqnn "
                                "that is missing here; install it with pip install tflite flatbuffers") from None
    return tflite


def read_tflite(source: str | os.PathLike[str] | bytes) -> TflModel:
    """Parse a ``.tflite`` file (or its bytes) with errors that name the file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        buf, where = bytes(source), "<memory>"
    else:
        p = Path(source)
        if not p.is_file():
            raise InvalidModelError(f"{p}: no such TFLite file")
        buf, where = p.read_bytes(), str(p)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise InvalidModelError(f"{where}: not a TFLite model (no TFL3 file identifier; is it truncated or another "
                                "format?)")
    tfl = _schema()
    try:
        return _read(tfl, buf, where)
    except InvalidModelError:
        raise
    except Exception as e:  # flatbuffers raises struct.error, IndexError, ... on damaged files
        raise InvalidModelError(f"{where}: not a valid TFLite model (malformed or truncated: {type(e).__name__})") from None


def _read(tfl: Any, buf: bytes, where: str) -> TflModel:
    from tflite.utils import BUILTIN_OPCODE2NAME

    m = tfl.Model.GetRootAs(buf, 0)
    if m.SubgraphsLength() < 1:
        raise InvalidModelError(f"{where}: the model holds no subgraph")
    sg = m.Subgraphs(0)
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        custom = (oc.CustomCode() or b"").decode("utf-8", "replace")
        codes.append((BUILTIN_OPCODE2NAME.get(code, f"BUILTIN_{code}"), custom))
    tensors = [_tensor(tfl, m, sg.Tensors(i), i, buf, where) for i in range(sg.TensorsLength())]
    ops = []
    for i in range(sg.OperatorsLength()):
        o = sg.Operators(i)
        name, custom = codes[o.OpcodeIndex()]
        ins = [int(v) for v in o.InputsAsNumpy()] if o.InputsLength() else []
        outs = [int(v) for v in o.OutputsAsNumpy()] if o.OutputsLength() else []
        for t in (*ins, *outs):
            if not -1 <= t < len(tensors):
                raise InvalidModelError(f"{where}: operator {i} ({custom or name}) refers to tensor {t}, but the "
                                        f"subgraph has {len(tensors)}")
        options = _options(tfl, o, name)
        copts = bytes(o.CustomOptionsAsNumpy().tobytes()) if o.CustomOptionsLength() else b""
        ops.append(TflOp(i, name, custom, ins, outs, options, copts))
    desc = (m.Description() or b"").decode("utf-8", "replace")
    model = TflModel(where, tensors, ops, [int(v) for v in sg.InputsAsNumpy()] if sg.InputsLength() else [],
                     [int(v) for v in sg.OutputsAsNumpy()] if sg.OutputsLength() else [], desc, int(m.Version()),
                     int(m.SubgraphsLength()))
    for i in range(m.SignatureDefsLength()):
        sig = m.SignatureDefs(i)
        if sig.SubgraphIndex() == 0:
            model.signature_inputs = _tensor_map(sig.Inputs, sig.InputsLength())
            model.signature_outputs = _tensor_map(sig.Outputs, sig.OutputsLength())
            break
    return model


def _tensor_map(get: Any, n: int) -> dict[str, int]:
    return {(get(j).Name() or b"").decode("utf-8", "replace"): int(get(j).TensorIndex()) for j in range(n)}


def _options(tfl: Any, o: Any, name: str) -> Any:
    """The builtin options table as its generated class (Conv2DOptions, ...), or None."""
    table = o.BuiltinOptions()
    if table is None:
        return None
    kind = o.BuiltinOptionsType()
    names = {v: k for k, v in vars(tfl.BuiltinOptions).items() if isinstance(v, int)}
    cls = getattr(tfl, names.get(kind, ""), None)
    if cls is None:
        return None
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _tensor(tfl: Any, m: Any, t: Any, index: int, buf: bytes, where: str) -> TflTensor:
    name = (t.Name() or b"").decode("utf-8", "replace") or f"tensor_{index}"
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    type_code = int(t.Type())
    data = None
    b = m.Buffers(t.Buffer()) if t.Buffer() < m.BuffersLength() else None
    raw: bytes | None = None
    if b is not None and b.DataLength():
        raw = b.DataAsNumpy().tobytes()
    elif b is not None and b.Offset() > 1:  # models over 2 GB keep buffers after the flatbuffer
        raw = buf[b.Offset(): b.Offset() + b.Size()]
    if raw is not None:
        dt = _NUMPY.get(type_code)
        if dt is None:
            raise InvalidModelError(f"{where}: constant tensor '{name}' has type {TYPE_NAMES.get(type_code, type_code)}, "
                                    "which openqnn does not read")
        count = int(np.prod(shape, dtype=np.int64))
        if len(raw) != count * np.dtype(dt).itemsize:
            raise InvalidModelError(f"{where}: constant tensor '{name}' holds {len(raw)} bytes, its shape {list(shape)} "
                                    f"of {TYPE_NAMES[type_code]} needs {count * np.dtype(dt).itemsize}")
        data = np.frombuffer(raw, dtype=dt).reshape(shape).copy()
    quant = None
    q = t.Quantization()
    if q is not None and q.ScaleLength():
        scale = tuple(float(v) for v in q.ScaleAsNumpy())
        zp = tuple(int(v) for v in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else (0,) * len(scale)
        if len(zp) == 1 and len(scale) > 1:
            zp = zp * len(scale)
        quant = TflQuant(scale, zp, int(q.QuantizedDimension()))
    return TflTensor(index, name, shape, type_code, data, quant)
