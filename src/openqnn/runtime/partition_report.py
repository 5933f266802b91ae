"""The placement of a prepared model, reported: per node, its op, the backend that runs it, and why.

    report = session.partition_report()
    report.to_json()      # what qnn-net-run writes as <output_dir>/partition_report.json
    print(report.table())  # what ``openqnn info MODEL --backend htp`` prints

Reasons: ``"supported"`` (the backend asked for runs the node), ``"forced"`` (the config file's
``openqnn.force_backend`` put it where it runs), or the reason the backend's kernel builder refused it (the
node fell back to the fallback backend). Also here: the checks of a :class:`~openqnn.backends.partition.PlacementConfig` against a graph and
a backend, and ``disable_cpu_fallback``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from openqnn.backends import SPECS, Fallback, backend_spec
from openqnn.backends.partition import FORCED, SUPPORTED, PlacementConfig
from openqnn.errors import InvalidConfigError, UnsupportedOpError
from openqnn.ir.graph import Graph
from openqnn.ops.schema import OPS

__all__ = ["NodePlacement", "PartitionReport", "check_fallbacks", "check_placement", "fallback_backend",
           "partition_report"]

_LISTED = 5  # nodes named in the disable_cpu_fallback error before "and N more"


@dataclass(frozen=True)
class NodePlacement:
    """One node: its op type, the backend that runs it, and why (see the module docstring)."""

    node: str
    op_type: str
    backend: str
    reason: str


@dataclass(frozen=True)
class PartitionReport:
    """Where every node of a prepared model runs. ``backend``: the one asked for."""

    backend: str
    nodes: tuple[NodePlacement, ...]

    @property
    def fallbacks(self) -> list[NodePlacement]:
        """The nodes that run elsewhere than ``backend``."""
        return [n for n in self.nodes if n.backend != self.backend]

    def to_json(self) -> dict[str, Any]:
        """``partition_report.json``: the backend, counts per backend, and every node."""
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.backend] = counts.get(n.backend, 0) + 1
        return {"backend": self.backend, "nodes_per_backend": counts,
                "nodes": [{"node": n.node, "op_type": n.op_type, "backend": n.backend, "reason": n.reason}
                          for n in self.nodes]}

    def table(self) -> str:
        """The report as a text table, one node a line, then the counts."""
        heads = ("node", "op", "backend", "reason")
        rows = [(n.node, n.op_type, n.backend, n.reason) for n in self.nodes]
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(heads[:3])]
        lines = ["  ".join(h.ljust(w) for h, w in zip(heads[:3], widths)) + "  " + heads[3]]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
        counts = self.to_json()["nodes_per_backend"]
        lines.append(f"{len(rows)} node(s): " + ", ".join(f"{v} on {k}" for k, v in counts.items()))
        return "\n".join(lines)


def fallback_backend() -> str:
    """The name of the backend that runs what others cannot (``Capabilities.fallback``)."""
    return next(s.name for s in SPECS.values() if s.capabilities.fallback)


def partition_report(backend: str, nodes: Iterable[tuple[str, str]], fallbacks: Sequence[Fallback],
                     placement: PlacementConfig | None = None) -> PartitionReport:
    """The report of ``nodes`` ((name, op type) in order) prepared for ``backend`` with ``fallbacks``;
    ``placement`` marks the nodes forced to ``backend`` itself."""
    moved = {f.node: f for f in fallbacks}
    other = fallback_backend()
    rows = []
    for name, op_type in nodes:
        if name in moved:
            rows.append(NodePlacement(name, op_type, other, moved[name].reason))
            continue
        forced = placement is not None and (placement.force_backend.get(name) or placement.force_backend.get(op_type))
        rows.append(NodePlacement(name, op_type, backend, FORCED if forced else SUPPORTED))
    return PartitionReport(backend, tuple(rows))


def check_placement(placement: PlacementConfig, backend: str, graph: Graph | None = None) -> None:
    """Refuse forcing to a backend that cannot take part in ``backend``'s execution (itself or the fallback
    backend) and, where ``graph`` is given, a key that names neither a node of it nor a known op type."""
    spec = backend_spec(backend)
    allowed = {spec.name, fallback_backend()}
    for key, target in placement.force_backend.items():
        if target not in allowed:
            raise InvalidConfigError(
                f"openqnn.force_backend: '{key}' is forced to {target}, but a {spec.name} session runs nodes on "
                f"{' or '.join(sorted(allowed))}; force it to one of those, or run the model with --backend {target}")
        if graph is not None and key not in OPS and not any(n.name == key for n in graph.nodes):
            raise InvalidConfigError(
                f"openqnn.force_backend: '{key}' is neither a node of graph '{graph.name}' nor a known op type; "
                "give a node name or an op type such as LayerNorm (openqnn ops lists them)")


def check_fallbacks(backend: str, fallbacks: Sequence[Fallback], placement: PlacementConfig | None) -> None:
    """With ``disable_cpu_fallback``, a node that fell back (one forced is not a fallback: it was asked for)
    is an error listing the nodes and their reasons."""
    if placement is None or not placement.disable_cpu_fallback:
        return
    fell = [f for f in fallbacks if f.reason != FORCED]
    if not fell:
        return
    listed = "; ".join(f"{f.node} ({f.op_type}): {f.reason}" for f in fell[:_LISTED])
    more = f"; and {len(fell) - _LISTED} more" if len(fell) > _LISTED else ""
    raise UnsupportedOpError(
        f"{backend}: {len(fell)} node(s) would fall back to {fallback_backend()} and cpu fallback is disabled "
        f"(--disable_cpu_fallback / openqnn.disable_cpu_fallback): {listed}{more}; quantize or change those nodes, "
        "force them to cpu (openqnn.force_backend), or allow the fallback")
