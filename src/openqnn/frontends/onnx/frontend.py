"""ONNX -> IR: load, fix input shapes, translate node by node, fold constants (the spine runs the passes)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from openqnn.errors import ConversionError, InvalidModelError, OpenQnnError, UnsupportedOpError
from openqnn.frontends.onnx import translations  # noqa: F401  (registers the translations)
from openqnn.frontends.onnx.context import ConversionContext, Value
from openqnn.frontends.onnx.registry import TRANSLATIONS
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Tensor, TensorKind
from openqnn.ops.build import emit

log = logging.getLogger("openqnn.converter")

MIN_OPSET = 7
MAX_OPSET = onnx.defs.onnx_opset_version()
_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial",
               "If", "Loop", "Scan"}
_SRC_FORMATS = {3: "NCF", 4: "NCHW", 5: "NCDHW"}


def load_onnx(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Read an ONNX file (and its external data) with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise InvalidModelError(f"{p}: no such ONNX file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise InvalidModelError(f"{p}: not a valid ONNX model (malformed or truncated: {type(e).__name__})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise InvalidModelError(f"{p}: not a valid ONNX model (it holds no graph nodes; is the file truncated?)")
    try:
        onnx.load_external_data_for_model(model, str(p.parent))
    except Exception as e:  # OSError, ValueError, onnx's ValidationError
        raise InvalidModelError(f"{p}: cannot read its external data ({str(e).splitlines()[0]})") from None
    return model


MAX_ELEMENTS = 2**31 - 1  # QNN's dims are uint32; no tensor openqnn can run comes near this


def _initializer_array(init: onnx.TensorProto | onnx.SparseTensorProto, where: object) -> np.ndarray:
    """An initializer's value, its data type, dims and byte size checked against each other."""
    t = init.values if isinstance(init, onnx.SparseTensorProto) else init
    label = f"{where}: initializer '{t.name}'"
    if t.data_type not in onnx.TensorProto.DataType.values() or t.data_type == onnx.TensorProto.UNDEFINED:
        raise InvalidModelError(f"{label} has data_type {t.data_type}, which is not an ONNX element type; "
                                "fix or re-export the model")
    dims = list(init.dims)
    if any(d < 0 for d in dims) or int(np.prod(dims, dtype=object)) > MAX_ELEMENTS:
        raise InvalidModelError(f"{label} has dims {dims}: dims must be non-negative and hold at most "
                                f"{MAX_ELEMENTS} elements; fix or re-export the model")
    try:
        return np.asarray(numpy_helper.to_array(init))
    except Exception as e:  # numpy_helper raises ValueError, TypeError, KeyError, ... on inconsistent protos
        name = onnx.TensorProto.DataType.Name(t.data_type)
        raw = f", {len(t.raw_data)} bytes of raw_data" if t.raw_data else ""
        raise InvalidModelError(f"{label} ({name}, dims {dims}{raw}) cannot be read: {str(e).splitlines()[0][:160] or type(e).__name__}; "
                                "its data does not match its type and dims; fix or re-export the model") from None


def onnx_dtype(elem_type: int, where: str) -> DType:
    try:
        return DType.from_numpy(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in onnx.TensorProto.DataType.values() else elem_type
        raise UnsupportedOpError(f"{where}: element type {name} is not supported") from None


def convert_onnx(
    model: onnx.ModelProto | str | os.PathLike[str],
    input_dims: Mapping[str, Sequence[int]] | None = None,
    out_nodes: Sequence[str] | None = None,
    name: str | None = None,
) -> Graph:
    """Translate an ONNX model into an IR graph (channel-last inside, ONNX layout at the edges), before
    passes: :func:`openqnn.convert` runs them.

    ``input_dims`` fixes input shapes (``--input_dim``); a dynamic dim left unfixed becomes 1 with a
    warning. ``out_nodes`` picks graph outputs by tensor or node name (``--out_node``).
    """
    path = None
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        model = load_onnx(path)
    opsets = {(imp.domain or "ai.onnx"): imp.version for imp in model.opset_import}
    opset = opsets.get("ai.onnx", 0)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedOpError(
            f"{path or 'model'}: ONNX opset {opset} is not supported; openqnn converts opsets {MIN_OPSET} to {MAX_OPSET}"
            + (" (upgrade it with onnx.version_converter)" if opset < MIN_OPSET else " (update the onnx package)")
        )
    g = model.graph
    graph = Graph(name or (path.stem if path else g.name) or "model")
    graph.metadata.update({"source": str(path) if path else "<memory>", "producer": model.producer_name,
                           "opset": opset})
    ctx = ConversionContext(graph, opset, opsets)

    where = path or "model"
    if not g.output and not out_nodes:
        raise InvalidModelError(f"{where}: the graph has no outputs; fix the model or name them with --out_node")
    for init in g.initializer:
        arr = _initializer_array(init, where)
        ctx.values[init.name] = Value(None, tuple(arr.shape), onnx_dtype(init.data_type, f"initializer '{init.name}'"),
                                      None, arr, init.name)
    for sp in g.sparse_initializer:
        arr = _initializer_array(sp, where)
        try:
            dtype = DType.from_numpy(arr.dtype)
        except ValueError:
            raise UnsupportedOpError(f"{where}: sparse initializer '{sp.values.name}': element type {arr.dtype} is "
                                     "not supported") from None
        ctx.values[sp.values.name] = Value(None, tuple(arr.shape), dtype, None, arr, sp.values.name)

    _add_inputs(ctx, g, dict(input_dims or {}))
    for node in _ordered_nodes(g):
        _translate(ctx, node)

    _set_outputs(ctx, g, out_nodes)
    graph.remove_unused()
    return graph


def _add_inputs(ctx: ConversionContext, g: onnx.GraphProto, input_dims: dict[str, Sequence[int]]) -> None:
    names = [i.name for i in g.input if i.name not in ctx.values]
    unknown = sorted(set(input_dims) - set(names))
    if unknown:
        raise ConversionError(f"--input_dim names {', '.join(unknown)}, but the model's inputs are {', '.join(names)}")
    for vi in g.input:
        if vi.name in ctx.values:  # old models list initializers as inputs too
            continue
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise UnsupportedOpError(f"input '{vi.name}': only tensor inputs are supported")
        dtype = onnx_dtype(tt.elem_type, f"input '{vi.name}'")
        dims = list(tt.shape.dim) if tt.HasField("shape") else None
        fixed = input_dims.get(vi.name)
        if fixed is not None:
            fixed = [int(d) for d in fixed]
            if dims is not None and len(dims) != len(fixed):
                raise ConversionError(
                    f"--input_dim {vi.name} {','.join(map(str, fixed))} has rank {len(fixed)}, but the model's input "
                    f"has rank {len(dims)}"
                )
            for i, d in enumerate(dims or []):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != fixed[i]:
                    raise ConversionError(
                        f"--input_dim {vi.name} {','.join(map(str, fixed))} contradicts the model, whose dim {i} is "
                        f"fixed at {d.dim_value}"
                    )
            shape = tuple(fixed)
        elif dims is None:
            raise ConversionError(f"input '{vi.name}' has no shape in the model; give it with --input_dim {vi.name} ...")
        else:
            shape_l = []
            for i, d in enumerate(dims):
                if d.HasField("dim_value") and d.dim_value >= 0:
                    shape_l.append(d.dim_value)
                else:
                    log.warning("input '%s' dim %d (%s) is dynamic; using 1 (fix it with --input_dim)",
                                vi.name, i, d.dim_param or "?")
                    shape_l.append(1)
            shape = tuple(shape_l)
        if any(d < 0 for d in shape) or int(np.prod(shape, dtype=object)) > MAX_ELEMENTS:
            raise ConversionError(f"input '{vi.name}' has shape {list(shape)}: dims must be non-negative and hold at "
                                  f"most {MAX_ELEMENTS} elements; fix them with --input_dim {vi.name} ...")
        t = Tensor(vi.name, shape, dtype, TensorKind.APP_WRITE, src_axis_format=_SRC_FORMATS.get(len(shape), None),
                   axis_format=_SRC_FORMATS.get(len(shape), None))
        ctx.graph.add_tensor(t)
        ctx.graph.inputs.append(vi.name)
        ctx.values[vi.name] = Value(vi.name, shape, dtype, None)


def _ordered_nodes(g: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The graph's nodes in a topological order (exporters usually give one already)."""
    available = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    produced = set(available)
    for n in g.node:
        for out in n.output:
            if out and out in produced:
                raise InvalidModelError(f"node '{n.name or out}' ({n.op_type}) writes '{out}', which is already a graph "
                                        "input, an initializer or another node's output; names must be unique")
            produced.add(out)
    pending, ordered = list(g.node), []
    while pending:
        rest = [n for n in pending if not all(x in available for x in n.input)]
        ready = [n for n in pending if all(x in available for x in n.input)]
        if not ready:
            n = rest[0]
            missing = [x for x in n.input if x not in available]
            raise InvalidModelError(f"node '{n.name or n.output[0]}' ({n.op_type}) reads {missing[0]!r}, which no node "
                                    "produces (or the graph has a cycle)")
        for n in ready:
            available.update(n.output)
        ordered.extend(ready)
        pending = rest
    return ordered


def _translate(ctx: ConversionContext, node: onnx.NodeProto) -> None:
    try:
        _translate_node(ctx, node)
    except ConversionError as e:
        if e.node_name is None:
            e.node_name = node.name or (node.output[0] if node.output else None)
        raise


def _translate_node(ctx: ConversionContext, node: onnx.NodeProto) -> None:
    ctx.start_node(node)
    domain = node.domain or "ai.onnx"
    if domain not in ("ai.onnx",):
        raise UnsupportedOpError(
            f"{ctx.where()}: domain '{domain}' (opset {ctx.opsets.get(domain, '?')}) is not supported; openqnn "
            "converts the default ONNX domain"
        )
    if node.op_type not in _NEVER_FOLD and _try_fold(ctx, node):
        return
    fn = TRANSLATIONS.get(node.op_type)
    if fn is None:
        raise UnsupportedOpError(
            f"{ctx.where()}: op {node.op_type} (domain ai.onnx, opset {ctx.opset}) is not supported; supported ops: "
            + ", ".join(sorted(TRANSLATIONS))
        )
    try:
        fn(ctx)
    except OpenQnnError:
        raise
    except (IndexError, KeyError, ValueError, TypeError, AttributeError, ZeroDivisionError, OverflowError) as e:
        # translations read attributes and shapes as the ONNX spec defines them; a node that breaks the
        # spec (wrong attribute type or length, wrong input rank) lands here
        raise ConversionError(f"{ctx.where()}: its attributes or inputs do not fit {node.op_type}'s definition "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); check the "
                              "node against the ONNX spec") from None
    for out in node.output:
        if out and out not in ctx.values:
            raise ConversionError(f"{ctx.where()}: translation did not produce output '{out}'")  # a bug in openqnn


def _try_fold(ctx: ConversionContext, node: onnx.NodeProto) -> bool:
    """Evaluate a node whose inputs are all known constants with ONNX's reference evaluator."""
    present = [x for x in node.input if x]
    if not present or any(ctx.value(x).const is None for x in present):
        return False
    from onnx.reference import ReferenceEvaluator

    feeds = {x: ctx.value(x).const for x in present}
    inputs = [onnx.helper.make_tensor_value_info(x, 0, None) for x in present]
    outputs = [onnx.helper.make_tensor_value_info(x, 0, None) for x in node.output if x]
    graph = onnx.helper.make_graph([node], "fold", inputs, outputs)
    imports = [onnx.helper.make_opsetid(d if d != "ai.onnx" else "", v) for d, v in ctx.opsets.items()]
    model = onnx.helper.make_model(graph, opset_imports=imports)
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception as e:  # the reference evaluator cannot fold this one; translate it instead
        log.debug("could not fold %s: %s", ctx.where(), e)
        return False
    for name, val in zip([x for x in node.output if x], results):
        arr = np.asarray(val)
        try:
            DType.from_numpy(arr.dtype)
        except ValueError:
            return False
        ctx.values[name] = Value(None, tuple(arr.shape), DType.from_numpy(arr.dtype), None, arr, name)
    return True


def _set_outputs(ctx: ConversionContext, g: onnx.GraphProto, out_nodes: Sequence[str] | None) -> None:
    graph = ctx.graph
    ctx.start_node(None)
    if out_nodes:
        by_node = {n.name: list(n.output) for n in g.node if n.name}
        names: list[str] = []
        for o in out_nodes:
            if o in ctx.values:
                names.append(o)
            elif o in by_node:
                names.extend(x for x in by_node[o] if x)
            else:
                raise ConversionError(f"--out_node {o}: no tensor or node of that name in the model")
    else:
        names = [o.name for o in g.output]
    for name in names:
        v = ctx.value(name)
        ir = ctx.tensor(v)
        t = graph.tensors[ir]
        if t.kind is not TensorKind.NATIVE or ir in graph.outputs:
            # a graph input, a constant, or an output already: copy it through a node
            ir = emit(graph, "Reshape", [ir], {"shape": t.shape}, name=f"{name}_out", outputs=[graph.unique_name(name)])[0]
            t = graph.tensors[ir]
        if ir != name:
            if name in graph.tensors:  # an inner (e.g. channel-last) tensor holds the name: it yields it
                _rename(graph, name, graph.unique_name(f"{name}_{graph.tensors[name].axis_format or 'inner'}"))
            _rename(graph, ir, name)
            ir = name
        t = graph.tensors[ir]
        t.kind = TensorKind.APP_READ
        t.src_axis_format = t.axis_format = _SRC_FORMATS.get(t.rank)
        graph.outputs.append(ir)


def _rename(graph: Graph, old: str, new: str) -> None:
    t = graph.tensors.pop(old)
    t.name = new
    graph.tensors[new] = t
    graph._reserved.add(new)
    for n in graph.nodes:
        n.inputs = [new if x == old else x for x in n.inputs]
        n.outputs = [new if x == old else x for x in n.outputs]
    graph.outputs = [new if x == old else x for x in graph.outputs]
