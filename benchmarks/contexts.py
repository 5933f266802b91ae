"""Opening a context binary next to preparing the model from its ``_net.json``, and their ratio.

For each model: the float ONNX model is converted and saved as a ``_net.json`` for the cpu backend, and
quantized (W8A8, per-channel weights, seeded calibration) and saved for htp; each is compiled into a
context binary. Then, in turns, ``Session(net_json, backend=...)`` (load and prepare) and
``Session(context)`` (open and bind) are timed; a context must run bit-identically to the prepared model.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.zoo import MODELS, export, make_inputs

DEFAULT_CONTEXT_MODELS = ("resnet18", "bert", "mobilenet_v2")


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def run_contexts(models: Sequence[str], backends: Sequence[str], rounds: int, size: int | None,
                 threads: int | None) -> None:
    import torch

    import openqnn

    if threads:
        torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in models:
            spec = MODELS[name]
            path = export(spec, work, size, model=spec.build())
            feeds = make_inputs(spec, 1, size)
            graph = openqnn.convert(path, input_dims={k: v.shape for k, v in feeds.items()})
            for backend in backends:
                g = graph
                if backend == "htp":
                    calib = [make_inputs(spec, 1, size, seed=100 + i) for i in range(4)]
                    g = openqnn.quantize(graph, calib, openqnn.QuantizerConfig(use_per_channel_quantization=True,
                                                                              use_per_row_quantization=True))
                net_json, _ = openqnn.save(g, work / f"{name}_{backend}.cpp")
                ctx = openqnn.compile(g, backend).save(work / f"{name}_{backend}_context.bin")
                openqnn.Session(ctx), openqnn.Session(net_json, backend=backend)  # warm: libraries, caches
                prep, opened = [], []
                for _ in range(rounds):
                    t, prepared = _timed(openqnn.Session, net_json, backend=backend)
                    prep.append(t)
                    for _ in range(3):
                        t, sess = _timed(openqnn.Session, ctx)
                        opened.append(t)
                native = backend == "htp"
                a = prepared.run(feeds, native_outputs=native)
                b = sess.run(feeds, native_outputs=native)
                same = all(np.array_equal(a[k], b[k]) for k in a)
                rows.append((name, backend, min(prep), statistics.median(prep), min(opened), statistics.median(opened),
                             ctx.stat().st_size / 2**20, same))
                print(f"  {name} {backend}: prepare {statistics.median(prep) * 1e3:.1f} ms, open "
                      f"{statistics.median(opened) * 1e3:.1f} ms", flush=True)
    print(f"prepare from _net.json vs open the context binary, in ms (min / median of {rounds} prepares and "
          f"{3 * rounds} opens), torch {torch.__version__}")
    print(f"{'model':14s} {'backend':7s} {'prepare':>15s} {'open':>13s} {'ratio':>12s} {'MB':>6s}  bit-identical")
    print("-" * 86)
    for name, backend, pmin, pmed, omin, omed, mb, same in rows:
        print(f"{name:14s} {backend:7s} {pmin * 1e3:7.1f} /{pmed * 1e3:6.1f} {omin * 1e3:6.1f} /{omed * 1e3:5.1f} "
              f"{pmin / omin:5.1f} /{pmed / omed:5.1f} {mb:6.1f}  {same}")
    print("ratio: prepare / open (of the minimums / of the medians)")
    from benchmarks.machine import machine_line

    print(machine_line(torch.get_num_threads()))
