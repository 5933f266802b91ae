"""QNN's 16-bit HardSwish (openqnn's spec, src/openqnn/backends/htp/spec/qnn_hardswish16.py) against the HTP
simulator: every 16-bit input code at chosen and random encodings (tests/fidelity/unary16_probe.py)."""

from __future__ import annotations

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_hardswish16 import hardswish16_codes
from tests.fidelity.harness import simulator_missing
from tests.fidelity.unary16_probe import N, Probe16, probe_many

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


def _exact(p: Probe16) -> np.ndarray:
    """Exact rounding (half up) of ``x relu6(x + 3) / 6`` into the output encoding."""
    x = (np.arange(N) - p.zi) * float(np.float32(p.si))
    y = x * np.clip(x + 3, 0, 6) / 6 / float(np.float32(p.so))
    return np.clip(p.zo + np.floor(y + 0.5), 0, N - 1).astype(np.int64)


def _random_probes(seed: int, count: int) -> list[Probe16]:
    """Encodings as calibration gives them: inputs over ``[-0.2..-20, 0.2..20]``, outputs from the function's minimum
    (or 0) times 1-2 to its maximum times 0.3-1.5 (ratios ``s_in / s_out`` of about 0.7 to 30)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        lo, hi = -float(np.exp(rng.uniform(np.log(0.2), np.log(20)))), float(np.exp(rng.uniform(np.log(0.2), np.log(20))))
        si = (hi - lo) / 65535
        xs = np.linspace(lo, hi, 4001)
        ys = xs * np.clip(xs + 3, 0, 6) / 6
        olo, ohi = min(float(ys.min()), 0.0) * float(rng.uniform(1, 2)), float(ys.max()) * float(rng.uniform(0.3, 1.5))
        so = (ohi - olo) / 65535
        out.append(Probe16(si, round(-lo / si), so, min(max(round(-olo / so), 0), N - 1)))
    return out


# chosen encodings: the output encoding the input's (x_o = a), ratios 0.5-1.9 at s_in = 2^-12, the gate's
# exponent -5 to 4 (s_in 4e-6 to 2e-3), ratios below 1/2 (x_o with fraction bits) down to 0.01 and up to 63
_CHOSEN = [Probe16(2.0**-12, 32768, 2.0**-12, 32768), Probe16(1.37e-4, 20000, 1.37e-4, 20000),
           Probe16(2.0**-12, 32768, 2.0**-12 / 1.9036, 30000), Probe16(2.0**-12, 32768, 2.0**-11, 32768),
           Probe16(4e-6, 12000, 4e-6 / 2.5, 10000), Probe16(2e-3, 32768, 2e-3 / 9.1, 32768),
           Probe16(1.1e-4, 30000, 1.1e-4 / 0.3, 20000), Probe16(1e-4, 32768, 1e-4 / 0.01, 100),
           Probe16(1e-4, 32768, 1e-4 / 63, 30000), Probe16(2.0**-12, 0, 16 / 65535, 0)]


@pytest.mark.parametrize("arch", ["68", "73"])
def test_hardswish16_is_the_spec_on_every_code(arch: str) -> None:
    """Every code of 10 chosen and 6 random encodings is the spec's; exact rounding misses codes on each."""
    probes = _CHOSEN + _random_probes(int(arch), 6)
    exact = []
    for p, y in zip(probes, probe_many(arch, "HardSwish", probes)):
        want = hardswish16_codes(np.arange(N), p.si, p.zi, p.so, p.zo)
        assert want is not None
        np.testing.assert_array_equal(y, want)
        exact.append((_exact(p) == y).mean())
    assert max(exact) < 0.999 and min(exact) < 0.6


@pytest.mark.parametrize("arch", ["68", "73"])
def test_hardswish16_gate_rounds_twice(arch: str) -> None:
    """The gate ``x / 6 + 1/2`` (Q15) is rounded twice: +0.75 of a unit for the gate's exponent -1 and up, +0.625 at
    -2; one rounding (+0.5) misses codes at both, and 0.75 misses codes at -2 (the output encoding the input's)."""
    probes = [Probe16(1e-4, 30000, 1e-4, 30000), Probe16(3.6e-5, 26000, 3.6e-5, 26000)]
    q = np.arange(N)
    for p, y in zip(probes, probe_many(arch, "HardSwish", probes)):
        a = q - p.zi
        np.testing.assert_array_equal(y, hardswish16_codes(q, p.si, p.zi, p.so, p.zo))
        f, e = np.frexp(float(np.float32(p.si)) * 2**15 / 6)
        m = int(np.floor(f * 2**15 + 0.5))
        for b in (0.5, 0.625, 0.75):
            if b == (0.75 if e >= -1 else 0.625):
                continue
            g = np.clip(((a * m + int(b * 2 ** (15 - int(e)))) >> (15 - int(e))) + 16384, 0, 32767)
            assert (p.zo + ((a * g + 16384) >> 15) != y).any()


@pytest.mark.parametrize("arch", ["68", "73"])
def test_hardswish16_large_ratios_are_not_the_rule(arch: str) -> None:
    """From a ratio of 64 up the simulator's gate is finer than Q15 near x = -3 (open): the spec declines, and
    exact rounding is closer than the Q15 form."""
    p = Probe16(1e-4, 32768, 1e-4 / 100, 30000)
    assert hardswish16_codes(np.arange(4), p.si, p.zi, p.so, p.zo) is None
    (y,) = probe_many(arch, "HardSwish", [p])
    assert (_exact(p) == y).mean() > 0.999
