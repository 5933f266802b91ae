"""Calibration observers: running statistics of tensors, mergeable across processes.

An observer is fed arrays with :meth:`update`, folded into another with :meth:`merge` (so that
calibration can be split over processes and the partial results combined), and crosses process
boundaries as plain JSON through :meth:`to_dict` / :meth:`from_dict` (lists, floats, ints, None;
no pickle). Non-finite values (nan, +-inf) are ignored by every observer.

- :class:`MinMaxObserver` keeps the running min and max, per tensor or per channel along ``axis``.
  Merging is exact: an observer merged from two observers fed two halves of the data equals one
  fed all of it.
- :class:`HistogramObserver` keeps a histogram of ``bins`` equal-width bins plus the exact min, max
  and count. The histogram's range starts at the first batch's [min, max] and grows when data falls
  outside it. Growth is by an *integer* factor of the bin width with the new edges on the old
  lattice, so every old bin falls entirely into one new bin and re-binning on growth moves counts
  without spreading them. Merging two histograms with different lattices expands the coarser one to
  cover the other's data and redistributes the other's counts proportionally to overlap (mass
  assumed uniform within a bin and confined to that observer's exact [min, max]): the merged
  histogram equals the single-observer one up to that re-binning, while count, min and max are
  exact and the total mass is conserved.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["HistogramObserver", "MinMaxObserver", "observer_from_dict", "rebin_histogram"]


def _finite(x: np.ndarray) -> np.ndarray:
    """The finite values of x as a flat float64 array."""
    x = np.asarray(x, dtype=np.float64).ravel()
    fin = np.isfinite(x)
    return x if fin.all() else x[fin]


def _json_floats(a: np.ndarray) -> list[float | None]:
    """Floats for JSON, with non-finite values (an empty channel's +-inf) as None."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(a, dtype=np.float64).ravel()]


def _from_json_floats(values: list[float | None], missing: float) -> np.ndarray:
    return np.array([missing if v is None else float(v) for v in values], dtype=np.float64)


class MinMaxObserver:
    """Running min/max of the finite values seen, per tensor (``axis=None``) or per channel.

    With ``axis`` set, each update reduces over every axis but ``axis`` (negative axes count from
    the end of each array fed), and every array fed must have the same number of channels.
    ``min``/``max`` are floats per tensor, arrays of shape (channels,) per channel; a channel that
    saw no finite value holds +inf/-inf.
    """

    def __init__(self, axis: int | None = None) -> None:
        self.axis = axis
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None
        self.count = 0  # finite values seen (all channels together)

    # -- state ---------------------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        return self._min is None or not np.any(np.isfinite(self._min))

    @property
    def min(self) -> Any:
        if self._min is None:
            raise ValueError("MinMaxObserver has seen no data")
        return float(self._min) if self.axis is None else self._min.copy()

    @property
    def max(self) -> Any:
        if self._max is None:
            raise ValueError("MinMaxObserver has seen no data")
        return float(self._max) if self.axis is None else self._max.copy()

    @property
    def num_channels(self) -> int | None:
        return None if self.axis is None or self._min is None else int(self._min.shape[0])

    # -- feeding -------------------------------------------------------------------------------
    def update(self, array: np.ndarray) -> None:
        x = np.asarray(array, dtype=np.float64)
        if self.axis is None:
            x = _finite(x)
            if x.size == 0:
                return
            lo, hi = np.array(x.min()), np.array(x.max())
            n = x.size
        else:
            if x.ndim == 0:
                raise ValueError(f"MinMaxObserver(axis={self.axis}) cannot take a scalar")
            x = np.moveaxis(x, self.axis, 0).reshape(x.shape[self.axis], -1)
            fin = np.isfinite(x)
            lo = np.min(x, axis=1, where=fin, initial=np.inf)
            hi = np.max(x, axis=1, where=fin, initial=-np.inf)
            n = int(fin.sum())
        self._fold(lo, hi, n)

    def merge(self, other: MinMaxObserver) -> None:
        """Fold ``other`` into this observer, in place (exact)."""
        if not isinstance(other, MinMaxObserver):
            raise TypeError(f"cannot merge {type(other).__name__} into MinMaxObserver")
        if other.axis != self.axis:
            raise ValueError(f"cannot merge MinMaxObserver(axis={other.axis}) into axis={self.axis}")
        if other._min is None or other._max is None:
            return
        self._fold(other._min, other._max, other.count)

    def _fold(self, lo: np.ndarray, hi: np.ndarray, n: int) -> None:
        if self._min is None or self._max is None:
            self._min, self._max = np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64)
        else:
            if self._min.shape != np.shape(lo):
                raise ValueError(
                    f"MinMaxObserver(axis={self.axis}): {np.shape(lo)[0]} channels fed after "
                    f"{self._min.shape[0]}"
                )
            self._min = np.minimum(self._min, lo)
            self._max = np.maximum(self._max, hi)
        self.count += int(n)

    # -- serialization ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        if self._min is None or self._max is None:
            return {"kind": "minmax", "axis": self.axis, "min": None, "max": None, "count": 0}
        if self.axis is None:
            return {
                "kind": "minmax",
                "axis": None,
                "min": _json_floats(self._min)[0],
                "max": _json_floats(self._max)[0],
                "count": self.count,
            }
        return {
            "kind": "minmax",
            "axis": self.axis,
            "min": _json_floats(self._min),
            "max": _json_floats(self._max),
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MinMaxObserver:
        if d.get("kind", "minmax") != "minmax":
            raise ValueError(f"not a MinMaxObserver dict: kind {d.get('kind')!r}")
        obs = cls(axis=d.get("axis"))
        obs.count = int(d.get("count", 0))
        if d.get("min") is None and d.get("max") is None:
            return obs
        if obs.axis is None:
            lo, hi = d["min"], d["max"]
            obs._min = np.array(np.inf if lo is None else float(lo))
            obs._max = np.array(-np.inf if hi is None else float(hi))
        else:
            obs._min = _from_json_floats(d["min"], np.inf)
            obs._max = _from_json_floats(d["max"], -np.inf)
        return obs

    def __repr__(self) -> str:
        if self._min is None:
            return f"MinMaxObserver(axis={self.axis}, empty)"
        return f"MinMaxObserver(axis={self.axis}, min={self.min}, max={self.max}, count={self.count})"


def rebin_histogram(
    counts: np.ndarray,
    lo: float,
    width: float,
    new_lo: float,
    new_width: float,
    new_bins: int,
    support: tuple[float, float] | None = None,
) -> np.ndarray:
    """Counts of a histogram (``len(counts)`` bins of ``width`` from ``lo``) redistributed onto
    ``new_bins`` bins of ``new_width`` from ``new_lo``, proportionally to overlap.

    Each bin's mass is taken as uniform over the bin, clipped to ``support`` = (min, max) when
    given (a bin clipped to zero width is a point mass). Mass falling outside the new range is
    folded into the first/last new bin, so the total is conserved."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.shape[0]
    edges = lo + width * np.arange(n + 1, dtype=np.float64)
    if support is not None:
        edges = np.clip(edges, support[0], support[1])
    cum = np.concatenate(([0.0], np.cumsum(counts)))
    total = cum[-1]
    t = new_lo + new_width * np.arange(new_bins + 1, dtype=np.float64)
    # CDF of the piecewise-uniform mass at t; j = last edge <= t, so edges[j+1] > t when j < n.
    j = np.searchsorted(edges, t, side="right") - 1
    jc = np.clip(j, 0, n - 1)
    span = edges[jc + 1] - edges[jc]
    frac = np.clip((t - edges[jc]) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    cdf = np.where(j < 0, 0.0, np.where(j >= n, total, cum[jc] + counts[jc] * frac))
    out = np.diff(cdf)
    out[0] += cdf[0]
    out[-1] += total - cdf[-1]
    return np.maximum(out, 0.0)


class HistogramObserver:
    """Histogram of the finite values seen over ``bins`` equal-width bins, with exact min/max/count.

    ``lo``/``width`` define the bins (``edges = lo + width * arange(bins + 1)``); ``counts`` are
    float64 (whole numbers until a merge redistributes them). Values beyond the edges (only ever by
    rounding) are counted in the first/last bin.
    """

    def __init__(self, bins: int = 2048) -> None:
        if int(bins) < 2:
            raise ValueError(f"HistogramObserver needs at least 2 bins, got {bins}")
        self.bins = int(bins)
        self.lo: float | None = None
        self.width: float | None = None
        self.counts = np.zeros(self.bins, dtype=np.float64)
        self.min = math.inf
        self.max = -math.inf
        self.count = 0

    # -- state ---------------------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        return self.count == 0

    @property
    def hi(self) -> float | None:
        return None if self.lo is None or self.width is None else self.lo + self.width * self.bins

    @property
    def edges(self) -> np.ndarray:
        if self.lo is None or self.width is None:
            raise ValueError("HistogramObserver has seen no data")
        return self.lo + self.width * np.arange(self.bins + 1, dtype=np.float64)

    @property
    def centers(self) -> np.ndarray:
        e = self.edges
        return 0.5 * (e[:-1] + e[1:])

    # -- feeding -------------------------------------------------------------------------------
    def update(self, array: np.ndarray) -> None:
        x = _finite(array)
        if x.size == 0:
            return
        dmin, dmax = float(x.min()), float(x.max())
        if self.lo is None or self.width is None:
            span = dmax - dmin
            if not span > 0:
                # A constant batch: any small bin width will do; later growth is exact anyway.
                span = max(abs(dmin) * 1e-6, 1e-12)
                dmin -= span / 2
            self.lo, self.width = dmin, span / self.bins
        else:
            self._grow(dmin, dmax)
        self._add(x)
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        self.count += int(x.size)

    def _add(self, x: np.ndarray) -> None:
        assert self.lo is not None and self.width is not None
        idx = np.floor((x - self.lo) / self.width)
        idx = np.clip(idx, 0, self.bins - 1).astype(np.int64)
        self.counts += np.bincount(idx, minlength=self.bins)

    def _grow(self, bottom: float, top: float) -> None:
        """Widen the range to cover [bottom, top] by an integer factor k of the bin width, with the
        new lattice's edges on the old one: old bin i lands whole in new bin (m + i) // k."""
        assert self.lo is not None and self.width is not None
        hi = self.lo + self.width * self.bins
        if bottom >= self.lo and top <= hi:
            return
        w = self.width
        m_min = max(0, math.ceil((self.lo - bottom) / w))
        units = m_min + max(self.bins, math.ceil((max(top, hi) - self.lo) / w))
        k = max(1, math.ceil(units / self.bins))
        if k == 1:
            return  # beyond the edges by rounding only: the edge bins take those values
        if units > 1 << 50:
            # Growth by ~2^40 or more (a first batch that was one constant): the old histogram
            # falls into one or two new bins whatever the lattice, so lay a fresh one on the data.
            lo_new = min(bottom, self.min)
            w_new = (max(top, self.max) - lo_new) / self.bins
            self.counts = rebin_histogram(
                self.counts, self.lo, w, lo_new, w_new, self.bins, support=(self.min, self.max)
            )
            self.lo, self.width = lo_new, w_new
            return
        slack = self.bins * k - units
        grew_low, grew_high = bottom < self.lo, top > hi
        m = m_min + (slack if grew_low and not grew_high else slack // 2 if grew_low else 0)
        new_idx = np.minimum((m + np.arange(self.bins, dtype=np.int64)) // k, self.bins - 1)
        self.counts = np.bincount(new_idx, weights=self.counts, minlength=self.bins).astype(np.float64)
        self.lo = self.lo - m * w
        self.width = w * k

    def merge(self, other: HistogramObserver) -> None:
        """Fold ``other`` into this observer, in place (exact count/min/max; the histogram up to
        re-binning of the finer of the two onto the coarser's lattice)."""
        if not isinstance(other, HistogramObserver):
            raise TypeError(f"cannot merge {type(other).__name__} into HistogramObserver")
        if other.bins != self.bins:
            raise ValueError(f"cannot merge a {other.bins}-bin histogram into a {self.bins}-bin one")
        if other.is_empty or other.lo is None or other.width is None:
            return
        if self.is_empty or self.lo is None or self.width is None:
            self._copy_from(other)
            return
        # Keep the coarser lattice (less smearing), grown to cover the finer one's data.
        base, src = (self, other) if self.width >= other.width else (other.copy(), self)
        assert src.lo is not None and src.width is not None
        base._grow(src.min, src.max)
        assert base.lo is not None and base.width is not None
        moved = rebin_histogram(
            src.counts, src.lo, src.width, base.lo, base.width, base.bins, support=(src.min, src.max)
        )
        counts = base.counts + moved
        lo, width = base.lo, base.width
        self.lo, self.width, self.counts = lo, width, counts
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count = self.count + other.count

    def _copy_from(self, other: HistogramObserver) -> None:
        self.lo, self.width = other.lo, other.width
        self.counts = other.counts.copy()
        self.min, self.max, self.count = other.min, other.max, other.count

    def copy(self) -> HistogramObserver:
        out = HistogramObserver(self.bins)
        out._copy_from(self)
        return out

    # -- serialization ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        empty = self.is_empty
        return {
            "kind": "histogram",
            "bins": self.bins,
            "lo": None if empty else self.lo,
            "width": None if empty else self.width,
            "counts": [] if empty else [float(c) for c in self.counts],
            "min": None if empty else self.min,
            "max": None if empty else self.max,
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HistogramObserver:
        if d.get("kind", "histogram") != "histogram":
            raise ValueError(f"not a HistogramObserver dict: kind {d.get('kind')!r}")
        obs = cls(bins=int(d["bins"]))
        if not d.get("count"):
            return obs
        counts = np.asarray(d["counts"], dtype=np.float64)
        if counts.shape != (obs.bins,):
            raise ValueError(f"HistogramObserver dict: {counts.size} counts for {obs.bins} bins")
        obs.lo, obs.width = float(d["lo"]), float(d["width"])
        obs.counts = counts
        obs.min, obs.max, obs.count = float(d["min"]), float(d["max"]), int(d["count"])
        return obs

    def __repr__(self) -> str:
        if self.is_empty:
            return f"HistogramObserver(bins={self.bins}, empty)"
        return (
            f"HistogramObserver(bins={self.bins}, range=[{self.lo:.6g}, {self.hi:.6g}], "
            f"min={self.min:.6g}, max={self.max:.6g}, count={self.count})"
        )


def observer_from_dict(d: dict[str, Any]) -> MinMaxObserver | HistogramObserver:
    """Rebuild an observer from :meth:`to_dict`'s output, whichever kind it is."""
    kind = d.get("kind")
    if kind == "minmax":
        return MinMaxObserver.from_dict(d)
    if kind == "histogram":
        return HistogramObserver.from_dict(d)
    raise ValueError(f"unknown observer kind {kind!r} (expected 'minmax' or 'histogram')")
