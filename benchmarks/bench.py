"""Latency of openqnn's cpu backend next to ONNX Runtime (CPU EP) and PyTorch eager, one process.

Every runner gets the same thread count and the same seeded numpy inputs; openqnn and ORT are timed
through their public ``run`` (numpy in, numpy out), PyTorch eager on the same tensors under
``torch.inference_mode``. A measurement is the median of ``runs`` calls after ``warmup`` calls; the
runtimes take turns for ``rounds`` rounds and each keeps its best median, so a burst of load from
elsewhere on the machine during one runtime's turn does not decide the comparison.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.zoo import MODELS, export, make_inputs

DEFAULT_MODELS = ("mobilenet_v2", "resnet18", "resnet50", "bert")
_SETTLE_S = 0.5


@dataclass
class Result:
    model: str
    batch: int
    openqnn_ms: float
    ort_ms: float
    torch_ms: float
    max_rel_err: float  # openqnn vs ORT, relative to the output's largest magnitude
    prepare_s: float
    paths: str = ""  # the implementations openqnn's steps took

    @property
    def ratio(self) -> float:
        return self.openqnn_ms / self.ort_ms


def median_ms(fn: Callable[[], object], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # (its warnings about unused initializers of exported models)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def bench_model(name: str, batches: Sequence[int], threads: int, runs: int, warmup: int, work: Path,
                size: int | None = None, rounds: int = 2) -> list[Result]:
    import openqnn

    spec = MODELS[name]
    model = spec.build()
    path = export(spec, work, size, model=model)
    ort_sess = _ort_session(path, threads)
    results = []
    for batch in batches:
        feeds = make_inputs(spec, batch, size)
        t0 = time.perf_counter()
        graph = openqnn.convert(path, input_dims={k: v.shape for k, v in feeds.items()})
        sess = openqnn.Session(graph, backend="cpu", num_threads=threads)
        prepare_s = time.perf_counter() - t0
        ours, ref = sess.run(feeds), ort_sess.run(None, feeds)
        err = max(float(np.abs(ours[o] - r).max() / max(np.abs(r).max(), 1e-12))
                  for o, r in zip(spec.output_names, ref))
        tensors = [torch.from_numpy(feeds[n]) for n in spec.input_names]

        def eager(tensors: list[torch.Tensor] = tensors) -> object:
            with torch.inference_mode():
                return model(*tensors)

        runners = {
            "openqnn": lambda sess=sess, feeds=feeds: sess.run(feeds),
            "ort": lambda feeds=feeds: ort_sess.run(None, feeds),
            "torch": eager,
        }
        best = {k: math.inf for k in runners}
        for _ in range(rounds):
            for key, fn in runners.items():
                # each runtime's idle worker threads spin for a while after a call (ORT's pool,
                # OpenMP): let them go to sleep before timing another runtime on the same cores
                time.sleep(_SETTLE_S)
                best[key] = min(best[key], median_ms(fn, runs, warmup))
        from benchmarks.machine import cpu_paths

        results.append(Result(name, batch, best["openqnn"], best["ort"], best["torch"], err, prepare_s,
                              cpu_paths(sess)))
    return results


def format_table(results: Sequence[Result], threads: int) -> str:
    head = (f"{'model':<14}{'batch':>6}{'openqnn':>10}{'ORT':>10}{'torch':>10}"
            f"{'openqnn/ORT':>13}{'max rel err':>13}{'prepare s':>11}")
    import onnxruntime

    lines = [f"cpu latency in ms (best of the rounds' medians), {threads} thread(s), torch {torch.__version__}, "
             f"onnxruntime {onnxruntime.__version__}", head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.model:<14}{r.batch:>6}{r.openqnn_ms:>10.2f}{r.ort_ms:>10.2f}{r.torch_ms:>10.2f}"
                     f"{r.ratio:>13.2f}{r.max_rel_err:>13.1e}{r.prepare_s:>11.2f}")
    if results:
        geo = float(np.exp(np.mean([np.log(r.ratio) for r in results])))
        lines.append(f"geometric mean openqnn/ORT: {geo:.2f} (target <= 1.0)")
    for r in results:
        if r.paths:
            lines.append(f"paths {r.model} batch {r.batch}: {r.paths}")
    from benchmarks.machine import machine_line

    lines.append(machine_line(threads))
    return "\n".join(lines)


def run(models: Sequence[str] = DEFAULT_MODELS, batches: Sequence[int] = (1, 8), threads: int | None = None,
        runs: int = 20, warmup: int = 5, size: int | None = None, rounds: int = 2,
        echo: Callable[[str], None] = print) -> list[Result]:
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="openqnn-bench-") as work:
        for name in models:
            res = bench_model(name, batches, threads, runs, warmup, Path(work),
                              size if not MODELS[name].text else None, rounds)
            for r in res:
                echo(f"  {r.model} batch {r.batch}: openqnn {r.openqnn_ms:.2f} ms, ORT {r.ort_ms:.2f} ms, "
                     f"torch {r.torch_ms:.2f} ms")
            results += res
    echo(format_table(results, threads))
    return results
