"""QNN's 16-bit Sin, Cos and Atan against the HTP simulator (docs/htp-fidelity.md, "16-bit Atan, Sin and Cos
(stop 27)"): what is established of them (the value grids, Sin's and Cos's Q32 phase and output conversion), with
the probes of tests/fidelity/trig16_probe.py; and openqnn's Sin and Cos (spec/qnn_trig16.py: the quadrant function
``F(r)`` a Horner cubic per pi/8 piece) against it."""

from __future__ import annotations

import bisect

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_trig16 import atan16_core, trig16_codes, trig16_value
from tests.fidelity.harness import simulator_missing
from tests.fidelity.trig16_probe import (
    UNKNOWN,
    clean_probes,
    exact_codes,
    multiplier_settled,
    phase_table,
    random_probes,
    table_codes,
)
from tests.fidelity.unary16_probe import N, Probe16, probe_many

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("arch", ["68", "73"])
def test_trig16_values_are_q13_and_q14(arch: str) -> None:
    """At an output scale of 2^-15 Sin's codes step by 4 (a Q13 value), Cos's and Atan's by 2 (Q14), where exact
    rounding is on those grids for about a quarter / half of the codes; Atan's Q14 value is a function of x alone."""
    p = Probe16(2.0**-12, 32768, 2.0**-15, 32768)
    for op, step in (("Sin", 4), ("Cos", 2), ("Atan", 2)):
        (y,) = probe_many(arch, op, [p])
        v = y - p.zo
        free = (y > 0) & (y < N - 1)
        assert np.all(v[free] % step == 0)
        assert np.mean((exact_codes(op, p) - p.zo)[free] % step == 0) < 0.6
    wide, fine = Probe16(2.0**-10, 32768, 2.0**-14, 32768), Probe16(2.0**-12, 32768, 2.0**-14, 32768)
    yw, yf = probe_many(arch, "Atan", [wide, fine])
    a = np.arange(-8192, 8192)
    np.testing.assert_array_equal(yw[32768 + a], yf[32768 + 4 * a])


@pytest.mark.parametrize("arch", ["68", "73"])
def test_sin_cos_are_a_table_of_the_q32_phase(arch: str) -> None:
    """The value is a function of the 14-bit quadrant phase of ``|a| round(s_in 2^32 / 2 pi)`` (a 31-bit phase
    leaves thousands of phases in conflict), the same at every encoding: a table read from 4 power-of-two probes
    gives every code of 6 random encodings that it covers, through the sign-and-magnitude output conversion with
    ``m = floor(f 2^15 + 1/4)`` (encodings whose multiplier falls in the unsettled band near a fraction of 3/4 are
    left out), where exact rounding misses 10-80% of each probe's codes; the table is not a rounded sine or cosine."""
    rand = random_probes(int(arch), 6)
    quadrant = np.pi / 2 * np.arange(16385) / 16384
    for op, bits, ref in (("Sin", 13, np.sin(quadrant)), ("Cos", 14, np.cos(quadrant))):
        clean = clean_probes(op)
        codes = probe_many(arch, op, clean + rand)
        table, clash = phase_table(op, clean, codes[: len(clean)])
        assert clash <= 4 and np.mean(table != UNKNOWN) > 0.97
        _, clash31 = phase_table(op, clean, codes[: len(clean)], turn_bits=31)
        assert clash31 > 1000
        known = table != UNKNOWN
        assert np.mean(table[known] == np.floor(ref[known] * 2**bits + 0.5)) < 0.9
        settled = [(p, y) for p, y in zip(rand, codes[len(clean):]) if multiplier_settled(bits, p.so)]
        assert len(settled) >= 4
        exact = []
        for p, y in settled:
            want, covered = table_codes(op, table, p)
            assert covered.mean() > 0.97
            assert np.mean((want == y)[covered]) >= 0.9999
            exact.append(float(np.mean(exact_codes(op, p) == y)))
        assert max(exact) < 0.9 and min(exact) < 0.5


@pytest.mark.parametrize("arch", ["68", "73"])
def test_trig16_quadrant_function_is_the_spec(arch: str) -> None:
    """openqnn's ``F`` (spec/qnn_trig16.py, a Horner cubic per pi/8 piece) is every phase of the table read from 4
    clean probes (16,120 of 16,384 phases, none read twice with two values); the rounded sine and cosine are
    82.6% / 76.3% of it."""
    r = np.arange(1 << 14)
    for op in ("Sin", "Cos"):
        clean = clean_probes(op)
        table, clash = phase_table(op, clean, probe_many(arch, op, clean))
        known = table[: 1 << 14] != UNKNOWN
        assert clash == 0 and known.sum() == 16120
        np.testing.assert_array_equal(trig16_value(r[known], op), table[: 1 << 14][known])


@pytest.mark.parametrize("arch", ["68", "73"])
def test_trig16_is_the_spec_on_every_code(arch: str) -> None:
    """openqnn's Sin and Cos give every code of 8 random encodings (exact rounding 18-82% of each)."""
    rand = random_probes(int(arch) + 1, 8)
    for op in ("Sin", "Cos"):
        exact = []
        for p, y in zip(rand, probe_many(arch, op, rand)):
            np.testing.assert_array_equal(trig16_codes(np.arange(N), op, p.si, p.zi, p.so, p.zo), y)
            exact.append(float(np.mean(exact_codes(op, p) == y)))
        assert max(exact) < 0.85


@pytest.mark.parametrize("arch", ["68", "73"])
def test_trig16_output_multiplier(arch: str) -> None:
    """The output multiplier is ``round(0.99999 f 2^15)``: two encodings with the same fraction of ``f 2^15`` (0.746)
    round it up and down, every code; stop 27's ``floor(f 2^15 + 1/4)`` misses codes of the one rounded up."""
    rand = random_probes(5, 60)
    up, down = rand[26], rand[27]
    for op, q in (("Sin", 13), ("Cos", 14)):
        for p, y in zip((up, down), probe_many(arch, op, [up, down])):
            np.testing.assert_array_equal(trig16_codes(np.arange(N), op, p.si, p.zi, p.so, p.zo), y)
        f, _ = np.frexp(float(np.float32(2.0**-q / float(np.float32(up.so)))))
        assert abs((f * 2**15) % 1 - 0.746) < 0.001 and not multiplier_settled(q, up.so)
        (y_up,) = probe_many(arch, op, [up])
        assert np.mean(table_codes(op, phase_table(op, clean_probes(op), probe_many(arch, op, clean_probes(op)))[0],
                                   up)[0] == y_up) < 0.5


@pytest.mark.parametrize("arch", ["68", "73"])
def test_trig16_is_the_spec_at_any_encoding(arch: str) -> None:
    """Every code at 12 encodings far from calibration's (``s_in`` 1e-6..0.1, ``s_out`` 1e-6..1e-2, any zero points),
    among them output scales so small that the magnitude wraps modulo 2^17 (the codes saturate, then start again from
    the zero point)."""
    rng = np.random.default_rng(99)
    probes = []
    for _ in range(12):
        si = float(np.exp(rng.uniform(np.log(1e-6), np.log(0.1))))
        so = float(np.exp(rng.uniform(np.log(1e-6), np.log(1e-2))))
        probes.append(Probe16(si, int(rng.integers(0, N)), so, int(rng.integers(0, N))))
    probes.append(Probe16(9.298197536311796e-06, 1941, 1.8874242421546851e-06, 16518))  # ratios 65 (Sin), 32 (Cos)
    for op in ("Sin", "Cos"):
        for p, y in zip(probes, probe_many(arch, op, probes)):
            np.testing.assert_array_equal(trig16_codes(np.arange(N), op, p.si, p.zi, p.so, p.zo), y)
    (y,) = probe_many(arch, "Sin", probes[-1:])
    assert np.any(y == N - 1) and np.any((y > probes[-1].zo) & (y < 30000) & (np.arange(N) > 30000))


@pytest.mark.parametrize("arch", ["68", "73"])
def test_atan16_core_is_the_spec(arch: str) -> None:
    """Atan below 1 is ``G(floor(x 2^15))``, every value read at power-of-two input scales (``x`` to 1 at 2^-16 and
    2^-14, ``s_out = 2^-14``), and a function of ``x``; above 1 ``pi/2 - G`` of the measured reciprocal gives every
    one of the 76,797 inputs above 1 of 4 power-of-two probes (``floor(2^15 / x)``: 90.0%; stop 29's rounded
    reciprocal 96.6%)."""
    ks = (16, 14, 12, 10)
    probes = [Probe16(2.0**-k, 32768, 2.0**-14, 32768) for k in ks]
    codes = probe_many(arch, "Atan", probes)
    a = np.arange(1, 32768)
    ok, ok_floor, n_big = 0, 0, 0
    for k, p, y in zip(ks, probes, codes):
        v = y[32768 + a] - 32768
        x = a * 2.0**-k
        small = x <= 1
        below = small & (x < 1)
        np.testing.assert_array_equal(v[below], atan16_core(np.floor(x[below] * 2**15).astype(np.int64)))
        ours = trig16_codes(32768 + a, "Atan", p.si, p.zi, p.so, p.zo)
        np.testing.assert_array_equal(ours[below], y[32768 + a][below])
        ok += int(np.sum((ours == y[32768 + a])[~small]))
        ok_floor += int(np.sum(25736 - atan16_core(np.floor(2**15 / x[~small]).astype(np.int64)) == v[~small]))
        n_big += int((~small).sum())
    assert n_big == 76797 and ok == n_big and 0.899 < ok_floor / n_big < 0.901


@pytest.mark.parametrize("arch", ["68", "73"])
def test_atan16_on_random_encodings(arch: str) -> None:
    """openqnn's Atan on every code of 8 random encodings and 4 anywhere (none among the probes the reciprocal was
    read from): every code (stop 29: 95.5-99.95%, up to 2 codes off), exact rounding 19-75% of the first eight."""
    rng = np.random.default_rng(int(arch))
    rand = random_probes(int(arch) + 1, 8) + [
        Probe16(float(si), int(rng.integers(0, N)), float(so), int(rng.integers(0, N)))
        for si, so in zip(np.exp(rng.uniform(np.log(1e-6), np.log(0.5), 4)), np.exp(rng.uniform(np.log(1e-5), -6, 4)))]
    for i, (p, y) in enumerate(zip(rand, probe_many(arch, "Atan", rand))):
        ours = trig16_codes(np.arange(N), "Atan", p.si, p.zi, p.so, p.zo)
        np.testing.assert_array_equal(ours, y)
        if i < 8:
            assert float(np.mean(exact_codes("Atan", p) == y)) < 0.8


@pytest.mark.parametrize("arch", ["68", "73"])
def test_atan16_reciprocal_table_is_the_simulators(arch: str) -> None:
    """The 123 probes of ``trig16_probe.atan_reciprocal_table`` allow at least one reciprocal for every ``n`` (one
    function of ``xq``'s top 17 bits serves every binade) and give the spec's table; every ``n`` is read (docs/htp-
    fidelity.md, "16-bit Gelu and Atan as measured tables (stop 30)")."""
    from openqnn.backends.htp.spec.qnn_trig16 import atan16_reciprocal_table
    from tests.fidelity.trig16_probe import atan_reciprocal_sets

    allowed = atan_reciprocal_sets(arch)
    assert allowed.any(axis=1).all() and not allowed.all(axis=1).any()
    w = (allowed.shape[1] - 1) // 2
    n = np.arange(1 << 16, 1 << 17)
    d = atan16_reciprocal_table() - ((1 << 31) + (n >> 1)) // n
    assert allowed[np.arange(1 << 16), d + w].all()
    nearest = np.argmin(np.where(allowed, np.abs(np.arange(-w, w + 1)), 1 << 20), axis=1) - w
    np.testing.assert_array_equal(d, nearest)


def _values_per_key(keys: np.ndarray, values: np.ndarray) -> tuple[int, int]:
    """(distinct keys, keys read with two or more values)."""
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    first = np.r_[True, k[1:] != k[:-1]]
    starts = np.flatnonzero(first)
    lo, hi = v[starts], v[np.r_[starts[1:] - 1, len(v) - 1]]
    return len(starts), int(np.sum(lo != hi))


@pytest.mark.parametrize("arch", ["68", "73"])
def test_atan16_reciprocal_takes_17_bits_of_x(arch: str) -> None:
    """Above 1 the value is a function of the top 17 bits of ``xq = floor(x 2^15)`` (8 input scales ``m 2^-29`` and
    ``m 2^-28``, ``m`` odd near 2^15, ``x`` in ``[2, 4)`` and ``[4, 8)``: no 17-bit prefix read with two values, over
    a thousand 16-bit ones); ``x = 1`` exactly gives 12868, one below ``G(2^15)``; no reciprocal that falls as ``x``
    grows gives more than 98.5% of ``[1, 2)`` (every ``x`` at ``s_in = 2^-15``), the spec's measured one all of it
    (it does not fall everywhere; stop 29's rounded one 92.7%)."""
    ms = range(32767, 32751, -2)
    for shift, lo in ((29, 2), (28, 4)):
        probes = [Probe16(m * 2.0**-shift, 0, 2.0**-14, 0) for m in ms]
        keys, vals = [], []
        for m, y in zip(ms, probe_many(arch, "Atan", probes)):
            xq = (np.arange(N, dtype=np.int64) * m) >> (shift - 15)
            sel = (xq >= lo << 15) & (xq < lo << 16)
            keys.append(xq[sel])
            vals.append(y[sel])
        xq, v = np.concatenate(keys), np.concatenate(vals)
        top = np.floor(np.log2(xq)).astype(np.int64)
        n17, clash17 = _values_per_key(xq >> (top - 16), v)
        _, clash16 = _values_per_key(xq >> (top - 15), v)
        assert n17 > 55000 and clash17 == 0 and clash16 > 1000
    one = Probe16(2.0**-15, 0, 2.0**-14, 0)
    (y,) = probe_many(arch, "Atan", [one])
    assert y[1 << 15] == 12868 == int(atan16_core(np.array([1 << 15]))[0]) - 1
    ours = trig16_codes(np.arange(N), "Atan", one.si, one.zi, one.so, one.zo)
    np.testing.assert_array_equal(ours[: (1 << 15) + 1], y[: (1 << 15) + 1])
    xq = np.arange((1 << 15) + 1, N)
    np.testing.assert_array_equal(ours[xq], y[xq])
    g = atan16_core(np.arange((1 << 15) + 1))
    tails: list[int] = []  # the longest chain of (xq, t) with G(t) the simulator's and t never rising
    for q in xq:
        ex = int(2**30 // q)
        for t in sorted(t for t in range(ex - 8, min(ex + 9, (1 << 15) + 1)) if g[t] == 25736 - y[q]):
            i = bisect.bisect_right(tails, -t)
            tails[i:i + 1] = [-t]
    assert 0.984 < len(tails) / len(xq) < 0.985
