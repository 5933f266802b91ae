"""htp integer emulation latency next to ONNX Runtime's int8 QDQ execution and openqnn's own fp32.

For each model, one process: the float ONNX model is quantized twice from the same seeded
calibration inputs — by openqnn (W8A8, per-channel weights) for its htp backend, and by ONNX
Runtime's ``quantize_static`` (QDQ format, per-channel int8 weights, uint8 activations) — then
openqnn htp, ORT int8 QDQ, openqnn cpu fp32 and ORT fp32 take turns being timed.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench import _SETTLE_S, _ort_session, median_ms
from benchmarks.machine import htp_paths, htp_products, machine_line
from benchmarks.zoo import MODELS, export, make_inputs


@dataclass
class HtpResult:
    model: str
    batch: int
    htp_ms: float
    ort_int8_ms: float
    cpu_fp32_ms: float
    ort_fp32_ms: float
    top1_agree: float  # htp vs openqnn's cpu simulation, over the timed + calibration inputs
    fallbacks: int
    paths: str = ""  # the kernels the htp steps took here


def _ort_int8(path: Path, calib: list[dict[str, np.ndarray]], out: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.it, None)

    quantize_static(str(path), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def bench_htp_model(name: str, batch: int, threads: int, runs: int, warmup: int, work: Path, size: int | None,
                    rounds: int, n_calib: int = 8) -> HtpResult:
    import openqnn
    from openqnn.backends.htp import HtpBackend

    spec = MODELS[name]
    path = export(spec, work, size, model=spec.build())
    calib = [make_inputs(spec, batch, size, seed=100 + i) for i in range(n_calib)]
    feeds = make_inputs(spec, batch, size)
    graph = openqnn.convert(path, input_dims={k: v.shape for k, v in feeds.items()})
    qgraph = openqnn.quantize(graph, calib, openqnn.QuantizerConfig(use_per_channel_quantization=True))
    htp = HtpBackend(num_threads=threads).prepare(qgraph)
    sim = openqnn.Session(qgraph, backend="cpu", num_threads=threads)
    cpu = openqnn.Session(graph, backend="cpu", num_threads=threads)
    ort_int8 = _ort_session(_ort_int8(path, calib, work / f"{name}_int8.onnx"), threads)
    ort_fp32 = _ort_session(path, threads)
    agree = []
    for f in [feeds, *calib]:
        a, b = htp.run(f), sim.run(f)
        agree.append(all(int(np.argmax(a[o])) == int(np.argmax(b[o])) for o in graph.outputs))
    runners: dict[str, Callable[[], object]] = {
        "htp": lambda: htp.run(feeds),
        "ort_int8": lambda: ort_int8.run(None, feeds),
        "cpu": lambda: cpu.run(feeds),
        "ort_fp32": lambda: ort_fp32.run(None, feeds),
    }
    best = {k: math.inf for k in runners}
    for _ in range(rounds):
        for key, fn in runners.items():
            time.sleep(_SETTLE_S)
            best[key] = min(best[key], median_ms(fn, runs, warmup))
    fallbacks = len(htp.exe.fallbacks) if hasattr(htp, "exe") else 0
    return HtpResult(name, batch, best["htp"], best["ort_int8"], best["cpu"], best["ort_fp32"],
                     float(np.mean(agree)), fallbacks, htp_paths(htp))


def format_htp_table(results: Sequence[HtpResult], threads: int) -> str:
    head = (f"{'model':<14}{'batch':>6}{'htp W8A8':>10}{'ORT int8':>10}{'cpu fp32':>10}{'ORT fp32':>10}"
            f"{'htp/ORTint8':>13}{'htp/cpu':>9}{'fallbacks':>11}")
    lines = [f"htp emulation latency in ms (best of the rounds' medians), {threads} thread(s)", head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.model:<14}{r.batch:>6}{r.htp_ms:>10.2f}{r.ort_int8_ms:>10.2f}{r.cpu_fp32_ms:>10.2f}"
                     f"{r.ort_fp32_ms:>10.2f}{r.htp_ms / r.ort_int8_ms:>13.2f}{r.htp_ms / r.cpu_fp32_ms:>9.2f}"
                     f"{r.fallbacks:>11}")
    lines.append("targets (issue 15): htp/ORTint8 <= 1.2, htp/cpu < 1.0")
    lines.append(machine_line(threads))
    lines.append(f"htp {htp_products()}")
    lines += [f"  {r.model}: {r.paths}" for r in results]
    return "\n".join(lines)


def run_htp(models: Sequence[str] = ("resnet18", "mobilenet_v2"), batch: int = 1, threads: int | None = None,
            runs: int = 20, warmup: int = 5, size: int | None = None, rounds: int = 2,
            echo: Callable[[str], None] = print) -> list[HtpResult]:
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="openqnn-bench-htp-") as work:
        for name in models:
            r = bench_htp_model(name, batch, threads, runs, warmup, Path(work), size, rounds)
            echo(f"  {name} batch {batch}: htp {r.htp_ms:.2f} ms, ORT int8 {r.ort_int8_ms:.2f} ms, "
                 f"cpu fp32 {r.cpu_fp32_ms:.2f} ms, top-1 agreement with simulation {r.top1_agree:.0%}")
            results.append(r)
    echo(format_htp_table(results, threads))
    return results
