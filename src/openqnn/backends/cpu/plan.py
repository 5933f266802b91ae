"""Prepared execution plans: kernels resolved and weights laid out once, run many times.

The plan's bound steps run in the executor loop every backend shares (:mod:`openqnn.backends.executor`:
numbered slots, each intermediate released right after its last reader).

Preparing is two stages: :func:`~openqnn.backends.cpu.steps.plan_steps` decides the steps as data
(which nodes fuse into one -- see :mod:`openqnn.backends.cpu.fusion`; ``Plan(fuse=False)`` builds one
step per node, the reference the fusions are tested against), then binding builds their kernels.
``Plan(graph)`` does both; :meth:`Plan.from_plans` binds steps read from a context binary, so both
run the same code.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from openqnn.backends.background import background_binding
from openqnn.backends.base import Fallback
from openqnn.backends.cpu.fusion import Fusion, SharedGemm, fuse_epilogues, share_gemms
from openqnn.backends.cpu.kernels import BuildContext, Step, Unsupported
from openqnn.backends.cpu.kernels.conv import native_conv, native_ok
from openqnn.backends.cpu.quantsim import FakeQuant
from openqnn.backends.cpu.steps import bind_step, build_step, plan_steps, read_step, step_nodes
from openqnn.backends.executor import BoundStep, Executor
from openqnn.backends.native import sync_threads as native_threads
from openqnn.backends.plan import StepPlan
from openqnn.errors import InputDataError, InvalidModelError, UnsupportedOpError
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import TensorKind

__all__ = ["Fusion", "Plan", "SharedGemm", "build_step", "fuse_epilogues", "keep_freed_memory", "share_gemms"]


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


class Plan:
    """An executable graph on PyTorch kernels (cpu, or any torch device)."""

    fallbacks: tuple[Fallback, ...] = ()  # the cpu backend is the fallback: every node runs here

    def __init__(self, graph: Graph, device: torch.device | str = "cpu", float_dtype: torch.dtype | None = None,
                 backend_name: str = "cpu", fuse: bool = True, keep_fp32: Collection[str] = ()):
        """``float_dtype`` (e.g. float16) replaces float32 throughout, except in the steps of op types in
        ``keep_fp32``, which run in float32 between a cast up of their inputs and a cast down of their outputs
        (the gpu backend's hybrid precision: softmax, normalizations, reductions)."""
        self._bind(graph, plan_steps(graph, fuse), device, float_dtype, backend_name, source=graph,
                   keep_fp32=keep_fp32)

    @classmethod
    def from_plans(cls, io: Graph, steps: Sequence[StepPlan], device: torch.device | str = "cpu",
                   float_dtype: torch.dtype | None = None, backend_name: str = "cpu",
                   keep_fp32: Collection[str] = (), record: bool = False) -> Plan:
        """The plan of cpu step plans (:func:`~openqnn.backends.cpu.steps.plan_steps`, e.g. read from a context
        binary) over ``io`` (a graph holding at least the inputs and outputs): binding only, nothing analysed.
        ``record``: :attr:`made` gets the operands each step laid out (packed weights), in the steps' order."""
        plan = cls.__new__(cls)
        plan._bind(io, steps, device, float_dtype, backend_name, keep_fp32=keep_fp32, record=record)
        return plan

    def _bind(self, graph: Graph, plans: Sequence[StepPlan], device: torch.device | str,
              float_dtype: torch.dtype | None, backend_name: str, source: Graph | None = None,
              keep_fp32: Collection[str] = (), record: bool = False) -> None:
        """Build every step's kernel. Each step's nodes and tensors are read back from its plan, or, with
        ``source`` (the graph the plans were just made from), taken from it as they are: no need to read back
        what is at hand (:func:`~openqnn.backends.cpu.steps.check_round_trip` checks that both are the same)."""
        self.graph = graph
        self.device = torch.device(device)
        self.float_dtype = float_dtype
        if self.device.type == "cpu":
            keep_freed_memory()
        if source is not None:
            at_hand = {dt: BuildContext(source, self.device, dt) for dt in (float_dtype, None)}
            by_name = {n.name: n for n in source.nodes}
        read = []
        for p in plans:
            wide = float_dtype is not None and p.op_type in keep_fp32
            dtype = None if wide else float_dtype
            if source is None:
                read.append((p, wide, *read_step(p, self.device, dtype)))
            else:
                read.append((p, wide, [by_name[n] for n in step_nodes(p)], at_hand[dtype]))
        # on several threads, the native kernels (their own thread pool) and oneDNN's convolutions (PyTorch's
        # OpenMP pool) do not mix: each pool's threads spin between calls on the cores the other one needs (2
        # threads on the development VM's 2 cores: ResNet-50 1.6x slower, BERT-style encoder 3x). A plan whose
        # convolutions need oneDNN keeps oneDNN throughout; the others run native, and PyTorch's few ops in
        # them on one thread (run_torch).
        self._threads = torch.get_num_threads()  # the backend's num_threads, set before binding
        # (recording lays out what the native kernels read: a plan binds them on one thread, and on any number where
        # no convolution needs oneDNN)
        mixed = not record and self._threads > 1 and any(_needs_onednn(n, c) for _, _, nodes, c in read for n in nodes)
        steps, ctxs = [], []
        self.made: list[tuple[dict[str, np.ndarray], dict[str, Any]]] = []
        with background_binding():  # (oneDNN's weights are laid out in worker threads meanwhile)
            for p, wide, nodes, ctx in read:
                ctx.native = not mixed
                if record:
                    ctx.made = {}
                    self.made.append((ctx.made, ctx.made_sources))
                try:
                    step = bind_step(p, nodes, ctx)
                    if wide:
                        assert float_dtype is not None
                        step.fn, step.over = _in_fp32(step.fn, float_dtype), None
                except Unsupported as e:
                    raise UnsupportedOpError(
                        f"node '{p.node}' ({p.op_type}) cannot run on the {backend_name} backend: {e}") from None
                steps.append(step)
                ctxs.append(ctx)
        _check_order(graph, steps, ctxs)
        self.paths = [(st.op_type, st.path) for st in steps]  # which implementation each step runs
        self._native = any(path == "native" for _, path in self.paths)
        # a quantized graph runs as a simulation: every encoded float activation is quantize-dequantized
        fq = {t.name: FakeQuant(t.encoding, t.rank, self.device)
              for t in [*(graph.tensors[n] for n in graph.inputs),
                        *(c.graph.tensors[o] for s, c in zip(steps, ctxs) for o in s.outputs)]
              if t.encoding is not None and t.dtype.is_float and t.kind is not TensorKind.STATIC}
        statics: dict[str, torch.Tensor] = {}
        for step, ctx in zip(steps, ctxs):
            for x in step.inputs:
                if x and ctx.is_static(x) and x not in statics and x not in graph.inputs:
                    t = ctx.static(x)
                    if ctx.float_dtype is None and float_dtype is not None and t.dtype == torch.float32:
                        t = t.to(float_dtype)  # a keep_fp32 step's: other steps may read it too; it casts it up
                    # PyTorch's allocator aligns to 64 bytes (AVX-512 loads), numpy's buffers often are not
                    statics[x] = t if t.data_ptr() % 64 == 0 else t.clone()
        made = {o for step in steps for o in step.outputs}
        for name in graph.outputs:  # a constant output no step reads (a context's io graph has none)
            if name not in statics and name not in made and graph.tensors[name].kind is TensorKind.STATIC:
                statics[name] = BuildContext(graph, self.device, float_dtype).static(name)
        self._exec = Executor([BoundStep(st.fn, st.inputs, st.outputs, st.node, st.op_type, st.over) for st in steps],
                              graph.inputs, graph.outputs, statics, fq)
        self._inputs = [graph.tensors[n] for n in graph.inputs]

    @property
    def op_types(self) -> list[str]:
        return [c.op_type for c in self._exec.calls]

    def to_torch_inputs(self, feeds: Mapping[str, np.ndarray | torch.Tensor]) -> list[torch.Tensor]:
        from openqnn.backends.cpu.kernels.registry import to_torch, torch_dtype

        out = []
        for t in self._inputs:
            name = t.name
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
        if not self._native:
            return self._exec.run(inputs, profile)
        # the native kernels' pool takes the thread count the plan was bound with (the backend's num_threads), and
        # PyTorch's own ops in such a plan run on one thread meanwhile: its OpenMP workers would spin on the pool's
        # cores. The count put back is that one too, so runs of several sessions on several threads at once leave
        # it as their backends set it.
        threads = self._threads
        native_threads(threads)
        if threads == 1:
            return self._exec.run(inputs, profile)
        torch.set_num_threads(1)
        try:
            return self._exec.run(inputs, profile)
        finally:
            torch.set_num_threads(threads)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.to_numpy_outputs(self.run_torch(self.to_torch_inputs(feeds)))

    def to_numpy_outputs(self, outs: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
        """The graph's outputs (as :meth:`run_torch` gives them) as numpy arrays of their declared types."""
        result = {}
        for name, v in zip(self.graph.outputs, outs):
            want = self.graph.tensors[name].dtype.numpy
            arr = v.detach().to("cpu")
            if arr.dtype == torch.uint16:
                arr = arr.to(torch.int32)
            elif arr.dtype == torch.bfloat16:  # numpy has no bfloat16
                arr = arr.to(torch.float32)
            result[name] = np.asarray(arr.numpy(), order="C").astype(want, copy=False)
        return result


def _needs_onednn(node: Node, ctx: BuildContext) -> bool:
    """Whether ``node`` is a convolution the native kernels could run but for its shape (oneDNN's then)."""
    return (node.op_type in ("Conv2d", "DepthWiseConv2d") and native_ok(ctx, node.inputs[0])
            and not native_conv(node, ctx))


def _in_fp32(fn: Callable[..., Any], low: torch.dtype) -> Callable[..., Any]:
    """``fn`` (bound in float32) taking and returning ``low`` floats: inputs cast up, outputs cast down."""

    def up(x: Any) -> Any:
        return x.float() if isinstance(x, torch.Tensor) and x.dtype == low else x

    def down(y: Any) -> Any:
        return y.to(low) if isinstance(y, torch.Tensor) and y.dtype == torch.float32 else y

    def run(*xs: Any) -> Any:
        out = fn(*map(up, xs))
        return type(out)(map(down, out)) if isinstance(out, (tuple, list)) else down(out)

    return run


def _check_order(graph: Graph, steps: Sequence[Step], ctxs: Sequence[BuildContext]) -> None:
    """Every step reads what a graph input, a static tensor or an earlier step gives, and every graph
    output is written (a plan read from a file is checked before it runs)."""
    written = set(graph.inputs)
    for step, ctx in zip(steps, ctxs):
        for x in step.inputs:
            if x and x not in written and not ctx.is_static(x):
                raise InvalidModelError(f"step '{step.node}' ({step.op_type}) reads '{x}', which neither the graph's "
                                        "inputs nor an earlier step give; prepare the graph again")
        written.update(step.outputs)
    for name in graph.outputs:
        if name not in written and graph.tensors[name].kind is not TensorKind.STATIC:
            raise InvalidModelError(f"graph output '{name}' is written by no step; prepare the graph again")
