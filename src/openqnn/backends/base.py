"""The Backend protocol shared by cpu, gpu and htp."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from openqnn.ir.graph import Graph, Node

__all__ = ["Backend", "Executable"]


@runtime_checkable
class Executable(Protocol):
    """A graph prepared for one backend: run it many times."""

    graph: Graph

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@runtime_checkable
class Backend(Protocol):
    """Prepares graphs. ``unsupported`` gives the reason a node cannot run here, or None."""

    name: str

    def unsupported(self, graph: Graph, node: Node) -> str | None: ...

    def prepare(self, graph: Graph) -> Executable: ...
