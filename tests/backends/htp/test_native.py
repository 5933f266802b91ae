"""The native (C) helpers of the htp fast path against their PyTorch forms, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openqnn.backends.htp import native
from openqnn.backends.htp.executable import quantize_t
from openqnn.backends.htp.kernels.registry import QParams
from openqnn.ir.tensor import Encoding


@pytest.fixture(autouse=True)
def requant_impl() -> str:
    """(Overrides the directory's native/PyTorch parametrization: these tests compare the two.)"""
    return "native"


@pytest.fixture
def lib():
    lib = native.library()
    if lib is None:
        pytest.skip("no C compiler: the native helpers are not built here")
    return lib


@pytest.mark.parametrize("bw", [8, 16])
def test_quantize_matches_float64_rounding(lib, bw: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ties (x exactly halfway between codes) round to even; out-of-range values saturate."""
    rng = np.random.default_rng(5 + bw)
    for _ in range(20):
        scale = float(np.exp(rng.uniform(-8, 2)))
        offset = -int(rng.integers(0, 1 << bw))
        q = QParams.of(Encoding(bw, (scale,), (offset,)))
        codes = rng.integers(-300, (1 << bw) + 300, size=2000)
        x = np.concatenate([(codes + offset + 0.5) * scale, (codes + offset) * scale,
                            rng.normal(scale=scale * (1 << bw), size=2000)]).astype(np.float32)
        t = torch.from_numpy(x)
        got = quantize_t(t, q)
        monkeypatch.setattr(native, "library", lambda: None)
        want = quantize_t(t, q)
        monkeypatch.undo()
        assert got.dtype == want.dtype and torch.equal(got, want)


def test_lookup_one_and_two_operands(lib) -> None:
    rng = np.random.default_rng(3)
    table = torch.from_numpy(rng.integers(0, 256, size=65536).astype(np.uint8))
    x = torch.from_numpy(rng.integers(0, 256, size=(3, 5, 7)).astype(np.uint8))
    y = torch.from_numpy(rng.integers(0, 256, size=(3, 5, 7)).astype(np.uint8))
    assert torch.equal(native.lookup(table, x, y), table[x.long() * 256 + y.long()])
    small = table[:256].contiguous()
    assert torch.equal(native.lookup(small, x), small[x.long()])
    assert not native.lookup_ok(table, x, y[:2])  # shapes differ: PyTorch's broadcasting path


def test_requant_rows_of_few_channels_in_groups(lib) -> None:
    """Rows of few channels go k at a time through the vectorized loop, the rest one by one."""
    for ch in (1, 3, 16, 24, 96, 1000):
        rng = np.random.default_rng(ch)
        cst = torch.from_numpy(rng.uniform(-3, 300, size=ch))
        mul = torch.from_numpy(rng.uniform(1e-4, 1e-2, size=ch))
        madd = torch.from_numpy(rng.integers(-5, 5, size=ch).astype(np.int32))
        nr = native.NativeRequant(lib, torch.int32, torch.uint8, 255, cst, mul, madd, False, None, None)
        for rows in (1, 7, 64, 333):
            x = torch.from_numpy(rng.integers(-50000, 50000, size=(rows, ch)).astype(np.int32))
            want = ((cst + x.double() * mul).floor().clamp(-2.0**30, 2.0**30).int() + madd).clamp(0, 255)
            assert torch.equal(nr.run(x), want.to(torch.uint8)), (ch, rows)
