"""QNN's lookup-table ops of 16-bit codes (openqnn's spec, src/openqnn/backends/htp/spec/qnn_unary16.py) against the
HTP simulator: every 16-bit input code at random encodings (tests/fidelity/unary16_probe.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_unary import reciprocal_codes
from openqnn.backends.htp.spec.qnn_unary16 import LOG_ZERO_SCALE, abs16_codes, elu16_codes, log16_is_zero
from tests.fidelity.harness import simulator_missing
from tests.fidelity.unary16_probe import (
    N,
    Probe16,
    exact_codes,
    off_significand_grid,
    probe_many,
    random_probes,
)

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("arch", ["68", "73"])
def test_abs_rounds_by_the_row_parity(arch: str) -> None:
    """Every code in an even and an odd row (input ``[2, 65536]``, both rows the same codes)."""
    probes = random_probes(np.random.default_rng(21), "Abs", 6)
    q = np.arange(N)
    sims = probe_many(arch, "Abs", probes, codes=np.stack([q, q]))
    for p, y in zip(probes, sims):
        even, odd = y.reshape(2, N)
        np.testing.assert_array_equal(even, abs16_codes(q, p.si, p.zi, p.so, p.zo))
        np.testing.assert_array_equal(odd, abs16_codes(q, p.si, p.zi, p.so, p.zo, odd=True))
        assert (even != exact_codes("Abs", p, q)).any()


@pytest.mark.parametrize("arch", ["68", "73"])
def test_abs_rows_of_other_shapes(arch: str) -> None:
    rng = np.random.default_rng(5)
    (p,) = random_probes(rng, "Abs", 1)
    for shape in [(1, 5, 7, 9), (3, 1, 1, 200), (7, 3), (1000,)]:
        codes = rng.integers(0, N, shape)
        (y,) = probe_many(arch, "Abs", [p], codes=codes)
        odd = np.broadcast_to((np.arange(shape[-2]) % 2).reshape(-1, 1), shape) if len(shape) > 1 else 0
        want = np.where(odd == 1, abs16_codes(codes, p.si, p.zi, p.so, p.zo, odd=True),
                        abs16_codes(codes, p.si, p.zi, p.so, p.zo))
        np.testing.assert_array_equal(y.reshape(shape), want)


@pytest.mark.parametrize("arch", ["68", "73"])
def test_log_output_scale_cliff(arch: str) -> None:
    """Output scales at or below ``LOG_ZERO_SCALE``: code 0 everywhere, whatever the zero points; just above: not."""
    lo, hi = 6.1035419e-05, 6.1035504e-05
    assert log16_is_zero(lo) and not log16_is_zero(hi)
    probes = [Probe16(3.047201e-05, 0, lo, 49152), Probe16(1e-4, 100, 3e-5, 20000),
              Probe16(3.047201e-05, 0, hi, 49152), Probe16(3.047201e-05, 0, 1.2e-4, 50397)]
    sims = probe_many(arch, "Log", probes)
    assert [bool((y == 0).all()) for y in sims] == [True, True, False, False]
    assert LOG_ZERO_SCALE < 2.0**-14 * (1 + 6e-6)


def _stop26_reciprocal(p: Probe16, q: np.ndarray) -> np.ndarray:
    """Stop 26's form of QNN's 16-bit Reciprocal: the numerator's exact product with a 24-bit ratio, one rounding."""
    from openqnn.backends.htp.spec.qnn_div import recip16_of_divisor
    from openqnn.backends.htp.spec.qnn_unary import reciprocal_numerator

    n = reciprocal_numerator(p.si, p.zi, 16) - p.zi
    r = float(np.float32(p.si)) / (float(np.float32(p.si)) * float(np.float32(p.so)))
    d = q - p.zi
    x0, s = recip16_of_divisor(d)
    v = np.floor(n * np.sign(d) * x0 * 2.0**s * r / 2**29 + 0.5)
    return np.clip(np.where(d == 0, N - 1, v + p.zo), 0, N - 1).astype(np.int64)


@pytest.mark.parametrize("arch", ["68", "73"])
def test_reciprocal_is_qnns_16_bit_divide_of_one(arch: str) -> None:
    """Every code of 10 probes (the numerator clamped at 65535 or not, zero points 0 or not): QNN's 16-bit Divide of
    1.0 quantized in the input's encoding (``qnn_div``: a rounded Q15 product of the numerator and the ratio's
    rounded 15-bit significand) gives every code; exact rounding of ``1 / x``, the numerator's exact quotient and
    stop 26's form (no Q15 product) do not."""
    from openqnn.backends.htp.spec.qnn_unary16 import unary16_tables_for

    rng = np.random.default_rng(3)
    probes = random_probes(rng, "Reciprocal", 4)
    for _ in range(6):
        lo, hi = float(rng.uniform(-1.5, -0.1)), float(rng.uniform(0.5, 4))
        si = (hi - lo) / 65535
        probes.append(Probe16(si, round(-lo / si), float(rng.uniform(10, 60)) / 65535, int(rng.integers(20000, 45000))))
    sims = probe_many(arch, "Reciprocal", probes)
    q = np.arange(N)
    old_misses = 0
    for p, y in zip(probes, sims):
        table = unary16_tables_for("ElementWiseReciprocal", f"v{arch}", "qnn", p.si, p.zi, p.so, p.zo, 16, 16)
        assert table is not None
        np.testing.assert_array_equal(table[0], y, err_msg=str(p))
        m = q > p.zi + 5
        numerator = np.mean((reciprocal_codes(q, p.si, p.zi, p.so, p.zo, bits=16) == y)[m])
        exact = np.mean((exact_codes("Reciprocal", p, q) == y)[m])
        assert numerator < 0.99 and exact < 0.99, p
        old_misses += int(np.sum(_stop26_reciprocal(p, q) != y))
    assert old_misses > 10_000


@pytest.mark.parametrize("arch", ["68", "73"])
def test_softplus_piecewise_polynomial(arch: str) -> None:
    """Approximate: >= 98% of the codes, all within one, where exact rounding of softplus is 0-35% (up to 255 off)."""
    from openqnn.backends.htp.spec.qnn_unary16 import softplus16_codes

    rng = np.random.default_rng(99)
    probes = []
    for i in range(8):
        lo, hi = -float(rng.uniform(0.5, 10)), float(rng.uniform(0.5, 10))
        si = (hi - lo) / 65535
        so = float(np.log1p(np.exp(hi))) * float(rng.uniform(1, 1.3)) / 65535
        probes.append(Probe16(si, round(-lo / si), so, int(rng.integers(0, 2000)) if i % 2 else 0))
    q = np.arange(N)
    for p, y in zip(probes, probe_many(arch, "Softplus", probes)):
        spec = softplus16_codes(q, p.si, p.zi, p.so, p.zo)
        x = (q - p.zi) * float(np.float32(p.si))
        exact = np.clip(np.rint(np.log1p(np.exp(x)) / float(np.float32(p.so))) + p.zo, 0, N - 1)
        assert np.mean(spec == y) >= 0.98 and np.abs(spec - y).max() <= 1
        assert np.mean(exact == y) < 0.4


@pytest.mark.parametrize("arch", ["68", "73"])
def test_sqrt_is_nnlibs_rsqrt10_of_the_code(arch: str) -> None:
    """Every code of 10 probes (zero points 0 or not: inputs below it wrap): nnlib's 10-bit reciprocal square root of
    the normalized code, a rounded Q15 product with the 15-bit multiplier, one rounding shift. Stop 25's form (the
    exact ``1 / sqrt(a)`` with a rounded 10-bit mantissa) misses some 7%, one rounding of ``n r C`` some codes."""
    from openqnn.backends.htp.spec.qnn_eltwise import f32
    from openqnn.backends.htp.spec.qnn_unary16 import rsqrt10, sqrt16_codes, sqrt16_multiplier

    rng = np.random.default_rng(17)
    probes = []
    for i in range(8):
        si = float(np.exp(rng.uniform(np.log(0.05), np.log(20)))) / 65535
        zi = 0 if i % 2 == 0 else int(rng.integers(1, 3000))
        so = float(np.sqrt((65535 - zi) * si)) * float(rng.uniform(1, 1.2)) / 65535
        probes.append(Probe16(si, zi, so, 0 if i % 3 else int(rng.integers(0, 500))))
    probes += [Probe16(float(np.float32(4 / 65535)), 0, float(np.float32(2 / 65535)), 0),
               Probe16(9 / 65535, 0, 3.1 / 65535, 100)]
    q = np.arange(N)
    one_rounding_misses = 0
    for p, y in zip(probes, probe_many(arch, "Sqrt", probes)):
        np.testing.assert_array_equal(sqrt16_codes(q, p.si, p.zi, p.so, p.zo), y, err_msg=str(p))
        a = (q - p.zi) % N
        m, e = np.frexp(1.0 / np.sqrt(np.maximum(a, 1)))
        c = np.sqrt(f32(p.si)) / f32(p.so)
        old = np.where(a > 0, np.floor(a * np.rint(m * 1024) / 1024 * 2.0**e * c + 0.5), 0) + p.zo
        assert np.mean(np.clip(old, 0, N - 1) == y) < 0.95
        sh = np.where(a > 0, 15 - np.floor(np.log2(np.maximum(a, 1))).astype(np.int64), 0) & ~1
        n = a << sh
        mm, ee = sqrt16_multiplier(p.si, p.so)
        one = np.where(a > 0, np.floor(n * rsqrt10(n) * mm * 2.0 ** (ee - 32 - sh // 2) + 0.5), 0) + p.zo
        one_rounding_misses += int(np.sum(np.clip(one, 0, N - 1) != y))
        assert np.mean(exact_codes("Sqrt", p, q) == y) < 0.05
    assert one_rounding_misses > 50


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
def test_sigmoid_tanh_are_nnlibs_cubic_tanh(arch: str, op: str) -> None:
    """nnlib's 16-bit tanh of the input code: every Q15 value where the output encoding is Q15 itself (s_out 2^-15,
    sigmoid 2^-16), >= 99.3% of the codes and all within one elsewhere (the requantization of the Q15 value);
    exact rounding of the function 20-85%. Simulator codes outside [0, 65535] (a graph output's float below the
    encoding's range: QNN does not clamp it) are left out."""
    from openqnn.backends.htp.spec.qnn_unary16 import tanh16_codes

    sigmoid = op == "Sigmoid"
    rng = np.random.default_rng(123 if sigmoid else 321)
    probes = []
    for i in range(6):
        si = float(np.exp(rng.uniform(np.log(2e-5), np.log(5e-4))))
        zi = int(rng.integers(0, N))
        if i < 2:  # the Q15 values themselves
            probes.append(Probe16(si, zi, 2.0**-16, 0) if sigmoid else Probe16(si, zi, 2.0**-15, 32768))
            continue
        so = float(np.exp(rng.uniform(np.log(1.0), np.log(3.0)))) / (65535 if sigmoid else 32767)
        probes.append(Probe16(si, zi, so, int(rng.integers(0, 2000)) if sigmoid else int(rng.integers(30000, 36000))))
    q = np.arange(N)
    for i, (p, y) in enumerate(zip(probes, probe_many(arch, op, probes))):
        spec = tanh16_codes(q, p.si, p.zi, p.so, p.zo, sigmoid=sigmoid)
        assert spec is not None
        ok = (y >= 0) & (y < N)
        x = (q - p.zi) * float(np.float32(p.si))
        f = 1 / (1 + np.exp(-x)) if sigmoid else np.tanh(x)
        exact = np.clip(np.floor(f / float(np.float32(p.so)) + 0.5) + p.zo, 0, N - 1)
        if i < 2:
            np.testing.assert_array_equal(spec[ok], y[ok])
        else:
            assert np.mean((spec == y)[ok]) >= 0.993 and np.abs(spec - y)[ok].max() <= 1
        assert np.mean((exact == y)[ok]) < 0.85


def _leaky_shares(arch: str, probes: list) -> tuple[float, float]:
    from tests.fidelity.prelu16_probe import exact_codes as leaky_exact
    from tests.fidelity.prelu16_probe import probe_many as leaky_probe_many
    from tests.fidelity.prelu16_probe import spec_codes as leaky_spec

    sims = leaky_probe_many(arch, probes)
    spec = float(np.mean([np.mean(leaky_spec(p) == y) for p, y in zip(probes, sims)]))
    exact = float(np.mean([np.mean(leaky_exact(p) == y) for p, y in zip(probes, sims)]))
    return spec, exact


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("wide", [False, True])
def test_leaky_relu_is_two_truncated_15_bit_multipliers(arch: str, wide: bool) -> None:
    """Every code of 8 probes (as openqnn encodes a LeakyRelu, or wide ratios and slopes, alpha up to 6)."""
    from tests.fidelity.prelu16_probe import random_probes as leaky_probes

    spec, exact = _leaky_shares(arch, leaky_probes(np.random.default_rng(41 + wide), 8, wide))
    assert spec == 1.0
    assert exact < 0.99


def test_leaky_relu_alternatives_part_from_the_simulator() -> None:
    """Rounded multipliers, or the negative branch at its own shift (a slope above 1), miss codes the spec gives."""
    from tests.fidelity.prelu16_probe import Prelu16Probe, spec_codes
    from tests.fidelity.prelu16_probe import probe_many as leaky_probe_many

    # r = 1.2, alpha = 0.1; r = 0.9, alpha = 2.5 (the negative slope is the larger: the shared shift is its)
    probes = [Prelu16Probe(1e-4, 30000, 1e-4 / 1.2, 20000, 65280, 0.1 / 65280),
              Prelu16Probe(1e-4, 40000, 1e-4 / 0.9, 50000, 65280, 2.5 / 65280)]
    sims = leaky_probe_many("73", probes)
    a = np.arange(N, dtype=np.int64)
    for i, (p, y) in enumerate(zip(probes, sims)):
        np.testing.assert_array_equal(spec_codes(p), y)
        r = float(np.float32(np.float32(p.si) / np.float32(p.so)))
        k = 14 - int(np.floor(np.log2(r)))  # the positive slope's own shift
        m_pos, m_neg = round(r * 2**k), round(r * p.alpha * 2**k)
        d = a - p.zi
        own = np.clip(p.zo + ((d * np.where(d >= 0, m_pos, m_neg) + (1 << (k - 1))) >> k), 0, N - 1)
        assert (own != y).sum() > 100, i


def test_leaky_relu_int32_sum_wraps() -> None:
    """A high output zero point: the int32 sum of the product and ``z_out << k`` wraps, the codes drop to 0."""
    from tests.fidelity.prelu16_probe import Prelu16Probe, spec_codes
    from tests.fidelity.prelu16_probe import probe_many as leaky_probe_many

    p = Prelu16Probe(1.7e-4, 8226, 1.7e-4 / 0.61, 60205, 65280, 0.05 / 65280)
    (y,) = leaky_probe_many("73", [p])
    np.testing.assert_array_equal(spec_codes(p), y)
    assert (y[p.zi + 1:] == 0).sum() > 10000  # positive inputs at code 0 (no clamp of z_out + a r gives that)


def _half_up(v: np.ndarray) -> np.ndarray:
    return np.floor(v + 0.5).astype(np.int64)


@pytest.mark.parametrize("arch", ["68", "73"])
def test_exp_codes_have_a_14_bit_significand(arch: str) -> None:
    """At power-of-two output scales every unsaturated Exp code lies on a 14-bit significand's grid (codes in
    ``[2^14, 2^15)`` even, in ``[2^15, 2^16)`` multiples of 4), which neither rounding of ``exp(x) / s_out`` gives;
    truncation of the exact value (the stop-25 floor form) stays well short of the codes (open: the significand's
    arithmetic)."""
    probes = [Probe16(2.0**-16, 0, 2.0**-14, 0), Probe16(2.0**-16, 65535, 2.0**-16, 0),
              Probe16(2.0**-12, 32768, 2.0**-8, 0), Probe16(2.0**-13, 0, 2.0**-11, 0)]
    sims = probe_many(arch, "Exp", probes)
    q = np.arange(N)
    for p, y in zip(probes, sims):
        live = (y > 0) & (y < N - 1)
        assert not off_significand_grid(y[live]).any()
        v = np.exp((q - p.zi) * p.si) / p.so
        wide = live & (y >= 2**14)  # where the grid is coarser than one code
        assert wide.sum() > 5000
        assert off_significand_grid(np.floor(v)[wide]).mean() > 0.4
        assert off_significand_grid(_half_up(v)[wide]).mean() > 0.4
        assert (np.floor(v)[live] == y[live]).mean() < 0.9


@pytest.mark.parametrize("arch", ["68", "73"])
def test_elu_positive_piece_drops_the_low_bit(arch: str) -> None:
    """With the output encoding the input's, Elu's codes from x = 0 up are ``z + 2 floor(a / 2)`` (the identity
    with the low bit dropped), half of them one below exact rounding."""
    p = Probe16(2.0**-12, 32768, 2.0**-12, 32768)
    (y,) = probe_many(arch, "Elu", [p], alpha=1.0)
    a = np.arange(N) - p.zi
    pos = a >= 0
    np.testing.assert_array_equal(y[pos], p.zo + 2 * (a[pos] // 2))
    assert (y[pos] == p.zo + a[pos]).mean() < 0.6


@pytest.mark.parametrize("arch", ["68", "73"])
def test_hardswish_gate_is_a_saturated_q15_value(arch: str) -> None:
    """With the output encoding the input's, HardSwish from x = 3 up is ``a 32767 / 32768`` rounded half up (the
    gate 1.0 saturated to Q15's largest value), and ``x g 2^-15`` with the gate ``g = clamp(round((x + 3) / 6
    2^15), 0, 32767)`` gives at least 98% of all codes (open: the rest, and other encodings)."""
    p = Probe16(2.0**-12, 32768, 2.0**-12, 32768)
    (y,) = probe_many(arch, "HardSwish", [p])
    a = np.arange(N) - p.zi
    x = a * p.si
    hi = x >= 3
    np.testing.assert_array_equal(y[hi], p.zo + _half_up(a[hi] * (32767 / 32768)))
    assert (y[hi] == p.zo + a[hi]).mean() < 0.3
    g = np.clip(_half_up((x + 3) / 6 * 2**15), 0, 32767)
    model = p.zo + _half_up(x * g / 2**15 / p.so)
    live = (y > 0) & (y < N - 1)
    share = (model == y)[live].mean()
    exact = (p.zo + _half_up(x * np.clip(x + 3, 0, 6) / 6 / p.so) == y)[live].mean()
    assert share >= 0.98 and exact < 0.8


@pytest.mark.parametrize("arch", ["68", "73"])
def test_gelu_codes_keep_gelus_odd_part(arch: str) -> None:
    """``gelu(x) - gelu(-x) = x``: with the output encoding the input's and the zero points at 32768, the codes of
    ``a`` and ``-a`` differ by ``a`` for at least 99% of ``a`` (their even part is what is off, up to 8 codes)."""
    p = Probe16(2.0**-12, 32768, 2.0**-12, 32768)
    (y,) = probe_many(arch, "Gelu", [p])
    a = np.arange(1, 32768)
    up, down = y[p.zi + a], y[p.zi - a]
    live = (up < N - 1) & (down > 0)
    assert ((up - down) == a)[live].mean() >= 0.99
    q = np.arange(N)
    x = (q - p.zi) * p.si
    exact = p.zo + _half_up(0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))) / p.so)
    assert (exact == y)[(y > 0) & (y < N - 1)].mean() < 0.5
    # from x = 1 up each code is a x G / 2^12 rounded for an integer gate G (the interval holding G is under one
    # wide, so this is not automatic), and G = 4095 from x = 5.5 up: a gate 1 - 2^-12 where gelu is x
    up = a[(a > 4096) & (y[p.zi + a] < N - 1)]
    c = y[p.zi + up] - p.zo
    lo, hi = (c - 0.5) * 4096 / up, (c + 0.5) * 4096 / up
    assert (np.ceil(lo) < hi).all()
    far = up >= 5.5 * 4096
    assert far.sum() > 8000 and (c[far] == _half_up(up[far] * 4095 / 4096)).all()


def _elu_probes(seed: int, count: int) -> list[Probe16]:
    """Random Elu encodings: inputs over ``[-0.5..-10, 0.5..10]``, outputs from about ``max(lo, -1)`` to about
    ``hi`` (ratios ``s_in / s_out`` of about 0.3 to 3)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        lo, hi = -float(np.exp(rng.uniform(np.log(0.5), np.log(10)))), float(np.exp(rng.uniform(np.log(0.5), np.log(10))))
        si = (hi - lo) / 65535
        olo, ohi = max(-1.0, lo) * float(rng.uniform(1, 1.3)), hi * float(rng.uniform(0.6, 1.3))
        so = (ohi - olo) / 65535
        out.append(Probe16(si, round(-lo / si), so, round(-olo / so)))
    return out


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("alpha", [1.0, 0.5, 1.7])
def test_elu_positive_piece_is_a_rounded_15_bit_multiplier(arch: str, alpha: float) -> None:
    """From x = 0 up every code is ``elu16_positive`` (whatever alpha); below 0, with alpha 1, the codes are QNN's own
    16-bit Exp codes of the same encodings minus one constant per encoding (the constant and the Exp established in
    stop 28: ``elu16_negative``, tests/fidelity/test_qnn_exp16.py)."""
    probes = _elu_probes(11, 6)
    sims = probe_many(arch, "Elu", probes, alpha=alpha)
    exps = probe_many(arch, "Exp", [Probe16(p.si, p.zi, p.so, 0) for p in probes]) if alpha == 1.0 else None
    q = np.arange(N)
    exact_share = []
    for i, (p, y) in enumerate(zip(probes, sims)):
        a = q - p.zi
        live = (y > 0) & (y < N - 1)
        pos, neg = live & (a >= 0), live & (a < 0)
        ours = elu16_codes(q, p.si, p.zi, p.so, p.zo, alpha)
        np.testing.assert_array_equal(y[pos], ours[pos])
        x = a * float(np.float32(p.si))
        exact_share.append((p.zo + np.rint(x / float(np.float32(p.so))) == y)[pos].mean())
        if exps is not None:
            diff = (y - p.zo - exps[i])[neg & (exps[i] < N - 1)]
            assert len(np.unique(diff)) == 1 and abs(-diff[0] - 1 / float(np.float32(p.so))) < 1
    assert min(exact_share) < 0.5


def _gelu_requant(p: np.ndarray, s_in: float, s_out: float) -> np.ndarray:
    """Gelu's output stage (docs/htp-fidelity.md, stop 26): ``r = float32(s_in / s_out) = f 2^e``, ``m = round(f
    2^15)``; on ``|p|``, ``t = (|p| m) >> 15`` then a rounding shift by ``-e`` (``e <= 0``), or ``(|p| m) >> (15 -
    e)`` (``e > 0``); the sign put back (sign and magnitude)."""
    f, e = math.frexp(float(np.float32(np.float32(s_in) / np.float32(s_out))))
    m = math.floor(f * 2.0**15 + 0.5)
    mag = np.abs(p) * m
    if e > 0:
        v = mag >> (15 - e)
    else:
        v = (mag >> 15) if e == 0 else (((mag >> 15) >> (-e - 1)) + 1) >> 1
    return np.sign(p) * v


@pytest.mark.parametrize("arch", ["68", "73"])
def test_gelu_output_stage_requantizes_the_input_scale_codes(arch: str) -> None:
    """With the input at ``s = 2^-12``, Gelu at any output encoding is the codes ``p`` it gives at the output
    encoding equal to the input's, requantized in sign and magnitude by a 15-bit rounded multiplier (truncated,
    then rounded by ``-e``), for ratios 0.1 to 3.2: every code."""
    base = Probe16(2.0**-12, 32768, 2.0**-12, 32768)
    probes = [Probe16(2.0**-12, 32768, so, zo) for so, zo in [(3e-4, 30000), (5e-4, 32768), (1.1e-4, 12000),
                                                               (2.0**-12 / 0.3, 30000), (2.0**-12 / 0.1, 25000)]]
    sims = probe_many(arch, "Gelu", [base, *probes])
    p = sims[0] - base.zo
    plain = []
    for pr, y in zip(probes, sims[1:]):
        live = (y > 0) & (y < N - 1) & (sims[0] > 0) & (sims[0] < N - 1)
        want = pr.zo + _gelu_requant(p, pr.si, pr.so)
        np.testing.assert_array_equal(y[live], want[live])
        plain.append((y == pr.zo + np.floor(p * (pr.si / pr.so) + 0.5))[live].mean())
    assert min(plain) < 0.7  # a plain rounding of p r is not it
