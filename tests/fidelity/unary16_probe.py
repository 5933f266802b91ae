"""Probe how QNN's HTP simulator computes pointwise functions of 16-bit codes (lookup-table ops).

``python -m tests.fidelity.unary16_probe --arch 73 --op Sqrt [--count 4] [--seed 0]``

Each probe is a QDQ op (uint16 codes in and out) at one encoding, every 16-bit input code once (an input
``[1, 65536]``); ``--count`` probes share one graph (one simulator session), each its own graph output.
:func:`probe_many` returns the simulator's output codes per probe, for comparison with candidate rules.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tests.fidelity.harness import simulate_probe, simulator_missing

N = 1 << 16


@dataclass(frozen=True)
class Probe16:
    """One probe's encodings: input ``(si, zi)``, output ``(so, zo)`` (uint16)."""

    si: float
    zi: int
    so: float
    zo: int


def _nodes(op: str, p: Probe16, k: int, attrs: dict) -> tuple[list, list]:
    from onnx import helper
    from onnx import numpy_helper as nh

    def n(s: str) -> str:
        return f"k{k}_{s}"

    f32 = np.float32
    inits = [nh.from_array(np.array(f32(p.si)), n("si")), nh.from_array(np.array(p.zi, np.uint16), n("zi")),
             nh.from_array(np.array(f32(p.so)), n("so")), nh.from_array(np.array(p.zo, np.uint16), n("zo"))]
    nodes = [helper.make_node("QuantizeLinear", [n("x"), n("si"), n("zi")], [n("xq")]),
             helper.make_node("DequantizeLinear", [n("xq"), n("si"), n("zi")], [n("xd")]),
             helper.make_node(op, [n("xd")], [n("y")], **attrs),
             helper.make_node("QuantizeLinear", [n("y"), n("so"), n("zo")], [n("yq")]),
             helper.make_node("DequantizeLinear", [n("yq"), n("so"), n("zo")], [n("yo")])]
    return nodes, inits


def probe_many(arch: str, op: str, probes: Sequence[Probe16], opset: int = 21, codes: np.ndarray | None = None,
               **attrs: object) -> list[np.ndarray]:
    """The simulator's output codes of each probe (one session): int64 ``[65536]`` indexed by input code, or, with
    ``codes`` (input codes of any shape), the codes of those inputs, flattened."""
    from onnx import TensorProto, helper

    nodes, inits, inputs, outputs, feed = [], [], [], [], {}
    q = (np.arange(N).reshape(1, N) if codes is None else np.asarray(codes)).astype(np.float32)
    for k, p in enumerate(probes):
        nd, it = _nodes(op, p, k, dict(attrs))
        nodes += nd
        inits += it
        feed[f"k{k}_x"] = (np.float32(p.si) * (q - np.float32(p.zi))).astype(np.float32)
        inputs.append(helper.make_tensor_value_info(f"k{k}_x", TensorProto.FLOAT, q.shape))
        outputs.append(helper.make_tensor_value_info(f"k{k}_yo", TensorProto.FLOAT, None))
    out = simulate_probe(nodes, inits, inputs, outputs, feed, arch, opset)
    if out.float_nodes:
        print("QNN ran on floats:", out.float_nodes)
    return [np.rint(out.outputs[0][f"k{k}_yo"].astype(np.float64).reshape(-1) / float(np.float32(p.so))).astype(np.int64)
            + p.zo for k, p in enumerate(probes)]


def exact_codes(op: str, p: Probe16, q: np.ndarray) -> np.ndarray:
    """Exact rounding (half away from zero) of the real function of codes ``q`` (Abs, Log, Reciprocal, Sqrt)."""
    x = (np.asarray(q, np.int64) - p.zi) * float(np.float32(p.si))
    with np.errstate(all="ignore"):
        y = {"Abs": np.abs, "Log": np.log, "Reciprocal": np.reciprocal, "Sqrt": np.sqrt}[op](x)
    v = np.nan_to_num(y / float(np.float32(p.so)), nan=0.0, posinf=1e9, neginf=-1e9)
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + p.zo, 0, N - 1).astype(np.int64)


def off_significand_grid(codes: np.ndarray, bits: int = 14) -> np.ndarray:
    """Whether each code is off the grid of a ``bits``-bit significand: a code in ``[2^(bits-1) 2^j, 2^bits 2^j)``
    that is not a multiple of ``2^j`` (codes below ``2^(bits-1)`` are always on it). 16-bit Exp's codes at
    power-of-two output scales are all on the 14-bit grid (docs/htp-fidelity.md, "16-bit nonlinearities and HVX
    floats (stop 26)")."""
    c = np.asarray(codes, np.int64)
    e = np.maximum(np.floor(np.log2(np.maximum(c, 1))).astype(np.int64) - (bits - 1), 0)
    return (c % (np.int64(1) << e)) != 0


def random_probes(rng: np.random.Generator, op: str, count: int) -> list[Probe16]:
    """Random 16-bit encodings: Abs, input scales 1e-5 to 1e-3, any zero point, output steps 0.05 to 20 times the
    input's; Reciprocal, positive inputs over 0.1 to 4 (``1 / s_in`` below and above 65535 codes), outputs to 200."""
    out = []
    for i in range(count):
        if op == "Reciprocal":
            hi = float(np.exp(rng.uniform(np.log(0.1), np.log(4.0))))
            si = hi / 65535
            so = min(1 / (si * 200), 200.0) / 65535
            out.append(Probe16(si, 0, so, 0))
            continue
        si = float(np.exp(rng.uniform(np.log(1e-5), np.log(1e-3))))
        so = si * float(np.exp(rng.uniform(np.log(0.05), np.log(20))))
        out.append(Probe16(si, int(rng.integers(0, N)), so, int(rng.integers(0, 30000)) if i % 2 else 0))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--op", default="Sqrt")
    ap.add_argument("--si", type=float, default=1e-4)
    ap.add_argument("--zi", type=int, default=0)
    ap.add_argument("--so", type=float, default=1e-4)
    ap.add_argument("--zo", type=int, default=0)
    args = ap.parse_args(argv)
    if (why := simulator_missing()) is not None:
        print(why)
        return 1
    (codes,) = probe_many(args.arch, args.op, [Probe16(args.si, args.zi, args.so, args.zo)])
    print(codes[:: N // 64])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
