"""Probe how QNN's HTP simulator computes an 8-bit LogSoftmax (last axis).

``python -m tests.fidelity.logsoftmax_probe --arch 73 [--count 12] [--seed 0]``

Each probe is a QDQ LogSoftmax of ``[1, R, N]`` rows of chosen 8-bit codes at a random input encoding and the
output encoding openqnn's calibration gives LogSoftmax (zero point 255: every output is at most 0; scale from the
rows' smallest value). The probe prints per encoding the share of the simulator's codes that openqnn's spec
(``src/openqnn/backends/htp/spec/qnn_logsoftmax.py``) and exact rounding reproduce.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from tests.fidelity.harness import simulate, simulator_missing


def _model(shape: tuple[int, ...], sx: np.float32, zx: int, so: np.float32, zo: int, bits: int = 8) -> bytes:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    dt = np.uint8 if bits == 8 else np.uint16
    inits = [nh.from_array(np.array(sx), "sx"), nh.from_array(np.array(zx, dt), "zx"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, dt), "zo")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x"]),
             helper.make_node("LogSoftmax", ["x"], ["y"], axis=-1),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def run_codes(arch: str, q: np.ndarray, sx: float, zx: int, so: float, zo: int = 255, bits: int = 8) -> np.ndarray:
    """The simulator's output codes of the LogSoftmax (last axis) of the 8- or 16-bit codes ``q`` ([1, R, N])."""
    sx32, so32 = np.float32(sx), np.float32(so)
    xf = (sx32 * (q.astype(np.float32) - np.float32(zx))).astype(np.float32)
    sim = simulate(_model(q.shape, sx32, zx, so32, zo, bits), [{"xf": xf}], arch)
    if sim.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {sim.refusal}")
    return np.rint(sim.outputs[0]["yo"].astype(np.float64) / float(so32)).astype(np.int64) + zo


def exact_codes(q: np.ndarray, sx: float, so: float, zo: int = 255) -> np.ndarray:
    """Exact rounding (half away from zero) of the real log-softmax of the codes' values."""
    x = float(np.float32(sx)) * q.astype(np.float64)
    d = x - x.max(axis=-1, keepdims=True)
    v = (d - np.log(np.exp(d).sum(axis=-1, keepdims=True))) / float(np.float32(so))
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + zo, 0, 255).astype(np.int64)


def random_probes(rng: np.random.Generator, count: int, rows: int = 64, lengths: Sequence[int] = (5, 17, 64)
                  ) -> list[tuple[float, int, float, np.ndarray]]:
    """``count`` probes (s_in, z_in, s_out, codes [1, rows, n]): input scales 0.005 to 0.2, random codes (every
    other row spread over the whole range, the others within 40 codes), s_out the rows' smallest value / 255."""
    out = []
    for i in range(count):
        n = int(lengths[i % len(lengths)])
        sx = float(np.exp(rng.uniform(np.log(0.005), np.log(0.2))))
        zx = int(rng.integers(0, 256))
        q = rng.integers(0, 256, (1, rows, n))
        narrow = rng.integers(0, 40, (1, rows, n)) + rng.integers(0, 216, (1, rows, 1))
        q[:, 1::2] = narrow[:, 1::2]
        x = sx * q.astype(np.float64)
        d = x - x.max(axis=-1, keepdims=True)
        lo = float((d - np.log(np.exp(d).sum(axis=-1, keepdims=True))).min())
        out.append((sx, zx, -lo / 255 * float(rng.uniform(0.6, 1.0)), q))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if (why := simulator_missing()) is not None:
        print(why)
        return 1
    from openqnn.backends.htp.spec.qnn_logsoftmax import logsoftmax_codes

    tot = same = exact = 0
    for sx, zx, so, q in random_probes(np.random.default_rng(args.seed), args.count):
        sim = run_codes(args.arch, q, sx, zx, so)
        s, e = logsoftmax_codes(q, sx, so, 255), exact_codes(q, sx, so)
        tot += sim.size
        same += int((s == sim).sum())
        exact += int((e == sim).sum())
        print(f"n {q.shape[-1]} s_in {sx:.4g} s_out {so:.4g}: spec {np.mean(s == sim):.2%}, exact {np.mean(e == sim):.2%}")
    print(f"v{args.arch} LogSoftmax: {tot} codes: spec {same / tot:.2%}, exact {exact / tot:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
