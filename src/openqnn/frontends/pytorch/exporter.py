"""PyTorch -> ONNX (in memory) -> IR.

A module, a TorchScript file or an ``ExportedProgram`` goes through ``torch.export`` (TorchScript through
PyTorch's TorchScript-to-ExportedProgram converter first) and PyTorch's ONNX exporter, unoptimized so
every parameter and buffer keeps its ``state_dict`` name (quantization overrides refer to them: BatchNorm
is folded later by openqnn's passes, not by the exporter; only constant folding that reads no parameter
runs); the ONNX frontend translates the result.

Inputs are named by ``--input_dim`` (in the order of the model's arguments), else by ``example_inputs``'
keys, else by the arguments' names; outputs are ``output`` (one) or ``output_0``, ``output_1``, ...
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch

from openqnn.errors import ConversionError, InvalidModelError, OpenQnnError, UnsupportedOpError
from openqnn.frontends.base import FrontendOptions
from openqnn.ir.graph import Graph

__all__ = ["convert_pytorch", "export_onnx"]

log = logging.getLogger("openqnn.converter")

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".torchscript")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "int32": torch.int32,
          "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}

Model = torch.nn.Module | torch.export.ExportedProgram


def convert_pytorch(source: object, options: FrontendOptions) -> Graph:
    """The IR graph (before passes) of a module, a TorchScript file or an ``ExportedProgram`` (object or
    ``.pt2`` file); see the module docstring for names and :class:`FrontendOptions` for the options."""
    from openqnn.frontends.onnx.frontend import convert_onnx

    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    where = str(path) if path is not None else f"{type(source).__name__} model"
    model_proto = export_onnx(source, options)
    try:
        graph = convert_onnx(model_proto, None, options.out_nodes or None,
                             options.name or (path.stem if path is not None else type(source).__name__))
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{where}: {_layer_of(e, model_proto)}{e}") from None
    except OpenQnnError as e:
        raise type(e)(f"{where}: {e}") from None
    graph.metadata["source"] = str(path) if path is not None else "<memory>"
    graph.metadata["producer"] = f"pytorch {torch.__version__}"
    return graph


def export_onnx(source: object, options: FrontendOptions | None = None) -> onnx.ModelProto:
    """``source`` (a module, an ``ExportedProgram``, or a TorchScript / ``.pt2`` file) as an ONNX model with
    the ``state_dict``'s parameter names; a model that does not export is a one-line :class:`ConversionError`
    naming it and the exporter's reason."""
    options = options or FrontendOptions()
    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    where = str(path) if path is not None else f"{type(source).__name__} model"
    model = _load(path) if path is not None else source
    if not isinstance(model, (torch.nn.Module, torch.export.ExportedProgram)):
        raise ConversionError(f"{where}: not a torch.nn.Module or torch.export.ExportedProgram")
    args, kwargs, names = _example_inputs(model, options, where)
    if isinstance(model, torch.jit.ScriptModule):
        model = _script_to_program(model, args, where)
    elif isinstance(model, torch.nn.Module):
        model = model.eval()
    try:
        with _quiet():
            program = torch.onnx.export(model, args, kwargs=kwargs or None, dynamo=True, optimize=False,
                                        verbose=False, input_names=names or None, external_data=False)
    except Exception as e:  # torch.export's and the ONNX translation's many error types
        raise ConversionError(f"{where}: PyTorch could not export it ({_reason(e)}); make the model "
                              "torch.export-able (https://pytorch.org/docs/stable/export.html)") from None
    if program is None:  # only with a file argument, which is never passed
        raise ConversionError(f"{where}: the ONNX exporter returned no model")
    _simplify(program.model)
    model_proto = program.model_proto
    _fix_input_shapes(model_proto, args, kwargs)
    _name_outputs(model_proto)
    return model_proto


def _simplify(model: Any) -> None:
    """Fold what the unoptimized export leaves for an optimizer (``SplitToSequence`` + ``SequenceAt`` from
    ``torch.split`` become ``Split``), never a node reading a parameter: a folded weight would lose its name."""
    import onnxscript.optimizer

    def keep_parameters(node: Any) -> bool | None:
        return False if any(v is not None and v.is_initializer() for v in node.inputs) else None

    with _quiet():
        onnxscript.optimizer.fold_constants(model, should_fold=keep_parameters)
        onnxscript.optimizer.remove_unused_nodes(model)


def _fix_input_shapes(model: onnx.ModelProto, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Give the graph inputs the example tensors' shapes (a TorchScript model converts with dynamic dims;
    QNN graphs are static)."""
    from torch.utils._pytree import tree_leaves

    g = model.graph
    consts = {i.name for i in g.initializer}
    inputs = [vi for vi in g.input if vi.name not in consts]
    by_name = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    leaves = [t for t in tree_leaves((args, list(kwargs.values()))) if isinstance(t, torch.Tensor)]
    if len(leaves) != len(inputs):
        return  # the exporter dropped or added inputs: leave its shapes
    for vi, t in zip(inputs, leaves):
        tensor = by_name.get(vi.name, t)
        shape = vi.type.tensor_type.shape
        if len(shape.dim) != tensor.dim():
            continue
        for d, size in zip(shape.dim, tensor.shape):
            d.Clear()
            d.dim_value = int(size)


def _load(path: Path) -> Model:
    """A ``.pt2`` ExportedProgram or a TorchScript archive; never a pickle (``torch.save`` of a module)."""
    if not path.is_file():
        raise InvalidModelError(f"{path}: no such PyTorch model file")
    if path.suffix.lower() == ".pt2":
        try:
            return torch.export.load(str(path))
        except Exception as e:
            raise InvalidModelError(f"{path}: not a torch.export ExportedProgram ({_reason(e)}); write one with "
                                    "torch.export.save(torch.export.export(model, args), 'model.pt2')") from None
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise InvalidModelError(
            f"{path}: not a TorchScript archive ({_reason(e)}); openqnn reads TorchScript (torch.jit.save("
            "torch.jit.trace(model, x), 'model.pt')) or ExportedProgram (.pt2) files, never torch.save pickles "
            "(they run code when opened)") from None


def _example_inputs(model: Model, options: FrontendOptions,
                    where: str) -> tuple[tuple[Any, ...], dict[str, Any], list[str]]:
    """(args, kwargs, input names) to export with: ``example_inputs``, else tensors of ``input_dims``'
    shapes, else an ExportedProgram's own examples."""
    dims = dict(options.input_dims)
    unknown = sorted(set(options.input_dtypes) - set(dims))
    if unknown:
        raise ConversionError(f"{where}: --input_dtype names {', '.join(unknown)}, which no --input_dim names")
    ex = options.example_inputs
    if ex is not None:
        if isinstance(ex, Mapping):
            kwargs = {str(k): v for k, v in ex.items()}
            return (), kwargs, list(dims) or []
        args = tuple(ex) if isinstance(ex, (tuple, list)) else (ex,)
        if dims and len(dims) != len(args):
            raise ConversionError(f"{where}: {len(dims)} --input_dim names for {len(args)} example inputs")
        return args, {}, list(dims)
    if dims:
        tensors = []
        for name, shape in dims.items():
            dtype = DTYPES.get(options.input_dtypes.get(name, "float32"))
            if dtype is None:
                raise ConversionError(f"{where}: --input_dtype {name} {options.input_dtypes[name]}: use one of "
                                      + ", ".join(DTYPES))
            tensors.append(torch.zeros(tuple(int(d) for d in shape), dtype=dtype))
        return tuple(tensors), {}, list(dims)
    if isinstance(model, torch.export.ExportedProgram) and model.example_inputs is not None:
        args, kwargs = model.example_inputs
        return tuple(args), dict(kwargs), []
    raise ConversionError(f"{where}: give the model's inputs: --input_dim NAME DIMS for each (in the order of its "
                          "arguments), or example_inputs= in openqnn.convert")


def _script_to_program(module: torch.jit.ScriptModule, args: tuple[Any, ...],
                       where: str) -> torch.export.ExportedProgram:
    from torch._export.converter import TS2EPConverter

    try:
        with _quiet():
            return TS2EPConverter(module, args).convert()
    except Exception as e:
        raise ConversionError(f"{where}: PyTorch could not convert the TorchScript model to an ExportedProgram "
                              f"({_reason(e)}); export the Python module with torch.export instead") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter prints progress and warns freely; keep our one-line output."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch._export",
                                              "onnxscript", "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _reason(e: BaseException) -> str:
    """The root cause's first meaningful line: the exporter wraps torch.export's error in its own."""
    root = e
    while root.__cause__ is not None:
        root = root.__cause__
    lines = [ln.strip() for ln in str(root).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    text = text if len(text) <= 240 else text[:237] + "..."
    return f"{type(root).__name__}: {text}" if text else type(root).__name__


def _name_outputs(model: onnx.ModelProto) -> None:
    """Rename the graph outputs ``output`` / ``output_<i>`` (the exporter names them after FX nodes)."""
    g = model.graph
    outs = list(g.output)
    fixed = {i.name for i in g.input} | {i.name for i in g.initializer}
    taken = {o for n in g.node for o in n.output} | fixed
    for i, vi in enumerate(outs):
        new = "output" if len(outs) == 1 else f"output_{i}"
        old = vi.name
        if old in fixed or new in taken or sum(o.name == old for o in outs) > 1:
            continue
        for n in g.node:
            n.output[:] = [new if o == old else o for o in n.output]
            n.input[:] = [new if x == old else x for x in n.input]
        for vinfo in g.value_info:
            if vinfo.name == old:
                vinfo.name = new
        vi.name = new
        taken.add(new)


def _layer_of(e: UnsupportedOpError, model: onnx.ModelProto) -> str:
    """``layer 'blocks.0.attn' (timm...Attention), aten op aten.foo.default: `` for the ONNX node the error
    names, from the exporter's metadata; '' when it cannot tell."""
    node_name = getattr(e, "node_name", None)
    if not node_name:
        return ""
    for n in model.graph.node:
        if n.name == node_name or (n.output and n.output[0] == node_name):
            meta = {p.key: p.value for p in n.metadata_props}
            scopes = _literal_list(meta.get("pkg.torch.onnx.name_scopes"))
            classes = _literal_list(meta.get("pkg.torch.onnx.class_hierarchy"))
            if not scopes or not classes:
                return ""
            layer = ".".join(s for s in scopes[1:-1] if s) or "(the top module)"
            cls = classes[-2] if len(classes) >= 2 else classes[0]
            return f"layer '{layer}' ({cls}), PyTorch op {classes[-1]}: "
    return ""


def _literal_list(text: str | None) -> Sequence[str]:
    import ast

    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []
