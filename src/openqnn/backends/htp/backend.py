"""The htp backend: prepares quantized graphs for integer execution."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from openqnn.backends.base import Executable
from openqnn.backends.htp.arch import ARCHS, HtpArch, resolve_arch
from openqnn.backends.htp.config import SPEC, HtpConfig
from openqnn.backends.htp.executable import HtpExecutable
from openqnn.backends.htp.memory import check_vtcm
from openqnn.backends.partition import PlacementConfig
from openqnn.backends.plan import PreparedGraph, io_graph
from openqnn.backends.settings import Capabilities
from openqnn.backends.threads import apply_thread_policy, thread_policy
from openqnn.errors import InvalidConfigError, UnsupportedOpError
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import TensorKind

log = logging.getLogger("openqnn.htp")

__all__ = ["HtpBackend", "check_arch"]


class HtpBackend:
    """Prepares quantized graphs for integer execution; unquantized nodes fall back to cpu."""

    name = SPEC.name
    capabilities: Capabilities = SPEC.capabilities

    def __init__(self, config: HtpConfig | None = None, path: str = "fast", device: str = "cpu",
                 num_threads: int | None = None):
        """``num_threads`` (``Session(num_threads=)``) wins over ``hvx_threads``, which wins over the count of
        ``performance_mode``."""
        self.config = config or HtpConfig()
        self.arch = resolve_arch(self.config.dsp_arch, self.config.soc_model)
        if self.config.vtcm_mb is not None and not 0 < self.config.vtcm_mb <= self.arch.vtcm_mb:
            raise InvalidConfigError(f"htp_config.vtcm_mb {self.config.vtcm_mb} is outside 1..{self.arch.vtcm_mb} "
                                     f"(the VTCM of {self.arch.name})")
        self.path, self.device, self.num_threads = path, device, num_threads

    def unsupported(self, graph: Graph, node: Node) -> str | None:
        from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext, Unsupported

        builder = HTP_KERNELS.get(node.op_type)
        if builder is None:
            return f"no htp kernel for {node.op_type}"
        try:
            builder(node, HtpBuildContext(graph, self.arch, arithmetic=self.config.arithmetic))
        except Unsupported as e:
            return str(e)
        return None

    def prepare(self, graph: Graph, placement: PlacementConfig | None = None) -> Executable:
        """``graph`` ready to run: integer steps, and cpu fallback steps for the nodes htp refuses (or
        ``placement`` forces to cpu); in fp16 where the model is float or ``precision_mode`` is fp16."""
        self._apply_threads()
        check_arch(graph, self.arch, self.config)
        if self.config.precision_mode == "fp16" or not _quantized(graph):
            # fp16 arithmetic throughout (check_arch allowed it): the encodings are dropped
            import torch

            from openqnn.backends.fallback import float_plan

            return float_plan(_without_encodings(graph), self.device, torch.float16, self.name)
        return _Prepared(self._executable(graph, placement))

    def plan(self, graph: Graph, placement: PlacementConfig | None = None) -> PreparedGraph:
        """``graph`` prepared as data (what a context binary holds): htp steps, and the fallback backend's
        steps (with their reasons) for the nodes htp refuses or ``placement`` forces to cpu."""
        check_arch(graph, self.arch, self.config)
        if self.config.precision_mode == "fp16" or not _quantized(graph):
            raise UnsupportedOpError("the model is float (fp16_relaxed_precision or precision_mode fp16): a context "
                                     "binary holds quantized htp graphs; quantize the model (qnn-onnx-converter "
                                     "--input_list), or write a cpu context (--backend cpu)")
        exe = self._executable(graph, placement)
        missing = exe.unplanned
        if missing:
            raise UnsupportedOpError(
                f"node '{missing[0][0]}' ({missing[0][1]}) falls back to cpu with an attribute a context "
                f"cannot hold ({len(missing)} such node(s)); quantize the model fully for htp")
        if exe.fallbacks:
            log.info("htp context: %d node(s) fall back to cpu: %s", len(exe.fallbacks),
                     "; ".join(f"{f.node} ({f.op_type}): {f.reason}" for f in exe.fallbacks))
        steps = tuple(p for p in exe.step_plans if p is not None)
        return PreparedGraph(self.name, self.arch.name, io_graph(graph), steps)

    def _executable(self, graph: Graph, placement: PlacementConfig | None) -> HtpExecutable:
        from openqnn.backends.htp.rewrite import rewrite_for

        graph = rewrite_for(graph, self.arch.name, self.config.arithmetic)
        exe = HtpExecutable(graph, self.arch, self.device, self.path, self.config.arithmetic, placement)
        if self.config.vtcm_mb is not None:
            on_cpu = {f.node for f in exe.fallbacks}
            check_vtcm(graph, [n for n in graph.nodes if n.name not in on_cpu], self.config.vtcm_mb,
                       self.config.enable_dma)
        return exe

    def _apply_threads(self) -> None:
        apply_thread_policy(thread_policy(self.config.performance_mode, self.num_threads or self.config.hvx_threads))

    def bind(self, prepared: PreparedGraph) -> Executable:
        """The executable of a prepared graph (one read from a context binary): binding only."""
        asked = self.config.dsp_arch is not None or self.config.soc_model is not None
        if prepared.arch not in ARCHS or (asked and prepared.arch != self.arch.name):
            raise InvalidConfigError(f"the context was prepared for {prepared.arch}, and {self.arch.name} was asked "
                                     f"for; prepare it again for {self.arch.name} (or drop the htp_config arch)")
        self._apply_threads()
        exe = HtpExecutable.from_plans(prepared.io, list(prepared.steps), ARCHS[prepared.arch], self.device, self.path)
        return _Prepared(exe)


class _Prepared:
    def __init__(self, exe: HtpExecutable):
        self.exe = exe
        self.graph = exe.graph
        self.fallbacks = exe.fallbacks
        self.nodes = exe.nodes
        self.arch = exe.arch  # what a profile reads: the arch, and each node's prepared step
        self.step_plans = exe.step_plans

    def run(self, feeds: Mapping[str, np.ndarray], native_inputs: bool = False,
            native_outputs: bool = False) -> dict[str, np.ndarray]:
        return self.exe.run(feeds, native_inputs, native_outputs)


def _quantized(graph: Graph) -> bool:
    return any(t.encoding is not None for t in graph.tensors.values())


def _without_encodings(graph: Graph) -> Graph:
    if not _quantized(graph):
        return graph
    floating = graph.copy()
    for t in floating.tensors.values():
        t.encoding = None
    return floating


def check_arch(graph: Graph, arch: HtpArch, config: HtpConfig) -> None:
    """Refuse a model that needs what ``arch`` lacks, or that ``precision_mode`` rules out, with the reason."""
    quantized = _quantized(graph)
    if quantized and config.precision_mode in ("int8", "int16"):
        want = 8 if config.precision_mode == "int8" else 16
        for t in graph.tensors.values():
            enc = t.encoding
            if enc is not None and t.kind is not TensorKind.STATIC and enc.bitwidth != want:
                raise InvalidConfigError(
                    f"htp_config.precision_mode = '{config.precision_mode}', but activation '{t.name}' is "
                    f"{enc.bitwidth}-bit; quantize with --act_bitwidth {want}, or set precision_mode 'mixed' to run "
                    "the encodings as they are")
    if not quantized:
        if not config.fp16_relaxed_precision and config.precision_mode != "fp16":
            raise InvalidConfigError(
                "the model is float: quantize it (qnn-onnx-converter --input_list CALIBRATION_LIST), set "
                f"htp_config.fp16_relaxed_precision (or precision_mode 'fp16') to run it in fp16 (dsp_arch v69 or newer; this is {arch.name}), "
                "or run it with --backend cpu")
        if not arch.fp16:
            raise InvalidConfigError(f"fp16_relaxed_precision needs dsp_arch v69 or newer; {arch.name} has no fp16")
    for t in graph.static_tensors():
        enc = t.encoding
        if enc is None or enc.is_signed:
            continue
        if enc.bitwidth == 16 and not arch.weights_16bit:
            raise InvalidConfigError(f"weight '{t.name}' is 16-bit; {arch.name} runs 16-bit weights from v73 on "
                                     "(choose dsp_arch v73+ or --weights_bitwidth 8)")
        if enc.bitwidth == 4 and not arch.weights_4bit:
            raise InvalidConfigError(f"weight '{t.name}' is 4-bit; {arch.name} runs 4-bit weights from v73 on "
                                     "(choose dsp_arch v73+ or --weights_bitwidth 8)")
