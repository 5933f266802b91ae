"""The HTML report of a profile: one self-contained file (inline SVG charts, inline CSS, no script, no
network) with the latency statistics, per-layer times, time by op type and by backend, the latency histogram,
memory over the run and the top bottlenecks with suggestions."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from html import escape
from pathlib import Path

from openqnn.profiling.advice import suggestions
from openqnn.profiling.log import ProfileLog
from openqnn.profiling.svg import PALETTE, bar_chart, histogram, line_chart
from openqnn.profiling.viewer import execute_stats, node_stats
from openqnn.serialization.netjson import atomic_write

__all__ = ["html_report", "write_html_report"]

TOP_LAYERS = 25
_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ccc; }
.meta { color: #555; } .cards { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 14px; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 8px 12px; min-width: 120px; }
.card b { display: block; font-size: 18px; } .card span { color: #555; font-size: 12px; }
table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f3f3f3; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.row { display: flex; flex-wrap: wrap; gap: 16px; } .legend span { margin-right: 14px; }
.kind { font-weight: bold; }
"""


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def html_report(log: ProfileLog, source: str = "", layer_sqnr: Mapping[str, float] | None = None) -> str:
    """The report as one HTML string (see the module docstring)."""
    st = execute_stats(log)
    stats = node_stats(log)
    on_color = {name: PALETTE[k % len(PALETTE)] for k, name in
                enumerate(sorted({s.ran_on for s in stats} | {log.backend}, key=lambda n: n != log.backend))}
    cards = [_card(f"{st.avg_ms:.2f} ms", "average latency"), _card(f"{st.p50_ms:.2f} ms", "p50"),
             _card(f"{st.p95_ms:.2f} ms", "p95"), _card(f"{st.p99_ms:.2f} ms", "p99"),
             _card(f"{st.throughput:.1f}/s", "inferences per second"), _card(str(st.count), "inferences")]
    for name, label in (("init", "init"), ("load", "load"), ("prepare", "prepare / bind"), ("deinit", "de-init")):
        e = log.event(name)
        if e is not None:
            cards.append(_card(f"{e.us / 1e3:.1f} ms", label))
    cards.append(_card(f"{log.peak_rss_bytes / 2**20:.0f} MiB", "peak RSS"))
    if log.planned_arena_bytes:
        cards.append(_card(f"{log.planned_arena_bytes / 2**10:.0f} KiB", "planned arena (peak live activations)"))
    fallbacks = [i for i in log.nodes.values() if i.reason]
    if log.nodes:
        cards.append(_card(f"{len(fallbacks)} / {len(log.nodes)}", "nodes on the cpu fallback"))

    body = [f"<h1>openqnn profile: {escape(log.model or '(model)')}</h1>",
            f'<div class="meta">backend <b>{escape(log.backend)}</b>'
            + (f" ({escape(log.arch)}, VTCM {log.vtcm_bytes / 2**20:.0f} MiB)" if log.arch and log.vtcm_bytes else "")
            + f" · profiling level {escape(log.level)} · openqnn {escape(log.openqnn)} · {escape(log.created)}"
            + (f" · {escape(source)}" if source else "") + "</div>",
            f'<div class="cards">{"".join(cards)}</div>']

    if stats:
        top = stats[:TOP_LAYERS]
        legend = "".join(f'<span style="color:{c}">■ {escape(n)}</span>' for n, c in on_color.items())
        body += [f"<h2>Time per layer (average, slowest {len(top)} of {len(stats)})</h2>",
                 f'<div class="legend">where it ran: {legend}</div>',
                 bar_chart([f"{s.node} ({s.op_type})" for s in top], [s.avg_us for s in top], "us",
                           [on_color.get(s.ran_on, PALETTE[0]) for s in top], "average time per execution")]
        by_op: dict[str, float] = defaultdict(float)
        by_on: dict[str, float] = defaultdict(float)
        for s in stats:
            by_op[s.op_type] += s.avg_us
            by_on[s.ran_on] += s.avg_us
        ops = sorted(by_op.items(), key=lambda kv: -kv[1])
        ons = sorted(by_on.items(), key=lambda kv: -kv[1])
        body += ["<h2>Time by op type and by backend</h2>", '<div class="row">',
                 bar_chart([k for k, _ in ops], [v for _, v in ops], "us", title="time per inference by op type",
                           width=540),
                 bar_chart([k for k, _ in ons], [v for _, v in ons], "us", [on_color[k] for k, _ in ons],
                           title="time per inference by backend", width=420),
                 "</div>"]
    elif log.level == "basic":
        body.append("<p>A basic profile has no per-node times: rerun with <code>--profiling_level detailed</code>.</p>")

    body += ["<h2>Latency</h2>", histogram([i.us / 1e3 for i in log.inferences], "ms",
                                              f"latency of {st.count} inferences")]
    body.append("<h2>Memory over the run</h2>")
    body.append('<div class="row">')
    first = [x for x in log.executions if x.inference == 0]
    if first:
        body.append(line_chart([("live activations (KiB)", [x.live_bytes / 2**10 for x in first])], "KiB",
                               "node (execution order, inference 0)", "activations alive after each node",
                               width=540))
    body.append(line_chart([("resident set (MiB)", [i.rss_bytes / 2**20 for i in log.inferences])], "MiB",
                           "inference", "process RSS after each inference", width=540))
    body.append("</div>")

    advice = suggestions(log, stats, layer_sqnr)
    body.append("<h2>Top bottlenecks and suggestions</h2>")
    if advice:
        rows = "".join(f'<tr><td>{escape(a.node)}</td><td class="kind">{escape(a.kind)}</td>'
                       f'<td class="n">{100 * a.share:.1f}%</td><td>{escape(a.text)}</td></tr>' for a in advice[:15])
        body.append(f"<table><tr><th>node</th><th>kind</th><th>share</th><th>suggestion</th></tr>{rows}</table>")
    else:
        body.append("<p>No bottleneck stands out: no fallback, no layer over the VTCM, no layer over "
                    "a fifth of the time.</p>")

    if stats:
        rows = "".join(
            f"<tr><td>{escape(s.node)}</td><td>{escape(s.op_type)}</td><td>{escape(s.ran_on)}</td>"
            f'<td class="n">{s.avg_us:.1f}</td><td class="n">{s.min_us:.1f}</td><td class="n">{s.max_us:.1f}</td>'
            f'<td class="n">{100 * s.share:.1f}%</td><td class="n">{s.macs:,}</td>'
            f'<td class="n">{s.vtcm_bytes / 2**10:.1f}</td></tr>' for s in stats)
        body += ["<h2>All nodes</h2>",
                 "<table><tr><th>node</th><th>op type</th><th>ran on</th><th>avg us</th><th>min us</th>"
                 "<th>max us</th><th>share</th><th>MACs</th><th>working set KiB</th></tr>" + rows + "</table>"]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>openqnn profile: {escape(log.model)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def write_html_report(log: ProfileLog, path: str | os.PathLike[str], source: str = "",
                      layer_sqnr: Mapping[str, float] | None = None) -> Path:
    p = Path(path)
    with atomic_write(p) as f:
        f.write(html_report(log, source, layer_sqnr))
    return p
