"""Placement: which backend runs each node. One rule for every backend that has a fallback.

A node runs on the backend asked for when that backend's kernel builder accepts it; otherwise on the
fallback backend (cpu), recorded as a :class:`~openqnn.backends.base.Fallback` with the builder's reason.
Backends do not decide this themselves: their executables take the steps :func:`partition` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from openqnn.backends.base import Fallback, Unsupported
from openqnn.ir.graph import Node

__all__ = ["partition"]

S = TypeVar("S")


def partition(nodes: Iterable[Node], own: Callable[[Node], S], fallback: Callable[[Node, str], S]
              ) -> tuple[list[S], list[Fallback]]:
    """The step of every node in order: ``own(node)`` (the backend's builder; raises
    :class:`Unsupported` with the reason where it cannot run the node), else ``fallback(node, reason)``
    (the fallback backend's step, in the backend's data formats). Returns the steps and the fallbacks."""
    steps: list[S] = []
    fallbacks: list[Fallback] = []
    for node in nodes:
        try:
            steps.append(own(node))
        except Unsupported as e:
            fallbacks.append(Fallback(node.name, node.op_type, str(e)))
            steps.append(fallback(node, str(e)))
    return steps, fallbacks
