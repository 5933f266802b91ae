"""Histograms batched over channels (the input of the histogram range-setting methods), and the
small range helpers the methods share. See :mod:`openqnn.quantization.algorithms.ranges`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openqnn.quantization.calibration.observers import HistogramObserver


@dataclass
class _Hists:
    """C histograms of B bins: bins of channel c are lo[c] + width[c] * [i, i + 1)."""

    lo: np.ndarray  # (C,)
    width: np.ndarray  # (C,)
    counts: np.ndarray  # (C, B)
    vmin: np.ndarray  # (C,) exact min (0 for an empty channel)
    vmax: np.ndarray  # (C,)

    @property
    def bins(self) -> int:
        return int(self.counts.shape[1])


def _hists_from_observers(observers: Sequence[HistogramObserver]) -> _Hists:
    if not observers:
        raise ValueError("no histogram observers given")
    bins = {o.bins for o in observers}
    if len(bins) != 1:
        raise ValueError(f"per-channel histogram observers must share a bin count, got {sorted(bins)}")
    (b,) = bins
    lo, width, vmin, vmax, counts = [], [], [], [], []
    for o in observers:
        if o.is_empty or o.lo is None or o.width is None:
            lo.append(0.0)
            width.append(1.0 / b)
            vmin.append(0.0)
            vmax.append(0.0)
            counts.append(np.zeros(b))
        else:
            lo.append(o.lo)
            width.append(o.width)
            vmin.append(o.min)
            vmax.append(o.max)
            counts.append(o.counts)
    return _Hists(np.array(lo), np.array(width), np.stack(counts), np.array(vmin), np.array(vmax))


def _hists_from_rows(x: np.ndarray, bins: int) -> _Hists:
    """One histogram per row of x (C, N), over each row's own finite [min, max]."""
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[0]
    fin = np.isfinite(x)
    vmin = np.min(x, axis=1, where=fin, initial=np.inf)
    vmax = np.max(x, axis=1, where=fin, initial=-np.inf)
    empty = ~np.isfinite(vmin)
    vmin = np.where(empty, 0.0, vmin)
    vmax = np.where(empty, 0.0, vmax)
    span = vmax - vmin
    degenerate = ~(span > 0)
    span = np.where(degenerate, np.maximum(np.abs(vmin) * 1e-6, 1e-12), span)
    lo = np.where(degenerate, vmin - span / 2, vmin)
    width = span / bins
    with np.errstate(invalid="ignore"):
        idx = np.floor((x - lo[:, None]) / width[:, None])
    idx = np.clip(np.where(fin, idx, 0), 0, bins - 1).astype(np.int64)
    flat = (idx + bins * np.arange(c, dtype=np.int64)[:, None])[fin]
    counts = np.bincount(flat, minlength=c * bins).astype(np.float64).reshape(c, bins)
    return _Hists(lo, width, counts, vmin, vmax)


def _with_zero(vmin: np.ndarray, vmax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.minimum(vmin, 0.0), np.maximum(vmax, 0.0)


def _absmax(vmin: np.ndarray, vmax: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(-vmin, vmax), 0.0)
