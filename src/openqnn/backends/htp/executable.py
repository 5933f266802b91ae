"""A graph prepared for the htp backend: integer steps, cpu fallback steps, I/O conversion.

Every node runs as an htp integer step when its kernel builder accepts it, otherwise as a cpu
float step between a dequantize of its inputs and a quantize of its outputs (the placement rule of
:func:`openqnn.backends.partition.partition`; the fallback step is data too, kernels/fallback.py).
Each fallback is recorded with its reason (``fallbacks``). ``path="reference"`` runs the numpy executable spec
instead of the fast path (slow; for checking).
"""

from __future__ import annotations

import contextlib
import logging
import operator
from collections.abc import Mapping

import numpy as np
import torch

from openqnn.backends.base import Fallback, feed_of
from openqnn.backends.executor import BoundStep, Executor
from openqnn.backends.fallback import keep_freed_memory
from openqnn.backends.htp import native
from openqnn.backends.htp.arch import HtpArch
from openqnn.backends.htp.kernels import HTP_KERNELS
from openqnn.backends.htp.kernels.fallback import KERNEL as FALLBACK_KERNEL
from openqnn.backends.htp.kernels.fallback import build_fallback, dequantize_t, edge_step, quantize_t
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    QParams,
    Unsupported,
    background_binding,
    bind_step,
    storage_dtype,
)
from openqnn.backends.partition import PlacementConfig, partition
from openqnn.backends.plan import StepPlan
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import TensorKind

_NBYTES = operator.attrgetter("nbytes")
log = logging.getLogger("openqnn.htp")

__all__ = ["Fallback", "HtpExecutable", "dequantize_t", "quantize_t"]


class HtpExecutable:
    """Runs a quantized graph with integer arithmetic (see module docstring)."""

    def __init__(self, graph: Graph, arch: HtpArch, device: torch.device | str = "cpu", path: str = "fast",
                 arithmetic: str = "tflite", placement: PlacementConfig | None = None):
        if path not in ("fast", "reference"):
            raise ValueError(f"path must be 'fast' or 'reference', not {path!r}")
        self.graph, self.arch, self.path = graph, arch, path
        self.device = torch.device(device)
        if self.device.type == "cpu":
            keep_freed_memory()
        hctx = HtpBuildContext(graph, arch, self.device, arithmetic)
        def own(node: Node) -> HtpStep | str:
            builder = HTP_KERNELS.get(node.op_type)
            if builder is None:
                raise Unsupported(f"no htp kernel for {node.op_type}")
            return builder(node, hctx)

        def refused(node: Node, why: str) -> HtpStep | str:  # built by _with_edges, which knows the region
            return why

        placed, self.fallbacks = partition(graph.nodes, own, refused, placement, "htp")
        steps = _with_edges(graph, placed, hctx)
        # each step as data (None: a fallback whose cpu step holds what JSON cannot)
        self.step_plans: list[StepPlan | None] = [step.plan for step in steps]
        self.unplanned = [(step.node, step.op_type) for step in steps if step.plan is None]
        # (node, op type) of every node, in order (what a placement report lists)
        self.nodes = [(node.name, node.op_type) for node in graph.nodes]
        self._schedule([BoundStep(step.reference if path == "reference" else step.fast, step.inputs, step.outputs,
                                  step.node, step.op_type) for step in steps])
        if self.fallbacks:
            log.info("htp: %d node(s) fall back to cpu: %s", len(self.fallbacks),
                     "; ".join(f"{f.node} ({f.op_type}): {f.reason}" for f in self.fallbacks))

    @classmethod
    def from_plans(cls, io: Graph, steps: list[StepPlan], arch: HtpArch, device: torch.device | str = "cpu",
                   path: str = "fast") -> HtpExecutable:
        """An executable bound from step plans alone (a context binary's): ``io`` holds the graph's inputs
        and outputs; nothing is analysed, packed or proven again."""
        if path not in ("fast", "reference"):
            raise ValueError(f"path must be 'fast' or 'reference', not {path!r}")
        self = cls.__new__(cls)
        self.graph, self.arch, self.path = io, arch, path
        self.device = torch.device(device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.fallbacks = [Fallback(p.node, p.op_type, str(p.attrs.get("reason", ""))) for p in steps
                          if p.kernel == FALLBACK_KERNEL]
        self.step_plans = list(steps)
        self.unplanned = []
        self.nodes = [(p.node, p.op_type) for p in steps if not p.attrs.get("edge")]
        bound: list[BoundStep | None] = [None] * len(steps)
        # the steps with the most data first: their weights are packed in worker threads (the largest take
        # longest) while the rest bind
        size = [sum(map(_NBYTES, p.arrays.values())) for p in steps]
        order = sorted(range(len(steps)), key=lambda i: -size[i])
        with background_binding():
            for i in order:
                plan = steps[i]
                step = bind_step(plan, self.device)
                bound[i] = BoundStep(step.reference if path == "reference" else step.fast, step.inputs,
                                     plan.outputs, plan.node, plan.op_type)
        self._schedule([b for b in bound if b is not None])
        return self

    def _schedule(self, steps: list[BoundStep]) -> None:
        self._enc = {n: QParams.of(t.encoding) for n, t in self.graph.tensors.items() if t.encoding is not None}
        self._exec = Executor(steps, self.graph.inputs, self.graph.outputs)

    # -- running -------------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray], native_inputs: bool = False,
            native_outputs: bool = False) -> dict[str, np.ndarray]:
        # the C kernels' threads follow PyTorch's (a backend's num_threads); PyTorch's own idle meanwhile, unless
        # a cpu fallback step needs them
        cpu_fast = self.device.type == "cpu" and self.path == "fast"
        if cpu_fast and self.fallbacks:
            native.sync_threads()
        with native.threads_to_the_pool() if cpu_fast and not self.fallbacks else contextlib.nullcontext():
            return self._run(feeds, native_inputs, native_outputs)

    def _run(self, feeds: Mapping[str, np.ndarray], native_inputs: bool, native_outputs: bool) -> dict[str, np.ndarray]:
        env: dict[str, object] = {}
        for t in self.graph.input_tensors():
            arr = feed_of(self.graph, feeds, t.name)
            q = self._enc.get(t.name)
            if q is None:
                v = torch.from_numpy(np.ascontiguousarray(arr.astype(t.dtype.numpy))).to(self.device)
            elif native_inputs:
                v = torch.from_numpy(arr.astype(np.int64)).to(storage_dtype(q.bitwidth)).to(self.device)
            else:
                v = quantize_t(torch.from_numpy(arr.astype(np.float32)).to(self.device), q)
            env[t.name] = v.cpu().numpy().astype(np.int64) if self.path == "reference" and q is not None else (
                v.cpu().numpy() if self.path == "reference" else v)
        values = self._exec.run([env[n] for n in self.graph.inputs])
        out: dict[str, np.ndarray] = {}
        for name, value in zip(self.graph.outputs, values):
            arr = value if isinstance(value, np.ndarray) else value.cpu().numpy()
            q = self._enc.get(name)
            if q is None:
                out[name] = arr.astype(self.graph.tensors[name].dtype.numpy)
            elif native_outputs:
                out[name] = arr.astype(np.uint8 if q.bitwidth == 8 else np.uint16)
            else:
                out[name] = dequantize_t(torch.from_numpy(arr.astype(np.int64)), q).numpy()
        return out


def _with_edges(graph: Graph, placed: list[HtpStep | str], hctx: HtpBuildContext) -> list[HtpStep]:
    """The steps in order, each fallback (a reason in ``placed``) built to run in float, with one conversion
    per encoded tensor crossing the edge of a fallback region: a dequantize before its first fallback reader
    where htp (or the application) made it, a quantize right after its fallback producer where htp reads it
    or it is a graph output. Between fallback steps tensors stay float."""
    on_cpu = {node.name for node, p in zip(graph.nodes, placed) if isinstance(p, str)}
    if not on_cpu:
        return [p for p in placed if not isinstance(p, str)]
    taken = set(graph.tensors)

    def encoded(name: str) -> bool:
        t = graph.tensors.get(name)
        return t is not None and t.encoding is not None and t.kind is not TensorKind.STATIC

    float_of: dict[str, str] = {}
    for node in graph.nodes:
        if node.name in on_cpu:
            for x in (*node.inputs, *node.outputs):
                if x and x not in float_of and encoded(x):
                    name = f"{x}#float"
                    while name in taken:
                        name += "_"
                    taken.add(name)
                    float_of[x] = name
    made_on_cpu = {o for node in graph.nodes if node.name in on_cpu for o in node.outputs}
    read_as_int = set(graph.outputs) | {x for node in graph.nodes if node.name not in on_cpu for x in node.inputs}
    steps: list[HtpStep] = []
    dequantized: set[str] = set()
    for node, p in zip(graph.nodes, placed):
        if not isinstance(p, str):
            steps.append(p)
            continue
        step = build_fallback(node, hctx, p, float_of)
        for x in node.inputs:
            if x in float_of and x not in made_on_cpu and x not in dequantized and float_of[x] in step.inputs:
                enc = graph.tensors[x].encoding
                assert enc is not None
                steps.append(edge_step(x, float_of[x], enc, True, hctx.device))
                dequantized.add(x)
        steps.append(step)
        for o in node.outputs:
            if o in float_of and o in read_as_int:
                enc = graph.tensors[o].encoding
                assert enc is not None
                steps.append(edge_step(o, float_of[o], enc, False, hctx.device))
    return steps
