"""Probe how QNN's HTP simulator requantizes a convolution's int32 accumulator, one multiplier at a time.

``python -m tests.fidelity.requant_probe --arch 68 [--count 20] [--zo 0]``

A 1x1 convolution with 8-bit input codes ``x`` (zero point 0), one weight of 1 per output channel and the
channel's bias ``256 * c`` makes the accumulator take every integer from 0 to 65535 exactly once; the
output codes then show, for a multiplier ``M = sx * sw / so``, at which accumulator each code begins. The
probe reports, per ``M``:

- ``s``: the accumulator's low bits that do not matter (every threshold is a multiple of ``2^s``), i.e. the
  accumulator is shifted right by ``s`` (floor) before the multiply;
- the multiplier precisions (significant bits, rounded ``r`` / floored ``f`` / ceiled ``c``) with which
  ``floor(floor(acc / 2^s) * 2^s * M' + 0.5)`` reproduces every output code.

Findings on onnxruntime-qnn 2.7.0 (QNN 2.51), v68, zero points 0: ``s = max(0, floor(-log2 M) - 3)`` and
an 11-bit rounded multiplier reproduce every code over ``M`` from 2e-4 to 0.3; v73 drops the same bits
but rounds otherwise (src/openqnn/backends/htp/spec/qnn_requant.py, docs/htp-fidelity.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from tests.fidelity.harness import qnn_session, simulator_missing

COUT, SPAN = 256, 256  # channels x input codes: accumulators 0 .. 65535


def _model(m: float, zo: int) -> tuple[bytes, np.ndarray, float]:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    sx = sw = np.float32(0.5)
    so = np.float32(float(sx * sw) / m)
    inits = [nh.from_array(np.ones((COUT, 1, 1, 1), np.int8), "wq"), nh.from_array(np.array(sw), "sw"),
             nh.from_array(np.array(0, np.int8), "zw"),
             nh.from_array((np.arange(COUT) * SPAN).astype(np.int32), "bq"),
             nh.from_array(np.array(sx * sw, np.float32), "sb"), nh.from_array(np.array(0, np.int32), "zb"),
             nh.from_array(np.array(sx), "sx"), nh.from_array(np.array(0, np.uint8), "zx"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, np.uint8), "zo")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["w"]),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"]),
             helper.make_node("Conv", ["x", "w", "b"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, (1, 1, 16, 16))],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    feed = (sx * np.arange(SPAN, dtype=np.float32)).reshape(1, 1, 16, 16)
    return model.SerializeToString(), feed, float(so)


def probe(arch: str, m: float, zo: int = 0) -> dict[str, object]:
    """The simulator's output codes for every accumulator 0..65535 at multiplier ``m``, and what fits them."""
    model, feed, so = _model(m, zo)
    y = qnn_session(model, arch).run(None, {"xf": feed})[0]
    codes = (np.round(y / np.float32(so)).astype(np.int64) + zo).reshape(COUT, SPAN).ravel()
    acc = (np.arange(COUT)[:, None] * SPAN + np.arange(SPAN)[None, :]).ravel().astype(np.float64)
    mq = 0.25 / float(np.float32(so))
    top = min(int(codes.max()), 254)
    first = acc[np.searchsorted(codes, np.arange(zo + 1, top + 1))].astype(np.int64)
    s = 0
    while s < 16 and first.size and np.all(first % 2 ** (s + 1) == 0):
        s += 1
    a = np.floor(acc / 2**s) * 2**s
    e = np.floor(np.log2(mq))
    fits = []
    for bits in range(6, 20):
        x = mq / 2**e * 2 ** (bits - 1)
        for mode, r in (("r", np.floor(x + 0.5)), ("f", np.floor(x)), ("c", np.ceil(x))):
            if np.array_equal(np.clip(np.floor(a * (r / 2 ** (bits - 1) * 2**e) + 0.5) + zo, 0, 255), codes):
                fits.append(f"{bits}{mode}")
    return {"M": mq, "s": s, "fits": fits, "monotone": bool(np.all(np.diff(codes) >= 0))}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity.requant_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="68")
    p.add_argument("--count", type=int, default=20, help="multipliers, log-spaced from 2e-4 to 0.3")
    p.add_argument("--zo", type=int, default=0, help="the output zero point")
    args = p.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    for m in np.exp(np.linspace(np.log(2e-4), np.log(0.3), args.count)):
        r = probe(args.arch, float(f"{m:.6g}"), args.zo)
        print(f"v{args.arch} M={r['M']:.6g} -log2 M={-np.log2(r['M']):6.3f} s={r['s']} "
              f"floor(-log2 M)-3={max(0, int(np.floor(-np.log2(r['M']))) - 3)} fits: {' '.join(r['fits'][:8]) or '-'}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
