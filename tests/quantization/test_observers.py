"""Calibration observers: merges across shards, exact re-binning on growth, JSON round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from openqnn.quantization.calibration import (
    HistogramObserver,
    MinMaxObserver,
    observer_from_dict,
    rebin_histogram,
)


def _json_round_trip(d: dict) -> dict:
    return json.loads(json.dumps(d, allow_nan=False))


def _cdf(obs: HistogramObserver, t: np.ndarray) -> np.ndarray:
    cum = np.concatenate(([0.0], np.cumsum(obs.counts)))
    return np.interp(t, obs.edges, cum)


# -- MinMaxObserver ------------------------------------------------------------------------------


def test_minmax_per_tensor_merge_is_exact() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_t(3, 100_000).astype(np.float32)
    full = MinMaxObserver()
    for chunk in np.array_split(x, 7):
        full.update(chunk)
    a, b = MinMaxObserver(), MinMaxObserver()
    for chunk in np.array_split(x[:31_337], 3):
        a.update(chunk)
    for chunk in np.array_split(x[31_337:], 5):
        b.update(chunk)
    a.merge(b)
    assert (a.min, a.max, a.count) == (full.min, full.max, full.count)
    assert a.min == float(x.min()) and a.max == float(x.max()) and a.count == x.size


def test_minmax_ignores_non_finite() -> None:
    obs = MinMaxObserver()
    obs.update(np.array([np.nan, -np.inf, 1.5, -2.0, np.inf]))
    assert (obs.min, obs.max, obs.count) == (-2.0, 1.5, 2)
    obs.update(np.array([np.nan]))
    assert obs.count == 2


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_minmax_per_channel_merge_is_exact(axis: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 5, 4, 3)) * rng.uniform(0.1, 3, size=(6, 5, 1, 1))
    reduce = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    full = MinMaxObserver(axis=axis)
    full.update(x)
    np.testing.assert_array_equal(full.min, x.min(axis=reduce))
    np.testing.assert_array_equal(full.max, x.max(axis=reduce))
    # Split along an axis that is not the channel axis: two "processes" see halves.
    split = 2 if axis % x.ndim != 2 else 3
    h1, h2 = np.array_split(x, 2, axis=split)
    a, b = MinMaxObserver(axis=axis), MinMaxObserver(axis=axis)
    a.update(h1)
    b.update(h2)
    a.merge(b)
    np.testing.assert_array_equal(a.min, full.min)
    np.testing.assert_array_equal(a.max, full.max)
    assert a.count == full.count == x.size


def test_minmax_channel_mismatch_and_axis_mismatch_raise() -> None:
    obs = MinMaxObserver(axis=0)
    obs.update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="channels"):
        obs.update(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="axis"):
        obs.merge(MinMaxObserver(axis=None))


def test_minmax_serialization_round_trip() -> None:
    rng = np.random.default_rng(2)
    per_tensor = MinMaxObserver()
    per_tensor.update(rng.normal(size=1000))
    back = MinMaxObserver.from_dict(_json_round_trip(per_tensor.to_dict()))
    assert (back.min, back.max, back.count, back.axis) == (
        per_tensor.min,
        per_tensor.max,
        per_tensor.count,
        None,
    )

    per_channel = MinMaxObserver(axis=1)
    x = rng.normal(size=(8, 4))
    x[:, 2] = np.nan  # a channel that never sees a finite value: +-inf, None in JSON
    per_channel.update(x)
    d = _json_round_trip(per_channel.to_dict())
    assert d["min"][2] is None
    rebuilt = observer_from_dict(d)
    assert isinstance(rebuilt, MinMaxObserver) and rebuilt.axis == 1
    np.testing.assert_array_equal(rebuilt.min, per_channel.min)
    np.testing.assert_array_equal(rebuilt.max, per_channel.max)

    empty = MinMaxObserver.from_dict(_json_round_trip(MinMaxObserver(axis=0).to_dict()))
    assert empty.is_empty and empty.axis == 0


# -- HistogramObserver ---------------------------------------------------------------------------


def test_histogram_growth_rebins_exactly() -> None:
    """Growing batches: the histogram stays what binning all the data on the final lattice gives."""
    rng = np.random.default_rng(3)
    batches = [rng.normal(0, s, 20_000) + m for s, m in [(0.1, 0), (1, 0), (1, 5), (10, -20), (0.5, 3)]]
    obs = HistogramObserver(bins=512)
    for b in batches:
        obs.update(b)
    x = np.concatenate(batches)
    assert obs.count == x.size and obs.min == x.min() and obs.max == x.max()
    assert obs.counts.sum() == x.size
    assert np.all(obs.counts == np.round(obs.counts))  # no fractional counts from growth
    assert obs.lo is not None and obs.width is not None
    assert obs.lo <= x.min() and obs.hi is not None and obs.hi >= x.max()
    idx = np.clip(np.floor((x - obs.lo) / obs.width), 0, obs.bins - 1).astype(np.int64)
    recount = np.bincount(idx, minlength=obs.bins)
    # Only values within rounding of a bin edge may land one bin off.
    assert np.abs(obs.counts - recount).sum() <= 2e-4 * x.size


def test_histogram_constant_first_batch_then_growth() -> None:
    obs = HistogramObserver(bins=64)
    obs.update(np.zeros(100))
    obs.update(np.linspace(-3, 5, 1000))
    assert obs.count == 1100 and obs.min == -3 and obs.max == 5
    assert obs.counts.sum() == 1100
    assert obs.lo is not None and obs.hi is not None and obs.lo <= -3 and obs.hi >= 5
    assert obs.width is not None and obs.width < 8 / 64 * 4  # resolution kept within a small factor


@pytest.mark.parametrize("shards", [2, 5])
def test_histogram_merge_matches_single_observer(shards: int) -> None:
    rng = np.random.default_rng(4)
    x = rng.laplace(0, 1, 300_000)
    x[rng.integers(0, x.size, 30)] *= 20
    full = HistogramObserver()
    for chunk in np.array_split(x, 12):
        full.update(chunk)
    parts = []
    for shard in np.array_split(rng.permutation(x), shards):
        obs = HistogramObserver()
        for chunk in np.array_split(shard, 4):
            obs.update(chunk)
        # shards cross process boundaries as JSON
        parts.append(HistogramObserver.from_dict(_json_round_trip(obs.to_dict())))
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    # exact: count, min, max, total mass
    assert (merged.count, merged.min, merged.max) == (full.count, full.min, full.max)
    assert merged.counts.sum() == pytest.approx(x.size, rel=1e-12)
    # up to re-binning: the CDFs agree within a couple of (coarser) bin widths
    assert merged.width is not None and full.width is not None
    w = 2 * max(merged.width, full.width)
    t = np.linspace(x.min(), x.max(), 2001)
    c = _cdf(merged, t)
    assert np.all(c >= _cdf(full, t - w) - 1e-6 * x.size)
    assert np.all(c <= _cdf(full, t + w) + 1e-6 * x.size)


def test_histogram_merge_with_empty() -> None:
    rng = np.random.default_rng(5)
    a = HistogramObserver(bins=128)
    a.update(rng.normal(size=1000))
    before = a.to_dict()
    a.merge(HistogramObserver(bins=128))
    assert a.to_dict() == before
    e = HistogramObserver(bins=128)
    e.merge(a)
    assert e.to_dict() == before
    e.update(np.array([100.0]))  # the copy is independent of a
    assert a.to_dict() == before
    with pytest.raises(ValueError, match="64-bin"):
        a.merge(HistogramObserver(bins=64))
    with pytest.raises(TypeError):
        a.merge(MinMaxObserver())  # type: ignore[arg-type]


def test_histogram_serialization_round_trip() -> None:
    rng = np.random.default_rng(6)
    obs = HistogramObserver(bins=256)
    obs.update(rng.gamma(2.0, 1.0, 10_000))
    obs.update(-rng.gamma(2.0, 3.0, 1_000))
    d = _json_round_trip(obs.to_dict())
    back = observer_from_dict(d)
    assert isinstance(back, HistogramObserver)
    assert (back.bins, back.lo, back.width, back.min, back.max, back.count) == (
        obs.bins,
        obs.lo,
        obs.width,
        obs.min,
        obs.max,
        obs.count,
    )
    np.testing.assert_array_equal(back.counts, obs.counts)
    assert back.to_dict() == obs.to_dict()
    empty = observer_from_dict(_json_round_trip(HistogramObserver(bins=32).to_dict()))
    assert isinstance(empty, HistogramObserver) and empty.is_empty and empty.bins == 32
    with pytest.raises(ValueError, match="kind"):
        observer_from_dict({"kind": "nope"})


def test_rebin_histogram_conserves_mass() -> None:
    counts = np.array([0.0, 3.0, 5.0, 2.0])
    out = rebin_histogram(counts, 0.0, 1.0, -1.0, 0.5, 12, support=(1.2, 3.5))
    assert out.sum() == pytest.approx(10.0)
    # bin [1, 2)'s 3 counts lie uniformly on [1.2, 2): new bins [1, 1.5) and [1.5, 2) split them 3:5
    assert out[:4].sum() == 0
    assert out[4] == pytest.approx(3 * 0.3 / 0.8) and out[5] == pytest.approx(3 * 0.5 / 0.8)
    # a narrower target range folds the rest into its end bins
    out = rebin_histogram(counts, 0.0, 1.0, 2.0, 0.5, 2)
    np.testing.assert_allclose(out, [3 + 2.5, 2.5 + 2])
