"""The frontend protocol and registry: which frontend reads a source model.

A frontend turns one kind of source model into an IR graph *before passes*; the spine
(:func:`openqnn.convert`) picks the frontend, calls its :meth:`Frontend.load` and then runs the
``convert`` pass pipeline, so no frontend runs passes itself. A frontend declares:

- ``name``: short and unique (``"onnx"``, ``"pytorch"``, ``"tflite"``); it names the frontend in errors;
- ``suffixes``: the file suffixes it reads, lower case with the dot (``(".onnx",)``);
- ``object_types``: qualified names of the in-memory objects it reads (``("onnx.ModelProto",)``),
  checked without importing their framework (an object of a framework that is not imported cannot exist);
- ``extra``: the ``pip install openqnn[<extra>]`` extra that provides its framework, or None when the
  framework is a core dependency;
- ``load(source, options)``: the graph, not yet through the passes (a graph that must keep the source's
  quantized ops as they are says so with ``KEEP_SOURCE_OPS``);
- optionally ``supported_ops()``: the source op types it converts (its docs page lists them);
- optionally ``reads_directory(path)``: True when it reads the directory ``path`` as a model (a TensorFlow
  SavedModel is a directory); :func:`frontend_for` asks it of a directory before looking at suffixes.

Registering one (its package's ``__init__`` does it and must import no framework; ``load`` imports it)::

    from openqnn.frontends.base import FrontendOptions, register

    class TFLiteFrontend:
        name: str = "tflite"
        suffixes: tuple[str, ...] = (".tflite",)
        object_types: tuple[str, ...] = ()
        extra: str | None = None  # e.g. "tensorflow" for a frontend whose framework is optional

        def load(self, source: object, options: FrontendOptions) -> Graph:
            from openqnn.frontends.tflite.reader import convert_tflite  # the heavy part, imported here

            return convert_tflite(source, options)

    register(TFLiteFrontend())

and add the package's name to ``BUILTIN`` in ``openqnn/frontends/__init__.py``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from openqnn.errors import ConversionError
from openqnn.ir.graph import Graph

__all__ = ["FRONTENDS", "KEEP_SOURCE_OPS", "Frontend", "FrontendOptions", "convert_source", "frontend_for",
           "lazy_exports", "missing_framework", "register", "run_convert_passes"]


# A frontend whose graph already carries the source's own quantized arithmetic (a fully integer TFLite
# model: its integers, op for op) sets ``graph.metadata[KEEP_SOURCE_OPS] = True``; the spine then verifies
# the graph instead of running the float ``convert`` passes, which would fold or fuse its ops.
KEEP_SOURCE_OPS = "keep_source_ops"


def run_convert_passes(graph: Graph) -> Graph:
    """What the spine does with a frontend's graph: the ``convert`` pass pipeline, or, for a graph that keeps
    its source's quantized ops (``KEEP_SOURCE_OPS``, popped here), only a toposort and the verifier."""
    if graph.metadata.pop(KEEP_SOURCE_OPS, False):
        from openqnn.ir.verifier import verify

        graph.toposort()
        verify(graph)
        return graph
    from openqnn.passes import run_pipeline

    return run_pipeline(graph, "convert")


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A frontend package's module ``__getattr__``: attribute ``name`` is imported from the submodule
    ``where[name]`` on first use, so registering the frontend imports no framework."""

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


@dataclass(frozen=True)
class FrontendOptions:
    """What the converters' shared flags tell a frontend (a frontend ignores what does not apply to it).

    ``input_dims``: ``--input_dim`` (name -> dims, in the order given); ``input_dtypes``: ``--input_dtype``
    (name -> numpy dtype name, e.g. ``"int64"``); ``out_nodes``: ``--out_node``; ``name``: the graph's name
    (default: the model file's stem); ``example_inputs``: tensors to trace a Python-object model with
    (PyTorch's ``example_inputs``: one tensor, a tuple of them, or a name -> tensor mapping).
    """

    input_dims: Mapping[str, Sequence[int]] = field(default_factory=dict)
    input_dtypes: Mapping[str, str] = field(default_factory=dict)
    out_nodes: Sequence[str] = ()
    name: str | None = None
    example_inputs: object = None


@runtime_checkable
class Frontend(Protocol):
    """One kind of source model (see the module docstring)."""

    name: str
    suffixes: tuple[str, ...]
    object_types: tuple[str, ...]
    extra: str | None

    def load(self, source: object, options: FrontendOptions) -> Graph:
        """The IR graph of ``source`` (a path or an object of ``object_types``), before passes."""
        ...


FRONTENDS: dict[str, Frontend] = {}


def register(frontend: Frontend) -> Frontend:
    """Add ``frontend`` to the registry; a second frontend of the same name or suffix is an error."""
    if frontend.name in FRONTENDS:
        raise ValueError(f"frontend '{frontend.name}' is registered twice")
    for other in FRONTENDS.values():
        taken = set(other.suffixes) & set(frontend.suffixes)
        if taken:
            raise ValueError(f"frontend '{frontend.name}' claims {', '.join(sorted(taken))}, which "
                             f"frontend '{other.name}' reads")
    FRONTENDS[frontend.name] = frontend
    return frontend


def _is_instance(obj: object, qualified: str) -> bool:
    """``isinstance(obj, <qualified>)`` when that class's module is imported (else ``obj`` cannot be one); it
    imports nothing, so looking up a path's frontend never loads another frontend's reader."""
    module, _, cls_name = qualified.rpartition(".")
    cls = getattr(sys.modules.get(module), cls_name, None)
    return isinstance(cls, type) and isinstance(obj, cls)


def convert_source(source: object, options: FrontendOptions | None = None) -> Graph:
    """``source`` read by its frontend (:func:`frontend_for`) and through the ``convert`` pipeline
    (:func:`run_convert_passes`): what ``openqnn.convert`` does, for the layers below the API."""
    frontend = frontend_for(source)
    graph = frontend.load(source, options or FrontendOptions())
    graph.metadata.setdefault("frontend", frontend.name)
    return run_convert_passes(graph)  # or only verified: a quantized source's integers, op for op


def frontend_for(source: object) -> Frontend:
    """The frontend that reads ``source``: by object type, else by the path's suffix; an unknown kind is a
    :class:`ConversionError` listing what openqnn converts."""
    from openqnn.frontends import load_builtin

    load_builtin()
    for fe in FRONTENDS.values():
        if any(_is_instance(source, t) for t in fe.object_types):
            return fe
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            for fe in FRONTENDS.values():
                reads = getattr(fe, "reads_directory", None)
                if callable(reads) and reads(path):
                    return fe
            raise ConversionError(f"{path}: a directory that no frontend reads as a model (a TensorFlow SavedModel "
                                  f"holds saved_model.pb); openqnn converts {_supported()}")
        suffix = path.suffix.lower()
        for fe in FRONTENDS.values():
            if suffix in fe.suffixes:
                return fe
        raise ConversionError(f"{path}: unknown model type '{path.suffix}'; openqnn converts {_supported()}")
    raise ConversionError(f"cannot convert a {type(source).__module__}.{type(source).__qualname__}; openqnn "
                          f"converts {_supported()}, and model files by path")


def _supported() -> str:
    parts = []
    for fe in FRONTENDS.values():
        what = ", ".join([*fe.suffixes, *fe.object_types])
        parts.append(f"{fe.name} ({what})")
    return "; ".join(parts)


def missing_framework(frontend: str, module: str, extra: str, where: object = None) -> ConversionError:
    """The error for a frontend whose optional framework is not installed: it names the extra to install."""
    prefix = f"{where}: " if where is not None else ""
    return ConversionError(f"{prefix}the {frontend} converter needs the '{module}' package, which is not installed; "
                           f"install it with: pip install 'openqnn[{extra}]'")
