"""Pass infrastructure: a pass maps a graph to ``(graph, modified)``; pipelines are named, ordered
lists of passes run to a fixed point."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from openqnn.errors import OpenQnnError
from openqnn.ir.graph import Graph

log = logging.getLogger("openqnn.passes")

PassFn = Callable[[Graph], tuple[Graph, bool]]


@dataclass(frozen=True)
class Pass:
    """A named graph rewrite. ``in_place`` passes mutate and return the graph they are given."""

    name: str
    fn: PassFn
    in_place: bool = True

    def __call__(self, graph: Graph) -> tuple[Graph, bool]:
        return self.fn(graph)


PASSES: dict[str, Pass] = {}


def graph_pass(name: str, in_place: bool = True) -> Callable[[PassFn], PassFn]:
    """Register the decorated function as pass ``name``."""

    def register(fn: PassFn) -> PassFn:
        if name in PASSES:
            raise RuntimeError(f"pass {name} registered twice")
        PASSES[name] = Pass(name, fn, in_place)
        return fn

    return register


class PassManager:
    """Runs passes in order, repeating the whole list until none modifies the graph."""

    def __init__(self, names: list[str], max_rounds: int = 20):
        self.passes = [PASSES[n] for n in names]
        self.max_rounds = max_rounds

    def run(self, graph: Graph) -> Graph:
        ran: list[str] = []
        for _ in range(self.max_rounds):
            changed = False
            for p in self.passes:
                try:
                    graph, modified = p(graph)
                except OpenQnnError:
                    raise
                except Exception as e:
                    raise RuntimeError(f"pass {p.name} failed after {', '.join(ran) or 'no passes'}: {e}") from e
                ran.append(p.name)
                if modified:
                    log.debug("pass %s modified graph %s", p.name, graph.name)
                changed |= modified
            if not changed:
                break
        return graph
