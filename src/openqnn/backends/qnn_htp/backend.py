"""The qnn-htp backend: a quantized graph prepared and run by QNN's own HTP (module docstring of the package).

Prepare: the graph's QDQ export with quantized inputs and outputs (``export.py``) -> an ONNX Runtime session on
QNN's execution provider with no CPU fallback, so QNN takes the whole graph or the session fails, naming the ops
it refused and its reasons. Run: feeds are quantized by openqnn's own formula (the htp backend's), QNN computes,
and outputs come back as codes (``native_outputs``) or dequantized floats, the conventions of htp's executable.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openqnn.backends.base import Executable, Fallback, feed_of
from openqnn.backends.htp.arch import resolve_arch
from openqnn.backends.qnn_htp import provider
from openqnn.backends.qnn_htp.config import SECTION, SPEC, QnnHtpConfig
from openqnn.backends.qnn_htp.export import IoCodes, qnn_model
from openqnn.backends.settings import Capabilities
from openqnn.errors import InvalidConfigError, UnsupportedOpError
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import Encoding
from openqnn.quantization.encodings.math import dequantize, quantize

__all__ = ["QnnHtpBackend", "QnnHtpExecutable"]

log = logging.getLogger("openqnn.qnn_htp")

_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")


class QnnHtpBackend:
    """Runs quantized graphs on QNN's HTP (the simulator on x86_64, the NPU on a Snapdragon machine)."""

    name = SPEC.name
    capabilities: Capabilities = SPEC.capabilities

    def __init__(self, config: QnnHtpConfig | None = None):
        self.config = config or QnnHtpConfig()

    # -- what QNN is asked for ----------------------------------------------------------------------------
    @property
    def arch(self) -> str | None:
        """The HTP arch QNN prepares for ("73"), or None: QNN's own choice (a Snapdragon machine's NPU)."""
        asked = self.config.dsp_arch is not None or self.config.soc_model is not None
        if asked or provider.host_is_simulator():
            return resolve_arch(self.config.dsp_arch, self.config.soc_model, SECTION).name.removeprefix("v")
        return None

    def options(self) -> dict[str, str]:
        """QNN provider options besides ``backend_path`` and ``htp_arch``."""
        opts: dict[str, str] = {}
        if self.config.soc_model is not None:
            opts["soc_model"] = str(self.config.soc_model)
        if self.config.device_id:
            opts["device_id"] = str(self.config.device_id)
        if self.config.performance_mode != "default":
            opts["htp_performance_mode"] = self.config.performance_mode
        if self.config.vtcm_mb is not None:
            opts["vtcm_mb"] = str(self.config.vtcm_mb)
        return opts

    # -- the Backend protocol ---------------------------------------------------------------------------
    def unsupported(self, graph: Graph, node: Node) -> str | None:
        """Why ``node`` cannot reach QNN: openqnn's QDQ export has no ONNX form for it. Whether QNN takes the
        ONNX form is known only when QNN prepares the whole graph."""
        from openqnn.quantization.qdq.builder import HANDLERS

        if node.op_type not in HANDLERS:
            return f"no ONNX form for {node.op_type} in openqnn's QDQ export, the route to QNN"
        return None

    def prepare(self, graph: Graph) -> Executable:
        model, codes = self._model(graph)
        session = self._session(model.SerializeToString(), graph)
        return QnnHtpExecutable(graph, session, codes, self.arch)

    # -- QNN context binaries -----------------------------------------------------------------------------
    def write_qnn_context(self, graph: Graph, folder: Path, name: str) -> list[Path]:
        """Prepare ``graph`` with QNN and write ``folder/<name>_qnn.bin`` (QNN's context binary, for
        ``qnn-net-run --retrieve_context``) and ``folder/<name>.onnx`` (ONNX Runtime's EPContext model that
        points at it); returns both paths, the binary first."""
        model, _ = self._model(graph)
        onnx_path = folder / f"{name}.onnx"
        entries = {"ep.context_enable": "1", "ep.context_embed_mode": "0", "ep.context_file_path": str(onnx_path)}
        self._session(model.SerializeToString(), graph, entries)
        binary = folder / f"{name}_qnn.bin"
        if not binary.is_file() or not onnx_path.is_file():
            made = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
            raise UnsupportedOpError(f"QNN prepared '{graph.name}' but wrote no {binary.name} (the folder holds "
                                     f"{made}); {provider.wheel_version()} may name its files otherwise")
        return [binary, onnx_path]

    # -- helpers ----------------------------------------------------------------------------------------
    def _model(self, graph: Graph) -> tuple[Any, dict[str, IoCodes]]:
        provider.require()
        if not any(t.encoding is not None for t in graph.tensors.values()):
            raise InvalidConfigError(
                "the model is float and QNN's HTP runs quantized models: quantize it (qnn-onnx-converter "
                "--input_list CALIBRATION_LIST, or --input_list to qnn-context-binary-generator), or run it "
                "with --backend cpu")
        return qnn_model(graph)

    def _session(self, model: bytes, graph: Graph, entries: Mapping[str, str] | None = None) -> Any:
        arch, options = self.arch, self.options()
        t0 = time.perf_counter()
        with provider.captured_fds() as buf:
            try:
                session = provider.qnn_session(model, arch, severity=0 if log.isEnabledFor(logging.DEBUG) else 2,
                                               options=options, entries=entries)
            except Exception as e:  # QNN refused the graph (or an option): say what it refused and why
                session, error = None, _ORT_PREFIX.sub("", str(e).strip()).splitlines()[0] if str(e).strip() else ""
        native_log = buf.getvalue()
        if session is None:
            detail = provider.refusal_detail(model, arch, native_log, options, nodes=True)
            where = f"v{arch}" if arch else "this device"
            raise UnsupportedOpError(f"QNN's HTP ({where}) refused graph '{graph.name}': {detail or error}; replace "
                                     "those ops in the model, or run it on openqnn's htp backend (--backend htp), "
                                     "which runs them on its cpu fallback")
        if native_log.strip():
            log.debug("QNN: %s", native_log.strip())
        log.info("qnn-htp: QNN prepared '%s' for %s in %.3f s", graph.name, f"v{arch}" if arch else "the device",
                 time.perf_counter() - t0)
        return session


class QnnHtpExecutable:
    """A graph QNN prepared: feeds -> QNN -> outputs, in the htp executable's conventions."""

    fallbacks: Sequence[Fallback] = ()  # QNN takes the whole graph or refuses it

    def __init__(self, graph: Graph, session: Any, codes: Mapping[str, IoCodes], arch: str | None):
        self.graph, self.session, self.codes, self.arch = graph, session, dict(codes), arch
        self._types = {i.name: _numpy_type(i.type) for i in session.get_inputs()}
        self._outputs = [o.name for o in session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray], native_inputs: bool = False,
            native_outputs: bool = False) -> dict[str, np.ndarray]:
        ort_feeds: dict[str, np.ndarray] = {}
        for t in self.graph.input_tensors():
            arr = feed_of(self.graph, feeds, t.name)
            code, enc = self.codes.get(t.name), t.encoding
            if code is not None and not native_inputs:
                arr = _quantize(arr, code.encoding)
            elif code is None and enc is not None and native_inputs and enc.axis is None:  # QNN takes its floats
                arr = dequantize(arr, enc.scale[0], enc.offset[0])
            ort_feeds[t.name] = np.ascontiguousarray(arr.astype(self._types[t.name]))
        values = dict(zip(self._outputs, self.session.run(None, ort_feeds)))
        out: dict[str, np.ndarray] = {}
        for name in self.graph.outputs:
            value, enc, code = values[name], self.graph.tensors[name].encoding, self.codes.get(name)
            if code is not None:
                e = code.encoding
                out[name] = value if native_outputs else dequantize(value, e.scale[0], e.offset[0]).astype(np.float32)
            elif enc is not None and native_outputs and enc.axis is None:  # a float output QNN kept: its codes
                out[name] = _quantize(value, enc).astype(f"{'' if enc.is_signed else 'u'}int{8 if enc.bitwidth <= 8 else 16}")
            else:
                out[name] = value
        return out


def _quantize(x: np.ndarray, enc: Encoding) -> np.ndarray:
    """openqnn's quantization of a per-tensor encoding (the htp executable's: round half to even, clamp)."""
    return quantize(x, enc.scale[0], enc.offset[0], enc.bitwidth, enc.is_signed, enc.int_range)


def _numpy_type(ort_type: str) -> np.dtype:
    """ONNX Runtime's ``tensor(uint8)`` -> numpy's uint8."""
    inner = ort_type.removeprefix("tensor(").removesuffix(")")
    return np.dtype({"float": "float32", "double": "float64", "float16": "float16", "bool": "bool"}.get(inner, inner))

