"""Reading a profile: per-node statistics, QNN-shaped text summary, CSV and Chrome trace."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openqnn.profiling.log import ProfileLog, write_csv_table
from openqnn.profiling.stats import LatencyStats, latency_stats
from openqnn.serialization.netjson import atomic_write

__all__ = ["NodeStats", "chrome_trace", "node_stats", "summary_text", "write_chrome_trace", "write_csv"]


@dataclass(frozen=True)
class NodeStats:
    """One node over every inference of a profile (times in microseconds)."""

    node: str
    op_type: str
    ran_on: str
    count: int
    avg_us: float
    min_us: float
    max_us: float
    total_us: float
    share: float  # of all node time
    macs: int
    weight_bytes: int
    vtcm_bytes: int
    reason: str | None


def node_stats(log: ProfileLog) -> list[NodeStats]:
    """Per-node statistics, slowest (by average) first."""
    times: dict[str, list[float]] = defaultdict(list)
    for x in log.executions:
        times[x.node].append(x.us)
    total = sum(sum(v) for v in times.values()) or 1.0
    out = []
    for name, us in times.items():
        info = log.nodes.get(name)
        out.append(NodeStats(name, info.op_type if info else "?", info.ran_on if info else log.backend, len(us),
                             sum(us) / len(us), min(us), max(us), sum(us), sum(us) / total,
                             info.macs if info else 0, info.weight_bytes if info else 0,
                             info.vtcm_bytes if info else 0, info.reason if info else None))
    return sorted(out, key=lambda s: -s.avg_us)


def execute_stats(log: ProfileLog) -> LatencyStats:
    """Latency statistics of the profile's inferences (throughput over their wall span)."""
    infs = log.inferences
    if not infs:
        return latency_stats([])
    span = (max(i.start_us + i.us for i in infs) - min(i.start_us for i in infs)) / 1e6
    return latency_stats([i.us / 1e6 for i in infs], span)


def summary_text(log: ProfileLog, source: str = "") -> str:
    """The profile as QNN's qnn-profile-viewer prints it: init, finalize (prepare), execute and de-init
    statistics, then a per-node table sorted by time."""
    lines = []
    if source:
        lines.append(f"Input Log File Location: {source}")
    lines += [f"Log File Created: {log.created}", f"Backend: {log.backend}" + (f" ({log.arch})" if log.arch else "")
              + f"   Profiling level: {log.level}   openqnn {log.openqnn}", ""]
    for title, name in (("Init Stats", "init"), ("Load Stats", "load"), ("Finalize Stats", "prepare")):
        e = log.event(name)
        if e is not None:
            lines += [f"{title}:", "-" * (len(title) + 1), f"    NetRun: {e.us:.0f} us", ""]
    st = execute_stats(log)
    lines += ["Execute Stats (Average / Min / Max):", "------------------------------------",
              f"    NetRun: {st.avg_ms * 1e3:.0f} us / {st.min_ms * 1e3:.0f} us / {st.max_ms * 1e3:.0f} us "
              f"({st.count} inferences)",
              f"    Latency percentiles: p50 {st.p50_ms * 1e3:.0f} us, p95 {st.p95_ms * 1e3:.0f} us, "
              f"p99 {st.p99_ms * 1e3:.0f} us",
              f"    Inferences per second: {st.throughput:.2f}", ""]
    e = log.event("deinit")
    if e is not None:
        lines += ["De-Init Stats:", "--------------", f"    NetRun: {e.us:.0f} us", ""]
    lines += ["Memory:", "-------", f"    Peak RSS: {log.peak_rss_bytes / 2**20:.1f} MiB",
              f"    Planned arena (peak live activations): {log.planned_arena_bytes / 2**10:.1f} KiB", ""]
    stats = node_stats(log)
    if stats:
        lines += ["Per-node Execute Stats (Average, sorted by time):", "-" * 49]
        width = max(len(s.node) for s in stats)
        lines.append(f"    {'node':<{width}}  {'op type':<18} {'on':<5} {'avg us':>10} {'min us':>10} "
                     f"{'max us':>10} {'share':>6} {'MACs':>12}")
        for s in stats:
            lines.append(f"    {s.node:<{width}}  {s.op_type:<18} {s.ran_on:<5} {s.avg_us:>10.1f} {s.min_us:>10.1f} "
                         f"{s.max_us:>10.1f} {100 * s.share:>5.1f}% {s.macs:>12,}")
    elif log.level == "basic":
        lines.append("(basic profile: no per-node times; rerun with --profiling_level detailed)")
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("node", "op_type", "ran_on", "count", "avg_us", "min_us", "max_us", "total_us", "share", "macs",
              "weight_bytes", "vtcm_bytes", "fallback_reason")


def write_csv(log: ProfileLog, path: str | os.PathLike[str]) -> Path:
    """Per-node statistics as CSV (one row per node, slowest first)."""
    return write_csv_table(path, CSV_FIELDS, (
        [s.node, s.op_type, s.ran_on, s.count, f"{s.avg_us:.3f}", f"{s.min_us:.3f}", f"{s.max_us:.3f}",
         f"{s.total_us:.3f}", f"{s.share:.5f}", s.macs, s.weight_bytes, s.vtcm_bytes, s.reason or ""]
        for s in node_stats(log)))


def chrome_trace(log: ProfileLog) -> dict[str, Any]:
    """The profile in the Trace Event Format (chrome://tracing, Perfetto): phases and inferences on one track,
    one complete ("X") event per node execution on the track of the backend it ran on."""
    tracks = sorted({i.ran_on for i in log.nodes.values()} | {log.backend})
    tid = {name: k + 2 for k, name in enumerate(tracks)}
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": f"openqnn {log.backend}"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "NetRun"}},
        *({"ph": "M", "name": "thread_name", "pid": 1, "tid": t, "args": {"name": f"nodes on {name}"}}
          for name, t in tid.items()),
    ]
    for e in log.events:
        events.append({"ph": "X", "cat": "phase", "name": e.name, "pid": 1, "tid": 1, "ts": e.start_us, "dur": e.us})
    for i in log.inferences:
        events.append({"ph": "X", "cat": "inference", "name": f"inference {i.index}", "pid": 1, "tid": 1,
                       "ts": i.start_us, "dur": i.us, "args": {"rss_bytes": i.rss_bytes}})
        events.append({"ph": "C", "name": "RSS (MiB)", "pid": 1, "ts": i.start_us + i.us,
                       "args": {"rss": round(i.rss_bytes / 2**20, 2)}})
    for x in log.executions:
        info = log.nodes.get(x.node)
        on = info.ran_on if info else log.backend
        args: dict[str, Any] = {"inference": x.inference, "in_bytes": x.in_bytes, "out_bytes": x.out_bytes,
                                "live_bytes": x.live_bytes}
        if info is not None:
            args.update(op_type=info.op_type, macs=info.macs, vtcm_bytes=info.vtcm_bytes)
            if info.reason:
                args["fallback_reason"] = info.reason
        events.append({"ph": "X", "cat": "node", "name": x.node, "pid": 1, "tid": tid.get(on, 2), "ts": x.start_us,
                       "dur": x.us, "args": args})
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"backend": log.backend, "arch": log.arch, "openqnn": log.openqnn, "level": log.level}}


def write_chrome_trace(log: ProfileLog, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    with atomic_write(p) as f:
        json.dump(chrome_trace(log), f)
    return p
