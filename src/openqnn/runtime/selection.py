"""Choosing a backend: the guide's scoring (:meth:`BackendSelector.select_optimal_backend`) and a measured
choice (:meth:`BackendSelector.select_backend`) that prepares the model on every backend this machine runs,
times it, checks its outputs against fp32 and picks under the constraints, with a table that says why.

The guide's scoring reads each backend's figures from its registry entry: the op types from the backend's
own kernel registry (``BackendSpec.op_types``: htp's ``HTP_KERNELS``, the cpu kernels), the largest tensor
it handles well, its relative power efficiency and whether it is an NPU (``Capabilities``). The power proxy
of the measured choice is multiply-accumulates x energy per MAC at the precision the backend ran in
(:data:`PJ_PER_MAC`; docs/backend-selection.md cites the figures).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openqnn.backends import SPECS, BackendSpec, create_backend
from openqnn.errors import InvalidConfigError, OpenQnnError
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import TensorKind

__all__ = ["PJ_PER_MAC", "BackendRow", "BackendSelector", "Selection", "count_macs", "describe_model"]

# Energy of one multiply-accumulate in picojoules, by the precision it runs in: Horowitz, "Computing's
# energy problem (and what we can do about it)", ISSCC 2014, 45 nm at 0.9 V -- 8-bit integer multiply 0.2 pJ
# + 32-bit integer add 0.1 pJ; 16-bit float multiply 1.1 + add 0.4; 32-bit float multiply 3.7 + add 0.9. The
# 16-bit integer multiply (not in the table) is the 8-bit one scaled by the square of the width (0.8), with a
# 64-bit accumulate (2 x 0.1). Arithmetic only: a ranking proxy, not a power measurement.
PJ_PER_MAC: dict[str, float] = {"int8": 0.3, "int16": 1.0, "fp16": 1.5, "hybrid": 1.5, "fp32": 4.6}

# the guide's names, ONNX's and PyTorch's for the IR op types (a name the registries hold is taken as it is)
OP_ALIASES: dict[str, str] = {
    "dense": "FullyConnected", "gemm": "FullyConnected", "linear": "FullyConnected", "conv": "Conv2d",
    "batchnorm": "Batchnorm", "batchnormalization": "Batchnorm", "maxpool": "PoolMax2d", "avgpool": "PoolAvg2d",
    "averagepool": "PoolAvg2d", "add": "ElementWiseAdd", "mul": "ElementWiseMultiply", "sub": "ElementWiseSubtract",
    "div": "ElementWiseDivide", "layernormalization": "LayerNorm", "layernorm": "LayerNorm",
    "convtranspose": "TransposeConv2d", "depthwiseconv2d": "DepthWiseConv2d",
}

# what constraints may say (the guide's two flags, and the measured choice's limits)
CONSTRAINTS = {"power_critical": bool, "performance_critical": bool, "max_latency_ms": float, "min_cosine": float,
               "max_abs_error": float, "max_energy_uj": float}
DEFAULT_MIN_COSINE = 0.99


def count_macs(graph: Graph) -> int:
    """Multiply-accumulates of one inference: convolutions, FullyConnected and MatMul (the rest is small)."""
    total = 0
    for node in graph.nodes:
        out = graph.tensors[node.outputs[0]].shape if node.outputs else ()
        if node.op_type in ("Conv2d", "DepthWiseConv2d", "Conv3d") and len(node.inputs) > 1:
            w = graph.tensors[node.inputs[1]].shape  # [k..., cin/group, cout]: all but cout meet one output
            total += math.prod(out) * math.prod(w[:-1])
        elif node.op_type in ("TransposeConv2d", "TransposeConv3d") and len(node.inputs) > 1:
            x, w = graph.tensors[node.inputs[0]].shape, graph.tensors[node.inputs[1]].shape
            total += math.prod(x) * math.prod(w) // max(x[-1], 1)
        elif node.op_type in ("FullyConnected", "MatMul"):
            x = graph.tensors[node.inputs[0]].shape
            k = x[-2] if node.attrs.get("transpose_in0") and len(x) > 1 else x[-1] if x else 1
            total += math.prod(out) * k
    return total


def describe_model(graph: Graph) -> dict[str, Any]:
    """The guide's ``model_info`` of a graph: its op types, its largest tensor in bytes, its precision."""
    sizes = [math.prod(t.shape) * np.dtype(t.dtype.numpy).itemsize for t in graph.tensors.values()]
    quantized = any(t.encoding is not None for t in graph.tensors.values())
    return {"operations": sorted(set(graph.op_types())), "max_tensor_size": max(sizes, default=0),
            "precision": "int8" if quantized else "fp32"}


def _check_constraints(constraints: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(constraints or {})
    for key, value in out.items():
        kind = CONSTRAINTS.get(key)
        if kind is None:
            raise InvalidConfigError(f"constraint '{key}' is not known; use {', '.join(CONSTRAINTS)}")
        ok = isinstance(value, bool) if kind is bool else (isinstance(value, (int, float))
                                                          and not isinstance(value, bool) and value >= 0)
        if not ok:
            want = "true or false" if kind is bool else "a number of 0 or more"
            raise InvalidConfigError(f"constraint {key} = {value!r} must be {want}")
    return out


@dataclass(frozen=True)
class BackendRow:
    """One backend's line of a measured choice. ``latency_ms``: median per inference on this machine;
    ``cosine``/``max_abs_error``: the worst over the outputs and inputs against the fp32 cpu run;
    ``energy_uj``: the power proxy (MACs x :data:`PJ_PER_MAC` of ``precision``); ``verdict``: why it was
    or was not chosen."""

    backend: str
    available: bool
    precision: str | None = None
    latency_ms: float | None = None
    cosine: float | None = None
    max_abs_error: float | None = None
    energy_uj: float | None = None
    fallbacks: int = 0
    verdict: str = ""


@dataclass(frozen=True)
class Selection:
    """A measured choice: ``choice`` (None when no backend meets the constraints) and one row per backend.
    ``str()`` is the table."""

    model: str
    choice: str | None
    rows: tuple[BackendRow, ...]
    constraints: Mapping[str, Any]
    samples: int

    def row(self, backend: str) -> BackendRow:
        return next(r for r in self.rows if r.backend == backend)

    def __str__(self) -> str:
        said = ", ".join(f"{k}={v}" for k, v in self.constraints.items()) or "none"
        head = ("backend", "available", "precision", "latency ms", "cosine", "max error", "energy uJ", "verdict")

        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        body = [(r.backend, "yes" if r.available else "no", r.precision or "-", num(r.latency_ms, ".3f"),
                 num(r.cosine, ".6f"), num(r.max_abs_error, ".3g"), num(r.energy_uj, ".3g"), r.verdict)
                for r in self.rows]
        widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head) - 1)]
        lines = [f"backend selection for {self.model!r} ({self.samples} input(s); constraints: {said})"]
        lines += ["  ".join([*(c.ljust(w) for c, w in zip(line[:-1], widths)), line[-1]]).rstrip()
                  for line in [head, *body]]
        lines.append(f"choice: {self.choice}" if self.choice else "choice: none meets the constraints")
        return "\n".join(lines)


class BackendSelector:
    """Picks a backend for a model.

    ``select_optimal_backend(model_info, constraints)`` is the guide's scoring, on this installation's
    figures (``backend_capabilities``, from the backends' registry entries and kernel registries);
    ``select_backend(model, calibration, constraints)`` measures instead (see the module docstring).

    >>> BackendSelector().select_optimal_backend({"operations": ["Conv2d", "ReLU", "Dense"],
    ...     "max_tensor_size": 4 << 20}, {"power_critical": True, "performance_critical": True})
    'htp'
    """

    def __init__(self, backends: Iterable[str] | None = None):
        """``backends``: the names to consider (default: every backend in this build)."""
        names = list(backends) if backends is not None else [s.name for s in SPECS.values() if s.create is not None]
        unknown = [n for n in names if n not in SPECS]
        if unknown:
            raise InvalidConfigError(f"BackendSelector: unknown backend '{unknown[0]}'; use {', '.join(SPECS)}")
        # ties go to the more power-efficient backend (the guide lists htp, gpu, cpu and keeps the first best)
        self.specs: list[BackendSpec] = sorted((SPECS[n] for n in names),
                                               key=lambda s: -s.capabilities.power_efficiency)
        self.backend_capabilities: dict[str, dict[str, Any]] = {
            s.name: {"supported_ops": sorted(s.op_types()), "max_tensor_size": s.capabilities.max_tensor_bytes,
                     "preferred_precision": s.capabilities.precisions[0],
                     "power_efficiency": s.capabilities.power_efficiency}
            for s in self.specs}

    # -- the guide's scoring --------------------------------------------------------------------------
    def scores(self, model_info: Mapping[str, Any] | Graph, constraints: Mapping[str, Any] | None = None
               ) -> dict[str, float]:
        """The guide's score of each backend: 30 when it runs every op, 25 when the largest tensor fits,
        25 x its power efficiency when ``power_critical``, 20 for an NPU when ``performance_critical``."""
        info = describe_model(model_info) if isinstance(model_info, Graph) else model_info
        said = _check_constraints(constraints)
        if "operations" not in info or "max_tensor_size" not in info:
            raise InvalidConfigError("model_info needs 'operations' (op names) and 'max_tensor_size' (bytes); "
                                     "BackendSelector.describe(graph) gives both")
        out: dict[str, float] = {}
        for spec in self.specs:
            caps = self.backend_capabilities[spec.name]
            ops = set(caps["supported_ops"])
            score = 0.0
            if all(_op_type(op, ops) in ops for op in info["operations"]):
                score += 30
            if info["max_tensor_size"] <= caps["max_tensor_size"]:
                score += 25
            if said.get("power_critical", False):
                score += caps["power_efficiency"] * 25
            if said.get("performance_critical", False) and spec.capabilities.npu:
                score += 20
            out[spec.name] = score
        return out

    def select_optimal_backend(self, model_info: Mapping[str, Any] | Graph,
                               constraints: Mapping[str, Any] | None = None) -> str:
        """The best-scoring backend (:meth:`scores`); ``model_info`` as the guide's dict or a graph."""
        scores = self.scores(model_info, constraints)
        return max(scores, key=lambda name: scores[name])

    @staticmethod
    def describe(graph: Graph) -> dict[str, Any]:
        """The guide's ``model_info`` of a graph (:func:`describe_model`)."""
        return describe_model(graph)

    # -- measured -------------------------------------------------------------------------------------
    def select_backend(self, model: Graph | str | os.PathLike[str], calibration: Sequence[Mapping[str, np.ndarray]],
                       constraints: Mapping[str, Any] | None = None, *, configs: Mapping[str, Any] | None = None,
                       repeats: int = 3) -> Selection:
        """Prepare ``model`` on every backend this machine runs, run it on ``calibration`` (input name ->
        array, a few inferences), and pick the fastest backend that meets ``constraints`` (``max_latency_ms``,
        ``min_cosine`` (default 0.99), ``max_abs_error``, ``max_energy_uj``); with ``power_critical``, the
        one of least energy instead. A backend that runs quantized models gets the model quantized on the
        calibration data. ``configs``: backend name -> its config dataclass (defaults otherwise)."""
        said = _check_constraints(constraints)
        graph = _load(model)
        samples = [dict(feeds) for feeds in calibration]
        if not samples:
            raise InvalidConfigError("select_backend needs calibration data: a list of input name -> array")
        reference = _run_all(create_backend("cpu").prepare(graph), samples)
        quantized: list[Graph] = []
        macs = count_macs(graph)
        rows = [self._measure(spec, graph, quantized, samples, reference, macs, (configs or {}).get(spec.name),
                              repeats) for spec in sorted(self.specs, key=lambda s: list(SPECS).index(s.name))]
        return _choose(graph.name, rows, said, len(samples))

    def _measure(self, spec: BackendSpec, graph: Graph, quantized: list[Graph], samples: list[dict[str, np.ndarray]],
                 reference: list[dict[str, np.ndarray]], macs: int, config: Any, repeats: int) -> BackendRow:
        why = spec.why_unavailable()
        if why is not None:
            return BackendRow(spec.name, False, verdict=f"not available here: {why}")
        mode = getattr(config, "precision_mode", None) if config is not None else None
        integer = spec.capabilities.quantized_only or (mode or "").startswith("int")
        try:
            target = graph
            if integer and not any(t.encoding is not None for t in graph.tensors.values()):
                if not quantized:
                    from openqnn.quantization import quantize

                    quantized.append(quantize(graph, samples))
                target = quantized[0]
            precision = _precision(target) if integer else (
                mode or getattr(spec.config_class(), "precision_mode", None) or "fp32")
            exe = create_backend(spec.name, config).prepare(target)
            outputs = _run_all(exe, samples[:1])  # warm-up
            times = []
            for _ in range(max(1, repeats)):
                start = time.perf_counter()
                outputs = _run_all(exe, samples)
                times.append((time.perf_counter() - start) * 1000 / len(samples))
        except OpenQnnError as e:
            return BackendRow(spec.name, True, verdict=f"failed: {e}")
        cos, err = _accuracy(outputs, reference)
        energy = macs * PJ_PER_MAC.get(precision, PJ_PER_MAC["fp32"]) * 1e-6
        return BackendRow(spec.name, True, precision, float(np.median(times)), cos, err, energy, len(exe.fallbacks))


def _op_type(name: str, known: set[str]) -> str:
    if name in known:
        return name
    low = name.lower()
    return OP_ALIASES.get(low) or next((k for k in known if k.lower() == low), name)


def _load(model: Graph | str | os.PathLike[str]) -> Graph:
    if isinstance(model, Graph):
        return model
    from openqnn.frontends.base import convert_source
    from openqnn.runtime.loading import load_graph

    path = Path(model)
    return convert_source(path) if path.suffix == ".onnx" else load_graph(path)


def _precision(graph: Graph) -> str:
    bits = max((t.encoding.bitwidth for t in graph.tensors.values()
                if t.encoding is not None and t.kind is not TensorKind.STATIC), default=8)
    return "int16" if bits > 8 else "int8"


def _run_all(exe: Any, samples: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    return [exe.run(feeds) for feeds in samples]


def _accuracy(got: Sequence[Mapping[str, np.ndarray]], want: Sequence[Mapping[str, np.ndarray]]) -> tuple[float, float]:
    """The worst cosine similarity and the largest absolute error over every output of every input."""
    cos, err = 1.0, 0.0
    for g, w in zip(got, want):
        for name, ref in w.items():
            a = np.asarray(g[name], np.float64).ravel()
            b = np.asarray(ref, np.float64).ravel()
            if a.size:
                err = max(err, float(np.abs(a - b).max()))
            norm = float(np.linalg.norm(a) * np.linalg.norm(b))
            cos = min(cos, float(a @ b) / norm if norm else (1.0 if np.array_equal(a, b) else 0.0))
    return cos, err


def _choose(model: str, rows: list[BackendRow], said: Mapping[str, Any], samples: int) -> Selection:
    limits = dict(said)
    limits.setdefault("min_cosine", DEFAULT_MIN_COSINE)
    misses: dict[str, str] = {}
    for r in rows:
        if r.latency_ms is None:
            continue
        assert r.cosine is not None and r.max_abs_error is not None and r.energy_uj is not None
        checks = [("max_latency_ms", r.latency_ms > limits.get("max_latency_ms", math.inf),
                   f"too slow: {r.latency_ms:.3f} ms > {limits.get('max_latency_ms')} ms"),
                  ("min_cosine", r.cosine < limits["min_cosine"],
                   f"accuracy: cosine {r.cosine:.6f} < {limits['min_cosine']}"),
                  ("max_abs_error", r.max_abs_error > limits.get("max_abs_error", math.inf),
                   f"accuracy: max error {r.max_abs_error:.3g} > {limits.get('max_abs_error')}"),
                  ("max_energy_uj", r.energy_uj > limits.get("max_energy_uj", math.inf),
                   f"power: {r.energy_uj:.3g} uJ > {limits.get('max_energy_uj')} uJ")]
        failed = [why for _, bad, why in checks if bad]
        if failed:
            misses[r.backend] = "; ".join(failed)
    fits = [r for r in rows if r.latency_ms is not None and r.backend not in misses]
    by_power = bool(said.get("power_critical", False))

    def key(r: BackendRow) -> tuple[float, float]:
        assert r.latency_ms is not None and r.energy_uj is not None
        return (r.energy_uj, r.latency_ms) if by_power else (r.latency_ms, r.energy_uj)

    best = min(fits, key=key) if fits else None
    goal = "least energy" if by_power else "fastest"
    out = []
    for r in rows:
        if r.latency_ms is None:
            verdict = r.verdict
        elif r.backend in misses:
            verdict = misses[r.backend]
        elif best is not None and r.backend == best.backend:
            verdict = f"chosen: the {goal} that meets the constraints"
        else:
            assert best is not None
            verdict = f"meets the constraints; {best.backend} is {'leaner' if by_power else 'faster'}"
        out.append(BackendRow(r.backend, r.available, r.precision, r.latency_ms, r.cosine, r.max_abs_error,
                              r.energy_uj, r.fallbacks, verdict))
    return Selection(model, best.backend if best else None, tuple(out), limits, samples)
