"""Probe how QNN's HTP simulator computes an 8-bit AveragePool, geometry by geometry.

``python -m tests.fidelity.pool_probe --arch 73 [--seeds 4] [GEOMETRY ...]``

Each probe is a QDQ AveragePool of random 8-bit codes ``[1, 16, 15, 17]`` with a random input encoding,
an output scale ``s_in / r`` (``r`` from 0.6 to 3) and a random output zero point. The window sums
``S = sum(q - z_in)`` and divisors ``n`` are computed here; the probe prints, per geometry, the share of the
simulator's codes that openqnn's spec (``src/openqnn/backends/htp/spec/qnn_pool.py``) and exact rounding
reproduce.

Findings on onnxruntime-qnn 2.7.0 (QNN 2.51): the codes depend on (S, n) only; stride-1 square 3/5/7
windows with one divisor are QNN's depthwise convolution (weight 1/n as a power of two, conv requantization
per arch: 100%); every other geometry takes a 15-bit multiplier rounded to nearest (v68 = v73, 98-100% per
probe; the rest: values a little below a .5 boundary rounded up); windows leaving padding out of the count,
and 2x2 windows at stride 2, round twice (stop 25: ``qnn_pool.two_stage_route``) (docs/htp-fidelity.md).

``probe16`` and ``spec16_codes`` do the same with uint16 codes (docs/htp-fidelity.md, "16-bit pools, reductions and
element-wise ops").
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from openqnn.backends.htp.spec import qnn_pool
from tests.fidelity.harness import simulate, simulator_missing

GEOMETRIES: dict[str, dict[str, Any]] = {
    "k2s2": dict(kernel_shape=[2, 2], strides=[2, 2]),
    "k2s1": dict(kernel_shape=[2, 2], strides=[1, 1]),
    "k2s2p1ex": dict(kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0),
    "k3s2p1ex": dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4, count_include_pad=0),
    "k3s2p1in": dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4, count_include_pad=1),
    "k3s1p1ex": dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4, count_include_pad=0),
    "k3s1p1in": dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4, count_include_pad=1),
    "k3s1": dict(kernel_shape=[3, 3], strides=[1, 1]),
    "k3x2s1": dict(kernel_shape=[3, 2], strides=[1, 1]),
    "k5s1p2ex": dict(kernel_shape=[5, 5], strides=[1, 1], pads=[2] * 4, count_include_pad=0),
    "k5s1p2in": dict(kernel_shape=[5, 5], strides=[1, 1], pads=[2] * 4, count_include_pad=1),
    "k7s1": dict(kernel_shape=[7, 7], strides=[1, 1]),
    "k7s2p3in": dict(kernel_shape=[7, 7], strides=[2, 2], pads=[3] * 4, count_include_pad=1),
}


def _model(shape: tuple[int, ...], sx: np.float32, zx: int, so: np.float32, zo: int, code: type = np.uint8,
           **attrs: Any) -> bytes:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    inits = [nh.from_array(np.array(sx), "sx"), nh.from_array(np.array(zx, code), "zx"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, code), "zo")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x"]),
             helper.make_node("AveragePool", ["x"], ["y"], **attrs),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def window_sums(q: np.ndarray, zx: int, attrs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(S, n) of every output of an NCHW AveragePool: exact integer window sums and divisors."""
    import torch
    import torch.nn.functional as F

    k, s = tuple(attrs["kernel_shape"]), tuple(attrs["strides"])
    pt, pl, pb, pr = attrs.get("pads", [0, 0, 0, 0])
    x = F.pad(torch.from_numpy((q - zx).astype(np.float64)), (pl, pr, pt, pb))
    ones = F.pad(torch.ones(q.shape, dtype=torch.float64), (pl, pr, pt, pb))
    total = k[0] * k[1]
    sums = np.rint(F.avg_pool2d(x, k, s).numpy() * total).astype(np.int64)
    n = np.rint(F.avg_pool2d(ones, k, s).numpy() * total).astype(np.int64)
    return sums, np.full_like(n, total) if attrs.get("count_include_pad") else n


def probe(arch: str, geometry: str, seed: int, shape: tuple[int, ...] = (1, 16, 15, 17)) -> dict[str, Any]:
    """The simulator's output codes for one random probe, with its sums, divisors and encodings."""
    attrs = GEOMETRIES[geometry]
    rng = np.random.default_rng(seed)
    sx = np.float32(rng.uniform(0.005, 0.05))
    so = np.float32(float(sx) / float(np.exp(rng.uniform(np.log(0.6), np.log(3)))))
    zx, zo = int(rng.integers(0, 256)), int(rng.integers(0, 256))
    q = rng.integers(0, 256, shape)
    xf = (sx * (q.astype(np.float32) - np.float32(zx))).astype(np.float32)
    out = simulate(_model(shape, sx, zx, so, zo, **attrs), [{"xf": xf}], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    y = np.rint(out.outputs[0]["yo"].astype(np.float64) / float(so)).astype(np.int64) + zo
    sums, n = window_sums(q, zx, attrs)
    return {"S": sums, "n": n, "y": y, "ratio": float(sx) / float(so), "zo": zo}


def probe16(arch: str, geometry: str, seed: int, shape: tuple[int, ...] = (1, 16, 15, 17)) -> dict[str, Any]:
    """``probe`` with uint16 codes (docs/htp-fidelity.md, "16-bit pools, reductions and element-wise ops")."""
    attrs = GEOMETRIES[geometry]
    rng = np.random.default_rng(seed)
    sx = np.float32(rng.uniform(1e-4, 1e-3))
    so = np.float32(float(sx) / float(np.exp(rng.uniform(np.log(0.6), np.log(3)))))
    zx, zo = int(rng.integers(0, 65536)), int(rng.integers(0, 65536))
    q = rng.integers(0, 65536, shape)
    xf = (sx * (q.astype(np.float32) - np.float32(zx))).astype(np.float32)
    out = simulate(_model(shape, sx, zx, so, zo, np.uint16, **attrs), [{"xf": xf}], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    y = np.rint(out.outputs[0]["yo"].astype(np.float64) / float(so)).astype(np.int64) + zo
    sums, n = window_sums(q, zx, attrs)
    return {"S": sums, "n": n, "y": y, "ratio": float(sx) / float(so), "zo": zo, "q": q, "zx": zx, "sx": float(sx)}


def _conv16_codes(arch: str, attrs: dict[str, Any], p: dict[str, Any]) -> np.ndarray:
    """The 16-bit depthwise route: byte-plane window sums with the weight code WEIGHT16, the W8A16 rule."""
    from openqnn.backends.htp.spec.qnn_conv16 import Conv16Spec

    q, zx, w = p["q"], p["zx"], qnn_pool.WEIGHT16
    n = int(np.prod(attrs["kernel_shape"]))

    def plane(x: np.ndarray, fill: int) -> np.ndarray:
        # every tap reads a padded input holding the zero point's byte: window sums of (x - fill), plus n * fill
        s, _ = window_sums(x, fill, {**attrs, "count_include_pad": 1})
        return (s + n * fill) * w

    real = np.array([p["ratio"] / n / w])
    spec = Conv16Spec.of(real, p["zo"], f"v{arch}")
    qb = spec.bias(np.zeros(1, dtype=np.int64), p["sx"], np.array([1.0 / (n * w)]), None, real)
    hoff, loff = spec.offsets(np.array([w * n]), qb, zx, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
    return spec.apply_np(plane(q >> 8, zx >> 8), plane(q & 255, zx & 255), hoff, loff)


def spec16_codes(geometry: str, p: dict[str, Any], arch: str = "73") -> np.ndarray | None:
    """openqnn's 16-bit routes (spec/qnn_pool.py ``route16``; the depthwise route's W8A16 convolution) on a probe,
    None where none is followed."""
    attrs = GEOMETRIES[geometry]
    padded = any(attrs.get("pads", [0]))
    count_pad = bool(attrs.get("count_include_pad"))
    if qnn_pool.conv_route(attrs["kernel_shape"], attrs["strides"], (1, 1), padded, count_pad):
        return _conv16_codes(arch, attrs, p)
    route = qnn_pool.route16(attrs["kernel_shape"], attrs["strides"], (1, 1), padded, count_pad)
    if route is None:
        return None
    out = np.empty_like(p["S"])
    for k in np.unique(p["n"]):
        m, sh, rounding = qnn_pool.pool16_consts(p["ratio"] / int(k), route)
        sel = p["n"] == k
        out[sel] = qnn_pool.pool_mean_np(p["S"][sel], np.int64(m), np.int64(sh), p["zo"], 65535, np.int64(rounding))
    return out


def spec_codes(arch: str, geometry: str, p: dict[str, Any]) -> np.ndarray:
    """openqnn's spec (spec/qnn_pool.py) on a probe's sums."""
    attrs = GEOMETRIES[geometry]
    sums, n, ratio, zo = p["S"], p["n"], p["ratio"], p["zo"]
    padded = any(attrs.get("pads", [0]))
    if qnn_pool.conv_route(attrs["kernel_shape"], attrs["strides"], (1, 1), padded,
                           bool(attrs.get("count_include_pad"))):
        spec = qnn_pool.conv_spec(f"v{arch}", ratio / int(n.flat[0]), zo)
        return spec.apply_np((sums * qnn_pool.WEIGHT).reshape(-1, 1)).reshape(sums.shape)
    out = np.empty_like(sums)
    two_stage = qnn_pool.two_stage_route(attrs["kernel_shape"], attrs["strides"], padded,
                                         bool(attrs.get("count_include_pad")))
    for k in np.unique(n):
        m, sh = qnn_pool.pool_mean_consts(ratio / int(k))
        rounding = np.int64(qnn_pool.pool_mean_round(ratio, sh, two_stage))
        out[n == k] = qnn_pool.pool_mean_np(sums[n == k], np.int64(m), np.int64(sh), zo, 255, rounding)
    return out


def exact_codes(p: dict[str, Any]) -> np.ndarray:
    return np.clip(np.floor(p["S"] * p["ratio"] / p["n"] + p["zo"] + 0.5), 0, 255)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fidelity.pool_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("geometries", nargs="*", choices=[[], *GEOMETRIES], default=[])
    args = ap.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    for geometry in args.geometries or GEOMETRIES:
        cells = []
        for seed in range(args.seeds):
            p = probe(args.arch, geometry, seed)
            cells.append(f"{np.mean(spec_codes(args.arch, geometry, p) == p['y']):.2%}"
                         f" ({np.mean(exact_codes(p) == p['y']):.2%})")
        print(f"v{args.arch} {geometry}: spec (exact rounding) per seed: {', '.join(cells)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
