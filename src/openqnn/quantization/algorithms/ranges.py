"""Range setting: from calibration statistics to the (min, max) an encoding is computed from.

Methods are named as QNN's converter flags name them (``--act_quantizer_calibration``,
``--param_quantizer_calibration``, and the legacy ``--act_quantizer`` / ``--param_quantizer``):

``min-max`` / ``tf``
    The observed min and max.
``percentile``
    Two-sided: the (100 - p)-th and p-th percentiles (default p = 99.99) read off the histogram's
    CDF, mass taken as uniform within a bin and confined to the exact observed [min, max].
``mse``
    The clipping range minimizing the expected quantize-dequantize MSE under the histogram, values
    taken at their bin's centre: a value outside the quantization grid costs its squared clipping
    error; a value inside costs the rounding noise scale^2 / 12, except where one step spans 4 or
    more bins, where it costs its exact squared distance to its grid point plus w^2 / 12 for the
    spread within its bin (scale^2 / 12 overstates the noise of a bulk only a few steps wide, e.g.
    min-max stretched by outliers, and would clip for nothing). The grid a candidate is scored
    with is the one :func:`openqnn.quantization.encodings.math.asymmetric` (or ``symmetric``) will
    build from it, zero-point nudge and the symmetric grid's extra negative step included. The
    modelled noise matches the measured fake-quant MSE within a few percent.
``sqnr``
    Like ``mse`` with the clipping noise weighted by gamma = 3.0 relative to the rounding noise
    (AIMET's SQNR analyzer).
``enhanced``
    TF-Enhanced: libpymo's TfEnhanced objective, quantization cost + GAMMA * saturation cost with
    GAMMA = 3.0, which is also ``sqnr``'s: the two give the same range here. The search, shared by
    ``mse``/``sqnr``/``enhanced`` and vectorized over candidates (and channels), is over (lo, hi)
    pairs: a coarse 24 x 24 grid of geometrically spaced shrink factors of each end (down to
    about one histogram bin), then five rounds of 9 x 9 linear refinement between the best point's
    neighbours (t alone when symmetric: 160 coarse factors). Long tails are handled: outliers are
    clipped whenever that lowers the (gamma-weighted) noise, however far out they lie.
``entropy``
    KL-divergence calibration (TensorRT-style): the histogram, re-laid over [min(min, 0),
    max(max, 0)], is windowed to bins [s, e); the out-of-window mass is folded into the end bins to
    form P; Q merges the window's *unfolded* counts into 2^bw groups (2^(bw-1) on |x| when
    symmetric) spread over P's non-zero bins (a group left with P's outliers but no counts of its
    own gets a sliver, as MXNet/TVM smooth, instead of an infinite KL); the window minimizing
    KL(P || Q) wins. Symmetric: every window end is tried. Asymmetric (our generalization): a
    coarse 33 x 65 grid of (s, e), single-bin scans of each end around the best, then a single-bin
    9 x 9 grid. Windows narrower than the number of levels are not considered, so with as many
    levels as bins (bitwidths >= 11 at 2048 bins; >= 12 symmetric) this is min-max.
``adjusted``
    Min-max, widened to at least MIN_RANGE and then *widened* (never shifted) to the smallest
    range whose grid has 0 on a grid point and covers both observed ends: (-k * s, (2^bw-1-k) * s)
    for the integer k and the smallest scale s with k * s >= -min and (2^bw-1-k) * s >= max. Plain
    min-max (``tf``) lets ``asymmetric`` nudge the grid instead, which can clip one end by up to
    half a step. QNN's own "adjusted" quantizer is undocumented; this is our reading of it.
``symmetric``
    [-absmax, absmax] whatever ``symmetric`` says.

With ``symmetric=True`` every method returns (-t, t): min-max/tf/adjusted use absmax, percentile the
larger magnitude of the two percentiles, mse/sqnr/enhanced search t alone, entropy works on |x|.
Every range contains 0. An observer (or channel) that saw nothing but zeros gives (0.0, 0.0), which
``asymmetric``/``symmetric`` widen to MIN_RANGE (``adjusted`` returns that widened range itself).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from openqnn.errors import InvalidConfigError
from openqnn.quantization.calibration.observers import HistogramObserver, MinMaxObserver, rebin_histogram
from openqnn.quantization.encodings.math import MIN_RANGE

__all__ = [
    "HISTOGRAM_METHODS",
    "METHODS",
    "compute_range",
    "compute_ranges_per_channel",
    "normalize_method",
    "range_from_array",
]

METHODS = ("min-max", "tf", "percentile", "mse", "sqnr", "entropy", "enhanced", "adjusted", "symmetric")
HISTOGRAM_METHODS = frozenset({"percentile", "mse", "sqnr", "entropy", "enhanced"})
_ALIASES = {"minmax": "min-max", "tf-enhanced": "enhanced", "kl": "entropy"}
_GAMMA = {"mse": 1.0, "sqnr": 3.0, "enhanced": 3.0}

# Search sizes (see _search_noise / _entropy_one).
_COARSE_ASYM = 24  # per end: 24 x 24 coarse (lo, hi) grid
_COARSE_SYM = 160
_REFINE_POINTS = 9
_REFINE_ROUNDS = 5
_CELL_BINS = 4  # a step spanning at least this many bins gets the exact per-centre rounding noise
_KL_EPS = 1e-3  # Q's smoothing in empty groups, relative to the smallest non-zero count


def normalize_method(method: str) -> str:
    """The canonical name of a range-setting method (case and '_' vs '-' do not matter)."""
    m = str(method).strip().lower().replace("_", "-")
    m = _ALIASES.get(m, m)
    if m not in METHODS:
        raise InvalidConfigError(
            f"unknown range-setting method {method!r}; choose one of {', '.join(METHODS)}"
        )
    return m


def _check_args(bitwidth: int, symmetric: bool, percentile: float) -> None:
    if not 1 <= int(bitwidth) <= 32 or (symmetric and bitwidth < 2):
        raise InvalidConfigError(f"bitwidth {bitwidth} is out of range for range setting")
    if not 50.0 <= float(percentile) <= 100.0:
        raise InvalidConfigError(f"percentile {percentile} must lie in [50, 100]")


# ---------------------------------------------------------------------------------------------
# Histograms, batched over channels
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# min-max, symmetric, adjusted
# ---------------------------------------------------------------------------------------------


def _with_zero(vmin: np.ndarray, vmax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.minimum(vmin, 0.0), np.maximum(vmax, 0.0)


def _absmax(vmin: np.ndarray, vmax: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(-vmin, vmax), 0.0)


def _adjusted(vmin: np.ndarray, vmax: np.ndarray, bitwidth: int) -> tuple[np.ndarray, np.ndarray]:
    mn, mx = _with_zero(vmin, vmax)
    mx = np.maximum(mx, mn + MIN_RANGE)
    steps = float((1 << bitwidth) - 1)
    kstar = steps * (-mn) / (mx - mn)

    def scale_for(k: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            low = np.where(k > 0, -mn / np.maximum(k, 1.0), np.where(mn < 0, np.inf, 0.0))
            high = np.where(k < steps, mx / np.maximum(steps - k, 1.0), np.where(mx > 0, np.inf, 0.0))
        return np.maximum(low, high)

    k1 = np.clip(np.floor(kstar), 0, steps)
    k2 = np.clip(np.ceil(kstar), 0, steps)
    s1, s2 = scale_for(k1), scale_for(k2)
    k = np.where(s1 <= s2, k1, k2)
    s = np.minimum(s1, s2) * (1.0 + 8 * np.finfo(np.float64).eps)  # cover both ends despite rounding
    return -k * s, (steps - k) * s


# ---------------------------------------------------------------------------------------------
# percentile
# ---------------------------------------------------------------------------------------------


def _percentile(h: _Hists, percentile: float) -> tuple[np.ndarray, np.ndarray]:
    b = h.bins
    edges = h.lo[:, None] + h.width[:, None] * np.arange(b + 1, dtype=np.float64)
    edges = np.clip(edges, h.vmin[:, None], h.vmax[:, None])
    cum = np.concatenate([np.zeros((h.counts.shape[0], 1)), np.cumsum(h.counts, axis=1)], axis=1)
    total = cum[:, -1]
    rows = np.arange(h.counts.shape[0])

    def inverse_cdf(q: float) -> np.ndarray:
        target = q * total
        j = np.minimum((cum[:, 1:] < target[:, None]).sum(axis=1), b - 1)
        cnt = h.counts[rows, j]
        frac = np.clip((target - cum[rows, j]) / np.where(cnt > 0, cnt, 1.0), 0.0, 1.0)
        return edges[rows, j] + frac * (edges[rows, j + 1] - edges[rows, j])

    p = float(percentile) / 100.0
    return inverse_cdf(1.0 - p), inverse_cdf(p)


# ---------------------------------------------------------------------------------------------
# mse / sqnr / enhanced: expected quantization noise from the histogram, by prefix sums
# ---------------------------------------------------------------------------------------------


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
        f = _geom_grid(fmin, _COARSE_SYM)
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


# ---------------------------------------------------------------------------------------------
# entropy (KL divergence)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------


def _ranges(
    method: str,
    h: _Hists | None,
    vmin: np.ndarray,
    vmax: np.ndarray,
    bitwidth: int,
    symmetric: bool,
    percentile: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per channel; ``h`` is needed only by HISTOGRAM_METHODS."""
    if method in ("min-max", "tf"):
        if symmetric:
            t = _absmax(vmin, vmax)
            return -t, t
        return _with_zero(vmin, vmax)
    if method == "symmetric":
        t = _absmax(vmin, vmax)
        return -t, t
    if method == "adjusted":
        if symmetric:
            t = np.maximum(_absmax(vmin, vmax), MIN_RANGE / 2)
            return -t, t
        return _adjusted(vmin, vmax, bitwidth)
    if h is None:
        raise ValueError(f"range-setting method {method!r} needs a histogram (use a HistogramObserver)")
    if method == "percentile":
        lo, hi = _percentile(h, percentile)
        if symmetric:
            t = np.maximum(np.abs(lo), np.abs(hi))
            return -t, t
        lo, hi = _with_zero(lo, hi)
    elif method == "entropy":
        lo, hi = _entropy(h, bitwidth, symmetric)
    else:
        lo, hi = _search_noise(h, bitwidth, symmetric, _GAMMA[method])
    lo, hi = _with_zero(lo, hi)
    if symmetric:  # exact symmetry despite rounding
        t = np.maximum(-lo, hi)
        return -t, t
    return lo, hi


def compute_range(
    method: str,
    obs: HistogramObserver | MinMaxObserver,
    bitwidth: int,
    symmetric: bool,
    percentile: float = 99.99,
) -> tuple[float, float]:
    """(min, max) to feed ``encodings.math.asymmetric`` (or ``symmetric`` with max) for one tensor.

    ``obs`` is a HistogramObserver (any method) or a per-tensor MinMaxObserver (min-max, tf,
    adjusted, symmetric). The range always contains 0; with ``symmetric`` it is (-t, t)."""
    m = normalize_method(method)
    _check_args(bitwidth, symmetric, percentile)
    if obs.is_empty:
        raise ValueError(f"cannot set a range from an observer that has seen no data: {obs!r}")
    h: _Hists | None
    if isinstance(obs, HistogramObserver):
        h = _hists_from_observers([obs])
    elif isinstance(obs, MinMaxObserver):
        if obs.axis is not None:
            raise ValueError("per-channel MinMaxObserver: use compute_ranges_per_channel")
        h = None
    else:
        raise TypeError(
            f"compute_range takes a HistogramObserver or MinMaxObserver, not {type(obs).__name__}"
        )
    vmin, vmax = np.array([float(obs.min)]), np.array([float(obs.max)])
    lo, hi = _ranges(m, h, vmin, vmax, int(bitwidth), bool(symmetric), float(percentile))
    return float(lo[0]), float(hi[0])


def compute_ranges_per_channel(
    method: str,
    obs: MinMaxObserver | Sequence[HistogramObserver],
    bitwidth: int,
    symmetric: bool,
    percentile: float = 99.99,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (min, max) arrays: from a MinMaxObserver with an ``axis`` (min-max, tf,
    adjusted, symmetric) or one HistogramObserver per channel (any method). A channel that saw
    nothing gets (0, 0)."""
    m = normalize_method(method)
    _check_args(bitwidth, symmetric, percentile)
    h: _Hists | None
    if isinstance(obs, MinMaxObserver):
        if obs.axis is None:
            raise ValueError("compute_ranges_per_channel needs a MinMaxObserver with an axis")
        if obs.num_channels is None:
            raise ValueError("cannot set ranges from an observer that has seen no data")
        vmin, vmax = np.asarray(obs.min, dtype=np.float64), np.asarray(obs.max, dtype=np.float64)
        empty = ~np.isfinite(vmin)
        vmin, vmax = np.where(empty, 0.0, vmin), np.where(empty, 0.0, vmax)
        h = None
        if m in HISTOGRAM_METHODS:
            raise ValueError(
                f"method {m!r} needs histograms: pass one HistogramObserver per channel, "
                "or use range_from_array on the weights"
            )
    else:
        h = _hists_from_observers(list(obs))
        vmin, vmax = h.vmin, h.vmax
    return _ranges(m, h, vmin, vmax, int(bitwidth), bool(symmetric), float(percentile))


@overload
def range_from_array(
    method: str,
    array: np.ndarray,
    bitwidth: int,
    symmetric: bool,
    axis: None = None,
    percentile: float = 99.99,
    bins: int = 2048,
) -> tuple[float, float]: ...


@overload
def range_from_array(
    method: str,
    array: np.ndarray,
    bitwidth: int,
    symmetric: bool,
    axis: int,
    percentile: float = 99.99,
    bins: int = 2048,
) -> tuple[np.ndarray, np.ndarray]: ...


def range_from_array(
    method: str,
    array: np.ndarray,
    bitwidth: int,
    symmetric: bool,
    axis: int | None = None,
    percentile: float = 99.99,
    bins: int = 2048,
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Range(s) straight from an array (weights): per tensor with ``axis=None`` (floats), else one
    per index along ``axis`` (arrays), histograms of ``bins`` bins built internally where the
    method needs them (per channel over each channel's own [min, max])."""
    m = normalize_method(method)
    _check_args(bitwidth, symmetric, percentile)
    x = np.asarray(array, dtype=np.float64)
    if axis is None:
        rows = x.reshape(1, -1)
    else:
        if x.ndim == 0:
            raise ValueError(f"range_from_array(axis={axis}) needs an array with that axis")
        rows = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    if m in HISTOGRAM_METHODS:
        h = _hists_from_rows(rows, int(bins))
        vmin, vmax = h.vmin, h.vmax
    else:
        fin = np.isfinite(rows)
        vmin = np.min(rows, axis=1, where=fin, initial=np.inf)
        vmax = np.max(rows, axis=1, where=fin, initial=-np.inf)
        empty = ~np.isfinite(vmin)
        vmin, vmax = np.where(empty, 0.0, vmin), np.where(empty, 0.0, vmax)
        h = None
    if axis is None and not np.isfinite(rows).any():
        raise ValueError("cannot set a range from an array without finite values")
    lo, hi = _ranges(m, h, vmin, vmax, int(bitwidth), bool(symmetric), float(percentile))
    if axis is None:
        return float(lo[0]), float(hi[0])
    return lo, hi
