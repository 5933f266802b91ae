"""Latency statistics: average, percentiles and throughput of a run's inference times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LatencyStats", "latency_stats"]


@dataclass(frozen=True)
class LatencyStats:
    """Inference latencies in milliseconds; ``throughput`` in inferences per second over ``wall_s`` (the run's
    wall time, which with several threads is less than the latencies' sum)."""

    count: int
    avg_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput: float
    wall_s: float

    def line(self) -> str:
        return (f"latency (ms): avg {self.avg_ms:.3f}, p50 {self.p50_ms:.3f}, p95 {self.p95_ms:.3f}, "
                f"p99 {self.p99_ms:.3f}, min {self.min_ms:.3f}, max {self.max_ms:.3f}; "
                f"throughput {self.throughput:.2f} inf/s ({self.count} inferences in {self.wall_s:.3f} s)")


def latency_stats(seconds: Sequence[float], wall_s: float | None = None) -> LatencyStats:
    """Statistics of inference times given in seconds; ``wall_s`` (default: their sum) gives the throughput."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        return LatencyStats(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    wall = float(ms.sum() / 1e3) if wall_s is None else float(wall_s)
    p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99]))
    return LatencyStats(int(ms.size), float(ms.mean()), float(ms.min()), float(ms.max()), p50, p95, p99,
                        ms.size / wall if wall > 0 else float("inf"), wall)
