"""The requantization helpers reproduce TFLite's published reference values (quantization_util_test.cc),
and the numpy spec equals the torch fast path bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from openqnn.backends.htp.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    mbqm64_np,
    mbqm64_t,
    mbqm_np,
    mbqm_t,
    quantize_multiplier,
    rdbpot_np,
    rdbpot_t,
    srdhm_np,
    srdhm_t,
)


def _mbqm(x: int, real: float) -> int:
    m, s = quantize_multiplier(real)
    return int(mbqm_np(np.array([x]), m, s)[0])


def _mbqm64(x: int, real: float) -> int:
    m, s = quantize_multiplier(real)
    return int(mbqm64_np(np.array([x]), m, s)[0])


@pytest.mark.parametrize("real, expected", [
    (0.25, (1073741824, -1)), (0.50, (1073741824, 0)), (0.75, (1610612736, 0)), (1 - 1e-9, (2147483646, 0)),
    (1 + 1e-11, (1073741824, 1)), (1.25, (1342177280, 1)), (1.50, (1610612736, 1)), (1.75, (1879048192, 1)),
    (2 - 1e-9, (2147483647, 1)), (2 - 1e-11, (1073741824, 2)), (2.0, (1073741824, 2)),
    (math.ldexp(1.0, -31), (1073741824, -30)), (math.ldexp(1.0, -32), (1073741824, -31)),
    (math.ldexp(0.99, -32), (0, 0)), (math.ldexp(1.0, -33), (0, 0)),
])
def test_quantize_multiplier_matches_tflite(real: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == expected


def test_multiply_by_quantized_multiplier_int32_matches_tflite() -> None:
    assert _mbqm(0, 0.1) == 0
    assert _mbqm(1, 0) == 0
    assert _mbqm(10000, 0.00097656) == 10
    assert _mbqm(-10000, 0.00097656) == -10
    assert _mbqm(INT32_MIN, 0.00001) == -21475
    assert _mbqm(INT32_MAX, 0.00001) == 21475
    x, m, shift = INT32_MAX, INT32_MAX, -3
    expected = round(x * m / float(1 << (31 - shift)))
    assert int(mbqm_np(np.array([x]), m, shift)[0]) == expected
    assert int(mbqm_np(np.array([-x]), m, shift)[0]) == -expected


def test_multiply_by_quantized_multiplier_int64_matches_tflite() -> None:
    assert _mbqm64(0, 0.1) == 0
    assert _mbqm64(1, 0) == 0
    assert _mbqm64(10000, 0.00097656) == 10
    assert _mbqm64(-10000, 0.00097656) == -10
    assert _mbqm64(-(1 << 47), 0.00001) == -1407385600
    assert _mbqm64((1 << 47) - 1, 0.00001) == 1407385600
    x = (1 << 47) - 1
    assert int(mbqm64_np(np.array([x]), INT32_MAX, -31)[0]) == 65534
    assert int(mbqm64_np(np.array([-x]), INT32_MAX, -31)[0]) == -65534


def test_gemmlowp_edge_cases() -> None:
    assert int(srdhm_np(np.array([INT32_MIN]), INT32_MIN)[0]) == INT32_MAX  # the one saturating case
    # rounding divide by a power of two rounds half away from zero
    assert rdbpot_np(np.array([5, -5, 4, -4, 6, -6, 7, -7]), 1).tolist() == [3, -3, 2, -2, 3, -3, 4, -4]
    assert rdbpot_np(np.array([12, -12, 10, -10]), 3).tolist() == [2, -2, 1, -1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(INT32_MIN, INT32_MAX), min_size=1, max_size=64),
       st.floats(1e-9, 30.0, allow_nan=False), st.integers(0, 31))
def test_numpy_spec_equals_torch_fast_path(xs: list[int], real: float, exponent: int) -> None:
    x = np.array(xs, dtype=np.int64)
    m, s = quantize_multiplier(real)
    t = torch.from_numpy(x)
    assert np.array_equal(mbqm_np(x, m, s), mbqm_t(t, m, s).numpy())
    assert np.array_equal(srdhm_np(x, m), srdhm_t(t, m).numpy())
    assert np.array_equal(rdbpot_np(x, exponent), rdbpot_t(t, exponent).numpy())
    if s < 8:
        wide = x * 4096
        assert np.array_equal(mbqm64_np(wide, m, s), mbqm64_t(torch.from_numpy(wide), m, s).numpy())


def test_per_channel_multipliers_broadcast() -> None:
    x = np.arange(-600, 600, 7, dtype=np.int64).reshape(-1, 1) * np.ones((1, 3), dtype=np.int64)
    ms, ss = zip(*(quantize_multiplier(r) for r in (0.01, 0.3, 2.5)))
    m, s = np.array(ms), np.array(ss)
    np.testing.assert_array_equal(mbqm_np(x, m, s), mbqm_t(torch.from_numpy(x), torch.from_numpy(m),
                                                           torch.from_numpy(s)).numpy())
    np.testing.assert_allclose(mbqm_np(x, m, s), np.round(x * np.array([0.01, 0.3, 2.5])), atol=1)
