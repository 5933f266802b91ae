"""Recording a session's profile: phase times, inference times and memory, and (``detailed``) every node.

:class:`SessionProfiler` is what ``openqnn.Session(..., profiling="basic"|"detailed")`` holds: the session times
its phases with :meth:`~SessionProfiler.phase`, wraps each run in :meth:`~SessionProfiler.inference`, and
:meth:`~SessionProfiler.finish` gives the :class:`~openqnn.profiling.log.ProfileLog`. Per-node times come from
the executor loop every backend runs (:func:`openqnn.backends.executor.recording`), so they are the same on
every backend. Memory is the operating system's view of the process (resident set size), so PyTorch's and
numpy's allocations count, which Python's tracemalloc does not see.
"""

from __future__ import annotations

import contextlib
import math
import resource
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from openqnn._version import __version__
from openqnn.backends.executor import NodeRecord, recording
from openqnn.errors import InvalidConfigError
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import TensorKind
from openqnn.profiling.log import LEVELS, EventTime, InferenceTime, NodeExecution, NodeInfo, ProfileLog
from openqnn.profiling.work import GEMM_OPS, estimate_macs

__all__ = ["SessionProfiler", "check_level", "rss_bytes"]


def check_level(level: str, flag: str = "profiling") -> str:
    if level not in LEVELS:
        raise InvalidConfigError(f"{flag} {level!r}: unknown profiling level; use {' or '.join(LEVELS)}")
    return level


def rss_bytes() -> int:
    """The process's resident memory now (psutil)."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    """The process's peak resident memory so far, where the OS keeps it (Linux: KiB; macOS: bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class SessionProfiler:
    """Collects one session's profile (see the module docstring)."""

    def __init__(self, level: str, model: str = ""):
        self.level = check_level(level)
        self._t0 = time.perf_counter()
        self.log = ProfileLog(level=self.level, backend="?", model=model, openqnn=__version__,
                              created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self._lock = threading.Lock()
        self._static: dict[str, tuple[str, str | None, int, int, tuple[int, ...]]] = {}
        self._graph: Graph | None = None
        self._nodes: dict[str, Any] = {}

    @property
    def detailed(self) -> bool:
        return self.level == "detailed"

    def _us(self, t: float) -> float:
        return round((t - self._t0) * 1e6, 3)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase (``init``, ``load``, ``prepare``, ``deinit``)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.log.events.append(EventTime(name, self._us(t0), round((time.perf_counter() - t0) * 1e6, 3)))

    def attach(self, backend: Any, executable: Any, graph: Graph, threads: int | None = None) -> None:
        """What is known of the prepared model before it runs: backend, arch and its VTCM, and for each node
        where it runs (fallbacks with their reasons) and its weights."""
        self.log.backend = str(backend.name)
        self.log.threads = threads
        arch = getattr(executable, "arch", None) or getattr(backend, "arch", None)
        if arch is not None:
            self.log.arch = str(arch.name)
            vtcm_mb = getattr(getattr(backend, "config", None), "vtcm_mb", None) or arch.vtcm_mb
            self.log.vtcm_bytes = int(vtcm_mb) * 1024 * 1024
        self._graph = graph
        self._nodes = {n.name: n for n in graph.nodes}
        fallbacks = {f.node: f.reason for f in getattr(executable, "fallbacks", ())}
        plans = {p.node: p for p in getattr(executable, "step_plans", ()) or () if p is not None}
        for name in dict.fromkeys([*self._nodes, *plans]):
            reason = fallbacks.get(name)
            ran_on = "cpu" if reason is not None else self.log.backend
            weight_bytes, elems = 0, 0
            shape: tuple[int, ...] = ()
            plan = plans.get(name)
            node = self._nodes.get(name)
            if node is not None:
                statics = [graph.tensors[x] for x in node.inputs if x and graph.tensors[x].kind is TensorKind.STATIC]
                weight_bytes = sum(t.nbytes for t in statics)
                if node.op_type in GEMM_OPS and len(node.inputs) > 1 and node.inputs[1]:
                    w = graph.tensors[node.inputs[1]]
                    if w.kind is TensorKind.STATIC:
                        elems, shape = math.prod(w.shape), tuple(w.shape)
            if plan is not None and plan.arrays:  # what the backend holds: packed, quantized
                weight_bytes = sum(a.nbytes for a in plan.arrays.values())
                if not elems and plan.op_type in GEMM_OPS:
                    big = max(plan.arrays.values(), key=lambda a: a.size)
                    elems, shape = int(big.size), tuple(big.shape)
            self._static[name] = (ran_on, reason, weight_bytes, elems, shape)

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Time one inference (and, ``detailed``, each node of it)."""
        records: list[NodeRecord] = []
        t0 = time.perf_counter()
        if self.detailed:
            with recording() as records:
                yield
        else:
            yield
        t1 = time.perf_counter()
        rss = rss_bytes()
        with self._lock:
            index = len(self.log.inferences)
            self.log.inferences.append(InferenceTime(index, self._us(t0), round((t1 - t0) * 1e6, 3), rss))
            for r in records:
                self._node(index, r)

    def _node(self, index: int, r: NodeRecord) -> None:
        self.log.executions.append(NodeExecution(index, r.node, self._us(r.start), round(r.seconds * 1e6, 3),
                                                 r.in_bytes, r.out_bytes, r.live_bytes))
        self.log.planned_arena_bytes = max(self.log.planned_arena_bytes, r.live_bytes)
        if r.node in self.log.nodes:
            return
        ran_on, reason, weight_bytes, elems, wshape = self._static.get(
            r.node, (self.log.backend, None, 0, 0, ()))
        graph = self._graph
        node = self._nodes.get(r.node)
        # the IR's shapes (channels last) where the graph has them; else what ran
        out_shape = tuple(graph.tensors[node.outputs[0]].shape) if graph is not None and node is not None else (
            r.out_shapes[0] if r.out_shapes else ())
        in_shape = tuple(graph.tensors[node.inputs[0]].shape) if graph is not None and node is not None and node.inputs else (
            r.in_shapes[0] if r.in_shapes else ())
        if not elems and r.op_type in GEMM_OPS and len(r.in_shapes) > 1:  # weights bound as values (cpu)
            wshape = r.in_shapes[1]
            elems = math.prod(wshape)
        vtcm = r.in_bytes + r.out_bytes + weight_bytes if self.log.vtcm_bytes else 0
        self.log.nodes[r.node] = NodeInfo(r.node, r.op_type, ran_on, reason,
                                          estimate_macs(r.op_type, in_shape, out_shape, elems), weight_bytes, vtcm,
                                          tuple(out_shape), tuple(wshape))

    def finish(self) -> ProfileLog:
        """The profile so far, with the peak resident memory."""
        with self._lock:
            samples = [i.rss_bytes for i in self.log.inferences]
            self.log.peak_rss_bytes = max([_peak_rss(), *samples])
            return self.log
