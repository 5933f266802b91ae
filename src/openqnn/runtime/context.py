"""Compiled models: prepare once, save as a context binary, open without preparing again.

    ctx = openqnn.compile(qgraph, backend="htp")      # prepare: kernels chosen, tables built, weights packed
    ctx.save("htp_context.bin")
    sess = openqnn.Session("htp_context.bin")          # binds the saved steps; analyses nothing

A context holds one or more prepared graphs (:class:`~openqnn.backends.plan.PreparedGraph`: the graph's
inputs and outputs with their encodings, and its steps as data) in the container of
:mod:`openqnn.runtime.context_format`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from openqnn.backends import SPECS, backend_spec, create_backend
from openqnn.backends.base import ContextBackend, Fallback
from openqnn.backends.partition import PlacementConfig
from openqnn.backends.plan import PreparedGraph, StepPlan
from openqnn.errors import ContextError, InvalidConfigError
from openqnn.ir.graph import Graph
from openqnn.runtime.config import BackendConfig
from openqnn.runtime.context_format import MAGIC, ContextFile, read_context, write_context
from openqnn.runtime.partition_report import check_fallbacks, check_placement
from openqnn.serialization.netjson import graph_to_json, io_graph_from_json

__all__ = ["Context", "compile_graph", "context_of", "io_specs", "is_context", "open_context", "step_summary"]


@dataclass(frozen=True)
class Context:
    """Prepared graphs for one backend (and arch), by graph name. ``pending``: a context file's checksum still
    running (:func:`open_context` with ``defer_checksum``); :meth:`verify` waits for it."""

    backend: str
    arch: str | None
    graphs: Mapping[str, PreparedGraph]
    pending: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def verify(self) -> None:
        """Refuse a corrupt file (ContextError) once its deferred checksum is in; nothing where there is none."""
        if self.pending is not None:
            self.pending()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the context binary (atomically); returns its path."""
        docs: dict[str, Any] = {}
        arrays: dict[str, dict[str, np.ndarray]] = {}
        for name, g in self.graphs.items():
            data = [s.to_data() for s in g.steps]
            docs[name] = {"io": graph_to_json(g.io), "steps": [doc for doc, _ in data]}
            arrays[name] = {f"{i}/{k}": v for i, (_, stored) in enumerate(data) for k, v in stored.items()}
        write_context(path, backend=self.backend, arch=self.arch, graphs=docs, arrays=arrays)
        return Path(path)

    def graph(self, name: str | None = None) -> PreparedGraph:
        """The prepared graph ``name`` (the only one where the context holds one)."""
        if name is None:
            if len(self.graphs) != 1:
                raise InvalidConfigError(f"the context holds {len(self.graphs)} graphs ({', '.join(self.graphs)}); "
                                         "name the one to run")
            return next(iter(self.graphs.values()))
        if name not in self.graphs:
            raise InvalidConfigError(f"the context has no graph '{name}'; it holds {', '.join(self.graphs)}")
        return self.graphs[name]


def compile_graph(graphs: Graph | Mapping[str, Graph], backend: str = "htp", config: Any = None,
                  placement: PlacementConfig | None = None) -> Context:
    """Prepare one graph (or several, by name) for ``backend`` as data, ready to save as a context binary.
    ``config``: the backend's config dataclass, or a :class:`BackendConfig` (its section for ``backend``, and
    its placement unless ``placement`` is given); ``placement``: nodes forced to a backend (forced to cpu, they
    become fallback steps with the reason "forced"), and ``disable_cpu_fallback``."""
    spec = backend_spec(backend)
    if not spec.capabilities.contexts:
        able = ", ".join(s.name for s in SPECS.values() if s.capabilities.contexts)
        raise InvalidConfigError(f"the {spec.name} backend cannot write context binaries yet (its prepared steps are "
                                 f"not data); contexts hold graphs of these backends: {able}")
    if isinstance(config, BackendConfig):
        placement = placement or config.placement
        config = config.section(spec.name)
    target = cast(ContextBackend, create_backend(spec.name, config))
    named = {graphs.name: graphs} if isinstance(graphs, Graph) else dict(graphs)
    prepared: dict[str, PreparedGraph] = {}
    for name, g in named.items():
        if placement is not None and placement.force_backend:
            check_placement(placement, spec.name, g)
            prepared[name] = target.plan(g, placement)  # type: ignore[call-arg]
        else:
            prepared[name] = target.plan(g)
        check_fallbacks(f"{spec.name} (graph {name})", _fallbacks(prepared[name]), placement)
    arches = {p.arch for p in prepared.values()}
    return Context(spec.name, arches.pop() if len(arches) == 1 else None, prepared)


def _fallbacks(prepared: PreparedGraph) -> list[Fallback]:
    return [Fallback(s.node, s.op_type, str(s.attrs["reason"])) for s in prepared.steps if "reason" in s.attrs]


def is_context(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a context binary (by its magic bytes)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def open_context(path: str | os.PathLike[str], backend: str | None = None, defer_checksum: bool = False) -> Context:
    """Read and check a context binary (``backend``: refuse one prepared for another). ``defer_checksum``: its
    checksum runs in a worker thread meanwhile; the caller must call :meth:`Context.verify` before it runs
    anything of it, and on any error it meets with the contents (a corrupt file is then refused as corrupt)."""
    raw = read_context(Path(path), backend=backend_spec(backend).name if backend else None,
                       defer_checksum=defer_checksum)
    try:
        return context_of(raw)
    except BaseException:
        raw.verify()
        raise


def context_of(raw: ContextFile) -> Context:
    """The prepared graphs of a context binary already read and checked (:func:`read_context`)."""
    p = raw.path
    graphs: dict[str, PreparedGraph] = {}
    for name, g in raw.graphs.items():
        doc = g.plan
        if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list) or "io" not in doc:
            raise ContextError(f"{p}: graph '{name}' holds no prepared steps; regenerate it with "
                               "qnn-context-binary-generator")
        # step i's arrays are stored as "i/<name>": each step looks up its own, and together they must be all
        steps, used = [], 0
        for i, step in enumerate(doc["steps"]):
            try:
                plan = StepPlan.from_json(step, g.arrays, f"{i}/")
                used += len(plan.arrays) + len(step.get("attr_arrays", ()))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ContextError(f"{p}: graph '{name}' step {i} is malformed ({type(e).__name__}: {e}); "
                                   "regenerate it with qnn-context-binary-generator") from None
            steps.append(plan)
        if used != len(g.arrays):
            named = {f"{i}/{n}" for i, (s, d) in enumerate(zip(steps, doc["steps"]))
                     for n in [*s.arrays, *d.get("attr_arrays", {}).values()]}
            stray = next((k for k in g.arrays if k not in named), "?")
            raise ContextError(f"{p}: graph '{name}': array '{stray}' belongs to no step; regenerate it with "
                               "qnn-context-binary-generator")
        graphs[name] = PreparedGraph(raw.header.backend, raw.header.arch, io_graph_from_json(doc["io"], p),
                                     tuple(steps))
    return Context(raw.header.backend, raw.header.arch, graphs, raw.verify if raw.pending is not None else None)


def io_specs(io: Graph) -> dict[str, Any]:
    """``input_specs.json``: each input's and output's name, shape, data type, layout and encoding (QNN's
    sign: real = scale * (q + offset)), which an application needs to feed and read a context."""
    def spec(name: str) -> dict[str, Any]:
        t = io.tensors[name]
        enc = t.encoding
        return {"name": name, "shape": list(t.shape), "dtype": t.dtype.name, "layout": t.src_axis_format,
                "encoding": None if enc is None else {"bitwidth": enc.bitwidth, "scale": [float(v) for v in enc.scale],
                                                      "offset": [int(v) for v in enc.offset]}}

    return {"inputs": [spec(n) for n in io.inputs], "outputs": [spec(n) for n in io.outputs]}


def step_summary(prepared: PreparedGraph) -> dict[str, Any]:
    """A prepared graph at a glance: its inputs and outputs (:func:`io_specs`), how many steps run each kernel,
    and the nodes on the fallback backend with the reasons their backend refused them."""
    kernels: dict[str, int] = {}
    for step in prepared.steps:
        kernels[step.kernel] = kernels.get(step.kernel, 0) + 1
    fallbacks = [{"node": s.node, "op_type": s.op_type, "reason": s.attrs.get("reason", "")}
                 for s in prepared.steps if "reason" in s.attrs]
    return {**io_specs(prepared.io), "steps": len(prepared.steps), "kernels": kernels, "fallbacks": fallbacks}
