"""Driving many inferences: a count or a duration, on one thread or several, with one progress bar.

:func:`drive` calls ``run_one(i)`` for i = 0, 1, 2, ... until ``total`` calls are made or ``deadline`` passes
(then it stops taking new ones), from ``threads`` threads that each take the next index; it returns every
call's latency in seconds (in index order) and the wall time. One session runs on several threads at once:
the executor keeps each run's values apart and the htp kernels' scratch buffers are per thread.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["drive", "progress_bar"]


def progress_bar(total: int | None, desc: str, unit: str = "inf", min_total: int = 20) -> Any:
    """openqnn's progress bar (tqdm on stderr): shown only on a terminal, and only for runs of ``min_total``
    items or more (or of unknown length); ``leave=False`` so finished runs leave no line behind."""
    from tqdm import tqdm

    show = total is None or total >= min_total
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not (show and sys.stderr.isatty()))


def drive(run_one: Callable[[int], None], total: int | None, deadline: float | None = None, threads: int = 1,
          desc: str = "inferences") -> tuple[list[float], float]:
    """Run ``run_one`` as described in the module docstring; an exception in any thread stops them all and
    is raised here."""
    lock = threading.Lock()
    latencies: dict[int, float] = {}
    next_index = [0]
    failure: list[BaseException] = []
    bar = progress_bar(total if deadline is None else None, desc)

    def take() -> int | None:
        with lock:
            i = next_index[0]
            more = (total is not None and i < total) or (deadline is not None and time.perf_counter() < deadline)
            if failure or not more:
                return None
            next_index[0] = i + 1
            return i

    def worker() -> None:
        while (i := take()) is not None:
            t0 = time.perf_counter()
            try:
                run_one(i)
            except BaseException as e:  # handed to the caller's thread
                with lock:
                    failure.append(e)
                return
            dt = time.perf_counter() - t0
            with lock:
                latencies[i] = dt
                bar.update(1)

    start = time.perf_counter()
    try:
        if threads <= 1:
            worker()
        else:
            pool = [threading.Thread(target=worker, name=f"openqnn-net-run-{k}", daemon=True) for k in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
    finally:
        bar.close()
    if failure:
        raise failure[0]
    return [latencies[i] for i in sorted(latencies)], time.perf_counter() - start
