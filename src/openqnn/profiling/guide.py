"""The guide's profiling and debugging classes, on openqnn's measurements (only the import changes).

- :class:`QNNProfiler`: ``profile_inference(func, data, num_runs)`` -> avg/p95/p99 latency, throughput, CPU
  usage and memory delta, measured from the process (psutil), so PyTorch's allocations count.
- :class:`QNNDebugger`: ``profile_layers(input_data)`` fills ``layer_timings`` (ms per node) from a detailed
  profile; ``analyze_bottlenecks`` prints the slowest; ``suggest_optimizations`` gives the guide's rules and
  the profile's own (:mod:`openqnn.profiling.advice`).
- :class:`DynamicQuantization`: ``collect_statistics`` runs the real observers over calibration data,
  ``compute_quantization_params`` gives scale/offset/min/max per activation, ``apply_quantization`` returns an
  encodings file the converter takes as ``--quantization_overrides``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["DynamicQuantization", "QNNDebugger", "QNNProfiler"]


class QNNProfiler:
    """>>> QNNProfiler().profile_inference(engine.inference, x, num_runs=100)   # doctest: +SKIP"""

    def __init__(self) -> None:
        self.metrics: dict[str, Any] = {}

    def profile_inference(self, inference_func: Callable[[Any], Any], input_data: Any,
                          num_runs: int = 100) -> dict[str, float]:
        import psutil

        from openqnn.profiling.stats import latency_stats

        process = psutil.Process()
        process.cpu_percent()  # the first call starts psutil's interval
        rss_before = process.memory_info().rss
        latencies = []
        start = time.perf_counter()
        for _ in range(num_runs):
            t0 = time.perf_counter()
            inference_func(input_data)
            latencies.append(time.perf_counter() - t0)
        wall = time.perf_counter() - start
        cpu = process.cpu_percent()
        rss_after = process.memory_info().rss
        st = latency_stats(latencies)
        self.metrics = {
            "avg_latency_ms": st.avg_ms,
            "p50_latency_ms": st.p50_ms,
            "p95_latency_ms": st.p95_ms,
            "p99_latency_ms": st.p99_ms,
            "throughput_fps": 1000 / st.avg_ms if st.avg_ms > 0 else float("inf"),
            "avg_cpu_usage": float(cpu),  # percent of one core over the runs (psutil)
            "avg_memory_delta_mb": (rss_after - rss_before) / num_runs / (1024 * 1024) if num_runs else 0.0,
            "peak_rss_mb": rss_after / (1024 * 1024),
            "wall_s": wall,
        }
        return dict(self.metrics)


class QNNDebugger:
    """The guide's debugger on a model (``_net.json``, model library or context binary)."""

    def __init__(self, model_path: str | os.PathLike[str], backend: str | None = None):
        self.model_path = model_path
        self.backend = backend
        self.layer_timings: dict[str, float] = {}
        self.profile: Any = None

    def get_layer_names(self) -> list[str]:
        from openqnn.api import load

        return [n.name for n in load(self.model_path).nodes]

    def _backend(self) -> str:
        if self.backend is not None:
            return self.backend
        from openqnn.runtime.context import is_context

        if is_context(self.model_path):
            return ""
        from openqnn.api import load

        quantized = any(t.encoding is not None for t in load(self.model_path).tensors.values())
        return "htp" if quantized else "cpu"

    def profile_layers(self, input_data: Any, num_runs: int = 5) -> dict[str, float]:
        """Run the model ``num_runs`` times with a detailed profile; ``layer_timings``: average ms per node."""
        from openqnn.profiling.viewer import node_stats
        from openqnn.runtime.session import Session

        session = Session(self.model_path, backend=self._backend() or None, profiling="detailed")
        for _ in range(max(1, num_runs)):
            session.run(input_data)
        self.profile = session.profile()
        self.layer_timings = {s.node: s.avg_us / 1e3 for s in node_stats(self.profile)}
        return dict(self.layer_timings)

    def analyze_bottlenecks(self) -> list[tuple[str, float]]:
        sorted_layers = sorted(self.layer_timings.items(), key=lambda x: x[1], reverse=True)
        print("Top 5 slowest layers:")
        for layer, time_ms in sorted_layers[:5]:
            print(f"  {layer}: {time_ms:.2f} ms")
        return sorted_layers[:5]

    def suggest_optimizations(self) -> list[str]:
        """The guide's rules (a layer over 10 ms: conv -> depthwise separable, dense -> quantize) and the
        profile's (fallbacks, VTCM, depthwise candidates, hotspots)."""
        suggestions = []
        for layer, time_ms in self.layer_timings.items():
            if time_ms > 10:
                if "conv" in layer.lower():
                    suggestions.append(f"Consider depthwise separable conv for {layer}")
                elif "dense" in layer.lower():
                    suggestions.append(f"Consider quantization for {layer}")
        if self.profile is not None:
            from openqnn.profiling.advice import suggestions as advice

            suggestions += [a.text for a in advice(self.profile)]
        return suggestions


class DynamicQuantization:
    """Activation statistics and encodings for a float model (``_net.json``) with the real observers."""

    def __init__(self, model_path: str | os.PathLike[str]):
        self.model_path = model_path
        self.calibration_data: list[tuple[str, Any]] = []
        self._observers: dict[str, Any] = {}
        self.bitwidth = 8

    def _graph(self) -> Any:
        from openqnn.api import load

        return load(self.model_path)

    def collect_statistics(self, calibration_dataset: Iterable[Any]) -> None:
        """Observe every activation of the model over the dataset (arrays, or dicts by input name)."""
        from openqnn.quantization.calibration import MinMaxObserver
        from openqnn.quantization.quantizer import calibrate

        graph = self._graph()
        names = [t.name for t in graph.tensors.values() if t.kind.name != "STATIC" and t.dtype.is_float]
        feeds = [d if isinstance(d, Mapping) else {graph.inputs[0]: np.asarray(d)} for d in calibration_dataset]
        observers = calibrate(graph, feeds, names, histogram=False, progress=False)
        for name, obs in observers.items():
            if name in self._observers:
                self._observers[name].merge(obs)
            else:
                self._observers[name] = obs
        self.calibration_data = [(n, o) for n, o in self._observers.items()
                                 if isinstance(o, MinMaxObserver) and not o.is_empty]

    def compute_quantization_params(self) -> dict[str, dict[str, float | int]]:
        """Per activation: ``scale``, ``offset`` (the guide's: the zero point, q = x / scale + offset),
        ``min`` and ``max``, with zero exactly representable."""
        from openqnn.quantization.encodings.math import asymmetric

        params: dict[str, dict[str, float | int]] = {}
        for layer_name, obs in self.calibration_data:
            s, o = asymmetric(float(np.min(obs.min)), float(np.max(obs.max)), self.bitwidth)
            scale, offset = float(s), int(o)
            params[layer_name] = {"scale": scale, "offset": -offset, "min": scale * offset,
                                  "max": scale * (offset + (1 << self.bitwidth) - 1)}
        return params

    def apply_quantization(self, quantization_params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """An encodings document (AIMET's legacy form) the converter takes as ``--quantization_overrides``;
        offsets in QNN's sign (-zero point)."""
        config: dict[str, Any] = {"activation_encodings": {}, "param_encodings": {}}
        for layer, params in quantization_params.items():
            config["activation_encodings"][layer] = [{
                "bitwidth": self.bitwidth, "scale": float(params["scale"]), "offset": -int(params["offset"]),
                "min": float(params["min"]), "max": float(params["max"]),
            }]
        return config
