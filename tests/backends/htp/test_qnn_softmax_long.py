"""htp_config.arithmetic = "qnn" (the default): QNN's Softmax of rows of 17 or more 8-bit codes (spec/qnn_softmax.py:
exponentials 2^(-k C') in Q15 from the 4-segment quadratic 2^-f (its last segment its own), shifted; the sum's 16-bit reciprocal; one rounding;
docs/htp-fidelity.md, stops 26 to 28). Fast path == reference == the spec on random, extreme and masked rows, both archs;
within one code of exact rounding; TFLite's arithmetic keeps the exact division. (Against the simulator:
tests/fidelity/test_qnn_softmax.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_elementwise import _enc, _graph

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext
from openqnn.backends.htp.spec.qnn_softmax import (
    LONG_POW2_COEFFS,
    RECIP_BITS,
    RECIP_PRODUCT_SHIFT,
    exp_step,
    exp_table,
    long_codes_of,
    long_pow2,
    long_recip,
)
from openqnn.backends.htp.spec.qnn_softmax16 import pow2_frac
from openqnn.ir.tensor import Encoding


def _step(n: int, arch: str, arithmetic: str, s_in: float, rows: tuple[int, ...] = (3, 5)):
    g = _graph("Softmax", [((*rows, n), _enc(-128 * s_in, 127 * s_in, 8), None)], {"axis": -1, "beta": 1.0})
    g.tensors["out"].encoding = Encoding(8, (1.0 / 256,), (0,))
    ctx = HtpBuildContext(g, ARCHS[arch], arithmetic=arithmetic)
    return HTP_KERNELS["Softmax"](g.nodes[0], ctx), g


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rand = rng.integers(0, 256, (30, n))
    narrow = np.clip(200 + rng.integers(-6, 7, (30, n)), 0, 255)
    masked = rng.integers(200, 256, (30, n))
    masked[np.arange(n)[None, :] >= rng.integers(1, n + 1, 30)[:, None]] = 0
    extremes = [np.full(n, c) for c in (0, 255)] + [np.r_[255, np.zeros(n - 1, np.int64)], np.arange(n) % 2 * 255]
    return np.concatenate([rand, narrow, masked, np.stack(extremes)])


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("n", [17, 64, 301])
def test_long_rows_fast_equals_reference_equals_spec(arch: str, n: int) -> None:
    rng = np.random.default_rng(n)
    for s_in in (0.004, 0.03, 0.1, 0.37, 1.3):
        step, g = _step(n, arch, "qnn", s_in)
        assert step.plan is not None and step.plan.kernel == "htp.softmax"
        assert step.plan.attrs["recip_bits"] == RECIP_BITS and step.plan.attrs["f"] == 8
        assert step.plan.attrs["recip_product_shift"] == RECIP_PRODUCT_SHIFT == 16
        s = float(g.tensors["x0"].encoding.scale[0])  # type: ignore[union-attr]
        table = exp_table(s)
        np.testing.assert_array_equal(step.plan.arrays["exp"], table)
        assert table[0] == (1 << 15) - 1 and np.all(np.diff(table) <= 0)
        rows = _rows(rng, n)
        x = np.concatenate([rows, rows[: (-len(rows)) % 5]]).reshape(-1, 5, n)
        ref = step.reference(x)
        fast = step.fast(torch.from_numpy(x).to(torch.uint8))
        np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
        np.testing.assert_array_equal(ref, long_codes_of(table[x.max(axis=-1, keepdims=True) - x]))
        e = np.exp(s * (x - x.max(axis=-1, keepdims=True)))
        assert np.abs(ref - np.clip(np.rint(256 * e / e.sum(axis=-1, keepdims=True)), 0, 255)).max() <= 1


@pytest.mark.parametrize("s_in", [0.0009, 0.004, 0.0137, 0.05, 0.10401, 0.37, 1.3, 7.0])
def test_long_rows_exponentials_are_the_quadratic_pow2_shifted(s_in: float) -> None:
    """``exp_table``: ``E[k] = g(f16) >> n`` for ``k C' = n + f`` (``g`` = ``long_pow2``: the 16-bit Softmax's
    4-segment quadratic 2^-f with its own last segment, saturated), computed here in floats; ``pow2_frac`` itself for
    ``f16 >= 16384``, within three units of stop 26's ``floor(2^15 2^(-k C'))`` and ``E[0] = 32767`` (stops 27, 28)."""
    table = exp_table(s_in)
    x = np.arange(256) * exp_step(s_in)  # exact in float64: C' has 8 significant bits
    n = np.floor(x)
    f16 = np.floor((x - n) * 65536).astype(np.int64)
    want = np.where(n < 16, long_pow2(f16) >> np.minimum(n, 15).astype(np.int64), 0)
    np.testing.assert_array_equal(table, want)
    hi = (f16 >= 1 << 14) & (n < 16)
    np.testing.assert_array_equal(table[hi], (pow2_frac(f16) >> np.minimum(n, 15).astype(np.int64))[hi])
    assert table[0] == (1 << 15) - 1 and np.all(np.diff(table) <= 0)
    trunc = np.minimum(np.floor(np.exp2(-x) * 2.0**15), (1 << 15) - 1)
    assert np.abs(table - trunc).max() <= 3


def test_long_pow2_last_segment() -> None:
    """``long_pow2``: ``pow2_frac`` (stop 27) but for ``f16 < 16384`` (``u >> 14 = 3``), where the coefficients are
    (34675, 16404, 7230) against (34681, 16401, 7227) and 32768 at ``f16 = 0`` saturates to 32767 (stop 28): within a
    2.3 units of ``2^15 2^(-f16 / 2^16)`` everywhere (``pow2_frac``: 2.26), monotone, its last segment's mean error
    +0.12 (``pow2_frac``'s -0.50), above ``pow2_frac`` by up to two units at half the small fractions (by hand: ``f16`` = 12800 gives 28618, ``pow2_frac`` 28617; 0 gives 32767 from 32768)."""
    f16 = np.arange(1 << 16)
    g, g0 = long_pow2(f16), pow2_frac(f16)
    np.testing.assert_array_equal(g[1 << 14:], g0[1 << 14:])
    assert g[0] == g0[0] == 32767 and np.all(np.diff(g) <= 0)
    err = g - 2.0 ** (15 - f16 / 65536)
    assert np.abs(err).max() < 2.3 and 0.1 < err[: 1 << 14].mean() < 0.15
    d = (g - g0)[: 1 << 14]
    assert d.min() >= -1 and d.max() == 2 and 0.3 < (d > 0).mean()
    assert long_pow2(np.array([12800]))[0] == 28618 and pow2_frac(np.array([12800]))[0] == 28617
    assert LONG_POW2_COEFFS[:, 3].tolist() == [34675, 16404, 7230]
    u = 0xFFFF
    assert ((((7230 * u + (16404 << 15)) >> 16) * u + (34675 << 15)) >> 16) == 32768


def test_long_rows_reciprocal_is_16_bits_truncated() -> None:
    """``long_codes_of``: the sum's reciprocal ``floor(2^(b + 15) / S)`` (in (2^15, 2^16]), one rounding of ``e r``;
    it parts from the exact division ``round(256 e / S)`` only next to .5 boundaries."""
    rng = np.random.default_rng(0)
    e = rng.integers(0, 1 << 15, (4000, 40))
    e[:, 0] = (1 << 15) - 1
    s = e.sum(axis=-1, keepdims=True)
    exact = np.clip((2 * (e << 8) + s) // (2 * s), 0, 255)
    ours = long_codes_of(e)
    diff = ours != exact
    assert 0 < diff.mean() < 0.01 and np.abs(ours - exact).max() == 1
    frac = (256 * e / s) % 1
    assert np.all(np.abs(frac[diff] - 0.5) < 0.01)


def test_long_rows_reciprocal_is_the_floor_or_one_more() -> None:
    """``long_recip``: ``F = floor(2^(b + 15) / S)`` corrected once with the product ``S F`` truncated at 2^16 is ``F``
    or ``F + 1`` for every sum of 16 to 22 bits (``F + 2`` only for the lone maximum's 32767), ``F + 1`` exactly where
    the remainder ``2^(b + 15) - S F`` rounded up to units of 2^16, times ``F``, reaches ``2^(b - 1)`` (stop 27)."""
    rng = np.random.default_rng(1)
    s = np.concatenate([np.arange(1 << 15, 1 << 17), rng.integers(1 << 17, 1 << 22, 200000)]).astype(np.int64)
    b = np.frexp(s.astype(np.float64))[1].astype(np.int64)
    f = (np.int64(1) << (b + 15)) // s
    r = long_recip(s, b)
    rho = (np.int64(1) << (b + 15)) - s * f
    up = ((rho + (1 << 16) - 1) >> 16) * f >= np.int64(1) << (b - 1)
    np.testing.assert_array_equal(r, f + up)
    assert 0.05 < up[b == 17].mean() < 0.5 and up[b == 16].mean() > 0.99  # sums of 16 bits: the ceiling
    assert long_recip(np.array([32767]), np.array([15]))[0] == ((1 << 30) // 32767) + 2
    assert long_codes_of(np.array([[32767, 0, 0]]))[0].tolist() == [255, 0, 0]


def test_tflite_arithmetic_keeps_the_exact_division() -> None:
    step, _ = _step(64, "v73", "tflite", 0.1)
    assert step.plan is not None and "recip_bits" not in step.plan.attrs
