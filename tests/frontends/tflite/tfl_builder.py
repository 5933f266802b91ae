"""A tiny writer of .tflite flatbuffers (float32 tensors, builtin ops without options, custom ops), for tests
that need models the TFLite converter does not make (custom ops, damaged files)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import flatbuffers
import numpy as np


def _m(name: str):
    return importlib.import_module(f"tflite.{name}")


@dataclass
class T:
    name: str
    shape: tuple[int, ...]
    data: np.ndarray | None = None  # float32 constant


@dataclass
class Op:
    code: str  # builtin name (ADD, ...) or a custom op's name
    inputs: list[int]
    outputs: list[int]
    custom_options: bytes = b""
    custom: bool = False


@dataclass
class Model:
    tensors: list[T]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    extra: dict = field(default_factory=dict)


def _vec(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def build(model: Model) -> bytes:
    from tflite.utils import BUILTIN_OPCODE2NAME

    codes = {v: k for k, v in BUILTIN_OPCODE2NAME.items()}
    b = flatbuffers.Builder(1024)
    Buf, Ten, OpM, OC, SG, Mod = (_m(n) for n in ("Buffer", "Tensor", "Operator", "OperatorCode", "SubGraph", "Model"))
    buffers = []
    for data in [None] + [t.data for t in model.tensors]:
        dv = b.CreateNumpyVector(np.frombuffer(np.asarray(data, np.float32).tobytes(), np.uint8)) if data is not None else None
        Buf.BufferStart(b)
        if dv is not None:
            Buf.BufferAddData(b, dv)
        buffers.append(Buf.BufferEnd(b))
    tensors = []
    for i, t in enumerate(model.tensors):
        name = b.CreateString(t.name)
        shape = b.CreateNumpyVector(np.asarray(t.shape, np.int32))
        Ten.TensorStart(b)
        Ten.TensorAddShape(b, shape)
        Ten.TensorAddType(b, 0)
        Ten.TensorAddBuffer(b, i + 1 if t.data is not None else 0)
        Ten.TensorAddName(b, name)
        tensors.append(Ten.TensorEnd(b))
    opcodes: list[tuple[str, bool]] = []
    for op in model.ops:
        if (op.code, op.custom) not in opcodes:
            opcodes.append((op.code, op.custom))
    oc_offs = []
    for code, custom in opcodes:
        cc = b.CreateString(code) if custom else None
        OC.OperatorCodeStart(b)
        builtin = 32 if custom else codes[code]
        OC.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
        OC.OperatorCodeAddBuiltinCode(b, builtin)
        if cc is not None:
            OC.OperatorCodeAddCustomCode(b, cc)
        OC.OperatorCodeAddVersion(b, 1)
        oc_offs.append(OC.OperatorCodeEnd(b))
    op_offs = []
    for op in model.ops:
        ins = b.CreateNumpyVector(np.asarray(op.inputs, np.int32))
        outs = b.CreateNumpyVector(np.asarray(op.outputs, np.int32))
        copts = b.CreateNumpyVector(np.frombuffer(op.custom_options, np.uint8)) if op.custom_options else None
        OpM.OperatorStart(b)
        OpM.OperatorAddOpcodeIndex(b, opcodes.index((op.code, op.custom)))
        OpM.OperatorAddInputs(b, ins)
        OpM.OperatorAddOutputs(b, outs)
        if copts is not None:
            OpM.OperatorAddCustomOptions(b, copts)
        op_offs.append(OpM.OperatorEnd(b))
    tv, ov = _vec(b, tensors), _vec(b, op_offs)
    iv = b.CreateNumpyVector(np.asarray(model.inputs, np.int32))
    outv = b.CreateNumpyVector(np.asarray(model.outputs, np.int32))
    sgname = b.CreateString("main")
    SG.SubGraphStart(b)
    SG.SubGraphAddTensors(b, tv)
    SG.SubGraphAddOperators(b, ov)
    SG.SubGraphAddInputs(b, iv)
    SG.SubGraphAddOutputs(b, outv)
    SG.SubGraphAddName(b, sgname)
    sg = SG.SubGraphEnd(b)
    sgv, ocv, bv = _vec(b, [sg]), _vec(b, oc_offs), _vec(b, buffers)
    desc = b.CreateString("openqnn test")
    Mod.ModelStart(b)
    Mod.ModelAddVersion(b, 3)
    Mod.ModelAddOperatorCodes(b, ocv)
    Mod.ModelAddSubgraphs(b, sgv)
    Mod.ModelAddDescription(b, desc)
    Mod.ModelAddBuffers(b, bv)
    b.Finish(Mod.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
