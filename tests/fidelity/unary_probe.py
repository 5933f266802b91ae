"""Probe how QNN's HTP simulator computes 8-bit LeakyRelu, PRelu, Reciprocal and BatchNorm.

``python -m tests.fidelity.unary_probe --arch 73 --op Reciprocal [--count 24] [--seed 0]``

Each probe is a QDQ op in the form openqnn's export writes it, at a random encoding, every 8-bit input code
once per channel (an input ``[1, C, 16, 16]`` with ``q[0, c, i, j] = 16 i + j``); ``--count`` probes share one
graph (one simulator session), each its own graph output. The forms:

- ``LeakyRelu``: ``PRelu(x, DequantizeLinear(alpha_q))``, a one-element uint8 slope of zero point 0 (openqnn
  exports a LeakyRelu so);
- ``PRelu``: the same with a per-channel slope ``[C, 1, 1]`` (one uint8 encoding, zero point 0);
- ``Reciprocal``: ONNX Reciprocal (QNN EP writes it as an ElementWiseDivide of a constant 1.0 by the input);
- ``BatchNorm``: ONNX BatchNormalization with uint8 weight (zero point 0) and uint8 bias (asymmetric), mean 0,
  variance 0 and epsilon 1, as openqnn exports a standalone Batchnorm.

The probe prints per encoding the share of the simulator's codes that openqnn's spec
(``src/openqnn/backends/htp/spec/qnn_unary.py``) and exact rounding reproduce.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from openqnn.backends.htp.spec.qnn_unary import (
    batchnorm_table,
    leaky_relu_table_for,
    prelu_tables,
    reciprocal_codes,
)
from tests.fidelity.harness import simulate_probe, simulator_missing

OPS = ("LeakyRelu", "PRelu", "Reciprocal", "BatchNorm")


@dataclass(frozen=True)
class UnaryProbe:
    """One probe's encodings: input ``(si, zi)``, output ``(so, zo)``; ``w`` / ``sw`` the slope's (PRelu,
    LeakyRelu) or the weight's (BatchNorm) uint8 codes and scale (zero point 0), ``b`` / ``sb`` / ``zb`` the
    BatchNorm bias's codes and encoding."""

    si: float
    zi: int
    so: float
    zo: int
    w: tuple[int, ...] = ()
    sw: float = 1.0
    b: tuple[int, ...] = ()
    sb: float = 1.0
    zb: int = 0
    channels: int = field(default=1)


def input_codes(channels: int) -> np.ndarray:
    """Every 8-bit code once per channel: ``[1, C, 16, 16]``."""
    return np.broadcast_to(np.arange(256).reshape(1, 1, 16, 16), (1, channels, 16, 16)).astype(np.int64)


def _nodes(op: str, p: UnaryProbe, k: int) -> tuple[list, list]:
    from onnx import helper
    from onnx import numpy_helper as nh

    def n(s: str) -> str:
        return f"k{k}_{s}"

    f32 = np.float32
    inits = [nh.from_array(np.array(f32(p.si)), n("si")), nh.from_array(np.array(p.zi, np.uint8), n("zi")),
             nh.from_array(np.array(f32(p.so)), n("so")), nh.from_array(np.array(p.zo, np.uint8), n("zo"))]
    nodes = [helper.make_node("QuantizeLinear", [n("x"), n("si"), n("zi")], [n("xq")]),
             helper.make_node("DequantizeLinear", [n("xq"), n("si"), n("zi")], [n("xd")])]
    if op in ("LeakyRelu", "PRelu"):
        shape = (1,) if op == "LeakyRelu" else (p.channels, 1, 1)
        inits += [nh.from_array(np.array(p.w, np.uint8).reshape(shape), n("wq")),
                  nh.from_array(np.array(f32(p.sw)), n("sw")), nh.from_array(np.array(0, np.uint8), n("zw"))]
        nodes += [helper.make_node("DequantizeLinear", [n("wq"), n("sw"), n("zw")], [n("w")]),
                  helper.make_node("PRelu", [n("xd"), n("w")], [n("y")])]
    elif op == "Reciprocal":
        nodes.append(helper.make_node("Reciprocal", [n("xd")], [n("y")]))
    elif op == "BatchNorm":
        inits += [nh.from_array(np.array(p.w, np.uint8), n("wq")), nh.from_array(np.array(f32(p.sw)), n("sw")),
                  nh.from_array(np.array(0, np.uint8), n("zw")),
                  nh.from_array(np.array(p.b, np.uint8), n("bq")), nh.from_array(np.array(f32(p.sb)), n("sb")),
                  nh.from_array(np.array(p.zb, np.uint8), n("zb")),
                  nh.from_array(np.zeros(p.channels, np.float32), n("zeros"))]
        nodes += [helper.make_node("DequantizeLinear", [n("wq"), n("sw"), n("zw")], [n("w")]),
                  helper.make_node("DequantizeLinear", [n("bq"), n("sb"), n("zb")], [n("b")]),
                  helper.make_node("BatchNormalization", [n("xd"), n("w"), n("b"), n("zeros"), n("zeros")], [n("y")],
                                   epsilon=1.0)]
    else:
        raise ValueError(f"unknown op {op!r}: one of {', '.join(OPS)}")
    nodes += [helper.make_node("QuantizeLinear", [n("y"), n("so"), n("zo")], [n("yq")]),
              helper.make_node("DequantizeLinear", [n("yq"), n("so"), n("zo")], [n("yo")])]
    return nodes, inits


def probe_many(arch: str, op: str, probes: Sequence[UnaryProbe]) -> list[np.ndarray]:
    """The simulator's output codes ``[1, C, 16, 16]`` of each probe (one graph, one session)."""
    from onnx import TensorProto, helper

    nodes, inits, inputs, outputs, feed = [], [], [], [], {}
    for k, p in enumerate(probes):
        nd, it = _nodes(op, p, k)
        nodes += nd
        inits += it
        q = input_codes(p.channels)
        feed[f"k{k}_x"] = (np.float32(p.si) * (q.astype(np.float32) - np.float32(p.zi))).astype(np.float32)
        inputs.append(helper.make_tensor_value_info(f"k{k}_x", TensorProto.FLOAT, q.shape))
        outputs.append(helper.make_tensor_value_info(f"k{k}_yo", TensorProto.FLOAT, None))
    out = simulate_probe(nodes, inits, inputs, outputs, feed, arch)
    return [np.rint(out.outputs[0][f"k{k}_yo"].astype(np.float64) / float(np.float32(p.so))).astype(np.int64) + p.zo
            for k, p in enumerate(probes)]


def probe_codes(arch: str, op: str, encodings: Sequence[tuple[float, int, float, int]], **attrs: object
                ) -> list[np.ndarray]:
    """The simulator's codes of a plain one-input op (its ONNX ``attrs``) on every 8-bit input code, per encoding
    ``(s_in, z_in, s_out, z_out)`` (uint8 QDQ in and out; one graph, one session): int64 ``[256]`` each."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    nodes, inits, inputs, outputs, feed = [], [], [], [], {}
    q = np.arange(256, dtype=np.float32).reshape(1, 256)
    for k, (si, zi, so, zo) in enumerate(encodings):
        def n(s: str, k: int = k) -> str:
            return f"k{k}_{s}"

        inits += [nh.from_array(np.array(np.float32(si)), n("si")), nh.from_array(np.array(zi, np.uint8), n("zi")),
                  nh.from_array(np.array(np.float32(so)), n("so")), nh.from_array(np.array(zo, np.uint8), n("zo"))]
        nodes += [helper.make_node("QuantizeLinear", [n("x"), n("si"), n("zi")], [n("xq")]),
                  helper.make_node("DequantizeLinear", [n("xq"), n("si"), n("zi")], [n("xd")]),
                  helper.make_node(op, [n("xd")], [n("y")], **attrs),
                  helper.make_node("QuantizeLinear", [n("y"), n("so"), n("zo")], [n("yq")]),
                  helper.make_node("DequantizeLinear", [n("yq"), n("so"), n("zo")], [n("yo")])]
        feed[n("x")] = (np.float32(si) * (q - np.float32(zi))).astype(np.float32)
        inputs.append(helper.make_tensor_value_info(n("x"), TensorProto.FLOAT, q.shape))
        outputs.append(helper.make_tensor_value_info(n("yo"), TensorProto.FLOAT, None))
    out = simulate_probe(nodes, inits, inputs, outputs, feed, arch)
    return [np.rint(out.outputs[0][f"k{k}_yo"].astype(np.float64).reshape(-1) / float(np.float32(so))).astype(np.int64)
            + zo for k, (_, _, so, zo) in enumerate(encodings)]


def exact_codes(op: str, p: UnaryProbe) -> np.ndarray:
    """Exact rounding (half away from zero) of the real result, the slope / weight / bias as their codes."""
    q = input_codes(p.channels)
    si, so = float(np.float32(p.si)), float(np.float32(p.so))
    x = (q - p.zi) * si
    if op in ("LeakyRelu", "PRelu"):
        w = np.asarray(p.w, np.float64).reshape(1, -1, 1, 1) * float(np.float32(p.sw))
        y = np.where(x >= 0, x, x * w)
    elif op == "Reciprocal":
        with np.errstate(divide="ignore", invalid="ignore"):
            y = 1.0 / x
    else:
        w = np.asarray(p.w, np.float64).reshape(1, -1, 1, 1) * float(np.float32(p.sw))
        b = (np.asarray(p.b, np.float64).reshape(1, -1, 1, 1) - p.zb) * float(np.float32(p.sb))
        y = x * w + b
    v = np.nan_to_num(y / so, nan=0.0, posinf=1e9, neginf=-1e9)
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + p.zo, 0, 255).astype(np.int64)


def spec_codes(op: str, p: UnaryProbe, arch: str = "73") -> np.ndarray:
    q = input_codes(p.channels)
    alphas = np.asarray(p.w, np.float64) * float(np.float32(p.sw))
    if op == "LeakyRelu":
        table = leaky_relu_table_for(f"v{arch}", "qnn", p.si, p.zi, float(alphas[0]), p.so, p.zo, 8, 8)
        assert table is not None
        return table[q]
    if op == "PRelu":
        tables = prelu_tables(p.si, p.zi, alphas, p.so, p.zo)
        assert tables is not None
        return np.stack([tables[c][q[0, c]] for c in range(p.channels)])[None]
    if op == "Reciprocal":
        return reciprocal_codes(q, p.si, p.zi, p.so, p.zo)
    w = np.asarray(p.w, np.float64) * float(np.float32(p.sw))
    b = (np.asarray(p.b, np.float64) - p.zb) * float(np.float32(p.sb))
    table = batchnorm_table(f"v{arch}", p.si, p.zi, w, b, p.so, p.zo)
    return np.stack([table[c][q[0, c]] for c in range(p.channels)])[None]


def random_probes(rng: np.random.Generator, op: str, count: int, channels: int = 5,
                  uniform: bool = False) -> list[UnaryProbe]:
    """Random encodings in the ranges calibration gives these ops (input scales 0.002 to 0.05, zero points random or
    mid-range; Reciprocal: zero point 0 for two probes in three, so the input is positive). BatchNorm: ``channels``
    channels; ``uniform``: every weight code 255 and a zero bias (the same random draws, then overridden)."""
    out = []
    for i in range(count):
        si = float(np.exp(rng.uniform(np.log(0.002), np.log(0.05))))
        zi = int(rng.integers(0, 256)) if i % 3 else 128
        if op == "Reciprocal":
            zi = 0 if i % 3 else int(rng.integers(0, 40))
            vmax = 1.0 / (si * max(1, 1 - zi + 2))
            so = vmax / float(rng.uniform(60, 300))
            out.append(UnaryProbe(si, zi, so, 0 if zi == 0 else int(rng.integers(0, 256))))
            continue
        so = si * float(np.exp(rng.uniform(np.log(0.3), np.log(3))))
        zo = int(rng.integers(0, 256))
        if op in ("LeakyRelu", "PRelu"):
            c = 1 if op == "LeakyRelu" else 5
            sw = float(rng.uniform(0.05, 0.6)) / 255
            w = tuple(int(v) for v in rng.integers(1, 256, c))
            out.append(UnaryProbe(si, zi, so, zo, w, sw, channels=c))
        else:
            c = channels
            sw = float(rng.uniform(0.5, 2.0)) / 255
            w = tuple(int(v) for v in rng.integers(1, 256, c))
            sb = float(rng.uniform(0.2, 1.0)) / 255
            zb = int(rng.integers(0, 256))
            b = tuple(int(v) for v in rng.integers(0, 256, c))
            if uniform:
                w, b, zb = (255,) * c, (0,) * c, 0
            out.append(UnaryProbe(si, zi, so, zo, w, sw, b, sb, zb, channels=c))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--op", default="Reciprocal", choices=OPS)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--channels", type=int, default=5, help="BatchNorm: channels per probe")
    ap.add_argument("--uniform", action="store_true", help="BatchNorm: every weight code 255, a zero bias")
    args = ap.parse_args(argv)
    if (why := simulator_missing()) is not None:
        print(why)
        return 1
    probes = random_probes(np.random.default_rng(args.seed), args.op, args.count, args.channels, args.uniform)
    sims = probe_many(args.arch, args.op, probes)
    tot_spec = tot_exact = tot = 0
    for p, y in zip(probes, sims):
        s, e = spec_codes(args.op, p, args.arch), exact_codes(args.op, p)
        tot += y.size
        tot_spec += int((s == y).sum())
        tot_exact += int((e == y).sum())
        print(f"si {p.si:.5g} zi {p.zi} so {p.so:.5g} zo {p.zo}: spec {np.mean(s == y):.2%}, exact {np.mean(e == y):.2%}")
    print(f"v{args.arch} {args.op}: {len(probes)} probes, {tot} codes: spec {tot_spec / tot:.2%}, "
          f"exact {tot_exact / tot:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
