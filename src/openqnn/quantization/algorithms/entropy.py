"""The ``entropy`` range search: KL-divergence calibration (TensorRT-style), described in
:mod:`openqnn.quantization.algorithms.ranges`.
"""

from __future__ import annotations

import math

import numpy as np

from openqnn.quantization.algorithms.histograms import _Hists
from openqnn.quantization.calibration.observers import rebin_histogram

_KL_EPS = 1e-3  # Q's smoothing in empty groups, relative to the smallest non-zero count


def _xlogx(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


class _KL:
    """KL(P || Q) of windows [s, e) of one histogram h, TensorRT-style, with n quantized levels."""

    def __init__(self, h: np.ndarray, n: int) -> None:
        self.h = h
        self.n = n
        self.total = float(h.sum())
        self.shift = n.bit_length() - 1
        if 1 << self.shift != n:
            raise ValueError(f"the number of levels must be a power of two, got {n}")
        self.cum = np.concatenate(([0.0], np.cumsum(h)))
        # cumulative counts and cumulative non-zero-bin counts side by side: one gather for both
        self.cum2 = np.stack([self.cum, np.concatenate(([0.0], np.cumsum(h > 0)))], axis=1)
        self.cum_hlogh = np.concatenate(([0.0], np.cumsum(_xlogx(h))))
        positive = h[h > 0]
        self.log_eps = math.log(_KL_EPS * (float(positive.min()) if positive.size else 1.0))

    def __call__(self, s: np.ndarray, e: np.ndarray) -> np.ndarray:
        out = np.empty(s.shape[0])
        chunk = max(1, (1 << 21) // self.n)
        for i in range(0, s.shape[0], chunk):
            out[i : i + chunk] = self._kl(s[i : i + chunk], e[i : i + chunk])
        return out

    def _kl(self, s: np.ndarray, e: np.ndarray) -> np.ndarray:
        h, n, cum = self.h, self.n, self.cum
        # Group g of window [s, e) (length L >= n) holds bins [s + ceil(g*L/n), s + ceil((g+1)*L/n)).
        g = np.arange(n + 1, dtype=np.int64)[None, :]
        bounds = s[:, None] + ((g * (e - s)[:, None] + (n - 1)) >> self.shift)
        both = np.diff(np.take(self.cum2, bounds, axis=0), axis=1)  # np.take: much faster than []
        m = both[..., 0]  # Q's mass per group: the window's own counts
        nz = both[..., 1]  # P's non-zero bins per group
        low_out, high_out = cum[s], self.total - cum[e]
        mp = m.copy()  # P's mass per group: outliers folded into the end bins
        mp[:, 0] += low_out
        mp[:, -1] += high_out
        nz[:, 0] += (h[s] == 0) & (low_out > 0)
        nz[:, -1] += (h[e - 1] == 0) & (high_out > 0)
        pos = mp > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            tq = cum[e] - cum[s]
            # sum_j P_j log Q_j, Q_j = m_g / nz_g on P's non-zero bins of group g. Where a group
            # got P's folded outliers but no mass of its own, Q is smoothed to a sliver of the
            # smallest count (as MXNet/TVM smooth) instead of making the KL infinite.
            log_q = np.log(np.where(pos, m, 1.0) / np.where(pos, nz, 1.0))
            log_q = np.where(pos & (m <= 0), self.log_eps, log_q)
            p_log_q = np.einsum("ij,ij->i", mp, log_q)
            p_log_p = (
                self.cum_hlogh[e - 1]
                - self.cum_hlogh[s + 1]
                + _xlogx(h[s] + low_out)
                + _xlogx(h[e - 1] + high_out)
            )
            kl = (p_log_p - p_log_q) / self.total - np.log(self.total) + np.log(tq)
        return np.where(np.isfinite(kl), kl, np.inf)


def _entropy_one(
    counts: np.ndarray, lo: float, width: float, vmin: float, vmax: float, bitwidth: int, symmetric: bool
) -> tuple[float, float]:
    b = counts.shape[0]
    support = (vmin, vmax)
    if symmetric:
        amax = max(-vmin, vmax, 0.0)
        n = 1 << (bitwidth - 1)
        if amax == 0.0 or n >= b:
            return -amax, amax
        w = amax / b
        r = rebin_histogram(counts, lo, width, -amax, w, 2 * b, support=support)
        folded = r[b:] + r[:b][::-1]
        e = np.arange(n, b + 1, dtype=np.int64)
        kl = _KL(folded, n)(np.zeros_like(e), e)
        t = float(e[int(np.argmin(kl))]) * w
        return -t, t

    mn, mx = min(vmin, 0.0), max(vmax, 0.0)
    n = 1 << bitwidth
    if mx - mn <= 0.0 or n >= b:
        return mn, mx
    w = (mx - mn) / b
    hist = rebin_histogram(counts, lo, width, mn, w, b, support=support)
    kl_of = _KL(hist, n)
    z = -mn / w
    zs, ze = int(np.clip(math.floor(z), 0, b)), int(np.clip(math.ceil(z), 0, b))

    def evaluate(s_grid: np.ndarray, e_grid: np.ndarray) -> tuple[float, int, int]:
        s_c, e_c = (a.ravel() for a in np.meshgrid(s_grid, e_grid, indexing="ij"))
        ok = (s_c >= 0) & (s_c <= zs) & (e_c >= ze) & (e_c <= b) & (e_c - s_c >= n)
        if not ok.any():
            return math.inf, 0, b
        s_c, e_c = s_c[ok], e_c[ok]
        kl = kl_of(s_c, e_c)
        i = int(np.argmin(kl))
        return float(kl[i]), int(s_c[i]), int(e_c[i])

    # Coarse grid of both ends (min-max, (0, b), included), then single-bin scans of each end with
    # the other fixed over two coarse steps either side, then a single-bin 2-D grid around the best.
    s_grid = np.unique(np.round(np.linspace(0, zs, 33)).astype(np.int64))
    e_grid = np.unique(np.round(np.linspace(ze, b, 65)).astype(np.int64))
    best, s_best, e_best = evaluate(s_grid, e_grid)
    ds, de = 2 * max(1, math.ceil(zs / 32)), 2 * max(1, math.ceil((b - ze) / 64))
    cost, _s, e_new = evaluate(np.array([s_best]), np.arange(e_best - de, e_best + de + 1, dtype=np.int64))
    if cost < best:
        best, e_best = cost, e_new
    cost, s_new, _e = evaluate(np.arange(s_best - ds, s_best + ds + 1, dtype=np.int64), np.array([e_best]))
    if cost < best:
        best, s_best = cost, s_new
    offsets = np.arange(-4, 5, dtype=np.int64)
    cost, s_new, e_new = evaluate(s_best + offsets, e_best + offsets)
    if cost < best:
        best, s_best, e_best = cost, s_new, e_new
    return min(mn + s_best * w, 0.0), max(min(mn + e_best * w, mx), 0.0)


def _entropy(h: _Hists, bitwidth: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    out = [
        _entropy_one(h.counts[c], h.lo[c], h.width[c], h.vmin[c], h.vmax[c], bitwidth, symmetric)
        for c in range(h.counts.shape[0])
    ]
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])
