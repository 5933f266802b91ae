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

This module holds the method names, the dispatch and the public entry points, with min-max,
adjusted and percentile; the searches live beside it: mse/sqnr/enhanced in :mod:`.search`, entropy
in :mod:`.entropy`, over the per-channel histograms of :mod:`.histograms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import numpy as np

from openqnn.errors import InvalidConfigError
from openqnn.quantization.algorithms.entropy import _entropy
from openqnn.quantization.algorithms.histograms import (
    _absmax,
    _Hists,
    _hists_from_observers,
    _hists_from_rows,
    _with_zero,
)
from openqnn.quantization.algorithms.search import _search_noise
from openqnn.quantization.calibration.observers import HistogramObserver, MinMaxObserver
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
# adjusted
# ---------------------------------------------------------------------------------------------


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
