"""The htp backend: prepares quantized graphs for integer execution."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from openqnn.backends.base import Executable
from openqnn.backends.htp.arch import ARCHS, HtpArch, resolve_arch
from openqnn.backends.htp.config import SPEC, HtpConfig
from openqnn.backends.htp.executable import HtpExecutable
from openqnn.backends.plan import PreparedGraph, io_graph
from openqnn.backends.settings import Capabilities
from openqnn.errors import InvalidConfigError, UnsupportedOpError
from openqnn.ir.graph import Graph, Node

log = logging.getLogger("openqnn.htp")

__all__ = ["HtpBackend", "check_arch"]


class HtpBackend:
    """Prepares quantized graphs for integer execution; unquantized nodes fall back to cpu."""

    name = SPEC.name
    capabilities: Capabilities = SPEC.capabilities

    def __init__(self, config: HtpConfig | None = None, path: str = "fast", device: str = "cpu",
                 num_threads: int | None = None):
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

    def prepare(self, graph: Graph) -> Executable:
        if self.num_threads:
            import torch

            torch.set_num_threads(self.num_threads)
        check_arch(graph, self.arch, self.config)
        if not any(t.encoding is not None for t in graph.tensors.values()):
            # a float model with fp16_relaxed_precision: fp16 arithmetic throughout (check_arch allowed it)
            import torch

            from openqnn.backends.fallback import float_plan

            return float_plan(graph, self.device, torch.float16, self.name)
        return _Prepared(HtpExecutable(graph, self.arch, self.device, self.path, self.config.arithmetic))


    def plan(self, graph: Graph) -> PreparedGraph:
        """``graph`` prepared as data (what a context binary holds): htp steps, and the fallback backend's
        steps (with their reasons) for the nodes htp refuses."""
        check_arch(graph, self.arch, self.config)
        if not any(t.encoding is not None for t in graph.tensors.values()):
            raise UnsupportedOpError("the model is float (fp16_relaxed_precision): a context binary holds quantized "
                                     "htp graphs; quantize the model (qnn-onnx-converter --input_list), or write a "
                                     "cpu context (--backend cpu)")
        exe = HtpExecutable(graph, self.arch, self.device, self.path, self.config.arithmetic)
        missing = [n for n, p in zip(graph.nodes, exe.step_plans) if p is None]
        if missing:
            raise UnsupportedOpError(
                f"node '{missing[0].name}' ({missing[0].op_type}) falls back to cpu with an attribute a context "
                f"cannot hold ({len(missing)} such node(s)); quantize the model fully for htp")
        if exe.fallbacks:
            log.info("htp context: %d node(s) fall back to cpu: %s", len(exe.fallbacks),
                     "; ".join(f"{f.node} ({f.op_type}): {f.reason}" for f in exe.fallbacks))
        steps = tuple(p for p in exe.step_plans if p is not None)
        return PreparedGraph(self.name, self.arch.name, io_graph(graph), steps)

    def bind(self, prepared: PreparedGraph) -> Executable:
        """The executable of a prepared graph (one read from a context binary): binding only."""
        asked = self.config.dsp_arch is not None or self.config.soc_model is not None
        if prepared.arch not in ARCHS or (asked and prepared.arch != self.arch.name):
            raise InvalidConfigError(f"the context was prepared for {prepared.arch}, and {self.arch.name} was asked "
                                     f"for; prepare it again for {self.arch.name} (or drop the htp_config arch)")
        exe = HtpExecutable.from_plans(prepared.io, list(prepared.steps), ARCHS[prepared.arch], self.device, self.path)
        return _Prepared(exe)


class _Prepared:
    def __init__(self, exe: HtpExecutable):
        self.exe = exe
        self.graph = exe.graph
        self.fallbacks = exe.fallbacks
        self.arch = exe.arch  # what a profile reads: the arch, and each node's prepared step
        self.step_plans = exe.step_plans

    def run(self, feeds: Mapping[str, np.ndarray], native_inputs: bool = False,
            native_outputs: bool = False) -> dict[str, np.ndarray]:
        return self.exe.run(feeds, native_inputs, native_outputs)


def check_arch(graph: Graph, arch: HtpArch, config: HtpConfig) -> None:
    """Refuse a model that needs what ``arch`` lacks, with the reason."""
    quantized = any(t.encoding is not None for t in graph.tensors.values())
    if not quantized:
        if not config.fp16_relaxed_precision:
            raise InvalidConfigError(
                "the model is float: quantize it (qnn-onnx-converter --input_list CALIBRATION_LIST), set "
                f"htp_config.fp16_relaxed_precision to run it in fp16 (dsp_arch v69 or newer; this is {arch.name}), "
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
