"""The ``mse`` / ``sqnr`` / ``enhanced`` range search: the expected quantize-dequantize noise of
candidate grids under a histogram (prefix sums), minimized over (lo, hi) pairs (t alone when
symmetric). The methods are described in :mod:`openqnn.quantization.algorithms.ranges`.
"""

from __future__ import annotations

import numpy as np

from openqnn.quantization.algorithms.histograms import _absmax, _Hists, _with_zero
from openqnn.quantization.encodings.math import MIN_RANGE

# Search sizes (see _search_noise).
_COARSE_ASYM = 24  # per end: 24 x 24 coarse (lo, hi) grid
_COARSE_SYM = 160
# symmetric: also a dense linear grid over [_DENSE_FROM, 1] x absmax, where the optimum of a few-level grid
# (4-bit weights) lies; its error is a ragged function of t with many local minima, which the geometric
# grid alone (about 25 points there) can miss
_DENSE_SYM = 141
_DENSE_FROM = 0.3
_REFINE_POINTS = 9
_REFINE_ROUNDS = 5
_CELL_BINS = 4  # a step spanning at least this many bins gets the exact per-centre rounding noise


class _NoiseModel:
    """Expected quantize-dequantize noise of grids (first point A, last point Bq, step s, ``steps``
    steps) under C histograms, values taken at their bin centres.

    Centres outside [A, Bq] cost gamma * (distance to the nearer end)^2. Centres inside cost the
    rounding noise: s^2 / 12 each where a step spans fewer than _CELL_BINS bins; where it spans
    more, the exact squared distance of each centre to its grid point plus w^2 / 12 for the spread
    within the bin (s^2 / 12 would overstate the noise of a bulk narrower than a few steps, e.g.
    min-max stretched by outliers). Everything comes from prefix sums of counts, counts*c and
    counts*c^2: a candidate costs O(1) (O(2^bw) for the cell term), not O(bins). Centres are taken
    relative to each channel's mid-range to keep the sums' cancellation harmless."""

    def __init__(self, h: _Hists, gamma: float, steps: int) -> None:
        b = h.bins
        self.gamma = gamma
        self.bins = b
        self.steps = steps
        self.ref = (0.5 * (h.vmin + h.vmax))[:, None]
        self.c0 = (h.lo + 0.5 * h.width)[:, None]
        self.w = h.width[:, None]
        c_rel = (self.c0 - self.ref) + self.w * np.arange(b, dtype=np.float64)
        zero = np.zeros((h.counts.shape[0], 1))
        self.p0 = np.concatenate([zero, np.cumsum(h.counts, axis=1)], axis=1)
        self.p1 = np.concatenate([zero, np.cumsum(h.counts * c_rel, axis=1)], axis=1)
        self.p2 = np.concatenate([zero, np.cumsum(h.counts * c_rel * c_rel, axis=1)], axis=1)
        # (C * (B + 1), 3): all three prefix sums of every channel, for one flat gather
        self.flat = np.stack([self.p0, self.p1, self.p2], axis=2).reshape(-1, 3)
        self.flat01 = np.ascontiguousarray(self.flat[:, :2])

    def cost(self, a: np.ndarray, bq: np.ndarray, s: np.ndarray) -> np.ndarray:
        b = self.bins
        with np.errstate(invalid="ignore", over="ignore"):
            k_lo = np.clip(np.ceil((a - self.c0) / self.w), 0, b).astype(np.int64)
            k_hi = np.clip(np.floor((bq - self.c0) / self.w) + 1, 0, b).astype(np.int64)
        k_hi = np.maximum(k_hi, k_lo)

        def at(p: np.ndarray, k: np.ndarray) -> np.ndarray:
            return np.take_along_axis(p, k, axis=1)

        ar, br = a - self.ref, bq - self.ref
        n_lo, n_hi = at(self.p0, k_lo), at(self.p0, k_hi)
        low = at(self.p2, k_lo) - 2 * ar * at(self.p1, k_lo) + ar * ar * n_lo
        top0, top1, top2 = self.p0[:, -1:] - n_hi, self.p1[:, -1:], self.p2[:, -1:]
        high = (top2 - at(self.p2, k_hi)) - 2 * br * (top1 - at(self.p1, k_hi)) + br * br * top0
        clip = np.maximum(low, 0.0) + np.maximum(high, 0.0)
        rounding = (n_hi - n_lo) * (s * s / 12.0)
        cells = np.broadcast_to(s >= _CELL_BINS * self.w, s.shape)
        if cells.any():
            ch = np.broadcast_to(np.arange(s.shape[0])[:, None], s.shape)[cells]
            rounding[cells] = self._cell_rounding(a[cells], s[cells], ch, k_lo[cells], k_hi[cells])
        return self.gamma * clip + rounding

    def _cell_rounding(
        self, a: np.ndarray, s: np.ndarray, ch: np.ndarray, k_lo: np.ndarray, k_hi: np.ndarray
    ) -> np.ndarray:
        """Sum over in-range centres of (c - nearest grid point)^2 + w^2/12, for n candidates.

        With cell j = the centres nearest to g_j = a + j*s, bounded by bin indices beta_j (beta_0 =
        k_lo, beta_m = k_hi), summation by parts turns sum_j sum_{i in cell j} n_i (c_i - g_j)^2
        into P2 and the ends plus sum over inner boundaries of s*P1[beta_j] and
        s*(2 g_j - s)*P0[beta_j]: two gathers per boundary."""
        m = self.steps + 1  # grid points
        stride = self.bins + 1
        out = np.empty(a.shape[0])
        chunk = max(1, (1 << 20) // m)
        j = np.arange(1, m, dtype=np.float64)[None, :]
        for i in range(0, a.shape[0], chunk):
            sl = slice(i, i + chunk)
            c = ch[sl]
            c0, w, ref = self.c0[c, 0][:, None], self.w[c, 0][:, None], self.ref[c, 0][:, None]
            a_, s_, lo_, hi_ = a[sl, None], s[sl, None], k_lo[sl], k_hi[sl]
            with np.errstate(invalid="ignore", over="ignore"):
                inner = np.ceil((a_ + (j - 0.5) * s_ - c0) / w)
            inner = np.clip(inner, lo_[:, None], hi_[:, None]).astype(np.int64) + (c * stride)[:, None]
            p = np.take(self.flat01, inner, axis=0)  # (n, m - 1, 2): P0, P1 at inner boundaries
            g = (a_ - ref) + s_ * j  # g_j relative to ref, j = 1 .. m - 1
            inner_sum = s_[:, 0] * (p[..., 1].sum(axis=1) * 2 - ((2 * g - s_) * p[..., 0]).sum(axis=1))
            g_first, g_last = a[sl] - ref[:, 0], a[sl] - ref[:, 0] + s[sl] * (m - 1)
            e_lo, e_hi = self.flat[lo_ + c * stride], self.flat[hi_ + c * stride]
            total = (
                (e_hi[:, 2] - e_lo[:, 2])
                - 2 * (g_last * e_hi[:, 1] - g_first * e_lo[:, 1])
                + (g_last**2 * e_hi[:, 0] - g_first**2 * e_lo[:, 0])
                + inner_sum
            )
            out[sl] = np.maximum(total, 0.0) + (e_hi[:, 0] - e_lo[:, 0]) * (w[:, 0] ** 2 / 12.0)
        return out


def _asym_grid(a: np.ndarray, b: np.ndarray, bitwidth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid ``encodings.math.asymmetric`` builds for [a, b]: (first point, last point, step)."""
    steps = float((1 << bitwidth) - 1)
    lo = np.minimum(a, 0.0)
    hi = np.maximum(np.maximum(b, 0.0), lo + MIN_RANGE)
    s = (hi - lo) / steps
    o = np.clip(np.round(lo / s), -steps, 0.0)
    return o * s, (o + steps) * s, s


def _sym_grid(t: np.ndarray, bitwidth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid ``encodings.math.symmetric`` builds for absmax t: [-(half+1)*s, half*s]."""
    half = float((1 << (bitwidth - 1)) - 1)
    s = np.maximum(t, MIN_RANGE / 2) / half
    return -(half + 1) * s, half * s, s


def _geom_grid(fmin: np.ndarray, k: int) -> np.ndarray:
    """(C, k) factors from 1 down to fmin[c], geometrically spaced: widest first, so that ties
    (e.g. ranges all under MIN_RANGE) go to the widest candidate."""
    t = np.linspace(0.0, 1.0, k)
    return np.exp(np.log(fmin)[:, None] * t[None, :])


def _neighbours(grid: np.ndarray, i: np.ndarray, points: int) -> np.ndarray:
    """(C, points) linear grid from grid[c, i-1] to grid[c, i+1] (clamped at the ends)."""
    rows = np.arange(grid.shape[0])
    lo = grid[rows, np.maximum(i - 1, 0)]
    hi = grid[rows, np.minimum(i + 1, grid.shape[1] - 1)]
    t = np.linspace(0.0, 1.0, points)
    return lo[:, None] + (hi - lo)[:, None] * t[None, :]


def _first_min(cost: np.ndarray) -> np.ndarray:
    """Per row, the first index whose cost is within rounding (1e-9 relative) of the row's minimum,
    so that ties broken only by floating-point noise go to the first (widest) candidate."""
    lowest = cost.min(axis=1, keepdims=True)
    return np.argmax(cost <= lowest + 1e-9 * np.abs(lowest), axis=1)


def _search_noise(h: _Hists, bitwidth: int, symmetric: bool, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    model = _NoiseModel(h, gamma, (1 << bitwidth) - 1)
    rows = np.arange(h.counts.shape[0])
    if symmetric:
        amax = _absmax(h.vmin, h.vmax)
        fmin = np.clip(h.width / np.where(amax > 0, amax, 1.0), 1e-6, 1.0)
        dense = np.broadcast_to(np.linspace(1.0, _DENSE_FROM, _DENSE_SYM), (rows.size, _DENSE_SYM))
        f = -np.sort(-np.concatenate([_geom_grid(fmin, _COARSE_SYM), dense], axis=1), axis=1)  # widest first
        best_cost = np.full(rows.shape, np.inf)
        best_t = amax.copy()
        i = np.zeros(rows.shape, dtype=np.int64)
        for rnd in range(_REFINE_ROUNDS + 1):
            if rnd:
                f = _neighbours(f, i, _REFINE_POINTS)
            t = amax[:, None] * f
            cost = model.cost(*_sym_grid(t, bitwidth))
            i = _first_min(cost)
            better = cost[rows, i] < best_cost * (1 - 1e-9)
            best_cost = np.where(better, cost[rows, i], best_cost)
            best_t = np.where(better, t[rows, i], best_t)
        return -best_t, best_t

    mn, mx = _with_zero(h.vmin, h.vmax)
    u_floor = np.clip(h.width / np.where(mn < 0, -mn, np.inf), 1e-6, 1.0)
    v_floor = np.clip(h.width / np.where(mx > 0, mx, np.inf), 1e-6, 1.0)
    ku = _COARSE_ASYM if np.any(mn < 0) else 1
    kv = _COARSE_ASYM if np.any(mx > 0) else 1
    u, v = _geom_grid(u_floor, ku), _geom_grid(v_floor, kv)
    best_cost = np.full(rows.shape, np.inf)
    best_a, best_b = mn.copy(), mx.copy()
    iu = iv = np.zeros(rows.shape, dtype=np.int64)
    for rnd in range(_REFINE_ROUNDS + 1):
        if rnd:
            u = _neighbours(u, iu, _REFINE_POINTS) if ku > 1 else u
            v = _neighbours(v, iv, _REFINE_POINTS) if kv > 1 else v
        nu, nv = u.shape[1], v.shape[1]
        a = (mn[:, None] * u)[:, :, None] * np.ones((1, 1, nv))
        b = (mx[:, None] * v)[:, None, :] * np.ones((1, nu, 1))
        a, b = a.reshape(-1, nu * nv), b.reshape(-1, nu * nv)
        cost = model.cost(*_asym_grid(a, b, bitwidth))
        i = _first_min(cost)
        iu, iv = i // nv, i % nv
        better = cost[rows, i] < best_cost * (1 - 1e-9)
        best_cost = np.where(better, cost[rows, i], best_cost)
        best_a = np.where(better, a[rows, i], best_a)
        best_b = np.where(better, b[rows, i], best_b)
    return best_a, best_b
