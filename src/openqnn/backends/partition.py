"""Placement: which backend runs each node. One rule for every backend that has a fallback.

A node runs on the backend asked for when that backend's kernel builder accepts it; otherwise on the
fallback backend (cpu), recorded as a :class:`~openqnn.backends.base.Fallback` with the builder's reason.
A :class:`PlacementConfig` (the config file's ``openqnn`` section) can force nodes, by name or op type, to the
fallback backend (recorded with the reason ``"forced"``) or to the backend asked for (where a refusal is
then an error, not a fallback). Backends do not decide this themselves: their executables take the steps
:func:`partition` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from openqnn.backends.base import Fallback, Unsupported
from openqnn.errors import UnsupportedOpError
from openqnn.ir.graph import Node

__all__ = ["FORCED", "SUPPORTED", "PlacementConfig", "partition"]

S = TypeVar("S")

FORCED = "forced"  # the reason of a node the placement config put where it runs
SUPPORTED = "supported"  # the reason of a node that runs on the backend asked for, its builder accepting it


@dataclass(frozen=True)
class PlacementConfig:
    """Where the user wants nodes to run (the ``openqnn`` section of a backend config file).

    ``force_backend``: node name or op type -> backend name; a node's own name wins over its op type.
    ``disable_cpu_fallback``: a node that would fall back (other than a forced one) is an error listing
    the nodes, instead of a warning."""

    force_backend: Mapping[str, str] = field(default_factory=dict)
    disable_cpu_fallback: bool = False

    def target(self, node: Node) -> str | None:
        """The backend ``node`` is forced to, or None."""
        return self.force_backend.get(node.name, self.force_backend.get(node.op_type))


def partition(nodes: Iterable[Node], own: Callable[[Node], S], fallback: Callable[[Node, str], S],
              placement: PlacementConfig | None = None, here: str = "") -> tuple[list[S], list[Fallback]]:
    """The step of every node in order: ``own(node)`` (the backend's builder; raises
    :class:`Unsupported` with the reason where it cannot run the node), else ``fallback(node, reason)``
    (the fallback backend's step, in the backend's data formats). Returns the steps and the fallbacks.

    ``placement`` forces nodes: one forced to a backend other than ``here`` (the backend asked for; the
    caller has checked that it is the fallback backend) takes the fallback step with the reason ``"forced"``;
    one forced to ``here`` that the builder refuses is an :class:`UnsupportedOpError` naming it."""
    steps: list[S] = []
    fallbacks: list[Fallback] = []
    for node in nodes:
        target = placement.target(node) if placement is not None else None
        if target is not None and target != here:
            fallbacks.append(Fallback(node.name, node.op_type, FORCED))
            steps.append(fallback(node, FORCED))
            continue
        try:
            steps.append(own(node))
        except Unsupported as e:
            if target is not None:
                raise UnsupportedOpError(f"node '{node.name}' ({node.op_type}) is forced to {here} "
                                         f"(openqnn.force_backend), but {here} cannot run it: {e}; force it to "
                                         "the fallback backend or drop the entry") from None
            fallbacks.append(Fallback(node.name, node.op_type, str(e)))
            steps.append(fallback(node, str(e)))
    return steps, fallbacks
