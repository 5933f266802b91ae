"""The Backend protocol shared by cpu, gpu and htp."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from openqnn.backends.settings import Capabilities
from openqnn.ir.graph import Graph, Node

__all__ = ["Backend", "ContextBackend", "Executable", "Fallback", "QnnContextBackend", "Unsupported", "feed_of"]


def feed_of(graph: Graph, feeds: Mapping[str, Any], name: str) -> np.ndarray:
    """Input ``name``'s array from ``feeds``, checked against ``graph`` (present, of the input's shape): an
    :class:`~openqnn.errors.InputDataError` naming the input otherwise."""
    from openqnn.errors import InputDataError

    if name not in feeds:
        raise InputDataError(f"missing input '{name}'; the model's inputs are {', '.join(graph.inputs)}")
    arr = np.asarray(feeds[name])
    shape = graph.tensors[name].shape
    if tuple(arr.shape) != shape:
        raise InputDataError(f"input '{name}' has shape {arr.shape}; the model expects {shape}")
    return arr


class Unsupported(Exception):
    """Raised by a kernel builder (any backend's) for a node it cannot run; the message says why."""


@dataclass(frozen=True)
class Fallback:
    """A node that runs on the fallback backend (cpu) instead of the one asked for, and why."""

    node: str
    op_type: str
    reason: str


@runtime_checkable
class Executable(Protocol):
    """A graph prepared for one backend: run it many times. ``fallbacks`` lists the nodes that run
    on the fallback backend instead, with their reasons (empty when every node runs here)."""

    graph: Graph

    @property
    def fallbacks(self) -> Sequence[Fallback]: ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@runtime_checkable
class Backend(Protocol):
    """Prepares graphs. ``unsupported`` gives the reason a node cannot run here, or None."""

    name: str
    capabilities: Capabilities

    def unsupported(self, graph: Graph, node: Node) -> str | None: ...

    def prepare(self, graph: Graph) -> Executable: ...


@runtime_checkable
class ContextBackend(Backend, Protocol):
    """A backend whose prepared graphs are data (``capabilities.contexts``): ``plan`` prepares one as a
    :class:`~openqnn.backends.plan.PreparedGraph`, ``bind`` makes it runnable without analysing it again."""

    def plan(self, graph: Graph) -> Any: ...

    def bind(self, prepared: Any) -> Executable: ...


@runtime_checkable
class QnnContextBackend(Backend, Protocol):
    """A backend that writes QNN's own context binaries (``capabilities.qnn_contexts``): ``write_qnn_context``
    prepares ``graph`` with QNN and writes its files into ``folder`` under ``name``, returning their paths
    (the context binary first)."""

    def write_qnn_context(self, graph: Graph, folder: Path, name: str) -> list[Path]: ...
