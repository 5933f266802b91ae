"""The one copy of the encoding formulas (quantization.encodings.math): numpy and PyTorch give the same
integers, and every part that quantizes uses it (the cpu simulation, htp's conversions, the QDQ export)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openqnn.backends.cpu.quantsim import FakeQuant
from openqnn.backends.htp.kernels.fallback import dequantize_t, quantize_t
from openqnn.backends.htp.kernels.registry import QParams
from openqnn.ir.tensor import Encoding, qrange
from openqnn.quantization.encodings import math as qmath


@pytest.mark.parametrize(("bits", "signed"), [(4, False), (8, False), (8, True), (16, False), (16, True)])
def test_numpy_and_torch_give_the_same_integers(bits: int, signed: bool) -> None:
    rng = np.random.default_rng(bits)
    scale = 0.037
    offset = -(1 << (bits - 1)) + 3
    # ties on purpose: x / scale = k + 0.5 for integers k (round half to even on both sides)
    x = np.concatenate([rng.standard_normal(2000) * scale * (1 << bits) / 3,
                        (np.arange(-40, 40) + 0.5) * scale])
    want = qmath.quantize(x, scale, offset, bits, signed)
    got = qmath.quantize(torch.from_numpy(x), scale, offset, bits, signed)
    np.testing.assert_array_equal(got.numpy(), want)
    lo, hi = qrange(bits, signed)
    assert want.min() == lo and want.max() == hi  # both ends clamp
    np.testing.assert_array_equal(qmath.dequantize(torch.from_numpy(want.astype(np.float64)), scale, offset).numpy(),
                                  qmath.dequantize(want, scale, offset))


def test_restricted_bounds_clamp_both_forms() -> None:
    x = np.linspace(-3, 3, 301)
    want = qmath.quantize(x, 0.01, -128, 8, bounds=(1, 255))
    assert want.min() == 1
    np.testing.assert_array_equal(qmath.quantize(torch.from_numpy(x), 0.01, -128, 8, bounds=(1, 255)).numpy(), want)


def test_htp_and_cpu_simulation_use_the_formula() -> None:
    rng = np.random.default_rng(3)
    enc = Encoding(bitwidth=8, scale=(0.021,), offset=(-97,))
    x = rng.standard_normal((4, 33)).astype(np.float32) * 2
    want = qmath.quantize(x.astype(np.float64), 0.021, -97, 8)
    np.testing.assert_array_equal(quantize_t(torch.from_numpy(x).double(), QParams.of(enc)).numpy(), want)
    np.testing.assert_array_equal(QParams.of(enc).codes(x), want)
    np.testing.assert_array_equal(dequantize_t(torch.from_numpy(want).to(torch.uint8), QParams.of(enc)).numpy(),
                                  qmath.dequantize(want, 0.021, -97).astype(np.float32))
    fq = FakeQuant(enc, 2, torch.device("cpu"), torch.float64)
    np.testing.assert_array_equal(fq(torch.from_numpy(x).double()).numpy(), qmath.fake_quantize(x.astype(np.float64),
                                                                                                 0.021, -97, 8))
