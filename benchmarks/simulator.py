"""openqnn's htp emulation next to Qualcomm's own HTP simulator, on the same quantized model and input.

For each model, one process: the float ONNX model is quantized by openqnn (W8A8, per-channel weights, seeded
calibration) and exported as a QDQ ONNX model; the simulator (``libQnnHtp.so`` from the ``onnxruntime-qnn``
wheel, through ONNX Runtime's QNN execution provider, HTP arch ``--arch``) and openqnn's htp backend (the same
arch) each run it on the same input. A dev extra: without the wheel the benchmark says so and stops.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import machine_line
from benchmarks.zoo import MODELS, export, make_inputs


def _best(fn: Callable[..., Any], args: tuple[Any, ...], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def run_simulator(models: Sequence[str], arch: str, size: int | None, threads: int | None,
                  sim_runs: int = 3, runs: int = 10) -> int:
    import torch

    import openqnn
    from openqnn.backends.htp.config import HtpConfig
    from openqnn.backends.qnn_htp.provider import qnn_session
    from openqnn.quantization.qdq.export import graph_to_onnx
    from openqnn.runtime.config import BackendConfig

    try:
        import onnxruntime_qnn  # noqa: F401
    except ImportError:
        print("the simulator benchmark needs the onnxruntime-qnn wheel (a dev extra: pip install 'openqnn[dev]' on "
              "Linux x86_64, Python >= 3.11)")
        return 2
    if threads:
        torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            spec = MODELS[name]
            path = export(spec, Path(tmp), size, model=spec.build())
            feed = make_inputs(spec, 1, size)
            graph = openqnn.convert(path, input_dims={k: v.shape for k, v in feed.items()})
            calib = [make_inputs(spec, 1, size, seed=100 + i) for i in range(4)]
            q = openqnn.quantize(graph, calib, openqnn.QuantizerConfig(use_per_channel_quantization=True))
            sim = qnn_session(graph_to_onnx(q).SerializeToString(), arch)
            names = [i.name for i in sim.get_inputs()]
            sim_feed = {n: np.asarray(feed[n]) for n in names}
            sim.run(None, sim_feed)  # (the first run finalizes the graph)
            sim_s = _best(sim.run, (None, sim_feed), sim_runs)
            sess = openqnn.Session(q, backend="htp", config=BackendConfig(htp=HtpConfig(dsp_arch=f"v{arch}")))
            for _ in range(3):
                sess.run(feed)
            oq_s = _best(sess.run, (feed,), runs)
            rows.append((name, sim_s, oq_s))
            print(f"  {name}: simulator {sim_s * 1e3:.1f} ms, openqnn htp {oq_s * 1e3:.2f} ms", flush=True)
    print(f"QNN's HTP simulator (onnxruntime-qnn, v{arch}) vs openqnn htp, one inference, batch 1, best of "
          f"{sim_runs} / {runs} runs")
    print(f"{'model':14s} {'simulator ms':>13s} {'openqnn ms':>11s} {'ratio':>8s}")
    for name, sim_s, oq_s in rows:
        print(f"{name:14s} {sim_s * 1e3:13.1f} {oq_s * 1e3:11.2f} {sim_s / oq_s:7.0f}x")
    print("target (issue 14): ResNet-18 at least 100x")
    print(machine_line(torch.get_num_threads()))
    return 0
