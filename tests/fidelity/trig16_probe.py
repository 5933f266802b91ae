"""Probe how QNN's HTP simulator computes 16-bit Sin, Cos and Atan (docs/htp-fidelity.md, "16-bit Atan, Sin and Cos
(stop 27)").

``python -m tests.fidelity.trig16_probe --arch 73 [--write-atan-table]``

What the probes showed (v68 = v73) and what this module models:

- Sin's value is a Q13 integer, Cos's and Atan's Q14 (at an output scale of 2^-15 the codes step by 4 and 2).
- Sin and Cos take the phase of the input *code* in Q32 turns: ``P = (|a| M) mod 2^32`` with ``a = q - z_in`` and
  ``M = round(float32(s_in) 2^32 / (2 pi))``; ``P`` is folded into the first quadrant at full width (the phase
  within the quadrant, reflected as a one's complement in the odd quadrants) and only then floored to 14 bits of the
  quadrant (:func:`quadrant_phase`). The value is a function ``F(r)`` of that 14-bit phase ``r`` alone, the same at
  every input encoding: :func:`phase_table` reads it from probes; openqnn's spec (spec/qnn_trig16.py) computes it,
  a Horner cubic per pi/8 piece (stop 28).
- The signed Q13 or Q14 value ``V`` is converted to the output codes in sign and magnitude, as Gelu's output stage:
  ``sign(V) rshr(|V| m, 15 - e)`` with ``2^-Q / s_out = f 2^e`` and ``m = floor(f 2^15 + 1/4)`` on 58 of 60
  random encodings (:func:`output_codes`; the two others near a fraction of 3/4: open).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from tests.fidelity.harness import simulator_missing
from tests.fidelity.unary16_probe import N, Probe16, probe_many

QUADRANT_BITS = 14
VALUE_BITS = {"Sin": 13, "Cos": 14, "Atan": 14}
UNKNOWN = -(1 << 30)
# the output multiplier is neither the rounded nor the truncated 15-bit significand: each of 60 random Sin encodings
# pins m to one integer, floor(f 2^15 + 1/4) on 58 (f 2^16 rounded, then truncated to 15 bits); the two others have
# fractions of f 2^15 at 0.748 (rounded up) and 0.783 (down): the ratio itself is slightly off, how is open
MULTIPLIER_OFFSET = 0.25
MULTIPLIER_UNSETTLED = 0.05


def phase_multiplier(si: float, turn_bits: int = 32) -> int:
    """``round(float32(s_in) 2^turn_bits / (2 pi))``: one input code in units of ``2^-turn_bits`` of a turn."""
    return int(np.floor(float(np.float32(si)) / (2 * np.pi) * 2.0**turn_bits + 0.5))


def quadrant_phase(a: np.ndarray, si: float, op: str, turn_bits: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The sign and the 14-bit quadrant phase ``r`` (``0..2^14 - 1``) of input codes ``a = q - z_in``, Sin or Cos: the
    phase ``P = |a| M mod 2^turn_bits``, its quadrant ``k`` (top 2 bits) and phase within it ``u``, reflected as a one's
    complement in the odd quadrants (``quarter - 1 - u``), floored to 14 bits (spec/qnn_trig16.py)."""
    one = np.int64(1) << turn_bits
    quarter = one >> 2
    p = (np.abs(np.asarray(a, np.int64)) * phase_multiplier(si, turn_bits)) % one
    k, u = p // quarter, p % quarter
    sign = np.where(k >= 2, -1, 1) * np.sign(a) if op == "Sin" else np.where((k == 1) | (k == 2), -1, 1)
    u = np.where(k % 2 == 1, quarter - 1 - u, u)
    return sign.astype(np.int64), (u >> (turn_bits - 2 - QUADRANT_BITS)).astype(np.int64)


def output_codes(v: np.ndarray, value_bits: int, so: float, zo: int) -> np.ndarray:
    """A Q``value_bits`` value into the output codes in sign and magnitude: ``z_out + sign(v) rshr(|v| m, 15 - e)``,
    ``2^-Q / s_out = f 2^e``, ``m = floor(f 2^15 + 1/4)`` (``MULTIPLIER_OFFSET``; ties of ``rshr`` away from
    zero; not settled for fractions of ``f 2^15`` near 3/4)."""
    ratio = float(np.float32(2.0**-value_bits / float(np.float32(so))))
    e = int(np.floor(np.log2(ratio))) + 1
    m = int(np.floor(ratio / 2.0**e * 2**15 + MULTIPLIER_OFFSET))
    sh = 15 - e
    v = np.asarray(v, np.int64)
    y = np.sign(v) * ((np.abs(v) * m + (np.int64(1) << (sh - 1))) >> sh)
    return np.clip(zo + y, 0, N - 1)


def multiplier_settled(value_bits: int, so: float) -> bool:
    """Whether the output multiplier's fraction ``frac(f 2^15)`` is clear of the unsettled band around 3/4."""
    ratio = float(np.float32(2.0**-value_bits / float(np.float32(so))))
    e = int(np.floor(np.log2(ratio))) + 1
    return abs((ratio / 2.0**e * 2**15) % 1 - (1 - MULTIPLIER_OFFSET)) >= MULTIPLIER_UNSETTLED


def phase_table(op: str, probes: Sequence[Probe16], codes: Sequence[np.ndarray],
                turn_bits: int = 32) -> tuple[np.ndarray, int]:
    """``F(r)`` read from all-code probes whose output scale is ``2^-Q`` (the value is the code): ``[2^14 + 1]``,
    ``UNKNOWN`` where no probe reached ``r`` unsaturated or probes disagree; and the number of such disagreements."""
    q = VALUE_BITS[op]
    seen: dict[int, set[int]] = {}
    for p, c in zip(probes, codes):
        assert float(np.float32(p.so)) == 2.0**-q
        a = np.arange(N) - p.zi
        sign, r = quadrant_phase(a, p.si, op, turn_bits)
        v = np.asarray(c, np.int64) - p.zo
        ok = (c > 0) & (c < N - 1) & (sign != 0)
        for k, y in zip(r[ok].tolist(), (v * sign)[ok].tolist()):
            seen.setdefault(k, set()).add(y)
    table = np.full((1 << QUADRANT_BITS) + 1, UNKNOWN, np.int64)
    for k, ys in seen.items():
        if len(ys) == 1:
            table[k] = next(iter(ys))
    return table, sum(len(ys) > 1 for ys in seen.values())


def table_codes(op: str, table: np.ndarray, p: Probe16) -> tuple[np.ndarray, np.ndarray]:
    """Every input code's output code through ``table`` and the output conversion, and where ``table`` is known."""
    sign, r = quadrant_phase(np.arange(N) - p.zi, p.si, op)
    known = table[r] != UNKNOWN
    return output_codes(sign * np.where(known, table[r], 0), VALUE_BITS[op], p.so, p.zo), known


def exact_codes(op: str, p: Probe16) -> np.ndarray:
    """Exact rounding (half up) of the real function into the output encoding."""
    x = (np.arange(N) - p.zi) * float(np.float32(p.si))
    y = {"Sin": np.sin, "Cos": np.cos, "Atan": np.arctan}[op](x) / float(np.float32(p.so))
    return np.clip(p.zo + np.floor(y + 0.5), 0, N - 1).astype(np.int64)


def clean_probes(op: str) -> list[Probe16]:
    """Power-of-two input scales 2^-13..2^-10 (|x| to 32), the output scale 2^-Q (the code is the value)."""
    so = 2.0 ** -VALUE_BITS[op]
    return [Probe16(2.0**-k, 32768, so, 32768) for k in (13, 12, 11, 10)]


def random_probes(seed: int, count: int) -> list[Probe16]:
    """Input scales 3e-5..3e-4 (|x| to about 10-20), zero points 20000-45000, output scales 3.1e-5..2e-4 (no
    saturation), output zero points near the middle."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        si = float(np.exp(rng.uniform(np.log(3e-5), np.log(3e-4))))
        so = float(np.exp(rng.uniform(np.log(3.1e-5), np.log(2e-4))))
        out.append(Probe16(si, int(rng.integers(20000, 45000)), so, int(rng.integers(30000, 35000))))
    return out


# Atan's reciprocal above 1 (docs/htp-fidelity.md, "16-bit Gelu and Atan as measured tables (stop 30)"): input scales
# m 2^-(30 - k), k = 0..7 (x in [2^k, 2^(k+1)) for the input codes from about 2^15 up), odd m near and below 2^15
# (twelve from the top, twelve more drawn at random from 22,000 up; 24 for k = 0), and three of 2^-15; output scale
# 2^-14 (the code is the value)
ATAN_WINDOW = 8  # R(n) is searched within this many units of the rounded exact reciprocal (it lies within 2)


def atan_reciprocal_probes(seed: int = 7) -> list[Probe16]:
    rng = np.random.default_rng(seed)
    scales = []
    for k in range(8):
        ms = [32767 - 2 * i for i in range(12)] + [int(v) | 1 for v in rng.integers(22000, 32767, 24 if k == 0 else 12)]
        scales += [m * 2.0 ** -(30 - k) for m in ms]
    scales += [c * 2.0**-15 for c in (1.0, 1.3, 1.7)]
    return [Probe16(s, 0, 2.0**-14, 0) for s in scales]


def atan_reciprocal_sets(arch: str) -> np.ndarray:
    """Per ``n`` in ``[2^16, 2^17)``, which ``R(n) = round(2^31 / n) + d`` (``d`` in ``[-ATAN_WINDOW, ATAN_WINDOW]``,
    the columns) every input above 1 of the probes allows: ``25736 - G(R(n) >> k)`` its value (bool ``[2^16, 2 W +
    1]``; a row of all True: ``n`` not read)."""
    from openqnn.backends.htp.spec.qnn_trig16 import atan16_core, atan16_reciprocal_input

    probes = atan_reciprocal_probes()
    ys: list[np.ndarray] = []
    for i in range(0, len(probes), 12):  # a dozen probes per simulator session
        ys += probe_many(arch, "Atan", probes[i:i + 12])
    n_all = np.arange(1 << 16, 1 << 17, dtype=np.int64)
    exact = ((1 << 31) + (n_all >> 1)) // n_all
    deltas = np.arange(-ATAN_WINDOW, ATAN_WINDOW + 1)
    refused = np.zeros((1 << 16) * len(deltas), np.int64)  # per (n, d): inputs that refuse it
    for p, y in zip(probes, ys):
        a = np.arange(1, N)
        xq, n, k = atan16_reciprocal_input(a, p.si)
        live = xq > 1 << 15
        idx, k, v = n[live] - (1 << 16), k[live], y[a[live]]
        t = (exact[idx][:, None] + deltas[None, :]) >> k[:, None]
        row, col = np.nonzero((25736 - atan16_core(np.minimum(t, 1 << 15))) != v[:, None])
        refused += np.bincount(idx[row] * len(deltas) + col, minlength=len(refused))
    return (refused == 0).reshape(1 << 16, len(deltas))


def atan_reciprocal_table(arch: str) -> np.ndarray:
    """``D[n - 2^16]`` (int8): per ``n`` the allowed ``R(n)`` nearest the rounded exact reciprocal, less it (0 where
    ``n`` is not read); an AssertionError where no value is allowed (the reciprocal is not one function of ``n``)."""
    allowed = atan_reciprocal_sets(arch)
    if not allowed.any(axis=1).all():
        raise AssertionError(f"{int(np.sum(~allowed.any(axis=1)))} n allow no reciprocal")
    deltas = np.arange(-ATAN_WINDOW, ATAN_WINDOW + 1)
    best = np.argmin(np.where(allowed, np.abs(deltas)[None, :], 1 << 20), axis=1)
    return deltas[best].astype(np.int8)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--write-atan-table", action="store_true",
                    help="write Atan's measured reciprocal where the spec reads it")
    args = ap.parse_args(argv)
    if (why := simulator_missing()) is not None:
        print(why)
        return 1
    if args.write_atan_table:
        from safetensors.numpy import save_file

        from openqnn.backends.htp.spec.measured import table_path

        path = table_path("atan16_reciprocal.safetensors")
        save_file({"correction": atan_reciprocal_table(args.arch)}, str(path))
        print(f"wrote {path}")
        return 0
    rand = random_probes(args.seed, 6)
    for op in ("Sin", "Cos"):
        clean = clean_probes(op)
        codes = probe_many(args.arch, op, clean + rand)
        for bits in (31, 32, 33):
            table, clash = phase_table(op, clean, codes[: len(clean)], bits)
            print(f"{op} turn bits {bits}: {int((table != UNKNOWN).sum())} phases known, {clash} in conflict")
        table, _ = phase_table(op, clean, codes[: len(clean)])
        for p, c in zip(rand, codes[len(clean):]):
            y, known = table_codes(op, table, p)
            settled = "" if multiplier_settled(VALUE_BITS[op], p.so) else " (multiplier unsettled)"
            print(f"  {p}{settled}: table {np.mean((y == c)[known]):.4f} of {known.mean():.3f} known, "
                  f"exact rounding {np.mean(exact_codes(op, p) == c):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
