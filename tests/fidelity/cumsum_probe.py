"""Probe how QNN's HTP simulator computes a quantized CumSum (ONNX CumSum, QNN's CumulativeSum).

``python -m tests.fidelity.cumsum_probe --arch 73 [--bits 8] [--count 6] [--seed 0]``

Each probe is a QDQ CumSum along the last axis of ``[1, R, N]`` rows of chosen codes at chosen input and output
encodings (8- or 16-bit, unsigned). It prints per encoding the share of the simulator's codes that openqnn's spec
(``src/openqnn/backends/htp/spec/qnn_cumsum.py``) and exact rounding reproduce.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from tests.fidelity.harness import simulate, simulator_missing


def _model(shape: tuple[int, ...], sx: np.float32, zx: int, so: np.float32, zo: int, bits: int,
           exclusive: int = 0, reverse: int = 0, axis: int = -1) -> bytes:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    dt = np.uint8 if bits == 8 else np.uint16
    inits = [nh.from_array(np.array(sx), "sx"), nh.from_array(np.array(zx, dt), "zx"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, dt), "zo"),
             nh.from_array(np.array(axis, np.int64), "ax")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x"]),
             helper.make_node("CumSum", ["x", "ax"], ["y"], exclusive=exclusive, reverse=reverse),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def run_codes(arch: str, q: np.ndarray, sx: float, zx: int, so: float, zo: int, bits: int = 8,
              exclusive: int = 0, reverse: int = 0, axis: int = -1) -> np.ndarray:
    """The simulator's output codes of the CumSum along ``axis`` of the codes ``q``."""
    sx32, so32 = np.float32(sx), np.float32(so)
    xf = (sx32 * (q.astype(np.float32) - np.float32(zx))).astype(np.float32)
    sim = simulate(_model(q.shape, sx32, zx, so32, zo, bits, exclusive, reverse, axis), [{"xf": xf}], arch)
    if sim.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {sim.refusal}")
    return np.rint(sim.outputs[0]["yo"].astype(np.float64) / float(so32)).astype(np.int64) + zo


def exact_codes(q: np.ndarray, sx: float, zx: int, so: float, zo: int, bits: int = 8) -> np.ndarray:
    """Exact rounding (half to even, as QuantizeLinear) of the real cumulative sum."""
    x = float(np.float32(sx)) * (q.astype(np.float64) - zx)
    v = np.cumsum(x, axis=-1) / float(np.float32(so))
    return np.clip(np.rint(v) + zo, 0, (1 << bits) - 1).astype(np.int64)


def random_probes(rng: np.random.Generator, count: int, bits: int = 8, lengths: Sequence[int] = (2, 5, 9, 40)
                  ) -> list[tuple[float, int, float, int, np.ndarray]]:
    """``count`` probes (s_in, z_in, s_out, z_out, codes [1, R, n]): every other one at a ratio of few bits
    (``k / 2^j``: ties), the others at a random ratio 0.1 to 4; random zero points; every other row within
    1/8 of the range."""
    hi = (1 << bits) - 1
    out = []
    for i in range(count):
        n = int(lengths[i % len(lengths)])
        rows = (4096 if bits == 8 else 8192) // n
        q = rng.integers(0, hi + 1, (1, rows, n))
        w = (hi + 1) // 8
        q[0, ::2] = np.clip(rng.integers(-w, w, q[0, ::2].shape) + rng.integers(0, hi + 1, (q[0, ::2].shape[0], 1)),
                            0, hi)
        sx = float(np.exp(rng.uniform(np.log(0.005), np.log(0.1)))) / (256 if bits == 16 else 1)
        ratio = (float(rng.integers(1, 16)) / 2 ** int(rng.integers(1, 5)) if i % 2 == 0
                 else float(np.exp(rng.uniform(np.log(0.1), np.log(4)))))
        out.append((sx, int(rng.integers(0, hi + 1)), sx / ratio, int(rng.integers(0, hi + 1)), q))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--bits", type=int, default=8, choices=(8, 16))
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if (why := simulator_missing()) is not None:
        print(why)
        return 1
    from openqnn.backends.htp.spec.qnn_cumsum import cumsum_codes

    tot = same = exact = 0
    for sx, zx, so, zo, q in random_probes(np.random.default_rng(args.seed), args.count, args.bits):
        sim = run_codes(args.arch, q, sx, zx, so, zo, args.bits)
        s, e = cumsum_codes(q, sx, zx, so, zo, args.bits), exact_codes(q, sx, zx, so, zo, args.bits)
        tot += sim.size
        same += int((s == sim).sum())
        exact += int((e == sim).sum())
        print(f"n {q.shape[-1]} s_in {sx:.4g} z_in {zx} s_out {so:.4g} z_out {zo}: spec {np.mean(s == sim):.2%}, "
              f"exact {np.mean(e == sim):.2%}")
    print(f"v{args.arch} {args.bits}-bit CumSum: {tot} codes: spec {same / tot:.3%}, exact {exact / tot:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
