"""Probe how QNN's HTP simulator requantizes a mean or sum of 8-bit codes, one multiplier at a time.

``python -m tests.fidelity.reduce_probe --arch 68 [--op ReduceMean] [--count 12]``

Each output channel of a ``[1, C, H, W]`` input reduced over H and W (ReduceMean, ReduceSum or
GlobalAveragePool between QuantizeLinear/DequantizeLinear) gets a chosen sum ``S = sum(q - z_in)``, spread
as evenly as the codes allow, so the output codes show at which ``S`` each code begins, for the multiplier
``M = s_in / (s_out * n)``. The probe prints, per multiplier, the share of codes that exact rounding and
openqnn's spec (``src/openqnn/backends/htp/spec/qnn_reduce.py``) reproduce.

Findings on onnxruntime-qnn 2.7.0 (QNN 2.51), v68 = v73: ReduceMean and ReduceSum follow a 15-bit
multiplier rounded down (99.93% of codes for M < 0.5, exact rounding 99.76%); GlobalAveragePool, which QNN
runs as its PoolAvg2d, a 15-bit multiplier rounded to nearest (100% for inputs below about 2.5 MB). The
codes depend on ``S`` only, not on how it is spread (docs/htp-fidelity.md).

``probe16`` does the same with uint16 codes (NHWC, NCHW, last-axis and transposed-graph-input layouts) for
``tests/fidelity/test_qnn_reduce.py``'s 16-bit tests (docs/htp-fidelity.md, "16-bit pools, reductions and
element-wise ops").
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import numpy as np

from openqnn.backends.htp.spec.qnn_reduce import QnnMeanSpec
from tests.fidelity.harness import qnn_session, simulator_missing


def codes_with_sums(sums: np.ndarray, n: int, z_in: int) -> np.ndarray:
    """[len(sums), n] 8-bit codes whose ``sum(q - z_in)`` per row is ``sums`` (each row within one code)."""
    base = np.floor_divide(sums, n)
    q = np.repeat(base[:, None], n, 1)
    q[np.arange(n)[None, :] < (sums - base * n)[:, None]] += 1
    return q + z_in


def _model(op: str, shape: tuple[int, ...], sx: np.float32, zx: int, so: np.float32, zo: int,
           axes: tuple[int, ...] = (2, 3), code: type = np.uint8, transpose: bool = False) -> bytes:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    inits = [nh.from_array(np.array(sx), "sx"), nh.from_array(np.array(zx, code), "zx"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, code), "zo"),
             nh.from_array(np.array(axes, np.int64), "axes")]
    node = (helper.make_node(op, ["x"], ["y"]) if op == "GlobalAveragePool"
            else helper.make_node(op, ["x", "axes"], ["y"], keepdims=1))
    # ``transpose``: the input NCHW, transposed to NHWC in its own Q/DQ unit (openqnn's export of a graph input)
    head = ([helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x0"]),
             helper.make_node("Transpose", ["x0"], ["xt"], perm=[0, 2, 3, 1]),
             helper.make_node("QuantizeLinear", ["xt", "sx", "zx"], ["xq1"]),
             helper.make_node("DequantizeLinear", ["xq1", "sx", "zx"], ["x"])] if transpose
            else [helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x"])])
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]), *head, node,
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def probe(arch: str, op: str, hw: tuple[int, int], sx: float, so: float, zx: int, zo: int,
          max_channels: int = 4096, nhwc: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """(sums S, the simulator's output codes, M) for every S that lands inside the output range (at most
    ``max_channels`` of them, evenly spaced). ``nhwc``: the input ``[1, H, W, C]`` reduced over axes 1 and 2,
    as openqnn's export writes a model's mean over the pixels (ReduceMean only)."""
    n = hw[0] * hw[1]
    sx32, so32 = np.float32(sx), np.float32(so)
    m = float(sx32) / float(so32) / (1 if op == "ReduceSum" else n)
    lo, hi = max(-zx * n, int(-(zo + 2) / m)), min((255 - zx) * n, int((257 - zo) / m))
    sums = np.unique(np.linspace(lo, hi, min(max_channels, hi - lo + 1)).astype(np.int64))
    q = codes_with_sums(sums, n, zx).reshape(1, sums.size, *hw)
    if nhwc:
        q = np.ascontiguousarray(q.transpose(0, 2, 3, 1))
    xf = (sx32 * (q.astype(np.float32) - np.float32(zx))).astype(np.float32)
    y = qnn_session(_model(op, q.shape, sx32, zx, so32, zo, (1, 2) if nhwc else (2, 3)), arch).run(None, {"xf": xf})[0]
    return sums, np.rint(y.astype(np.float64).reshape(-1) / float(so32)).astype(np.int64) + zo, m


def spec_codes(op: str, sums: np.ndarray, m: float, zo: int, nhwc: bool = False) -> np.ndarray:
    """openqnn's spec: ReduceMean / ReduceSum as spec/qnn_reduce.py; QNN's PoolAvg2d (GlobalAveragePool), and a
    ReduceMean over axes 1 and 2 (``nhwc``), with the multiplier rounded to nearest instead."""
    spec = QnnMeanSpec.of(m, zo)
    if op == "GlobalAveragePool" or nhwc:
        e = math.floor(math.log2(m))
        spec = QnnMeanSpec(math.floor(m * 2.0 ** (14 - e) + 0.5), 14 - e, zo, 255)
    return spec.apply_np(sums)


def probe16(arch: str, op: str, hw: tuple[int, int], m: float, rng: np.random.Generator, channels: int = 256,
            layout: str = "nhwc") -> tuple[np.ndarray, np.ndarray, float, int]:
    """16-bit codes (uint16): (sums S, the simulator's codes, M, z_out) for ``channels`` random sums in the output
    range at about the multiplier ``m`` (ReduceSum: s_in / s_out; else s_in / (s_out n)). ``layout``: "nhwc"
    (axes 1, 2 of [1, H, W, C]), "nchw" (axes 2, 3), "last" ([1, C, n]), "transposed" (an NCHW input
    Transposed to NHWC, then axes 1, 2: openqnn's export of a mean over a graph input's pixels)."""
    n = hw[0] * hw[1]
    sx = np.float32(rng.uniform(1e-4, 1e-3))
    so = np.float32(float(sx) / (m * (1 if op == "ReduceSum" else n)))
    mm = float(sx) / float(so) / (1 if op == "ReduceSum" else n)
    zx, zo = int(rng.integers(8000, 58000)), int(rng.integers(0, 65536))
    lo, hi = max(-(zx - 200) * n, int(-zo / mm)), min((65335 - zx) * n, int((65535 - zo) / mm))
    sums = rng.integers(lo, hi, channels)
    q = codes_with_sums(sums, n, zx)
    if layout == "last":
        q, axes = q.reshape(1, channels, n), (2,)
    elif layout in ("nchw", "transposed"):
        q, axes = q.reshape(1, channels, *hw), (2, 3) if layout == "nchw" else (1, 2)
    else:
        q, axes = np.ascontiguousarray(q.reshape(1, channels, *hw).transpose(0, 2, 3, 1)), (1, 2)
    xf = (sx * (q.astype(np.float32) - np.float32(zx))).astype(np.float32)
    model = _model(op, q.shape, sx, zx, so, zo, axes, np.uint16, transpose=layout == "transposed")
    y = qnn_session(model, arch).run(None, {"xf": xf})[0]
    return sums, np.rint(y.astype(np.float64).reshape(-1) / float(so)).astype(np.int64) + zo, mm, zo


def random_probes(rng: np.random.Generator, count: int) -> list[tuple[tuple[int, int], float, float, int, int]]:
    """(H x W, s_in, s_out before / n, z_in, z_out): multipliers M from 0.03 to 0.45."""
    shapes = [(7, 7), (3, 7), (8, 8), (7, 9), (3, 3), (10, 10), (2, 3), (1, 5)]
    out = []
    for i in range(count):
        hw = shapes[i % len(shapes)]
        sx = float(rng.uniform(0.005, 0.05))
        out.append((hw, sx, sx / float(np.exp(rng.uniform(np.log(0.03), np.log(0.45)))), int(rng.integers(0, 256)),
                    int(rng.integers(0, 256))))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity.reduce_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="68")
    p.add_argument("--op", default="ReduceMean", choices=["ReduceMean", "ReduceSum", "GlobalAveragePool"])
    p.add_argument("--count", type=int, default=12, help="random multipliers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nhwc", action="store_true", help="ReduceMean of [1, H, W, C] over axes 1, 2 (at most 1024 "
                   "channels: wider outputs meet the graph-output path's +1 on codes 4k from the zero point)")
    args = p.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    for hw, sx, so, zx, zo in random_probes(np.random.default_rng(args.seed), args.count):
        n = hw[0] * hw[1]
        sums, sim, m = probe(args.arch, args.op, hw, sx, so / (1 if args.op == "ReduceSum" else n), zx, zo,
                             max_channels=1024 if args.nhwc else 4096, nhwc=args.nhwc)
        exact = np.clip(np.floor(sums * m + 0.5) + zo, 0, 255)
        print(f"v{args.arch} {args.op} n={n} M={m:.6g}: spec {np.mean(spec_codes(args.op, sums, m, zo, args.nhwc) == sim):.4%}, "
              f"exact rounding {np.mean(exact == sim):.4%} of {sums.size}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
