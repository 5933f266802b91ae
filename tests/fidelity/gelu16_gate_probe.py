"""Read 16-bit Gelu's gate ``G(Z)`` off the HTP simulator and print the structure of its flicker between ``|z| = 1``
and 4 (docs/htp-fidelity.md, "16-bit Gelu's gate from 1 to 4 (stop 28)").

``python -m tests.fidelity.gelu16_gate_probe [--arch 73] [--save gates.npz] [--write-table]``

The gates come from four power-of-two probes (``s_in = s_out = 2^-16..2^-13``, zero point 0), as the interval of
integer gates every code allows per ``Z`` (|z| in Q14, rounded); where the interval is one value the gate is known.
Per sixteenth of a unit of ``z`` it prints the spacing of the gate's up steps and down steps (``G(Z) - G(Z - 1)`` of
+1 and -1) that lie closer than ``gap`` codes, the flicker's period, and its share of the spec's gates.

:func:`gate_table` reads every gate of ``|z|`` in [1, 4) from thirteen probes (docs/htp-fidelity.md, "16-bit Gelu and
Atan as measured tables (stop 30)"); ``--write-table`` writes it where the spec reads it
(``openqnn/backends/htp/spec/tables/gelu16_gate.safetensors``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from tests.fidelity.harness import simulator_missing
from tests.fidelity.unary16_probe import N


def read_gates(arch: str) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: per ``Z`` (index, up to 2^20), the integer gates the four probes allow (``lo > hi``: conflict,
    ``lo = -10^9``: not seen)."""
    from tests.fidelity.test_qnn_gelu16 import POW2, _gate_intervals
    from tests.fidelity.unary16_probe import Probe16, probe_many

    ys = probe_many(arch, "Gelu", [Probe16(2.0**-k, 0, 2.0**-k, 0) for k in POW2])
    return _gate_intervals(ys, lambda xi: (xi * 23170 + (1 << 16)) >> 17)


# s_in = s_out, zero point 0 (or 65535 for the negative side): every Z of [1, 4) by at least one of them, the input
# codes large enough (over 4096) that each pins an integer gate
TABLE_SCALES = (1.1 * 2**-14, 1.37 * 2**-14, 0.97 * 2**-13, 2**-14, 2**-13, 1.23 * 2**-13, 1.5 * 2**-14,
                1.57 * 2**-14, 1.63 * 2**-14, 1.71 * 2**-14, 1.79 * 2**-14, 1.87 * 2**-14, 1.93 * 2**-14)
TABLE_RANGE = (1 << 14, 1 << 16)  # Z of [1, 4) in Q14


def read_gate_intervals(arch: str, zero_point: int, scales: Sequence[float] = TABLE_SCALES,
                        top: int = 5 << 14) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` per ``Z`` below ``top``: the integer gates the probes at ``scales`` (the output encoding the
    input's, the given zero point) allow, with ``Z`` from :func:`gelu16_z`. Zero point 0 reads ``G`` from the
    positive codes (``code = rshr(b G, 12)``), 65535 the negative side's ``H`` (``-code = rshr(b H, 12)``, where the
    spec has ``H = max(4096 - G, 0)``); saturated codes and codes of 0 are left out (``lo = -10^9``: not read)."""
    from openqnn.backends.htp.spec.qnn_gelu16 import gelu16_z
    from tests.fidelity.unary16_probe import Probe16, probe_many

    probes = [Probe16(s, zero_point, s, zero_point) for s in scales]
    lo, hi = np.full(top, -(10**9)), np.full(top, 10**9)
    for p, y in zip(probes, probe_many(arch, "Gelu", probes)):
        b = np.abs(np.arange(N) - p.zi)
        z = gelu16_z(b, float(np.float32(p.si)))
        assert z is not None
        c = np.abs(y - p.zo)
        live = (y > 0) & (y < N - 1) & (b > 0) & (c > 0) & (z < top)
        b, c, z = b[live], c[live], z[live]
        np.maximum.at(lo, z, -((-(4096 * c - 2048)) // b))
        np.minimum.at(hi, z, -((-(4096 * c + 2048)) // b) - 1)
    return lo, hi


def gate_table(arch: str) -> np.ndarray:
    """Every gate of ``Z`` in ``TABLE_RANGE`` (int16), read off the simulator; an AssertionError where one is not
    pinned to a single integer (a probe set that no longer reads every gate)."""
    lo, hi = read_gate_intervals(arch, 0)
    a, b = TABLE_RANGE
    if not (lo[a:b] == hi[a:b]).all():
        raise AssertionError(f"{int(np.sum(lo[a:b] != hi[a:b]))} gates of [1, 4) not pinned by the probes")
    return lo[a:b].astype(np.int16)


def flicker(lo: np.ndarray, hi: np.ndarray, step: float = 1 / 16) -> list[tuple[float, float, float, float]]:
    """Per ``step`` of ``z`` in [1, 3): ``(z, mean up spacing, mean down spacing, share of the spec's gates)``
    (spacings under 12 codes in [1, 2), under 120 in [2, 3))."""
    from openqnn.backends.htp.spec.qnn_gelu16 import gelu16_gate

    top = 3 << 14
    g = lo[:top]
    d = np.diff(g)
    up, dn = np.nonzero(d == 1)[0] + 1, np.nonzero(d == -1)[0] + 1
    out = []
    for z0 in np.arange(1, 3, step):
        a, b = int(z0 * 16384), int((z0 + step) * 16384)
        gap = 12 if z0 < 2 else 120

        def spacing(ev: np.ndarray, a: int = a, b: int = b, gap: int = gap) -> float:
            s = np.diff(ev[(ev >= a) & (ev < b)])
            s = s[s < gap]
            return float(s.mean()) if len(s) else float("nan")

        z = np.arange(a, b)
        seen = lo[z] > -(10**8)
        spec = gelu16_gate(z[seen])
        share = float(((spec >= lo[z][seen]) & (spec <= hi[z][seen])).mean()) if seen.any() else float("nan")
        out.append((float(z0 + step / 2), spacing(up), spacing(dn), share))
    return out


def down_steps(lo: np.ndarray, hi: np.ndarray, a: int, b: int) -> np.ndarray:
    """The ``Z`` in ``[a, b)`` whose known gate is one below that of ``Z - 1`` (the flicker's drops)."""
    z = np.arange(max(a, 1), b)
    known = (lo[z] == hi[z]) & (lo[z - 1] == hi[z - 1])
    return z[known & (lo[z] - lo[z - 1] == -1)]


def y_crossing_offsets(steps: np.ndarray, k: int, grid: int = 2000) -> np.ndarray:
    """The offsets ``o`` (multiples of ``1 / grid`` in [0, 1)) for which every step ``Z`` of ``steps`` is a crossing
    of an integer by ``k y + o`` between ``Z - 1`` and ``Z``, ``y = 4 / (4 + z) = 2^16 / (Z + 2^16)`` (docs/htp-
    fidelity.md, "16-bit Gelu's gate, third pass (stop 29)")."""
    o = np.arange(grid) / grid
    ok = np.ones(grid, bool)
    for v in np.asarray(steps, np.int64):
        ok &= np.floor(k * 65536.0 / (v + 65535.0) + o) != np.floor(k * 65536.0 / (v + 65536.0) + o)
    return o[ok]


def y_floor_multipliers(steps: np.ndarray, k_lo: float = 1980, k_hi: float = 2005, step: float = 0.5) -> list[float]:
    """The ``k`` on a grid of ``step`` in ``[k_lo, k_hi]`` for which ``floor(k y)`` (no offset) steps at every ``Z``
    of ``steps``, ``y = 2^16 / (Z + 2^16)``."""
    ks = np.arange(k_lo, k_hi + step / 2, step)
    ok = np.ones(len(ks), bool)
    for v in np.asarray(steps, np.int64):
        ok &= np.floor(ks * 65536.0 / (v + 65535.0)) != np.floor(ks * 65536.0 / (v + 65536.0))
    return [float(k) for k in ks[ok]]


def y_coherence(series: Sequence[np.ndarray], k: float) -> float:
    """Mean pairwise phase coherence of ``k y`` over the steps of each series (each with its own phase): 1 when
    every series' steps are whole periods of ``k y`` apart."""
    tot, n = 0.0, 0
    for e in series:
        y = 65536.0 / (np.asarray(e, float) - 0.5 + 65536.0)
        tot += float(abs(np.exp(2j * np.pi * k * y).sum()) ** 2) - len(e)
        n += len(e) * (len(e) - 1)
    return tot / n


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--save", default=None)
    ap.add_argument("--write-table", action="store_true", help="write the gates of [1, 4) where the spec reads them")
    args = ap.parse_args(argv)
    if (why := simulator_missing()) is not None:
        print(why)
        return 1
    if args.write_table:
        from safetensors.numpy import save_file

        from openqnn.backends.htp.spec.measured import table_path

        path = table_path("gelu16_gate.safetensors")
        save_file({"gate": gate_table(args.arch)}, str(path))
        print(f"wrote {path}")
        return 0
    lo, hi = read_gates(args.arch)
    if args.save:
        np.savez(args.save, lo=lo, hi=hi)
    print("z       up     down   spec")
    for z, pu, pd, share in flicker(lo, hi):
        print(f"{z:.3f}  {pu:6.2f} {pd:6.2f}  {share:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
