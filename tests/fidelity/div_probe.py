"""Probe how QNN's HTP simulator computes an 8-bit Div of two run-time operands (open: no rule found yet).

``python -m tests.fidelity.div_probe --arch 73 [--count 8] [--seed 7]``

Each probe is a QDQ Div of every pair of 8-bit codes (``eltwise_probe``'s graph, 65,536 outputs) at random
encodings: ``s_b / s_a`` from e^-2 to e^2, ``s_o = s_a / s_b`` times 0.3 to 6, zero points random or all 128.
Per probe it prints the share of codes (divisor code off its zero point, output not saturated) that exact
rounding reproduces, whether the codes depend on the quotient ``(q_a - z_a) / (q_b - z_b)`` alone (pairs of the
same reduced fraction never disagree), and, over divisors that are powers of two, the interval of ``R / r - 1``
and ``c`` for which ``code = z_o + floor(R t + c)``, ``t`` the quotient, ``r = s_a / (s_b s_o)``, fits every code.

Findings on onnxruntime-qnn 2.7.0 (QNN 2.51), v73 (docs/htp-fidelity.md, stop 25): 99.93-99.997% exact
rounding per probe; in 5 of 8 probes the codes are a function of the quotient alone (in 3 a few fractions
disagree); where one (R, c) fits the power-of-two divisors (6 of 8), ``c`` is 1/2 (round half up, both signs)
and ``R`` is off ``r`` by up to about 1e-4 either way, per probe (not float16(r), nor a 10-25-bit rounded
``r``, reciprocal or ``r / d``, nor float16 or float32 arithmetic with a float16 quantization): open.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from math import gcd
from typing import Any

import numpy as np

from tests.fidelity.eltwise_probe import Encodings
from tests.fidelity.eltwise_probe import probe as eltwise_probe
from tests.fidelity.harness import simulator_missing


def div_encodings(rng: np.random.Generator, count: int) -> list[Encodings]:
    out = []
    for i in range(count):
        sa = float(rng.uniform(0.002, 0.05))
        sb = sa * float(np.exp(rng.uniform(-2, 2)))
        so = sa / sb * float(np.exp(rng.uniform(np.log(0.3), np.log(6))))
        za, zb, zo = (int(z) for z in rng.integers(0, 256, 3))
        if i % 3 == 0:
            za = zb = zo = 128
        out.append((sa, za, sb, zb, so, zo))
    return out


def analyse(enc: Encodings, p: dict[str, Any]) -> dict[str, Any]:
    """Exact rounding's share, the quotient test and the power-of-two fit of one probe."""
    from scipy.optimize import linprog

    _, za, _, zb, _, zo = enc
    a, d, y = p["qa"] - za, p["qb"] - zb, p["y"]
    r = float(p["sa"] / p["sb"] / p["so"])
    ok = (d != 0) & (y > 0) & (y < 255)
    t = a[ok] / d[ok]
    exact = np.floor(t * r + 0.5) + zo
    groups: dict[tuple[int, int], set[int]] = {}
    for aa, dd, yy in zip(a[ok].tolist(), d[ok].tolist(), y[ok].tolist()):
        k = gcd(aa, dd)
        groups.setdefault((aa // k * (1 if dd > 0 else -1), abs(dd) // k), set()).add(yy)
    pow2 = ok & np.isin(np.abs(d), [1 << i for i in range(8)])
    pts = sorted(set(zip((a[pow2] / d[pow2]).tolist(), (y[pow2] - zo).tolist())))
    # y <= r t (1 + u 1e-4) + c < y + 1
    a_ub = [row for tt, _ in pts for row in ([-r * tt / 1e4, -1.0], [r * tt / 1e4, 1.0])]
    b_ub = [v for tt, yy in pts for v in (r * tt - yy, yy + 1 - 1e-9 - r * tt)]
    ends = [linprog(obj, A_ub=a_ub, b_ub=b_ub, bounds=[(-100, 100), (-2, 2)])
            for obj in ([1, 0], [-1, 0], [0, 1], [0, -1])]
    fit = None if any(e.status != 0 for e in ends) else (ends[0].fun, -ends[1].fun, ends[2].fun, -ends[3].fun)
    return {"exact": float(np.mean(exact == y[ok])), "codes": int(ok.sum()),
            "quotient_only": all(len(v) == 1 for v in groups.values()), "fit": fit, "r": r}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fidelity.div_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    q = np.arange(256)
    qa, qb = np.meshgrid(q, q, indexing="ij")
    for enc in div_encodings(np.random.default_rng(args.seed), args.count):
        res = analyse(enc, eltwise_probe(args.arch, "Div", enc, qa, qb))
        fit = ("no (R, c) fits" if res["fit"] is None else
               f"R/r-1 in [{res['fit'][0]:.2f}, {res['fit'][1]:.2f}]e-4, c in [{res['fit'][2]:.4f}, {res['fit'][3]:.4f}]")
        print(f"v{args.arch} Div r={res['r']:.4g} z={enc[1]},{enc[3]},{enc[5]}: exact rounding {res['exact']:.4%} of "
              f"{res['codes']}, quotient only: {res['quotient_only']}; powers of two: {fit}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
