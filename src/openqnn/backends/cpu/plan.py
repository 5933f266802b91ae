"""Prepared execution plans: kernels resolved and weights laid out once, run many times.

The plan is a flat list of steps over numbered slots. Each intermediate is released right after
its last reader runs, so PyTorch's allocator reuses its memory for later tensors.

Before building, two plan-level fusions group IR nodes into single steps (``Plan(fuse=False)``
builds one step per node, the reference the fusions are tested against):

* :func:`fuse_epilogues`: a convolution / FullyConnected with the element-wise ops that only it
  feeds -- ``ElementWiseAdd`` of a same-shape tensor, then ``Relu`` or ``ReluMinMax`` -- which
  oneDNN applies as post-ops while the result is still in cache;
* :func:`share_gemms`: FullyConnected nodes reading one input (attention's query, key and value
  projections) as one GEMM over the stacked weights.

The math is the same; only intermediates are never written out and calls are saved.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from openqnn.backends.base import Fallback
from openqnn.backends.cpu.kernels import KERNELS, BuildContext, Step, Unsupported
from openqnn.backends.cpu.kernels.conv import Epilogue, build_conv2d
from openqnn.backends.cpu.kernels.linear import (
    build_fully_connected,
    build_fully_connected_siblings,
    can_share_gemm,
)
from openqnn.backends.cpu.quantsim import FakeQuant
from openqnn.errors import InputDataError, UnsupportedOpError
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import TensorKind

__all__ = ["Fusion", "Plan", "SharedGemm", "build_step", "fuse_epilogues", "keep_freed_memory", "share_gemms"]

# op types whose kernels take an Epilogue, and their builders
_EPILOGUE_BUILDERS = {"Conv2d": build_conv2d, "DepthWiseConv2d": build_conv2d,
                      "FullyConnected": build_fully_connected}


_MALLOC_TUNED = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS.

    By default glibc serves allocations over 32 MB with a fresh ``mmap`` and trims the heap top
    once more than a few MB are free, so a plan's large intermediates are page-faulted and zeroed
    again on every run (about 0.3 ms per MB: 12 ms of a 45 ms MobileNetV2 batch-8 run). With mmap
    off and trimming practically off, freed blocks are reused the way ONNX Runtime's arena reuses
    its buffers; the process keeps its peak heap. Process-wide and done once, at the first cpu
    plan; ``OPENQNN_KEEP_FREED_MEMORY=0`` leaves glibc's defaults alone. Returns whether it applied.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if os.environ.get("OPENQNN_KEEP_FREED_MEMORY", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    _MALLOC_TUNED = bool(mallopt(m_trim_threshold, 2**31 - 1)) and bool(mallopt(m_mmap_max, 0))
    return _MALLOC_TUNED


def build_step(node: Node, ctx: BuildContext) -> Step:
    """The prepared step of ``node``; raises Unsupported with the reason when no kernel fits."""
    builder = KERNELS.get(node.op_type)
    if builder is None:
        raise Unsupported(f"no kernel for {node.op_type}")
    step = builder(node, ctx)
    step.outputs = list(node.outputs)
    step.node, step.op_type = node.name, node.op_type
    return step


@dataclass
class Fusion:
    """``head`` (a convolution / FullyConnected) runs ``epilogue`` in place of the ``absorbed`` nodes.

    Its step runs where the last absorbed node ran: every input (the add's other operand too)
    exists by then.
    """

    head: Node
    absorbed: list[Node]
    epilogue: Epilogue

    @property
    def nodes(self) -> list[Node]:
        return [self.head, *self.absorbed]

    @property
    def at(self) -> str:
        return self.absorbed[-1].name

    @property
    def op_type(self) -> str:
        return "+".join(n.op_type for n in self.nodes)

    def build(self, ctx: BuildContext) -> Step:
        step = _EPILOGUE_BUILDERS[self.head.op_type](self.head, ctx, self.epilogue)
        step.outputs = list(self.absorbed[-1].outputs)
        return step


@dataclass
class SharedGemm:
    """FullyConnected nodes reading the same input, run as one GEMM where the first one ran."""

    nodes: list[Node]

    @property
    def at(self) -> str:
        return self.nodes[0].name

    @property
    def op_type(self) -> str:
        return f"FullyConnected*{len(self.nodes)}"

    def build(self, ctx: BuildContext) -> Step:
        step = build_fully_connected_siblings(self.nodes, ctx)
        step.outputs = [n.outputs[0] for n in self.nodes]
        return step


def fuse_epilogues(graph: Graph) -> list[Fusion]:
    """Each convolution / FullyConnected with the element-wise ops that only it feeds.

    A node is absorbed only when it is the sole reader of the previous output and that output is
    not a graph output, so nothing else ever needed the intermediates.
    """
    consumers = graph.consumers()
    outputs = set(graph.outputs)

    def sole_reader(name: str) -> Node | None:
        readers = consumers.get(name, [])
        if name in outputs or len(readers) != 1 or len(readers[0].outputs) != 1:
            return None
        return readers[0]

    fusions = []
    absorbed_anywhere: set[str] = set()  # an Add of two convolutions' outputs joins the first one only
    for node in graph.nodes:
        if node.op_type not in _EPILOGUE_BUILDERS or len(node.outputs) != 1 or node.name in absorbed_anywhere:
            continue
        y = graph.tensors[node.outputs[0]]
        if not y.dtype.is_float:
            continue
        absorbed: list[Node] = []
        add = ""
        nxt = sole_reader(y.name)
        if nxt is not None and nxt.name in absorbed_anywhere:
            continue
        if nxt is not None and nxt.op_type == "ElementWiseAdd" and len(nxt.inputs) == 2:
            other = nxt.inputs[1] if nxt.inputs[0] == y.name else nxt.inputs[0]
            t = graph.tensors[other]
            if other != y.name and t.shape == y.shape and t.dtype is y.dtype:
                add = other
                absorbed.append(nxt)
                nxt = sole_reader(nxt.outputs[0])
        clamp = _clamp_of(nxt) if nxt is not None else None
        if nxt is not None and clamp is not None:
            absorbed.append(nxt)
        if absorbed:
            absorbed_anywhere.update(n.name for n in absorbed)
            fusions.append(Fusion(node, absorbed, Epilogue(add, clamp)))
    return fusions


def _clamp_of(node: Node) -> tuple[float, float] | None:
    """The (lo, hi) bounds of a Relu / ReluMinMax node, None for other ops."""
    if node.op_type == "Relu":
        return 0.0, math.inf
    if node.op_type == "ReluMinMax":
        return float(node.attrs["min_value"]), float(node.attrs["max_value"])
    return None


def share_gemms(graph: Graph, ctx: BuildContext, exclude: Collection[str] = ()) -> list[SharedGemm]:
    """Groups of two or more FullyConnected nodes (not in ``exclude``) with one input and static weights."""
    by_input: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if node.name not in exclude and can_share_gemm(node, ctx):
            by_input.setdefault(node.inputs[0], []).append(node)
    return [SharedGemm(nodes) for nodes in by_input.values() if len(nodes) > 1]


@dataclass
class _Call:
    fn: object
    ins: tuple[int, ...]
    outs: tuple[int, ...]
    free: tuple[int, ...]  # slots whose last reader is this call
    node: str
    op_type: str


class Plan:
    """An executable graph on PyTorch kernels (cpu, or any torch device)."""

    fallbacks: tuple[Fallback, ...] = ()  # the cpu backend is the fallback: every node runs here

    def __init__(self, graph: Graph, device: torch.device | str = "cpu", float_dtype: torch.dtype | None = None,
                 backend_name: str = "cpu", fuse: bool = True):
        self.graph = graph
        self.device = torch.device(device)
        self.float_dtype = float_dtype
        if self.device.type == "cpu":
            keep_freed_memory()
        ctx = BuildContext(graph, self.device, float_dtype)
        groups: list[Fusion | SharedGemm] = []
        # a quantized graph runs as a simulation: every encoded activation is quantize-dequantized,
        # so no step may hide an intermediate inside a fused kernel
        fq = {t.name: FakeQuant(t.encoding, t.rank, self.device) for t in graph.tensors.values()
              if t.encoding is not None and t.dtype.is_float and t.kind is not TensorKind.STATIC}
        if fuse and not fq:
            groups += fuse_epilogues(graph)
            groups += share_gemms(graph, ctx, {n.name for g in groups for n in g.nodes})
        grouped = {n.name for g in groups for n in g.nodes}
        at = {g.at: g for g in groups}
        steps = []
        for node in graph.nodes:
            if node.name in grouped and node.name not in at:
                continue  # runs inside a fused step
            try:
                if node.name in at:
                    group = at[node.name]
                    step = group.build(ctx)
                    step.node, step.op_type = group.nodes[0].name, group.op_type
                else:
                    step = build_step(node, ctx)
                steps.append(step)
            except Unsupported as e:
                raise UnsupportedOpError(
                    f"node '{node.name}' ({node.op_type}) cannot run on the {backend_name} backend: {e}"
                ) from None
        slots: dict[str, int] = {}

        def slot(name: str) -> int:
            return slots.setdefault(name, len(slots))

        for name in graph.inputs:
            slot(name)
        self._static: dict[int, torch.Tensor] = {}
        for step in steps:
            for x in step.inputs:
                if x and graph.tensors[x].kind is TensorKind.STATIC and x not in slots:
                    t = ctx.static(x)
                    # PyTorch's allocator aligns to 64 bytes (AVX-512 loads), numpy's buffers often are not
                    self._static[slot(x)] = t if t.data_ptr() % 64 == 0 else t.clone()
        last_use: dict[int, int] = {}
        for i, step in enumerate(steps):
            for x in step.inputs:
                last_use[slot(x)] = i
            for o in step.outputs:
                slot(o)
        keep = {slots[o] for o in graph.outputs} | set(self._static)
        self._calls = [
            _Call(step.fn, tuple(slots[x] for x in step.inputs), tuple(slots[o] for o in step.outputs),
                  tuple(s for s, last in last_use.items() if last == i and s not in keep), step.node, step.op_type)
            for i, step in enumerate(steps)
        ]
        self._fq_in = {slots[n]: fq[n] for n in graph.inputs if n in fq}
        self._fq_out = [tuple((slots[o], fq[o]) for o in step.outputs if o in fq) for step in steps]
        self._n_slots = len(slots)
        self._in_slots = [(n, slots[n], graph.tensors[n]) for n in graph.inputs]
        self._out_slots = [(n, slots[n]) for n in graph.outputs]

    @property
    def op_types(self) -> list[str]:
        return [c.op_type for c in self._calls]

    def to_torch_inputs(self, feeds: Mapping[str, np.ndarray | torch.Tensor]) -> list[torch.Tensor]:
        from openqnn.backends.cpu.kernels.registry import to_torch, torch_dtype

        out = []
        for name, _, t in self._in_slots:
            if name not in feeds:
                raise InputDataError(f"missing input '{name}'; the model's inputs are {', '.join(self.graph.inputs)}")
            v = feeds[name]
            if isinstance(v, torch.Tensor):
                tv = v.to(self.device, torch_dtype(t.dtype, self.float_dtype))
            else:
                arr = np.asarray(v)
                if arr.dtype != t.dtype.numpy:
                    arr = arr.astype(t.dtype.numpy)
                tv = to_torch(arr, self.device, self.float_dtype)
            if tuple(tv.shape) != t.shape:
                raise InputDataError(f"input '{name}' has shape {tuple(tv.shape)}; the model expects {t.shape}")
            out.append(tv)
        return out

    def run_torch(self, inputs: Sequence[torch.Tensor], profile: list[tuple[str, str, float]] | None = None
                  ) -> list[torch.Tensor]:
        env: list[torch.Tensor | None] = [None] * self._n_slots
        for (_, s, _), v in zip(self._in_slots, inputs):
            env[s] = v
        for s, v in self._static.items():
            env[s] = v
        for s, q in self._fq_in.items():
            env[s] = q(env[s])  # type: ignore[arg-type]
        timer = None
        if profile is not None:
            import time

            timer = time.perf_counter
        with torch.inference_mode():
            for c, fq in zip(self._calls, self._fq_out):
                t0 = timer() if timer else 0.0
                res = c.fn(*[env[i] for i in c.ins])  # type: ignore[operator]
                if len(c.outs) == 1:
                    env[c.outs[0]] = res if isinstance(res, torch.Tensor) else res[0]
                else:
                    for s, r in zip(c.outs, res):
                        env[s] = r
                for s, q in fq:
                    env[s] = q(env[s])  # type: ignore[arg-type]
                for s in c.free:
                    env[s] = None
                if timer is not None and profile is not None:
                    profile.append((c.node, c.op_type, timer() - t0))
        return [env[s] for _, s in self._out_slots]  # type: ignore[misc]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.run_torch(self.to_torch_inputs(feeds))
        result = {}
        for (name, _), v in zip(self._out_slots, outs):
            want = self.graph.tensors[name].dtype.numpy
            arr = v.detach().to("cpu")
            if arr.dtype == torch.uint16:
                arr = arr.to(torch.int32)
            result[name] = np.asarray(arr.numpy(), order="C").astype(want, copy=False)
        return result
