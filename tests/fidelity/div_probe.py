"""Probe how QNN's HTP simulator computes a Div of two run-time operands: 8-bit (open: no rule found yet) and 16-bit
(established at stop 27: ``src/openqnn/backends/htp/spec/qnn_div.py``).

``python -m tests.fidelity.div_probe --arch 73 [--count 8] [--seed 7]``; ``--bits 16``: 16-bit probes (below)

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

16-bit (``--bits 16``, stop 26): :func:`probe16` runs many Divs in one graph, each with its own encodings and codes;
:func:`divisor_probes` sweeps every numerator code against one divisor code per Div (``z_a = 32768``, the
output spanning about 30,000 codes), :func:`random_probes16` random codes at random encodings. Per divisor, the
slope of the codes over numerators below 2^11 (where one rounding fits) is ``r (1 + e)`` with ``e`` the relative
error of nnlib's 16-bit reciprocal of the divisor's normalized code (``qnn_div.recip16``) to about 1e-6; above
2^11 the codes drift up to a quarter of a code higher: stop 27 found that drift the rounding of the numerator's
Q15 product with the ratio's rounded 15-bit significand (``qnn_div.div16_scaled_numerator``). The spec reproduces
every code of the sweeps and of the random probes, exact rounding 72-97%.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from math import gcd
from typing import Any

import numpy as np

from tests.fidelity.eltwise_probe import Encodings
from tests.fidelity.eltwise_probe import probe as eltwise_probe
from tests.fidelity.harness import simulate_probe, simulator_missing


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


N16 = 1 << 16


def probe16(arch: str, encs: Sequence[Encodings], qas: Sequence[np.ndarray], qbs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The simulator's output codes of 16-bit QDQ Divs, one per encoding with its numerator / divisor codes (arrays
    of one shape per Div), all in one graph (one session)."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    nodes, inits, inputs, outputs, feed = [], [], [], [], {}
    f32, u16 = np.float32, np.uint16
    for k, ((sa, za, sb, zb, so, zo), qa, qb) in enumerate(zip(encs, qas, qbs)):
        def n(s: str, k: int = k) -> str:
            return f"k{k}_{s}"

        inits += [nh.from_array(np.array(f32(sa)), n("sa")), nh.from_array(np.array(za, u16), n("za")),
                  nh.from_array(np.array(f32(sb)), n("sb")), nh.from_array(np.array(zb, u16), n("zb")),
                  nh.from_array(np.array(f32(so)), n("so")), nh.from_array(np.array(zo, u16), n("zo"))]
        nodes += [helper.make_node("QuantizeLinear", [n("af"), n("sa"), n("za")], [n("aq")]),
                  helper.make_node("DequantizeLinear", [n("aq"), n("sa"), n("za")], [n("a")]),
                  helper.make_node("QuantizeLinear", [n("bf"), n("sb"), n("zb")], [n("bq")]),
                  helper.make_node("DequantizeLinear", [n("bq"), n("sb"), n("zb")], [n("b")]),
                  helper.make_node("Div", [n("a"), n("b")], [n("y")]),
                  helper.make_node("QuantizeLinear", [n("y"), n("so"), n("zo")], [n("yq")]),
                  helper.make_node("DequantizeLinear", [n("yq"), n("so"), n("zo")], [n("yo")])]
        feed[n("af")] = (f32(sa) * (np.asarray(qa, f32) - f32(za))).astype(f32)
        feed[n("bf")] = (f32(sb) * (np.asarray(qb, f32) - f32(zb))).astype(f32)
        inputs += [helper.make_tensor_value_info(n("af"), TensorProto.FLOAT, np.shape(qa)),
                   helper.make_tensor_value_info(n("bf"), TensorProto.FLOAT, np.shape(qb))]
        outputs.append(helper.make_tensor_value_info(n("yo"), TensorProto.FLOAT, None))
    out = simulate_probe(nodes, inits, inputs, outputs, feed, arch)
    return [np.rint(out.outputs[0][f"k{k}_yo"].astype(np.float64).reshape(-1) / float(f32(e[4]))).astype(np.int64)
            + e[5] for k, e in enumerate(encs)]


def divisor_probes(ds: Sequence[int]) -> tuple[list[Encodings], list[np.ndarray], list[np.ndarray]]:
    """One Div per divisor code ``d`` (``z_b = 0``): every numerator code (``z_a = 32768``), ``s_a = s_b = 1e-4``,
    an output scale of ``1 / r`` with ``r = 15 2^j`` near ``d`` (the codes span 16,000 to 45,000; a ratio of few
    significant bits keeps QNN's own multiplier of it exact: other ratios add their rounding, open)."""
    qa = np.arange(N16).reshape(1, N16)
    encs: list[Encodings] = [(1e-4, 32768, 1e-4, 0, 1 / (15 * 2.0 ** round(np.log2(d / 15))), 32768) for d in ds]
    return encs, [qa] * len(ds), [np.full((1, N16), d) for d in ds]


def random_probes16(rng: np.random.Generator, count: int) -> tuple[list[Encodings], list[np.ndarray], list[np.ndarray]]:
    """Random 16-bit encodings (input scales 1e-5 to 1e-3, ``s_b / s_a`` e^-2 to e^2, output steps 1/250 to 1/40 of
    the operands' ratio; zero points random, or all 32768 one probe in three) and random codes ``[1, 16, 16, 16]``."""
    encs: list[Encodings] = []
    for i in range(count):
        sa = float(np.exp(rng.uniform(np.log(1e-5), np.log(1e-3))))
        sb = sa * float(np.exp(rng.uniform(-2, 2)))
        so = sa / sb * float(np.exp(rng.uniform(np.log(0.3), np.log(6)))) / 250
        za, zb, zo = (int(z) for z in rng.integers(0, N16, 3))
        if i % 3 == 0:
            za = zb = zo = 32768
        encs.append((sa, za, sb, zb, so, zo))
    shape = (1, 16, 16, 16)
    return encs, [rng.integers(0, N16, shape) for _ in encs], [rng.integers(0, N16, shape) for _ in encs]


def slope_interval16(enc: Encodings, qa: np.ndarray, qb: np.ndarray, y: np.ndarray,
                     a_max: int = 1 << 11) -> tuple[float, float]:
    """For a Div of one divisor code: the interval of ``e`` for which ``z_o + floor(a r (1 + e) / d + 1/2)`` gives
    the codes of the positive numerators below ``a_max`` (``[lo, hi)``, empty when ``lo >= hi``)."""
    sa, za, sb, zb, so, zo = enc
    r = float(np.float32(sa)) / (float(np.float32(sb)) * float(np.float32(so)))
    a = np.asarray(qa, np.int64).reshape(-1) - za
    d = int(np.asarray(qb).reshape(-1)[0]) - zb
    sel = (a > 0) & (a < a_max) & (y > 0) & (y < N16 - 1)
    s0 = r / d
    v = (y[sel] - zo).astype(np.float64)
    return float(((v - 0.5) / a[sel]).max() / s0 - 1), float(((v + 0.5) / a[sel]).min() / s0 - 1)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fidelity.div_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bits", type=int, default=8, choices=[8, 16])
    args = ap.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    if args.bits == 16:
        return main16(args.arch, args.count, args.seed)
    q = np.arange(256)
    qa, qb = np.meshgrid(q, q, indexing="ij")
    for enc in div_encodings(np.random.default_rng(args.seed), args.count):
        res = analyse(enc, eltwise_probe(args.arch, "Div", enc, qa, qb))
        fit = ("no (R, c) fits" if res["fit"] is None else
               f"R/r-1 in [{res['fit'][0]:.2f}, {res['fit'][1]:.2f}]e-4, c in [{res['fit'][2]:.4f}, {res['fit'][3]:.4f}]")
        print(f"v{args.arch} Div r={res['r']:.4g} z={enc[1]},{enc[3]},{enc[5]}: exact rounding {res['exact']:.4%} of "
              f"{res['codes']}, quotient only: {res['quotient_only']}; powers of two: {fit}", flush=True)
    return 0


def main16(arch: str, count: int, seed: int) -> int:
    from openqnn.backends.htp.spec.qnn_div import div16_codes, recip16_of_divisor

    ds = [3, 5, 7, 17, 19, 100, 1000, 2211, 17451, 23290]
    encs, qas, qbs = divisor_probes(ds)
    for d, e, qa, qb, y in zip(ds, encs, qas, qbs, probe16(arch, encs, qas, qbs)):
        lo, hi = slope_interval16(e, qa, qb, y)
        x0, s = recip16_of_divisor(np.array([d]))
        n = d << int(s[0])
        print(f"v{arch} d={d}: slope error over numerators < 2^11 in [{lo:+.3e}, {hi:+.3e}); nnlib's reciprocal "
              f"{int(x0[0]) * n / 2**29 - 1:+.3e}")
    encs, qas, qbs = random_probes16(np.random.default_rng(seed), count)
    if not encs:
        return 0
    for e, qa, qb, y in zip(encs, qas, qbs, probe16(arch, encs, qas, qbs)):
        sa, za, sb, zb, so, zo = e
        spec = div16_codes(qa.reshape(-1), qb.reshape(-1), *e)
        r = float(np.float32(sa)) / (float(np.float32(sb)) * float(np.float32(so)))
        a, d = qa.reshape(-1) - za, qb.reshape(-1) - zb
        ok = d != 0
        exact = np.clip(np.floor(a[ok] * r / d[ok] + 0.5) + zo, 0, N16 - 1)
        print(f"v{arch} r={r:.4g} z={za},{zb},{zo}: spec {np.mean(spec[ok] == y[ok]):.4%}, exact rounding "
              f"{np.mean(exact == y[ok]):.4%}, spec max {np.abs(spec[ok] - y[ok]).max()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
