"""Probe how QNN's HTP simulator computes a 16-bit LeakyRelu (a PRelu of a one-element uint16 slope).

``python -m tests.fidelity.prelu16_probe --arch 73 [--count 8] [--seed 0]``

Each probe is ``PRelu(x, DequantizeLinear(alpha_q))`` between uint16 QDQ pairs, as openqnn exports a 16-bit
LeakyRelu (slope code 65280 at scale ``alpha / 65280``, zero point 0, unless the probe says otherwise), every
16-bit input code once (an input ``[1, 65536]``); ``--count`` probes share one graph (one simulator session).
Each branch's codes are ``z_out + floor((q - z_in) s + 1/2)`` (a linear program over all codes, stop 25), so the
codes bound each branch's slope ``s`` to an interval (:func:`slope_interval`); the probe prints those intervals
(relative to ``s_in / s_out`` and ``s_in alpha / s_out``) and the share of codes that openqnn's spec
(``qnn_unary16.leaky_relu16_codes``) and exact rounding reproduce.

Findings on onnxruntime-qnn 2.7.0 (QNN 2.51), v68 = v73 (docs/htp-fidelity.md, "16-bit LeakyRelu and Div (stop
26)"): the intervals fall on a grid of ``2^-min(15, 14 - floor(log2 max(r, |r alpha|)))``, each slope truncated
toward zero onto it; with the int32 sum of the product and the output zero point, the spec gives every code.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tests.fidelity.harness import simulate_probe, simulator_missing

N = 1 << 16


@dataclass(frozen=True)
class Prelu16Probe:
    """One probe: input ``(si, zi)``, output ``(so, zo)`` (uint16), the slope's uint16 code ``wq`` and scale ``sw``
    (zero point ``zw``), ``w_bits`` wide."""

    si: float
    zi: int
    so: float
    zo: int
    wq: int = 65280
    sw: float = 0.1 / 65280
    zw: int = 0
    w_bits: int = 16

    @property
    def alpha(self) -> float:
        return float(np.float32(self.sw)) * (self.wq - self.zw)


def _nodes(p: Prelu16Probe, k: int) -> tuple[list, list]:
    from onnx import helper
    from onnx import numpy_helper as nh

    def n(s: str) -> str:
        return f"k{k}_{s}"

    f32 = np.float32
    u16 = np.uint16
    wt = np.uint8 if p.w_bits == 8 else u16
    inits = [nh.from_array(np.array(f32(p.si)), n("si")), nh.from_array(np.array(p.zi, u16), n("zi")),
             nh.from_array(np.array(f32(p.so)), n("so")), nh.from_array(np.array(p.zo, u16), n("zo")),
             nh.from_array(np.array([p.wq], wt), n("wq")), nh.from_array(np.array(f32(p.sw)), n("sw")),
             nh.from_array(np.array(p.zw, wt), n("zw"))]
    nodes = [helper.make_node("QuantizeLinear", [n("x"), n("si"), n("zi")], [n("xq")]),
             helper.make_node("DequantizeLinear", [n("xq"), n("si"), n("zi")], [n("xd")]),
             helper.make_node("DequantizeLinear", [n("wq"), n("sw"), n("zw")], [n("w")]),
             helper.make_node("PRelu", [n("xd"), n("w")], [n("y")]),
             helper.make_node("QuantizeLinear", [n("y"), n("so"), n("zo")], [n("yq")]),
             helper.make_node("DequantizeLinear", [n("yq"), n("so"), n("zo")], [n("yo")])]
    return nodes, inits


def probe_many(arch: str, probes: Sequence[Prelu16Probe], shape: Sequence[int] = (1, N)) -> list[np.ndarray]:
    """The simulator's output codes of each probe (one session): int64 ``[65536]`` indexed by input code (every
    code once, laid out in ``shape`` in order)."""
    from onnx import TensorProto, helper

    nodes, inits, inputs, outputs, feed = [], [], [], [], {}
    q = np.arange(N).reshape(tuple(shape)).astype(np.float32)
    for k, p in enumerate(probes):
        nd, it = _nodes(p, k)
        nodes += nd
        inits += it
        feed[f"k{k}_x"] = (np.float32(p.si) * (q - np.float32(p.zi))).astype(np.float32)
        inputs.append(helper.make_tensor_value_info(f"k{k}_x", TensorProto.FLOAT, q.shape))
        outputs.append(helper.make_tensor_value_info(f"k{k}_yo", TensorProto.FLOAT, None))
    out = simulate_probe(nodes, inits, inputs, outputs, feed, arch)
    return [np.rint(out.outputs[0][f"k{k}_yo"].astype(np.float64).reshape(-1) / float(np.float32(p.so))).astype(np.int64)
            + p.zo for k, p in enumerate(probes)]


def slope_interval(codes: np.ndarray, p: Prelu16Probe, positive: bool) -> tuple[float, float]:
    """The slopes ``s`` for which ``z_out + floor((q - z_in) s + 1/2)`` gives every unsaturated code of one branch
    (``q > z_in`` or ``q < z_in``): ``[lo, hi)``, empty when ``lo >= hi``."""
    a = np.arange(N, dtype=np.int64) - p.zi
    y = codes - p.zo
    ok = (a > 0 if positive else a < 0) & (codes > 0) & (codes < N - 1)
    a, y = a[ok].astype(np.float64), y[ok].astype(np.float64)
    # y <= a s + 1/2 < y + 1: for a > 0, s in [(y - 1/2) / a, (y + 1/2) / a); for a < 0 the bounds swap
    lo = np.where(a > 0, (y - 0.5) / a, (y + 0.5) / a)
    hi = np.where(a > 0, (y + 0.5) / a, (y - 0.5) / a)
    return float(lo.max()), float(hi.min())


def exact_codes(p: Prelu16Probe) -> np.ndarray:
    """Exact rounding (half away from zero) of each input code's real PRelu."""
    a = np.arange(N, dtype=np.int64) - p.zi
    r = float(np.float32(p.si)) / float(np.float32(p.so))
    v = np.where(a >= 0, a * r, a * r * p.alpha)
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + p.zo, 0, N - 1).astype(np.int64)


def spec_codes(p: Prelu16Probe) -> np.ndarray:
    """openqnn's spec (``qnn_unary16.leaky_relu16_codes``) on every input code."""
    from openqnn.backends.htp.spec.qnn_unary16 import leaky_relu16_codes

    codes = leaky_relu16_codes(np.arange(N, dtype=np.int64), p.si, p.zi, p.so, p.zo, p.alpha)
    assert codes is not None
    return codes


def random_probes(rng: np.random.Generator, count: int, wide: bool = False) -> list[Prelu16Probe]:
    """Random 16-bit encodings as calibration gives a LeakyRelu: input scales 1e-5 to 1e-3, any zero point, output
    scale 0.3 to 1 times the input's (the negative branch's range shrinks), alpha 0.01 to 0.3 as openqnn encodes it
    (code 65280). ``wide``: ``s_in / s_out`` from 0.005 to 300, alpha 0.001 to 6 (above 1 in one probe in three),
    every other slope a random code, output zero points anywhere."""
    out = []
    for i in range(count):
        si = float(np.exp(rng.uniform(np.log(1e-5), np.log(1e-3))))
        if not wide:
            so = si * float(rng.uniform(0.3, 1.0))
            alpha = float(rng.choice([0.01, 0.1, 0.2, 0.3, float(rng.uniform(0.01, 0.3))]))
            out.append(Prelu16Probe(si, int(rng.integers(0, N)), so, int(rng.integers(0, 30000)), 65280,
                                    alpha / 65280))
            continue
        so = si / float(np.exp(rng.uniform(np.log(0.005), np.log(300))))
        hi = 6.0 if i % 3 == 0 else 1.0
        alpha = float(np.exp(rng.uniform(np.log(0.001), np.log(hi))))
        wq = int(rng.integers(1000, N)) if i % 2 else 65280
        out.append(Prelu16Probe(si, int(rng.integers(0, N)), so, int(rng.integers(0, N)), wq, alpha / wq))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wide", action="store_true", help="wide ratios and slopes (random_probes)")
    args = ap.parse_args(argv)
    if (why := simulator_missing()) is not None:
        print(why)
        return 1
    probes = random_probes(np.random.default_rng(args.seed), args.count, args.wide)
    for p, y in zip(probes, probe_many(args.arch, probes)):
        r = float(np.float32(p.si)) / float(np.float32(p.so))
        spans = []
        for pos in (True, False):
            lo, hi = slope_interval(y, p, pos)
            ref = r if pos else r * p.alpha
            spans.append(f"{'pos' if pos else 'neg'} s/ref-1 in [{lo / ref - 1:.3e}, {hi / ref - 1:.3e})")
        print(f"v{args.arch} r={r:.6g} alpha={p.alpha:.6g} zi={p.zi} zo={p.zo}: spec {np.mean(spec_codes(p) == y):.4%}, "
              f"exact {np.mean(exact_codes(p) == y):.4%}; " + ", ".join(spans))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
