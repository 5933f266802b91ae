"""Range setting: QNN's calibration methods on histograms and arrays, per tensor and per channel."""

from __future__ import annotations

import numpy as np
import pytest

from openqnn.errors import InvalidConfigError
from openqnn.quantization.algorithms import (
    METHODS,
    compute_range,
    compute_ranges_per_channel,
    range_from_array,
)
from openqnn.quantization.calibration import HistogramObserver, MinMaxObserver
from openqnn.quantization.encodings import math as qmath

SEARCHED = ("mse", "sqnr", "enhanced")


def _observe(x: np.ndarray, chunks: int = 8, bins: int = 2048) -> HistogramObserver:
    obs = HistogramObserver(bins=bins)
    for c in np.array_split(x, chunks):
        obs.update(c)
    return obs


def _fq_mse(x: np.ndarray, rng: tuple[float, float], bitwidth: int, symmetric: bool) -> float:
    lo, hi = rng
    scale, offset = qmath.symmetric(hi, bitwidth) if symmetric else qmath.asymmetric(lo, hi, bitwidth)
    return float(np.mean((qmath.fake_quantize(x, scale, offset, bitwidth) - x) ** 2))


@pytest.fixture(scope="module")
def laplace() -> np.ndarray:
    return np.random.default_rng(10).laplace(0.0, 1.0, 1_000_000)


@pytest.fixture(scope="module")
def student_t() -> np.ndarray:
    return np.random.default_rng(11).standard_t(3, 1_000_000)


@pytest.fixture(scope="module")
def outliers() -> np.ndarray:
    """A Gaussian bulk with three huge (50-90 sigma) outliers."""
    x = np.random.default_rng(12).normal(0.0, 1.0, 2_000_000)
    x[[5, 50, 500]] = [50.0, -70.0, 90.0]
    return x


@pytest.fixture(scope="module")
def datasets(laplace: np.ndarray, student_t: np.ndarray, outliers: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(13)
    return {
        "laplace": laplace,
        "t3": student_t,
        "outliers": outliers,
        "relu": np.maximum(rng.normal(0.5, 1.0, 100_000), 0.0),
        "positive": rng.uniform(2.0, 7.0, 100_000),  # zero not in the data: ranges must add it
        "negative": -rng.gamma(2.0, 1.0, 100_000),
        "zeros": np.zeros(1000),
    }


# -- basic behaviour -----------------------------------------------------------------------------


def test_min_max_tf_symmetric_and_aliases() -> None:
    obs = _observe(np.array([-1.5, 0.25, 3.0]), chunks=1)
    assert compute_range("min-max", obs, 8, False) == (-1.5, 3.0)
    assert compute_range("tf", obs, 8, False) == (-1.5, 3.0)
    assert compute_range("MIN_MAX", obs, 8, False) == (-1.5, 3.0)
    assert compute_range("min-max", obs, 8, True) == (-3.0, 3.0)
    assert compute_range("symmetric", obs, 8, False) == (-3.0, 3.0)
    mm = MinMaxObserver()
    mm.update(np.array([2.0, 5.0]))
    assert compute_range("tf", mm, 8, False) == (0.0, 5.0)  # widened to contain 0
    with pytest.raises(InvalidConfigError, match="unknown range-setting method"):
        compute_range("bogus", obs, 8, False)
    with pytest.raises(ValueError, match="histogram"):
        compute_range("mse", mm, 8, False)
    with pytest.raises(ValueError, match="no data"):
        compute_range("min-max", HistogramObserver(), 8, False)
    with pytest.raises(InvalidConfigError, match="percentile"):
        compute_range("percentile", obs, 8, False, percentile=20.0)


@pytest.mark.parametrize("symmetric", [False, True])
def test_every_range_contains_zero_and_symmetric_ranges_are_symmetric(
    datasets: dict[str, np.ndarray], symmetric: bool
) -> None:
    for name, x in datasets.items():
        obs = _observe(x, chunks=2)
        for method in METHODS:
            for bw in (4, 8, 16):
                lo, hi = compute_range(method, obs, bw, symmetric)
                assert np.isfinite(lo) and np.isfinite(hi), (name, method, bw)
                assert lo <= 0.0 <= hi, (name, method, bw, lo, hi)
                if symmetric or method == "symmetric":
                    assert lo == -hi, (name, method, bw, lo, hi)
                if name == "zeros":  # nothing to cover; adjusted alone widens to MIN_RANGE itself
                    want = qmath.MIN_RANGE if method == "adjusted" else 0.0
                    assert hi - lo == pytest.approx(want), (method, lo, hi)


def test_searched_and_entropy_ranges_lie_within_min_max(datasets: dict[str, np.ndarray]) -> None:
    for name, x in datasets.items():
        obs = _observe(x, chunks=2)
        mn, mx = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        for method in (*SEARCHED, "entropy", "percentile"):
            lo, hi = compute_range(method, obs, 8, False)
            assert mn <= lo and hi <= mx, (name, method, lo, hi, mn, mx)
            lo, hi = compute_range(method, obs, 8, True)
            assert hi <= max(-mn, mx) * (1 + 1e-12), (name, method, hi)


def test_percentile_matches_numpy(laplace: np.ndarray) -> None:
    obs = _observe(laplace)
    assert obs.width is not None
    for p in (99.99, 99.9, 99.0):
        lo, hi = compute_range("percentile", obs, 8, False, percentile=p)
        ref_lo, ref_hi = np.percentile(laplace, [100 - p, p])
        assert abs(lo - ref_lo) <= obs.width, (p, lo, ref_lo)
        assert abs(hi - ref_hi) <= obs.width, (p, hi, ref_hi)
    lo, hi = compute_range("percentile", obs, 8, True)
    assert hi == pytest.approx(
        max(-np.percentile(laplace, 0.01), np.percentile(laplace, 99.99)), abs=obs.width
    )
    assert compute_range("percentile", obs, 8, False, percentile=100.0) == (obs.min, obs.max)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("data", ["laplace", "student_t"])
def test_searched_methods_beat_min_max_on_long_tails(
    request: pytest.FixtureRequest, data: str, symmetric: bool
) -> None:
    x = request.getfixturevalue(data)
    obs = _observe(x)
    base = _fq_mse(x, compute_range("min-max", obs, 8, symmetric), 8, symmetric)
    for method in SEARCHED:
        err = _fq_mse(x, compute_range(method, obs, 8, symmetric), 8, symmetric)
        assert err < 0.75 * base, (method, err, base)
    # mse minimizes (the model of) exactly this error: it does at least as well as the others
    err_mse = _fq_mse(x, compute_range("mse", obs, 8, symmetric), 8, symmetric)
    for method in ("sqnr", "enhanced", "percentile", "entropy"):
        assert err_mse <= 1.02 * _fq_mse(x, compute_range(method, obs, 8, symmetric), 8, symmetric)


@pytest.mark.parametrize("symmetric", [False, True])
def test_enhanced_clips_huge_outliers(outliers: np.ndarray, symmetric: bool) -> None:
    obs = _observe(outliers)
    mm = compute_range("min-max", obs, 8, symmetric)
    base = _fq_mse(outliers, mm, 8, symmetric)
    for method in SEARCHED:
        lo, hi = compute_range(method, obs, 8, symmetric)
        assert hi - lo < 0.5 * (mm[1] - mm[0]), (method, lo, hi)
        assert _fq_mse(outliers, (lo, hi), 8, symmetric) < 0.5 * base, method


def test_gamma_orders_the_clipping(student_t: np.ndarray) -> None:
    """sqnr/enhanced weight clipping noise 3x: they clip less than mse."""
    obs = _observe(student_t)
    lo_m, hi_m = compute_range("mse", obs, 8, False)
    lo_s, hi_s = compute_range("sqnr", obs, 8, False)
    assert lo_s < lo_m and hi_m < hi_s
    assert compute_range("enhanced", obs, 8, False) == (lo_s, hi_s)


def test_wider_bitwidth_clips_less(laplace: np.ndarray) -> None:
    obs = _observe(laplace)
    widths = [np.subtract(*compute_range("mse", obs, bw, True)[::-1]) for bw in (4, 8, 16)]
    assert widths[0] < widths[1] < widths[2]
    mm = compute_range("min-max", obs, 16, True)
    assert widths[2] > 0.5 * (mm[1] - mm[0])


def test_entropy_is_inside_min_max_and_tighter_on_long_tails(student_t: np.ndarray) -> None:
    obs = _observe(student_t)
    for symmetric in (False, True):
        lo, hi = compute_range("entropy", obs, 8, symmetric)
        mn, mx = compute_range("min-max", obs, 8, symmetric)
        assert mn <= lo < 0 < hi <= mx
        assert hi - lo < 0.5 * (mx - mn)
    # more levels than histogram bins: nothing to choose, min-max
    assert compute_range("entropy", obs, 16, False) == compute_range("min-max", obs, 16, False)


def test_adjusted_covers_min_max_with_zero_on_the_grid() -> None:
    rng = np.random.default_rng(14)
    for _ in range(50):
        a, b = sorted(rng.normal(0, 3, 2))
        x = np.array([a, b, rng.uniform(a, b)])
        mm = MinMaxObserver()
        mm.update(x)
        for bw in (4, 8, 16):
            lo, hi = compute_range("adjusted", mm, bw, False)
            scale, offset = qmath.asymmetric(lo, hi, bw)
            steps = (1 << bw) - 1
            grid_lo, grid_hi = scale * offset, scale * (offset + steps)
            tol = 1e-12 * max(abs(a), abs(b), 1.0)
            assert grid_lo <= min(a, 0.0) + tol and grid_hi >= max(b, 0.0) - tol
            assert qmath.fake_quantize(np.array([0.0]), scale, offset, bw)[0] == 0.0
            # exact at both ends: no clipping of the observed min/max
            fq = qmath.fake_quantize(np.array([min(a, 0.0), max(b, 0.0)]), scale, offset, bw)
            assert abs(fq[0] - min(a, 0.0)) <= scale / 2 + tol and abs(fq[1] - max(b, 0.0)) <= scale / 2 + tol
            # never more than one step wider than min-max
            assert (hi - lo) <= (max(b, 0.0) - min(a, 0.0)) * (1 + 2 / steps) + 1e-4
    mm = MinMaxObserver()
    mm.update(np.array([1e-7, 2e-7]))
    lo, hi = compute_range("adjusted", mm, 8, False)
    assert lo == 0.0 and hi >= qmath.MIN_RANGE * (1 - 1e-12)


# -- per channel ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights() -> np.ndarray:
    rng = np.random.default_rng(15)
    w = rng.laplace(0, 1, (16, 3, 3, 24)) * rng.uniform(0.05, 2.0, (16, 1, 1, 1))
    w[3] = np.abs(w[3])  # an all-positive channel
    w[5] = 0.0  # a dead channel
    return w


def test_per_channel_min_max_and_symmetric(weights: np.ndarray) -> None:
    w = weights
    ref_lo = np.minimum(w.min(axis=(1, 2, 3)), 0.0)
    ref_hi = np.maximum(w.max(axis=(1, 2, 3)), 0.0)
    lo, hi = range_from_array("min-max", w, 8, False, axis=0)
    np.testing.assert_array_equal(lo, ref_lo)
    np.testing.assert_array_equal(hi, ref_hi)
    lo, hi = range_from_array("min-max", w, 8, True, axis=0)
    np.testing.assert_array_equal(hi, np.maximum(-ref_lo, ref_hi))
    np.testing.assert_array_equal(lo, -hi)
    # the same through a per-channel MinMaxObserver fed two halves
    obs, other = MinMaxObserver(axis=0), MinMaxObserver(axis=0)
    obs.update(w[:, :, :, :10])
    other.update(w[:, :, :, 10:])
    obs.merge(other)
    for method in ("min-max", "tf", "symmetric", "adjusted"):
        for symmetric in (False, True):
            got = compute_ranges_per_channel(method, obs, 8, symmetric)
            want = range_from_array(method, w, 8, symmetric, axis=0)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(ValueError, match="histograms"):
        compute_ranges_per_channel("mse", obs, 8, True)
    # axis=-1 works as well
    lo, hi = range_from_array("symmetric", w, 8, True, axis=-1)
    np.testing.assert_array_equal(hi, np.abs(w).max(axis=(0, 1, 2)))


@pytest.mark.parametrize("method", ["mse", "sqnr", "enhanced", "percentile", "entropy", "adjusted"])
def test_per_channel_matches_per_tensor_on_each_channel(weights: np.ndarray, method: str) -> None:
    for symmetric in (False, True):
        lo, hi = range_from_array(method, weights, 8, symmetric, axis=0, bins=512)
        assert lo.shape == hi.shape == (weights.shape[0],)
        assert np.all(lo <= 0) and np.all(hi >= 0)
        for c in range(weights.shape[0]):
            want = range_from_array(method, weights[c], 8, symmetric, bins=512)
            assert (lo[c], hi[c]) == pytest.approx(want, rel=1e-12, abs=1e-300), (c, symmetric)
        if method != "adjusted":  # the dead channel
            assert (lo[5], hi[5]) == (0.0, 0.0)
        if symmetric:
            np.testing.assert_array_equal(lo, -hi)


def test_per_channel_from_histogram_observers(weights: np.ndarray) -> None:
    per = []
    for c in range(weights.shape[0]):
        o = HistogramObserver(bins=256)
        o.update(weights[c])
        per.append(o)
    lo, hi = compute_ranges_per_channel("mse", per, 8, True)
    for c, o in enumerate(per):
        if o.count and c != 5:
            assert (lo[c], hi[c]) == pytest.approx(compute_range("mse", o, 8, True), rel=1e-12)


def test_per_channel_searched_weights_quantize_better(weights: np.ndarray) -> None:
    w = np.delete(weights, 5, axis=0)
    _, hi_mm = range_from_array("symmetric", w, 4, True, axis=0)
    _, hi_e = range_from_array("mse", w, 4, True, axis=0)
    assert np.all(hi_e <= hi_mm)
    scale_mm, off_mm = qmath.symmetric(hi_mm, 4)
    scale_e, off_e = qmath.symmetric(hi_e, 4)
    shape = (-1, 1, 1, 1)
    err_mm = np.mean((qmath.fake_quantize(w, scale_mm.reshape(shape), off_mm.reshape(shape), 4) - w) ** 2)
    err_e = np.mean((qmath.fake_quantize(w, scale_e.reshape(shape), off_e.reshape(shape), 4) - w) ** 2)
    assert err_e < 0.8 * err_mm


def test_per_channel_equals_each_channel_alone() -> None:
    """One vectorized per-channel search gives every channel the range its own per-tensor search gives
    (the speed of the vectorized form is the benchmarks' business, not a test's)."""
    w = np.random.default_rng(16).laplace(0, 1, (12, 3, 3, 64)) * np.linspace(0.05, 3.0, 12)[:, None, None, None]
    for method, symmetric in (("mse", True), ("enhanced", False), ("tf", False), ("percentile", True)):
        lo, hi = range_from_array(method, w, 8, symmetric, axis=0)
        alone = [range_from_array(method, w[i], 8, symmetric) for i in range(len(w))]
        assert np.array_equal(lo, [a[0] for a in alone]) and np.array_equal(hi, [a[1] for a in alone]), method
