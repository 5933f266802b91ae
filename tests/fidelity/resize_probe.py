"""Probe how QNN's HTP simulator computes a Resize that QNN EP runs on floats (8-bit codes around it).

``python -m tests.fidelity.resize_probe --arch 73 [--seeds 4] [--bits 16] [MODE ...]``

openqnn's QDQ export writes a Resize between Transposes with no Q/DQ next to it (its activations are
channels-last), so QNN EP takes ``DequantizeLinear -> Transpose -> Resize -> Transpose -> QuantizeLinear`` as
float ops around the quantized Transposes. Each probe builds that graph for random 8-bit codes ``[1, C, H, W]``
and random input and output encodings, runs it on the simulator and prints the share of its codes that
openqnn's rule (``src/openqnn/backends/htp/spec/qnn_resize.py``) and exact rounding reproduce. ``--bits 16``:
uint16 codes (the 16-bit rule, ``qnn_resize.quantize16``); :func:`tie_probe` puts output codes on exact .5 ties.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from tests.fidelity.harness import simulate, simulator_missing

MODES: dict[str, dict[str, Any]] = {
    "linear_half": dict(mode="linear", coordinate_transformation_mode="half_pixel", scales=[1, 1, 2, 2]),
    "linear_align": dict(mode="linear", coordinate_transformation_mode="align_corners", scales=[1, 1, 2, 2]),
    "linear_asym": dict(mode="linear", coordinate_transformation_mode="asymmetric", scales=[1, 1, 2, 2]),
    "linear_half_x3": dict(mode="linear", coordinate_transformation_mode="half_pixel", scales=[1, 1, 3, 3]),
    "linear_half_x1.5": dict(mode="linear", coordinate_transformation_mode="half_pixel", scales=[1, 1, 1.5, 1.5]),
    "linear_align_x3": dict(mode="linear", coordinate_transformation_mode="align_corners", scales=[1, 1, 3, 3]),
    "linear_pyhalf": dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel", scales=[1, 1, 2, 2]),
    "nearest_asym": dict(mode="nearest", coordinate_transformation_mode="asymmetric", scales=[1, 1, 2, 2],
                         nearest_mode="floor"),
    "nearest_half": dict(mode="nearest", coordinate_transformation_mode="half_pixel", scales=[1, 1, 2, 2],
                         nearest_mode="round_prefer_floor"),
}


def _model(shape: tuple[int, ...], sx: np.float32, zx: int, so: np.float32, zo: int, mode: dict[str, Any],
           bits: int = 8) -> bytes:
    """openqnn's export of a float-run Resize: Q/DQ, Transpose pairs around it, Q/DQ after."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    attrs = {k: v for k, v in mode.items() if k != "scales"}
    zt = np.uint8 if bits == 8 else np.uint16
    inits = [nh.from_array(np.array(sx), "sx"), nh.from_array(np.array(zx, zt), "zx"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, zt), "zo"),
             nh.from_array(np.asarray(mode["scales"], np.float32), "sc")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["x0q"]),
             helper.make_node("DequantizeLinear", ["x0q", "sx", "zx"], ["x0"]),
             helper.make_node("Transpose", ["x0"], ["x1"], perm=[0, 2, 3, 1]),
             helper.make_node("QuantizeLinear", ["x1", "sx", "zx"], ["x1q"]),
             helper.make_node("DequantizeLinear", ["x1q", "sx", "zx"], ["x2"]),
             helper.make_node("Transpose", ["x2"], ["x3"], perm=[0, 3, 1, 2]),
             helper.make_node("Resize", ["x3", "", "sc"], ["y0"], **attrs),
             helper.make_node("Transpose", ["y0"], ["y1"], perm=[0, 2, 3, 1]),
             helper.make_node("QuantizeLinear", ["y1", "so", "zo"], ["y1q"]),
             helper.make_node("DequantizeLinear", ["y1q", "so", "zo"], ["y2"]),
             helper.make_node("Transpose", ["y2"], ["y3"], perm=[0, 3, 1, 2]),
             helper.make_node("QuantizeLinear", ["y3", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def probe(arch: str, mode: str, seed: int, shape: tuple[int, ...] = (1, 8, 7, 9), bits: int = 8) -> dict[str, Any]:
    """The simulator's output codes for one random probe, with its input codes and encodings (``bits``-bit
    codes, 8 or 16; the 16-bit scales are the 8-bit ones over 256)."""
    rng = np.random.default_rng(seed)
    n = 1 << bits
    sx = np.float32(rng.uniform(0.005, 0.05) / (n // 256))
    so = np.float32(float(sx) * float(np.exp(rng.uniform(np.log(0.7), np.log(1.4)))))
    zx, zo = int(rng.integers(0, n)), int(rng.integers(0, n))
    q = rng.integers(0, n, shape)
    xf = (sx * (q.astype(np.float32) - np.float32(zx))).astype(np.float32)
    out = simulate(_model(shape, sx, zx, so, zo, MODES[mode], bits), [{"xf": xf}], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    y = out.outputs[0]["yo"].astype(np.float64)
    codes = np.rint(y / float(so)).astype(np.int64) + zo
    return {"q": q, "y": codes, "yf": y, "sx": sx, "zx": zx, "so": so, "zo": zo, "mode": mode, "bits": bits,
            "float_nodes": list(out.float_nodes)}


def _resize_of(p: dict[str, Any]) -> tuple[np.ndarray, tuple[int, ...], dict[str, Any]]:
    """A probe's input codes, output shape and Resize attributes (as the IR holds them)."""
    mode = MODES[p["mode"]]
    q = p["q"]
    out_shape = tuple(int(n * s) for n, s in zip(q.shape, mode["scales"]))
    attrs = {"interpolation_mode": mode["mode"], "transformation_mode": mode["coordinate_transformation_mode"],
             "scales": [float(s) for s in mode["scales"]], "roi": [], "antialias": False,
             "nearest_mode": mode.get("nearest_mode", "round_prefer_floor"), "cubic_coeff": -0.75,
             "exclude_outside": False, "extrapolation_value": 0.0}
    return q, out_shape, attrs


def spec_float(p: dict[str, Any], geometry_weights: bool = False) -> np.ndarray:
    """The float32 resize of a probe's dequantized codes (spec/qnn_resize.py: QNN's float32 coordinates,
    ``qnn_resize.linear_taps``; ``geometry_weights``: ONNX's weights from geometry.resize_plan, as the 8-bit rule
    first had them)."""
    from openqnn.backends.geometry import resize_plan
    from openqnn.backends.htp.spec import qnn_resize

    q, out_shape, attrs = _resize_of(p)
    axes, _ = resize_plan(attrs, tuple(q.shape), out_shape)
    v = qnn_resize.dequantize(q, float(p["sx"]), p["zx"])
    for r in axes:
        if r.index is not None:
            v = np.take(v, r.index, axis=r.axis)
            continue
        taps = qnn_resize.linear_taps(attrs["transformation_mode"], q.shape[r.axis], out_shape[r.axis])
        if taps is not None and not geometry_weights:
            v = qnn_resize.filter_axes(v, [(r.axis, *taps)])
            continue
        assert r.matrix is not None
        taps = int((r.matrix != 0).sum(axis=1).max())
        idx = np.argsort(r.matrix == 0, axis=1, kind="stable")[:, :taps]  # each row's taps, in input order
        w = np.take_along_axis(r.matrix, idx, axis=1).astype(np.float32)
        v = qnn_resize.filter_axes(v, [(r.axis, idx, w)])
    return v


def spec_codes(p: dict[str, Any]) -> np.ndarray:
    """openqnn's rule (spec/qnn_resize.py) on a probe's input codes: float32 resize, float16 quantization (8-bit
    codes) or a float32 product rounded half away (16-bit)."""
    from openqnn.backends.htp.spec import qnn_resize

    bits = p.get("bits", 8)
    quantize = qnn_resize.quantize16 if bits == 16 else qnn_resize.quantize
    return quantize(spec_float(p), float(p["so"]), p["zo"], (1 << bits) - 1)


def exact_codes(p: dict[str, Any]) -> np.ndarray:
    """Exact rounding (half to even) of the float32 result: ONNX Runtime's QuantizeLinear."""
    y = spec_float(p)
    qmax = (1 << p.get("bits", 8)) - 1
    return np.clip(np.rint(y.astype(np.float64) / float(p["so"])) + p["zo"], 0, qmax).astype(np.int64)


def fixed_point_codes(p: dict[str, Any]) -> np.ndarray:
    """openqnn's former route for 16-bit codes (``htp.resize_filter``): Q.20 weights on ``(q - z_in) << 8``, one
    requantization by a 31-bit multiplier."""
    from openqnn.backends.geometry import resize_plan
    from openqnn.backends.htp.fixedpoint import mbqm_np, quantize_multiplier, rdbpot_np
    from openqnn.backends.htp.kernels.resize import RESIZE_EXTRA_BITS, RESIZE_WEIGHT_BITS, _fixed_rows

    q, out_shape, attrs = _resize_of(p)
    v = (np.asarray(q, dtype=np.int64) - p["zx"]) << RESIZE_EXTRA_BITS
    for r in resize_plan(attrs, tuple(q.shape), out_shape)[0]:
        if r.index is not None:
            v = np.take(v, r.index, axis=r.axis)
            continue
        assert r.matrix is not None
        idx, w = _fixed_rows(r.matrix)
        shape = [1] * v.ndim
        shape[r.axis] = idx.shape[0]
        acc = np.zeros(1, dtype=np.int64)
        for t in range(idx.shape[1]):
            acc = acc + np.take(v, idx[:, t], axis=r.axis) * w[:, t].reshape(shape)
        v = rdbpot_np(acc, RESIZE_WEIGHT_BITS)
    m, sh = quantize_multiplier(float(p["sx"]) / (float(p["so"]) * (1 << RESIZE_EXTRA_BITS)))
    return np.clip(p["zo"] + mbqm_np(v, m, sh), 0, (1 << p.get("bits", 8)) - 1).astype(np.int64)


def tie_probe(arch: str, ratio: float, zx: int, zo: int, seed: int = 5,
              shape: tuple[int, ...] = (1, 4, 16, 16)) -> dict[str, Any]:
    """16-bit linear asymmetric x2 at ``s_out = 2^-12``, ``s_in = ratio s_out`` (both exact, ``1 / s_out`` too):
    the even output positions copy an input, so their codes are ``ratio (q - zx)`` exactly, a .5 tie for odd
    ``q - zx`` with ``ratio`` 1.5. Returns the probe with ``t`` (those exact values) and ``copies`` (the codes
    the simulator gave them)."""
    rng = np.random.default_rng(seed)
    so = np.float32(2.0**-12)
    sx = np.float32(float(so) * ratio)
    q = rng.integers(0, 1 << 16, shape)
    xf = (sx * (q.astype(np.float32) - np.float32(zx))).astype(np.float32)
    out = simulate(_model(shape, sx, zx, so, zo, MODES["linear_asym"], 16), [{"xf": xf}], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    codes = np.rint(out.outputs[0]["yo"].astype(np.float64) / float(so)).astype(np.int64) + zo
    return {"q": q, "y": codes, "sx": sx, "zx": zx, "so": so, "zo": zo, "mode": "linear_asym", "bits": 16,
            "t": (q - zx).astype(np.float64) * ratio, "copies": codes[:, :, ::2, ::2]}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fidelity.resize_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--bits", type=int, choices=[8, 16], default=8)
    ap.add_argument("modes", nargs="*", choices=[[], *MODES], default=[])
    args = ap.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    for mode in args.modes or MODES:
        for seed in range(args.seeds):
            if args.bits == 16 and not mode.startswith("linear"):
                continue
            p = probe(args.arch, mode, seed, bits=args.bits)
            print(f"v{args.arch} {mode} seed {seed}: spec {np.mean(spec_codes(p) == p['y']):.2%}, exact rounding "
                  f"{np.mean(exact_codes(p) == p['y']):.2%} (QNN EP's float nodes: {p['float_nodes']})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
