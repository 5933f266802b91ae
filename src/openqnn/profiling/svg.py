"""Small inline SVG charts for the HTML report: no plotting library, no network, readable text."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["PALETTE", "bar_chart", "histogram", "line_chart"]

PALETTE = ("#3b6fb6", "#e07b39", "#4f9d69", "#c2453d", "#8b6bb1", "#8c6d46", "#d273b5", "#7f7f7f")
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _fmt(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.1f}M"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}" if a < 10 else f"{v:.1f}"


def bar_chart(labels: Sequence[str], values: Sequence[float], unit: str, colors: Sequence[str] | None = None,
              title: str = "", width: int = 760) -> str:
    """Horizontal bars, one row per label, the value written at each bar's end."""
    n = len(labels)
    label_w = min(260, 12 + 7 * max((len(s) for s in labels), default=4))
    row, top = 22, 28
    height = top + row * n + 10
    vmax = max(values, default=0.0) or 1.0
    plot_w = width - label_w - 90
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}" {_FONT}>',
             f'<text x="4" y="16" font-weight="bold">{escape(title)}</text>']
    for i, (label, v) in enumerate(zip(labels, values)):
        y = top + i * row
        w = max(1.0, plot_w * v / vmax)
        color = colors[i] if colors else PALETTE[0]
        short = label if len(label) <= 36 else label[:35] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end"><title>{escape(label)}</title>'
                     f'{escape(short)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{color}">'
                     f'<title>{escape(label)}: {_fmt(v)} {escape(unit)}</title></rect>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{_fmt(v)} {escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _axes(parts: list[str], x0: int, y0: int, w: int, h: int, ymax: float, ylabel: str, xlabel: str) -> None:
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 - h}" stroke="#444"/>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0 + w}" y2="{y0}" stroke="#444"/>')
    for k in range(5):
        v = ymax * k / 4
        y = y0 - h * k / 4
        parts.append(f'<line x1="{x0 - 4}" y1="{y:.1f}" x2="{x0 + w}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    parts.append(f'<text x="{x0 + w / 2:.0f}" y="{y0 + 34}" text-anchor="middle">{escape(xlabel)}</text>')
    parts.append(f'<text x="14" y="{y0 - h / 2:.0f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {y0 - h / 2:.0f})">{escape(ylabel)}</text>')


def histogram(values: Sequence[float], unit: str, title: str = "", bins: int = 20, width: int = 760) -> str:
    """A histogram of ``values`` with its axis in ``unit``."""
    height, x0, y0 = 260, 60, 210
    w, h = width - x0 - 20, 170
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}" {_FONT}>', f'<text x="4" y="16" font-weight="bold">{escape(title)}</text>']
    if not values:
        parts.append('<text x="60" y="100">no inferences</text></svg>')
        return "".join(parts)
    lo, hi = min(values), max(values)
    span = (hi - lo) or max(abs(hi) * 0.01, 1e-9)
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / span * bins))] += 1
    cmax = max(counts)
    _axes(parts, x0, y0, w, h, cmax, "inferences", f"latency ({unit})")
    bw = w / bins
    for i, c in enumerate(counts):
        bh = h * c / cmax
        parts.append(f'<rect x="{x0 + i * bw + 1:.1f}" y="{y0 - bh:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}" '
                     f'fill="{PALETTE[0]}"><title>{_fmt(lo + i * span / bins)} to {_fmt(lo + (i + 1) * span / bins)} '
                     f'{escape(unit)}: {c}</title></rect>')
    for k in range(5):
        v = lo + span * k / 4
        parts.append(f'<text x="{x0 + w * k / 4:.1f}" y="{y0 + 16}" text-anchor="middle">{_fmt(v)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(series: Sequence[tuple[str, Sequence[float]]], unit: str, xlabel: str, title: str = "",
               width: int = 760) -> str:
    """Lines over a shared x (the index of each value), with a legend."""
    height, x0, y0 = 280, 60, 220
    w, h = width - x0 - 20, 170
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}" {_FONT}>', f'<text x="4" y="16" font-weight="bold">{escape(title)}</text>']
    ymax = max((max(v) for _, v in series if v), default=0.0) or 1.0
    n = max((len(v) for _, v in series), default=1)
    _axes(parts, x0, y0, w, h, ymax, unit, xlabel)
    for k in range(5):
        parts.append(f'<text x="{x0 + w * k / 4:.1f}" y="{y0 + 16}" text-anchor="middle">'
                     f'{round((n - 1) * k / 4)}</text>')
    for j, (name, vals) in enumerate(series):
        color = PALETTE[j % len(PALETTE)]
        pts = " ".join(f"{x0 + (w * i / max(n - 1, 1)):.1f},{y0 - h * v / ymax:.1f}" for i, v in enumerate(vals))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        parts.append(f'<rect x="{x0 + 10 + 220 * j}" y="{height - 18}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{x0 + 28 + 220 * j}" y="{height - 8}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
