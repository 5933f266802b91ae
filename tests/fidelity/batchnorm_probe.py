"""Probe how QNN's HTP simulator computes BatchNorm with 8- or 16-bit activations.

``python -m tests.fidelity.batchnorm_probe --arch 73 --bits 16 [--count 8] [--seed 0] [--channels 3]``

Each probe is an ONNX BatchNormalization in the QDQ form openqnn's export writes (a uint8 weight of zero point 0
and a uint8 bias, both per tensor, mean 0, variance 0, epsilon 1), its activations uint8 or uint16 at a random
encoding; ``--count`` probes share one graph (one simulator session), each its own graph output. Every channel
sees the same input codes: with 8-bit activations every code once (``[1, C, 16, 16]``), with 16-bit ones 4,096
codes (``[1, C, 64, 64]``: a run of 1,024 consecutive codes about the zero point, the rest random over the
range that keeps the outputs unclipped). :func:`probe_many` returns the simulator's codes; the probe prints per
encoding the share that openqnn's spec (``src/openqnn/backends/htp/spec/qnn_batchnorm.py``, :func:`spec_codes`) and
exact rounding reproduce; ``--save`` writes them with the encodings to an ``.npz`` for offline study.

QNN EP re-quantizes the weight and the bias to fresh uint8 encodings first (spec/qnn_unary.py's
``requantize_param``); ``--exact-params`` draws weights and biases that this leaves as they are (a weight code
255, a bias of codes 0 and 255 among the channels, so the rule shows without that step).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tests.fidelity.harness import recover_codes, simulate_probe, simulator_missing

__all__ = ["BnProbe", "exact_codes", "input_codes", "probe_many", "random_probes", "real_params", "spec_codes"]


@dataclass(frozen=True)
class BnProbe:
    """One probe: activations of ``bits`` bits, input ``(si, zi)``, output ``(so, zo)``; the weight's uint8 codes
    ``w``, scale ``sw`` and zero point ``zw``, the bias's uint8 codes ``b``, scale ``sb`` and zero point ``zb``."""

    bits: int
    si: float
    zi: int
    so: float
    zo: int
    w: tuple[int, ...]
    sw: float
    b: tuple[int, ...]
    sb: float
    zb: int
    zw: int = 0

    @property
    def channels(self) -> int:
        return len(self.w)


def real_params(p: BnProbe) -> tuple[np.ndarray, np.ndarray]:
    """The weight and bias as QNN EP reads them (code plus offset times the float32 scale), float64."""
    w = (np.asarray(p.w, np.float64) - p.zw) * float(np.float32(p.sw))
    b = (np.asarray(p.b, np.float64) - p.zb) * float(np.float32(p.sb))
    return w, b


def input_codes(p: BnProbe, seed: int = 0) -> np.ndarray:
    """The input codes of every channel: 8-bit ``[1, C, 16, 16]`` every code once; 16-bit ``[1, C, 64, 64]``, 1,024
    consecutive codes about the zero point, then 3,072 random ones where the outputs stay unclipped."""
    if p.bits == 8:
        q = np.arange(256).reshape(1, 1, 16, 16)
    else:
        top = (1 << 16) - 1
        run = np.clip(np.arange(p.zi - 512, p.zi + 512), 0, top)
        w, b = real_params(p)
        lo, hi = 0, top
        for wc, bc in zip(w, b):  # keep x w + b within the output's range for every channel
            if wc != 0:
                a_lo = (p.so * (0 - p.zo) - bc) / (p.si * wc)
                a_hi = (p.so * (top - p.zo) - bc) / (p.si * wc)
                a_lo, a_hi = min(a_lo, a_hi), max(a_lo, a_hi)
                lo, hi = max(lo, int(np.ceil(a_lo + p.zi))), min(hi, int(np.floor(a_hi + p.zi)))
        if hi <= lo:
            lo, hi = 0, top
        rest = np.random.default_rng(seed).integers(lo, hi + 1, 4096 - run.size)
        q = np.concatenate([run, rest]).reshape(1, 1, 64, 64)
    return np.broadcast_to(q, (1, p.channels, *q.shape[2:])).astype(np.int64)


def _nodes(p: BnProbe, k: int) -> tuple[list, list]:
    from onnx import helper
    from onnx import numpy_helper as nh

    def n(s: str) -> str:
        return f"k{k}_{s}"

    f32, act = np.float32, np.uint8 if p.bits == 8 else np.uint16
    inits = [nh.from_array(np.array(f32(p.si)), n("si")), nh.from_array(np.array(p.zi, act), n("zi")),
             nh.from_array(np.array(f32(p.so)), n("so")), nh.from_array(np.array(p.zo, act), n("zo")),
             nh.from_array(np.array(p.w, np.uint8), n("wq")), nh.from_array(np.array(f32(p.sw)), n("sw")),
             nh.from_array(np.array(p.zw, np.uint8), n("zw")),
             nh.from_array(np.array(p.b, np.uint8), n("bq")), nh.from_array(np.array(f32(p.sb)), n("sb")),
             nh.from_array(np.array(p.zb, np.uint8), n("zb")),
             nh.from_array(np.zeros(p.channels, np.float32), n("zeros"))]
    nodes = [helper.make_node("QuantizeLinear", [n("x"), n("si"), n("zi")], [n("xq")]),
             helper.make_node("DequantizeLinear", [n("xq"), n("si"), n("zi")], [n("xd")]),
             helper.make_node("DequantizeLinear", [n("wq"), n("sw"), n("zw")], [n("w")]),
             helper.make_node("DequantizeLinear", [n("bq"), n("sb"), n("zb")], [n("b")]),
             helper.make_node("BatchNormalization", [n("xd"), n("w"), n("b"), n("zeros"), n("zeros")], [n("y")],
                              epsilon=1.0),
             helper.make_node("QuantizeLinear", [n("y"), n("so"), n("zo")], [n("yq")]),
             helper.make_node("DequantizeLinear", [n("yq"), n("so"), n("zo")], [n("yo")])]
    return nodes, inits


def probe_many(arch: str, probes: Sequence[BnProbe], codes: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """The simulator's output codes of each probe (one graph, one session), of the shape of its input codes
    (``codes``, one array ``[1, C, H, W]`` per probe; None: :func:`input_codes`)."""
    from onnx import TensorProto, helper

    nodes, inits, inputs, outputs, feed = [], [], [], [], {}
    qs = [input_codes(p, k) for k, p in enumerate(probes)] if codes is None else list(codes)
    for k, (p, q) in enumerate(zip(probes, qs)):
        nd, it = _nodes(p, k)
        nodes += nd
        inits += it
        feed[f"k{k}_x"] = (np.float32(p.si) * (q.astype(np.float32) - np.float32(p.zi))).astype(np.float32)
        inputs.append(helper.make_tensor_value_info(f"k{k}_x", TensorProto.FLOAT, q.shape))
        outputs.append(helper.make_tensor_value_info(f"k{k}_yo", TensorProto.FLOAT, None))
    out = simulate_probe(nodes, inits, inputs, outputs, feed, arch)
    if out.float_nodes:
        raise RuntimeError(f"QNN ran nodes on floats: {out.float_nodes}")
    return [recover_codes(out.outputs[0][f"k{k}_yo"], p.so, -p.zo, p.bits, f"k{k}") for k, p in enumerate(probes)]


def random_probes(rng: np.random.Generator, bits: int, count: int, channels: int = 3,
                  exact_params: bool = False, wscale: float = 1.0, signed: bool = False) -> list[BnProbe]:
    """Random encodings in the ranges calibration gives (input zero points mid-range or random, output scales 0.3
    to 3 times the input's, weights 0.5 to 2 times ``wscale``, biases to 1 of both signs). ``exact_params``: the
    weight's largest code 255 and the bias codes span 0..255, so QNN EP's re-quantization keeps them. ``signed``:
    weights of both signs (a weight zero point mid-range)."""
    top = (1 << bits) - 1
    out = []
    for i in range(count):
        si = float(np.exp(rng.uniform(np.log(0.002), np.log(0.05)))) * (2.0 ** -8 if bits == 16 else 1.0)
        zi = int(rng.integers(0, top + 1)) if i % 3 else (top + 1) // 2
        so = si * float(np.exp(rng.uniform(np.log(0.3), np.log(3))))
        zo = int(rng.integers(0, top + 1)) if i % 2 else (top + 1) // 2
        sw = float(rng.uniform(0.5, 2.0)) * wscale / 255
        w = [int(v) for v in rng.integers(1, 256, channels)]
        zw = int(rng.integers(60, 200)) if signed else 0
        sb = float(rng.uniform(0.2, 1.0)) / 255
        zb = int(rng.integers(0, 256))
        b = [int(v) for v in rng.integers(0, 256, channels)]
        if exact_params:
            w[0] = 255
            if channels > 1:
                b[0], b[1] = 0, 255
            else:
                b[0], zb = 255, 0
        out.append(BnProbe(bits, si, zi, so, zo, tuple(w), sw, tuple(b), sb, zb, zw))
    return out


def exact_codes(p: BnProbe, q: np.ndarray, requantized: bool = True) -> np.ndarray:
    """Exact rounding (half away from zero) of ``(q - zi) si w + b`` (the weight and bias as QNN EP re-quantizes
    them, or as given)."""
    from openqnn.backends.htp.spec.qnn_unary import requantize_param

    w, b = real_params(p)
    if requantized:
        wc, ws, wz = requantize_param(w)
        bc, bs, bz = requantize_param(b)
        w, b = (wc - wz) * ws, (bc - bz) * bs
    y = ((q - p.zi) * float(np.float32(p.si)) * w.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1))
    v = y / float(np.float32(p.so))
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + p.zo, 0, (1 << p.bits) - 1).astype(np.int64)


def spec_codes(arch: str, p: BnProbe, q: np.ndarray) -> np.ndarray:
    """openqnn's spec (spec/qnn_batchnorm.py; ``arch`` "68" or "73") of input codes ``q`` ``[1, C, H, W]``: the
    integer form where it applies, else (8-bit) exact rounding of the re-quantized parameters; 16-bit codes outside
    the integer form: -1."""
    from openqnn.backends.htp.spec.qnn_batchnorm import batchnorm_spec_for
    from openqnn.backends.htp.spec.qnn_unary import batchnorm_table

    w, b = real_params(p)
    if p.bits == 16:
        spec = batchnorm_spec_for(f"v{arch}", "qnn", p.si, p.zi, w, b, p.so, p.zo, 16)
        if spec is None:
            return np.full(q.shape, -1, np.int64)
        return np.moveaxis(spec.apply_np(np.moveaxis(q, 1, -1)), -1, 1)
    table = batchnorm_table(f"v{arch}", p.si, p.zi, w, b, p.so, p.zo)
    return np.stack([table[c][q[0, c]] for c in range(p.channels)])[None]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--bits", type=int, default=16, choices=(8, 16))
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--exact-params", action="store_true")
    ap.add_argument("--wscale", type=float, default=1.0, help="weights this many times larger")
    ap.add_argument("--signed", action="store_true", help="weights of both signs")
    ap.add_argument("--save", default=None, help="write the probes and the simulator's codes to this .npz")
    args = ap.parse_args(argv)
    if (why := simulator_missing()) is not None:
        print(why)
        return 1
    probes = random_probes(np.random.default_rng(args.seed), args.bits, args.count, args.channels, args.exact_params,
                           args.wscale, args.signed)
    qs = [input_codes(p, k) for k, p in enumerate(probes)]
    sims = probe_many(args.arch, probes, qs)
    tot = same = spec_same = 0
    for p, q, y in zip(probes, qs, sims):
        e, s = exact_codes(p, q), spec_codes(args.arch, p, q)
        tot += y.size
        same += int((e == y).sum())
        spec_same += int((s == y).sum())
        d = (y - e).ravel()
        print(f"si {p.si:.5g} zi {p.zi} so {p.so:.5g} zo {p.zo}: spec {np.mean(s == y):.2%}, exact "
              f"{np.mean(d == 0):.2%}, sim - exact in [{d.min()}, {d.max()}]")
    print(f"v{args.arch} {args.bits}-bit: {len(probes)} probes, {tot} codes: spec {spec_same / tot:.2%}, "
          f"exact {same / tot:.2%}")
    if args.save:
        np.savez(args.save, probes=np.array([repr(p) for p in probes]), codes=np.stack([q[0] for q in qs]),
                 sim=np.stack([y[0] for y in sims]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
