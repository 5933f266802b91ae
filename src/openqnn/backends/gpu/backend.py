"""The gpu backend: the cpu backend's PyTorch kernels on a CUDA device, in fp32, fp16 or hybrid precision,
or htp's integer arithmetic on the GPU for quantized models (``precision_mode: "int8"``).

The cpu backend's plans are device-agnostic (every kernel takes its device and float type from the build
context), so the gpu backend binds the very same steps on ``cuda``; the numerics are checked on a machine
without a GPU by running this code on the CPU device (``OPENQNN_GPU_DEVICE=cpu``, docs/gpu.md).

======== ======================================================================================
fp32     float32 throughout, the cpu backend's fusions included
fp16     weights and activations in float16
hybrid   float16, except softmax, normalizations and reductions (:data:`FP32_OPS`): in float32
int8     a quantized model on htp's integer kernels on the GPU: the htp backend's bits exactly
======== ======================================================================================
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from openqnn.backends.base import Executable, Fallback
from openqnn.backends.cpu.kernels import BuildContext, Unsupported
from openqnn.backends.cpu.plan import Plan
from openqnn.backends.cpu.steps import build_step
from openqnn.backends.gpu import cuda_graphs
from openqnn.backends.gpu.config import SPEC, GpuConfig, gpu_device
from openqnn.backends.settings import Capabilities
from openqnn.backends.threads import apply_thread_policy, thread_policy
from openqnn.errors import InvalidConfigError
from openqnn.ir.graph import Graph, Node

if TYPE_CHECKING:
    from openqnn.backends.htp.backend import HtpBackend

log = logging.getLogger("openqnn.gpu")

__all__ = ["FP32_OPS", "GpuBackend", "GpuExecutable"]

# hybrid precision keeps these in float32: their sums and exponentials lose too much in float16
FP32_OPS = frozenset({
    "Softmax", "LogSoftmax", "LayerNorm", "GroupNorm", "InstanceNorm", "RmsNorm", "L2Norm", "LpNorm", "Lrn",
    "ReduceSum", "ReduceMean", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSumExp",
    "CumulativeSum",
})


class GpuBackend:
    """Prepares graphs for a CUDA GPU (see the module docstring)."""

    name = SPEC.name
    capabilities: Capabilities = SPEC.capabilities

    def __init__(self, config: GpuConfig | None = None, num_threads: int | None = None,
                 device: torch.device | str | None = None):
        self.config = config or GpuConfig()
        self.device = torch.device(device if device is not None else gpu_device(self.config))
        self.num_threads = num_threads
        if self.device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise InvalidConfigError("the gpu backend needs a CUDA GPU and PyTorch sees none; "
                                         "use --backend cpu or htp")
            index = self.device.index if self.device.index is not None else 0
            if index >= count:
                raise InvalidConfigError(f"gpu_config.device_id = {index}: this machine has {count} CUDA device(s); "
                                         f"use 0 to {count - 1}")

    @property
    def integer(self) -> bool:
        """Whether quantized models run on htp's integer kernels (``precision_mode: "int8"``)."""
        return self.config.precision_mode == "int8"

    def unsupported(self, graph: Graph, node: Node) -> str | None:
        if self.integer:
            return self._htp.unsupported(graph, node)
        try:
            build_step(node, BuildContext(graph))
        except Unsupported as e:
            return str(e)
        return None

    def prepare(self, graph: Graph) -> Executable:
        # performance_mode: the host threads that feed the device (and run it, on the cpu device) and the
        # process's priority, as for every backend (backends/threads.py); num_threads wins over its count
        apply_thread_policy(thread_policy(self.config.performance_mode, self.num_threads))
        if self.integer:
            if not any(t.encoding is not None for t in graph.tensors.values()):
                raise InvalidConfigError("gpu_config.precision_mode = 'int8' runs quantized models, and this one is "
                                         "float: quantize it (qnn-onnx-converter --input_list), or use fp32, fp16 "
                                         "or hybrid")
            return self._htp.prepare(graph)
        mode = self.config.precision_mode
        float_dtype = None if mode == "fp32" else torch.float16  # PyTorch runs it on CUDA and, slower, the CPU
        # enable_transform_optimization: the plan's graph transformations (epilogue fusions, shared GEMMs);
        # off, one step per node, as the graph is
        plan = Plan(graph, self.device, float_dtype, self.name, keep_fp32=FP32_OPS if mode == "hybrid" else (),
                    fuse=self.config.enable_transform_optimization)
        return GpuExecutable(plan)

    @functools.cached_property
    def _htp(self) -> HtpBackend:
        """The htp backend on this device, for ``precision_mode: "int8"`` (built once: ``unsupported`` asks
        it node by node)."""
        from openqnn.backends.htp.backend import HtpBackend

        return HtpBackend(device=str(self.device), num_threads=self.num_threads)


class GpuExecutable:
    """A float plan on the GPU; small batches run as a captured CUDA graph (:mod:`cuda_graphs`)."""

    fallbacks: tuple[Fallback, ...] = ()  # every node runs on the cpu backend's kernels, here on the GPU

    def __init__(self, plan: Plan, max_graph_batch: int = cuda_graphs.MAX_BATCH):
        self.plan = plan
        self.graph = plan.graph
        shapes = [t.shape for t in self.graph.input_tensors()]
        self._capture = cuda_graphs.use_cuda_graph(plan.device, shapes, max_graph_batch)
        self._captured: cuda_graphs.CapturedRun | None = None

    @property
    def captures(self) -> bool:
        """Whether runs go through a CUDA graph (a CUDA device and a small batch, and capture has not failed)."""
        return self._capture

    def run_torch(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The outputs of one run on device tensors (a captured run's are overwritten by the next run)."""
        if self._capture:
            if self._captured is None:
                try:
                    self._captured = cuda_graphs.CapturedRun(self.plan.run_torch, inputs)
                except RuntimeError as e:
                    log.info("gpu: %s runs without a CUDA graph (capture failed: %s)", self.graph.name,
                             str(e).splitlines()[0] if str(e) else type(e).__name__)
                    self._capture = False
                    return self.plan.run_torch(inputs)
            return self._captured(inputs)
        return self.plan.run_torch(inputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.plan.to_numpy_outputs(self.run_torch(self.plan.to_torch_inputs(feeds)))
