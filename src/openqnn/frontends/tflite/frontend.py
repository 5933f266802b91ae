"""TFLite -> IR: read the flatbuffer, translate operator by operator, set inputs and outputs.

Float models (float32, float16 weights) become float graphs; quantized ones (full integer int8, the
16x8 mode, uint8) become graphs whose tensors carry TFLite's encodings, which the htp backend runs as
they are, no calibration (see context.py for how the integers map).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from openqnn.errors import ConversionError, InvalidModelError, OpenQnnError, UnsupportedOpError
from openqnn.frontends.base import KEEP_SOURCE_OPS, run_convert_passes
from openqnn.frontends.tflite.context import TflContext, encoding_of, ir_dtype
from openqnn.frontends.tflite.reader import TflModel, read_tflite
from openqnn.frontends.tflite.translations import TRANSLATIONS, refuse_custom
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Tensor, TensorKind
from openqnn.ops.build import emit

__all__ = ["convert_tflite", "supported_ops"]

log = logging.getLogger("openqnn.converter")


def supported_ops() -> list[str]:
    """The TFLite ops (builtin names and custom codes) the converter translates."""
    return sorted(TRANSLATIONS)


def convert_tflite(
    model: str | os.PathLike[str] | bytes | TflModel,
    input_dims: Mapping[str, Sequence[int]] | None = None,
    out_nodes: Sequence[str] | None = None,
    name: str | None = None,
    run_passes: bool = True,
) -> Graph:
    """Translate a ``.tflite`` model (a path, its bytes, or as :func:`read_tflite` read it) into an IR graph.

    ``input_dims`` fixes input shapes (``--input_dim``; a rank must match the model's); ``out_nodes``
    picks graph outputs by tensor name (``--out_node``). The float passes run on float models only: a
    quantized model's graph is TFLite's, op for op, so that htp computes TFLite's integers.
    """
    m = model if isinstance(model, TflModel) else read_tflite(model)
    stem = Path(m.source).stem if m.source != "<memory>" else "model"
    graph = Graph(name or stem or "model")
    graph.metadata.update({"source": m.source, "producer": "tflite", "tflite_version": m.version})
    if m.subgraphs > 1:
        log.warning("%s: the model has %d subgraphs; openqnn converts the main one", m.source, m.subgraphs)
    ctx = TflContext(graph, m)
    _add_inputs(ctx, m, dict(input_dims or {}))
    for op in m.ops:
        _translate(ctx, m, op_index=op.index)
    _set_outputs(ctx, m, out_nodes)
    graph.remove_unused()
    if any(t.encoding is not None for t in graph.tensors.values()):
        graph.metadata["quantization"] = {"source": "tflite"}
        graph.metadata[KEEP_SOURCE_OPS] = True  # TFLite's integers, op for op: verified, no float passes
    return run_convert_passes(graph) if run_passes else graph  # else the spine (openqnn.convert) runs them


def _add_inputs(ctx: TflContext, m: TflModel, input_dims: dict[str, Sequence[int]]) -> None:
    names = [m.tensors[i].name for i in m.inputs]
    unknown = sorted(set(input_dims) - set(names))
    if unknown:
        raise ConversionError(f"--input_dim names {', '.join(unknown)}, but the model's inputs are {', '.join(names)}")
    for i in m.inputs:
        t = m.tensors[i]
        shape = tuple(t.shape)
        fixed = input_dims.get(t.name)
        if fixed is not None:
            if len(fixed) != len(shape):
                raise ConversionError(f"--input_dim {t.name} {','.join(map(str, fixed))} has rank {len(fixed)}, but the "
                                      f"model's input has rank {len(shape)}")
            shape = tuple(int(d) for d in fixed)
        try:
            dtype = ir_dtype(t)
        except ConversionError as e:
            raise ConversionError(f"{m.source}: input {e}") from None
        fmt = {4: "NHWC", 3: "NWC", 5: "NDHWC"}.get(len(shape))
        ir = ctx.graph.add_tensor(Tensor(ctx.graph.unique_name(t.name), shape, dtype, TensorKind.APP_WRITE,
                                         encoding=encoding_of(t, None, m.source), src_axis_format=fmt,
                                         axis_format=fmt))
        ctx.graph.inputs.append(ir.name)
        ctx.names[i] = ir.name


def _translate(ctx: TflContext, m: TflModel, op_index: int) -> None:
    op = m.ops[op_index]
    ctx.op = op
    fn = TRANSLATIONS.get(op.custom_code if op.name == "CUSTOM" else op.name)
    if fn is None:
        if op.name == "CUSTOM":
            raise refuse_custom(ctx, supported_ops())
        raise UnsupportedOpError(f"{ctx.where()}: op {op.name} is not supported; supported ops: "
                                 + ", ".join(supported_ops()))
    try:
        fn(ctx)
    except OpenQnnError:
        raise
    except (IndexError, KeyError, ValueError, TypeError, AttributeError, ZeroDivisionError) as e:
        raise ConversionError(f"{ctx.where()}: its inputs or options do not fit {op.label}'s definition "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None
    for o in op.outputs:
        if o not in ctx.names and o not in ctx.folded:
            raise ConversionError(f"{ctx.where()}: translation did not produce output '{m.tensors[o].name}'")


def _set_outputs(ctx: TflContext, m: TflModel, out_nodes: Sequence[str] | None) -> None:
    graph = ctx.graph
    ctx.op = None
    by_name = {t.name: t.index for t in m.tensors}
    if out_nodes:
        wanted = []
        for o in out_nodes:
            if o not in by_name:
                raise ConversionError(f"--out_node {o}: no tensor of that name in {m.source}")
            wanted.append(by_name[o])
    else:
        wanted = list(m.outputs)
    if not wanted:
        raise InvalidModelError(f"{m.source}: the model has no outputs; name them with --out_node")
    for i in wanted:
        t = m.tensors[i]
        ir = ctx.names.get(i)
        if ir is None:
            if i in ctx.folded:
                raise ConversionError(f"{m.source}: output '{t.name}' is a constant; openqnn graphs compute their "
                                      "outputs")
            raise ConversionError(f"--out_node {t.name}: no operator of {m.source} computes it")
        tensor = graph.tensors[ir]
        if tensor.kind is not TensorKind.NATIVE or ir in graph.outputs:
            ir = emit(graph, "Reshape", [ir], {"shape": tensor.shape}, name=f"{t.name}_out",
                      outputs=[graph.unique_name(f"{t.name}_out")])[0]
            graph.tensors[ir].encoding = tensor.encoding
            tensor = graph.tensors[ir]
        tensor.kind = TensorKind.APP_READ
        tensor.src_axis_format = tensor.axis_format = {4: "NHWC", 3: "NWC", 5: "NDHWC"}.get(tensor.rank)
        graph.outputs.append(ir)
