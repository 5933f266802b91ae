"""TensorFlow -> TFLite (TensorFlow's own converter, in memory) -> IR (openqnn's TFLite frontend).

The route: a SavedModel's serving signature, a Keras model's call, or a frozen GraphDef pruned to its inputs and
``--out_node`` outputs becomes a float ``.tflite`` flatbuffer with every input dim fixed (``--input_dim``,
else the model's own, an unknown one 1), with TFLite builtin ops only, no quantization. A TensorFlow op
TFLite cannot express is TensorFlow's converter's error, given back in one line that names the node, its op
type and the model file. The IR's inputs and outputs keep the model's names (signature keys, Keras input and
output names, GraphDef node names), not TFLite's mangled ones (``serving_default_x:0``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openqnn.errors import ConversionError, InvalidModelError, UnsupportedOpError
from openqnn.frontends.base import missing_framework, run_convert_passes
from openqnn.ir.graph import Graph

__all__ = ["TFLiteExport", "convert_tensorflow", "to_tflite"]

log = logging.getLogger("openqnn.converter")

_SERVING = "serving_default"


@dataclass
class TFLiteExport:
    """A TensorFlow model as TensorFlow's converter wrote it: the float ``.tflite`` bytes, and the names the
    model gives its inputs and outputs, by the TFLite signature key (or TFLite tensor name) they have there."""

    tflite: bytes
    where: str
    input_names: dict[str, str] = field(default_factory=dict)
    output_names: dict[str, str] = field(default_factory=dict)
    pruned: bool = False  # the graph was already cut to ``--out_node``'s outputs


def convert_tensorflow(
    source: object,
    input_dims: Mapping[str, Sequence[int]] | None = None,
    out_nodes: Sequence[str] | None = None,
    name: str | None = None,
    run_passes: bool = True,
) -> Graph:
    """Convert a SavedModel directory, a ``.keras``/``.h5`` file, a ``keras.Model`` or a frozen GraphDef
    ``.pb`` into an IR graph (the ``convert`` passes run when ``run_passes``)::

        graph = convert_tensorflow("resnet_savedmodel/", input_dims={"images": (1, 224, 224, 3)})

    ``input_dims`` fixes inputs' dims by the model's input names; ``out_nodes`` picks outputs (a frozen
    GraphDef's node or tensor names; a SavedModel's or Keras model's output names).
    """
    from openqnn.frontends.tflite.frontend import convert_tflite
    from openqnn.frontends.tflite.reader import read_tflite

    export = to_tflite(source, input_dims, out_nodes)
    m = read_tflite(export.tflite)
    m.source = export.where  # errors name the TensorFlow model, not the in-memory flatbuffer
    # by signature key where TensorFlow's converter wrote a signature, else by position (a signature-less
    # flatbuffer lists inputs and outputs in the traced function's order)
    ins = m.signature_inputs or dict(zip(export.input_names, m.inputs))
    outputs = m.signature_outputs or dict(zip(export.output_names, m.outputs))
    for key, index in ins.items():
        m.tensors[index].name = export.input_names.get(key, key)
    for key, index in outputs.items():
        m.tensors[index].name = export.output_names.get(key, key)
    # the model's order (TFLite's own output list may be permuted)
    m.outputs = [outputs[k] for k in sorted(outputs, key=_output_order(export.output_names))]
    picked = None if export.pruned else out_nodes  # a GraphDef is pruned to them before TFLite
    graph = convert_tflite(m, None, picked, name or _stem(export.where), run_passes=False)
    _name_outputs(graph, list(picked) if picked else [m.tensors[i].name for i in m.outputs])
    if run_passes:
        graph = run_convert_passes(graph)
    graph.metadata.update({"producer": "tensorflow", "source": export.where})
    return graph


def _name_outputs(graph: Graph, wanted: list[str]) -> None:
    """Give the graph's outputs the model's names where a fused activation's split took them (a TFLite
    ``FULLY_CONNECTED`` with a fused ReLU named ``r`` becomes ``FullyConnected`` -> ``r``, ``Relu`` -> ``r_1``)."""
    for i, (have, want) in enumerate(zip(list(graph.outputs), wanted)):
        if have == want or want in graph.inputs or want in graph.outputs:
            continue
        if want in graph.tensors:
            _rename(graph, want, graph.unique_name(f"{want}_pre"))
        _rename(graph, have, want)
        graph.outputs[i] = want


def _rename(graph: Graph, old: str, new: str) -> None:
    t = graph.tensors.pop(old)
    t.name = new
    graph.tensors[new] = t
    for n in graph.nodes:
        n.inputs = [new if x == old else x for x in n.inputs]
        n.outputs = [new if x == old else x for x in n.outputs]
    graph.inputs = [new if x == old else x for x in graph.inputs]


def _output_order(names: dict[str, str]) -> Any:
    """Outputs in the export's order, the rest as ``output_<i>`` numbers them."""
    keys = list(names)

    def key(k: str) -> tuple[int, str, int]:
        stem, digits = re.fullmatch(r"(.*?)(\d*)", k).groups()  # type: ignore[union-attr]
        return (keys.index(k) if k in keys else len(keys), stem, int(digits or -1))

    return key


def _stem(where: str) -> str:
    p = Path(where)
    return (p.parent.name if p.name == "saved_model.pb" else p.stem) or "model"


def _tensorflow(where: str) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    try:
        import tensorflow as tf
    except ImportError:
        raise missing_framework("TensorFlow", "tensorflow", "tensorflow", where) from None
    return tf


def to_tflite(source: object, input_dims: Mapping[str, Sequence[int]] | None = None,
              out_nodes: Sequence[str] | None = None) -> TFLiteExport:
    """The float TFLite flatbuffer TensorFlow's converter makes of ``source`` (see :func:`convert_tensorflow`)."""
    dims = {k: tuple(int(d) for d in v) for k, v in (input_dims or {}).items()}
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        where = str(path)
        if path.name == "saved_model.pb" and path.is_file():
            path = path.parent
        if not path.exists():
            raise InvalidModelError(f"{where}: no such TensorFlow model (a SavedModel directory, .keras, .h5 or .pb)")
        tf = _tensorflow(where)
        if path.is_dir():
            return _saved_model(tf, path, where, dims)
        suffix = path.suffix.lower()
        if suffix in (".keras", ".h5"):
            return _keras(tf, _load_keras(tf, path), where, dims)
        if suffix == ".pb":
            return _frozen_graph(tf, path, where, dims, list(out_nodes or ()))
        raise ConversionError(f"{where}: unknown TensorFlow model type '{path.suffix}'; give a SavedModel directory, "
                              "a .keras or .h5 Keras file, or a frozen GraphDef .pb")
    where = f"<{type(source).__name__}>"
    return _keras(_tensorflow(where), source, where, dims)


# ---- the three sources -------------------------------------------------------------------------------------


def _saved_model(tf: Any, path: Path, where: str, dims: dict[str, tuple[int, ...]]) -> TFLiteExport:
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:
        raise InvalidModelError(f"{where}: not a loadable SavedModel ({_first_line(e)})") from None
    sigs = dict(getattr(loaded, "signatures", {}) or {})
    if not sigs:
        raise InvalidModelError(f"{where}: the SavedModel has no signatures; save it with one (tf.saved_model.save("
                                "obj, dir, signatures=...) or Keras' model.export(dir))")
    key = _SERVING if _SERVING in sigs else next(iter(sigs)) if len(sigs) == 1 else None
    if key is None:
        raise ConversionError(f"{where}: the SavedModel has signatures {', '.join(sorted(sigs))} and no "
                              f"'{_SERVING}'; openqnn converts the serving one")
    fn = sigs[key]
    args, kwargs = fn.structured_input_signature
    specs = dict(kwargs) if kwargs else {s.name: s for s in args}
    names = list(specs)
    fixed = _fixed_specs(tf, where, {n: (specs[n].shape, specs[n].dtype) for n in names}, dims)

    def call(*xs: Any) -> Any:
        return fn(**dict(zip(names, xs)))

    cf = tf.function(call, input_signature=fixed).get_concrete_function()
    return _convert(tf, [cf], loaded, where, {n: n for n in names}, {})


def _load_keras(tf: Any, path: Path) -> Any:
    try:
        import keras
    except ImportError:
        keras = tf.keras
    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as e:
        raise InvalidModelError(f"{path}: not a loadable Keras model ({_first_line(e)})") from None


def _keras(tf: Any, model: Any, where: str, dims: dict[str, tuple[int, ...]]) -> TFLiteExport:
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        raise ConversionError(f"{where}: the Keras model has no defined inputs (a subclassed model never called on "
                              "keras.Input); build it as a functional model, or export a SavedModel with "
                              "model.export(dir) and convert that")
    names = [_tensor_name(t.name) for t in inputs]
    fixed = _fixed_specs(tf, where, {n: (t.shape, t.dtype) for n, t in zip(names, inputs)}, dims)

    def call(*xs: Any) -> Any:
        return model(list(xs) if len(xs) > 1 else xs[0], training=False)

    cf = tf.function(call, input_signature=fixed).get_concrete_function()
    outs = [_tensor_name(n) for n in (getattr(model, "output_names", None) or [])]
    out_names = {f"output_{i}": n for i, n in enumerate(outs)}
    return _convert(tf, [cf], model, where, {n: n for n in names}, out_names)


def _frozen_graph(tf: Any, path: Path, where: str, dims: dict[str, tuple[int, ...]],
                  out_nodes: list[str]) -> TFLiteExport:
    gd = tf.compat.v1.GraphDef()
    try:
        gd.ParseFromString(path.read_bytes())
    except Exception as e:
        raise InvalidModelError(f"{where}: not a frozen GraphDef ({_first_line(e)})") from None
    if any(n.op in ("VariableV2", "VarHandleOp") for n in gd.node):
        raise ConversionError(f"{where}: the GraphDef holds variables; freeze it first (convert_variables_to_"
                              "constants_v2), or convert the SavedModel directory")
    placeholders = [n for n in gd.node if n.op == "Placeholder"]
    shapes = {}
    for n in placeholders:
        shape = n.attr["shape"].shape
        shapes[n.name] = (None if shape.unknown_rank else [d.size if d.size >= 0 else None for d in shape.dim],
                          tf.dtypes.as_dtype(n.attr["dtype"].type))
    fixed = _fixed_specs(tf, where, shapes, dims)
    nodes = {n.name for n in gd.node}
    outs = out_nodes or _sinks(gd)
    for o in outs:
        if o.split(":")[0] not in nodes:
            raise ConversionError(f"--out_node {o}: no node of that name in {where}")
    if not outs:
        raise InvalidModelError(f"{where}: the graph has no outputs; name them with --out_node")
    if not out_nodes:
        log.info("%s: outputs (no --out_node): %s", where, ", ".join(outs))

    def imports() -> None:
        tf.compat.v1.import_graph_def(gd, name="")

    wrapped = tf.compat.v1.wrap_function(imports, [])
    g = wrapped.graph
    feeds = [g.as_graph_element(f"{s.name}:0") for s in fixed]
    fetches = [g.as_graph_element(o if ":" in o else f"{o}:0") for o in outs]
    pruned = wrapped.prune(feeds, fetches)
    specs = {s.name: s for s in fixed}

    def call(*xs: Any) -> Any:  # the pruned function with every input's dims fixed
        return pruned(*xs)

    cf = tf.function(call, input_signature=[specs[n] for n in specs]).get_concrete_function()
    export = _convert(tf, [cf], tf.Module(), where, {n: n for n in specs},
                      {f"output_{i}": o.split(":")[0] if o.endswith(":0") else o for i, o in enumerate(outs)},
                      graph_def=gd)
    export.pruned = True
    return export


def _sinks(gd: Any) -> list[str]:
    """The nodes no other node consumes (not constants or no-ops): a frozen graph's outputs."""
    used = {i.lstrip("^").split(":")[0] for n in gd.node for i in n.input}
    return [n.name for n in gd.node if n.name not in used and n.op not in ("Const", "NoOp", "Placeholder", "Assert")]


# ---- shared: fixed input specs, the converter, its errors ----------------------------------------------------


def _fixed_specs(tf: Any, where: str, inputs: Mapping[str, tuple[Any, Any]],
                 dims: dict[str, tuple[int, ...]]) -> list[Any]:
    """One TensorSpec per input, every dim known: ``--input_dim``'s, else the model's, an unknown one 1."""
    unknown = sorted(set(dims) - set(inputs))
    if unknown:
        raise ConversionError(f"{where}: --input_dim names {', '.join(unknown)}, but the model's inputs are "
                              f"{', '.join(inputs)}")
    specs = []
    for name, (shape, dtype) in inputs.items():
        model_dims = None if shape is None or getattr(shape, "rank", 0) is None else list(shape)
        given = dims.get(name)
        if given is not None:
            if model_dims is not None and len(given) != len(model_dims):
                raise ConversionError(f"{where}: --input_dim {name} {','.join(map(str, given))} has rank {len(given)}, "
                                      f"but the model's input has rank {len(model_dims)}")
            full = list(given)
        elif model_dims is None:
            raise ConversionError(f"{where}: input '{name}' has no known rank; give its dims with --input_dim {name} ...")
        else:
            full = [1 if d is None else int(d) for d in model_dims]
            if any(d is None for d in model_dims[1:]):
                log.warning("%s: input '%s' has unknown dims %s beyond the batch; they become 1 (fix them with "
                            "--input_dim %s ...)", where, name, model_dims, name)
        specs.append(tf.TensorSpec(full, tf.dtypes.as_dtype(dtype), name=name))
    return specs


def _convert(tf: Any, functions: list[Any], trackable: Any, where: str, input_names: dict[str, str],
             output_names: dict[str, str], graph_def: Any = None) -> TFLiteExport:
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # variables become constants here (a Keras 3 model's would stay VAR_HANDLE ops in the .tflite)
    functions = [convert_variables_to_constants_v2(f) for f in functions]
    conv = tf.lite.TFLiteConverter.from_concrete_functions(functions, trackable)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # float; a TF-only op is an error
    conv.allow_custom_ops = False
    try:
        data = conv.convert()
    except Exception as e:
        raise _converter_error(e, where, graph_def if graph_def is not None else functions[0].graph.as_graph_def()) \
            from None
    return TFLiteExport(bytes(data), where, input_names, output_names)


_NOT_BUILTIN = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


def _converter_error(e: Exception, where: str, graph_def: Any) -> ConversionError:
    """TensorFlow's converter error in one line: the TF op TFLite has no builtin for, by node name and type."""
    from openqnn.frontends.tflite.frontend import supported_ops

    text = str(e)
    op_types = list(dict.fromkeys(_NOT_BUILTIN.findall(text)))
    if op_types:
        op = op_types[0]
        nodes = _nodes_of_type(graph_def, op)
        node = f"node '{nodes[0]}'" if nodes else "a node"
        more = f" (and ops {', '.join(op_types[1:])})" if len(op_types) > 1 else ""
        return UnsupportedOpError(f"{where}: {node} of TensorFlow op type {op}{more} is not supported: TFLite has no "
                                  "builtin op for it, and openqnn converts TensorFlow models through TFLite's builtin "
                                  f"ops; supported (TFLite) ops: {', '.join(supported_ops())}")
    lines = [ln.strip() for ln in text.splitlines() if "error:" in ln] or [_first_line(e)]
    return ConversionError(f"{where}: TensorFlow's TFLite converter failed: {lines[0][:300]}")


def _nodes_of_type(graph_def: Any, op: str) -> list[str]:
    """Names of the nodes of type ``op`` in a GraphDef and its function library (a SavedModel's calls)."""
    names = [n.name for n in graph_def.node if n.op == op]
    for f in graph_def.library.function:
        names += [n.name for n in f.node_def if n.op == op]
    return names


def _tensor_name(name: str) -> str:
    return name.split(":")[0]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:200] if text else type(e).__name__)
