"""16-bit Gelu against the HTP simulator (docs/htp-fidelity.md, "16-bit Gelu (and LogSoftmax) (stop 28)"): the gate
``G`` is a function of ``|z|`` in Q14 rounded (``z = x / sqrt 2`` from a 15-bit multiplier), exactly ``2048 + rshr(Z
R, 16)`` below ``z = 1`` and 4095 from ``z = 4``; between, a table read off the simulator (its arithmetic open). Every
16-bit input code at power-of-two encodings (the output encoding the input's) and at calibration-like random ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_gelu16 import gelu16_codes, gelu16_gate
from tests.fidelity.harness import simulator_missing
from tests.fidelity.unary16_probe import N, Probe16, probe_many

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")

POW2 = [16, 15, 14, 13]  # s = 2^-k, zero point 0 (x from 0 up), the output encoding the input's


def _gate_intervals(ys: list[np.ndarray], zdef) -> tuple[np.ndarray, np.ndarray]:
    """Per value of ``zdef(xi)`` (``xi = x 2^16``), the interval of integer gates every code of the POW2 probes
    allows (``code = rshr(a G, 12)``)."""
    n = 1 << 20
    lo, hi = np.full(n, -(10**9)), np.full(n, 10**9)
    for k, y in zip(POW2, ys):
        a = np.arange(1, N)
        c = y[a]
        live = c < N - 1
        a, c = a[live], c[live]
        z = zdef(a << (16 - k))
        np.maximum.at(lo, z, -((-(4096 * c - 2048)) // a))
        np.minimum.at(hi, z, -((-(4096 * c + 2048)) // a) - 1)
    return lo, hi


def _random_probes(seed: int, count: int) -> list[Probe16]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        lo, hi = -float(np.exp(rng.uniform(0, np.log(8)))), float(np.exp(rng.uniform(0, np.log(8))))
        si = (hi - lo) / 65535
        olo, ohi = -0.17 * float(rng.uniform(1, 1.5)), hi * float(rng.uniform(1, 1.3))
        so = (ohi - olo) / 65535
        out.append(Probe16(si, round(-lo / si), so, round(-olo / so)))
    return out


@pytest.mark.parametrize("arch", ["68", "73"])
def test_gelu_gate_is_a_function_of_z_in_q14(arch: str) -> None:
    """The gates read from four power-of-two probes never conflict on one rounded Q14 ``Z``, but do on a floored
    one; every gate is the spec's (below ``z = 1`` its formula, from 1 to 4 its measured table, then 4095)."""
    ys = probe_many(arch, "Gelu", [Probe16(2.0**-k, 0, 2.0**-k, 0) for k in POW2])
    lo, hi = _gate_intervals(ys, lambda xi: (xi * 23170 + (1 << 16)) >> 17)
    seen = lo > -(10**8)
    assert (lo <= hi)[seen].all()
    flo, fhi = _gate_intervals(ys, lambda xi: (xi * 23170) >> 17)
    assert (flo > fhi).sum() > 1000
    z = np.nonzero(seen)[0]
    g = gelu16_gate(z)
    ok = (g >= lo[z]) & (g <= hi[z])
    assert ok.all() and ((z >> 14) == 0).sum() == 1 << 14


@pytest.mark.parametrize("arch", ["68", "73"])
def test_gelu_codes_on_random_encodings(arch: str) -> None:
    """Eight calibration-like encodings and four anywhere (none of them among the probes the gate table was read
    from): the spec gives every code (the stop 29 spec 95-98%), exact rounding at most 30% of the first eight."""
    rng = np.random.default_rng(int(arch))
    probes = _random_probes(5, 8) + [Probe16(s, int(rng.integers(0, N)), s * float(rng.uniform(0.2, 4)),
                                             int(rng.integers(0, N)))
                                     for s in np.exp(rng.uniform(np.log(1e-6), np.log(1e-3), 4))]
    sims = probe_many(arch, "Gelu", probes)
    q = np.arange(N)
    for i, (p, y) in enumerate(zip(probes, sims)):
        ours = gelu16_codes(q, p.si, p.zi, p.so, p.zo)
        assert ours is not None
        np.testing.assert_array_equal(ours, y)
        if i < 8:
            x = (q - p.zi) * float(np.float32(p.si))
            exact = p.zo + np.floor(0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))) / float(np.float32(p.so))
                                    + 0.5)
            assert (np.clip(exact, 0, N - 1) == y).mean() <= 0.3


@pytest.mark.parametrize("arch", ["68", "73"])
def test_gelu_gate_table_is_the_simulators(arch: str) -> None:
    """The thirteen probes of ``gelu16_gate_probe.gate_table`` pin one gate for every ``Z`` of [1, 4) and they are the
    spec's table; the negative side (the same probes at zero point 65535) reads ``4096 - G`` wherever it pins a
    nonzero value, for ``Z`` in [0, 5) (docs/htp-fidelity.md, "16-bit Gelu and Atan as measured tables (stop 30)")."""
    from openqnn.backends.htp.spec.qnn_gelu16 import gelu16_gate_table
    from tests.fidelity.gelu16_gate_probe import gate_table, read_gate_intervals

    np.testing.assert_array_equal(gate_table(arch), gelu16_gate_table())
    lo, hi = read_gate_intervals(arch, 65535)
    pinned = np.nonzero(lo == hi)[0]
    assert len(pinned) > 60000
    np.testing.assert_array_equal(lo[pinned], 4096 - gelu16_gate(pinned))


@pytest.mark.parametrize("arch", ["68", "73"])
def test_gelu_gate_flickers_between_1_and_3(arch: str) -> None:
    """Between ``z = 1`` and 3 the gate steps down as well as up (docs/htp-fidelity.md, "16-bit Gelu's gate from 1
    to 4 (stop 28)"): at ``Z = 16390..16393`` it reads 3771, 3772, 3771, 3772, which no ``C + rshr(F(Z) R(Z), W)``
    with ``F`` and ``R`` monotone gives (the product moves by under a unit of ``R`` per code), over a thousand down
    steps in ``[1, 2)`` for 316 of net rise, over a hundred in ``[2, 3)``, none in ``[3, 4)``."""
    ys = probe_many(arch, "Gelu", [Probe16(2.0**-k, 0, 2.0**-k, 0) for k in POW2])
    lo, hi = _gate_intervals(ys, lambda xi: (xi * 23170 + (1 << 16)) >> 17)
    assert lo[16390:16394].tolist() == hi[16390:16394].tolist() == [3771, 3772, 3771, 3772]
    downs = []
    for j in (1, 2, 3):
        z = np.arange((j << 14) + 1, (j + 1) << 14)
        known = (lo[z] == hi[z]) & (lo[z - 1] == hi[z - 1])
        downs.append(int(((lo[z] - lo[z - 1]) < 0)[known].sum()))
    assert downs[0] > 1000 and downs[1] > 100 and downs[2] == 0


# runs of the gate's drops in [2, 2.63) between which nothing else steps (docs/htp-fidelity.md, "16-bit Gelu's gate,
# third pass (stop 29)"): each run is one value of the slow accumulator
_Y_RUNS = [(33066, 33215), (33715, 33942), (34526, 35143), (35427, 35584), (36055, 36452), (37012, 37174),
           (37712, 37957), (38399, 39739), (40316, 41094), (41478, 41830), (42131, 42577), (42792, 43063)]


@pytest.mark.parametrize("arch", ["68", "73"])
def test_gelu_gate_flicker_in_2_3_is_a_floor_of_k_over_4_plus_z(arch: str) -> None:
    """In ``[2, 3)`` the gate's drops are the steps of ``floor((a + 1/2) y)``, ``y = 4 / (4 + z)``, ``a`` a slowly
    varying integer (1988..1994 over these runs, largest at ``z`` about 2.3): with no offset every run admits one
    half-integer multiplier between 1980 and 2005, and they rise and fall by one from run to run; the twelve runs
    together are in phase at ``k`` about 1993 (coherence over 0.999), not at 2048 (under 0.7), nor as ``K ln Z`` (the
    period is ``2.06 (4 + z)^2`` codes, not proportional to ``z``)."""
    from tests.fidelity.gelu16_gate_probe import (
        down_steps,
        y_coherence,
        y_crossing_offsets,
        y_floor_multipliers,
    )

    ys = probe_many(arch, "Gelu", [Probe16(2.0**-k, 0, 2.0**-k, 0) for k in POW2])
    lo, hi = _gate_intervals(ys, lambda xi: (xi * 23170 + (1 << 16)) >> 17)
    steps = down_steps(lo, hi, 2 << 14, 3 << 14)
    runs = [steps[(steps >= a) & (steps <= b)] for a, b in _Y_RUNS]
    assert [len(r) for r in runs] == [3, 4, 5, 3, 6, 3, 4, 17, 10, 5, 6, 4]
    assert [k for k in range(1980, 2010) if len(y_crossing_offsets(runs[7], k))] == [1993]
    assert [y_floor_multipliers(r) for r in runs] == [[1990.5], [1991.5], [1992.5], [1993.5], [1993.5], [1993.5],
                                                      [1994.5], [1993.5], [1991.5], [1990.5], [1989.5], [1988.5]]
    assert y_coherence(runs, 1993) > 0.999 and y_coherence(runs, 2048) < 0.7 and y_coherence(runs, 2000) < 0.995


# [2.53125, 2.65625): P and Q of the rational form as floors of quadratics in v = (Z - 41472) / 1024 (docs/htp-
# fidelity.md, "16-bit Gelu's gate, fourth pass (stop 29)"; the largest margins a linear programme finds, 0.0004)
_PQ_WINDOW = (41472, 43520)
# stop 28's floored least-squares cubic of the gate in [2, 3) (B0..B3 of (B3 t^3 + B2 t^2 + B1 t + B0) >> 46), which the
# rational form replaced in the spec
_OLD_CUBIC_2 = (287693074833611424, 120770562630, -8425981, 197)
_PQ_LOCAL = ((2877.3095709151235, 12.616479426499437, 0.009945822141789592),
             (4867.618933050515, 11.472437688986606, -0.2612506967284149))


@pytest.mark.parametrize("arch", ["68", "73"])
def test_gelu_gate_in_2_3_is_a_rational_of_two_floored_integers(arch: str) -> None:
    """In ``[2, 3)`` the gate is ``P + ((Q - P) 2^16 + 2^15) // (Z + 2^16)``, that is ``(P z + 4 Q + 2) // (z + 4)``
    with ``P`` and ``Q`` separately floored integers (``a = Q - P`` the slow accumulator of the drops): over the 2,048
    codes of ``[2.53125, 2.65625)`` (21 drops, 25 steps of ``P``, 22 of ``Q``) two floored quadratics give every gate;
    the spec (the measured table) gives every seen gate, where the older floored cubic of ``G`` gave under 87%."""
    ys = probe_many(arch, "Gelu", [Probe16(2.0**-k, 0, 2.0**-k, 0) for k in POW2])
    lo, hi = _gate_intervals(ys, lambda xi: (xi * 23170 + (1 << 16)) >> 17)
    z = np.arange(*_PQ_WINDOW)
    assert (lo[z] == hi[z]).all() and int((np.diff(lo[z]) == -1).sum()) == 21
    v = (z - _PQ_WINDOW[0]) / 1024.0
    p, q = (np.floor(c0 + c1 * v + c2 * v * v).astype(np.int64) for c0, c1, c2 in _PQ_LOCAL)
    assert (p + (((q - p) << 16) + (1 << 15)) // (z + (1 << 16)) == lo[z]).all()
    assert int(p[-1] - p[0]) == 25 and int(q[-1] - q[0]) == 22
    z = np.arange(2 << 14, 3 << 14)
    z = z[lo[z] > -(10**8)]
    ok = (gelu16_gate(z) >= lo[z]) & (gelu16_gate(z) <= hi[z])
    t = z - (2 << 14)
    b0, b1, b2, b3 = _OLD_CUBIC_2
    old = (b3 * t**3 + b2 * t**2 + b1 * t + b0) >> 46
    assert ok.all() and ((old >= lo[z]) & (old <= hi[z])).mean() < 0.87


@pytest.mark.parametrize("arch", ["68", "73"])
def test_gelu_tanh_form_is_the_erf_form(arch: str) -> None:
    """An ONNX Gelu with ``approximate="tanh"`` gives the erf form's codes on the HTP:
    every code of two clean and four random encodings is the spec's erf form; the tanh form's exact rounding gives
    under a fifth of them."""
    probes = [Probe16(2.0**-13, 0, 2.0**-13, 0), Probe16(2.0**-13, 65535, 2.0**-13, 65535), *_random_probes(3, 4)]
    q = np.arange(N)
    for p, y in zip(probes, probe_many(arch, "Gelu", probes, approximate="tanh")):
        np.testing.assert_array_equal(gelu16_codes(q, p.si, p.zi, p.so, p.zo), y)
        x = (q - p.zi) * float(np.float32(p.si))
        tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
        exact = np.clip(np.floor(tanh / float(np.float32(p.so)) + 0.5) + p.zo, 0, N - 1)
        assert (exact == y).mean() < 0.2
