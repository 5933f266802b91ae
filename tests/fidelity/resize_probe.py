"""Probe how QNN's HTP simulator computes a Resize that QNN EP runs on floats (8-bit codes around it).

``python -m tests.fidelity.resize_probe --arch 73 [--seeds 4] [MODE ...]``

openqnn's QDQ export writes a Resize between Transposes with no Q/DQ next to it (its activations are
channels-last), so QNN EP takes ``DequantizeLinear -> Transpose -> Resize -> Transpose -> QuantizeLinear`` as
float ops around the quantized Transposes. Each probe builds that graph for random 8-bit codes ``[1, C, H, W]``
and random input and output encodings, runs it on the simulator and prints the share of its codes that
openqnn's rule (``src/openqnn/backends/htp/spec/qnn_resize.py``) and exact rounding reproduce.
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
    "linear_pyhalf": dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel", scales=[1, 1, 2, 2]),
    "nearest_asym": dict(mode="nearest", coordinate_transformation_mode="asymmetric", scales=[1, 1, 2, 2],
                         nearest_mode="floor"),
    "nearest_half": dict(mode="nearest", coordinate_transformation_mode="half_pixel", scales=[1, 1, 2, 2],
                         nearest_mode="round_prefer_floor"),
}


def _model(shape: tuple[int, ...], sx: np.float32, zx: int, so: np.float32, zo: int, mode: dict[str, Any]) -> bytes:
    """openqnn's export of a float-run Resize: Q/DQ, Transpose pairs around it, Q/DQ after."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    attrs = {k: v for k, v in mode.items() if k != "scales"}
    inits = [nh.from_array(np.array(sx), "sx"), nh.from_array(np.array(zx, np.uint8), "zx"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, np.uint8), "zo"),
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


def probe(arch: str, mode: str, seed: int, shape: tuple[int, ...] = (1, 8, 7, 9)) -> dict[str, Any]:
    """The simulator's output codes for one random probe, with its input codes and encodings."""
    rng = np.random.default_rng(seed)
    sx = np.float32(rng.uniform(0.005, 0.05))
    so = np.float32(float(sx) * float(np.exp(rng.uniform(np.log(0.7), np.log(1.4)))))
    zx, zo = int(rng.integers(0, 256)), int(rng.integers(0, 256))
    q = rng.integers(0, 256, shape)
    xf = (sx * (q.astype(np.float32) - np.float32(zx))).astype(np.float32)
    out = simulate(_model(shape, sx, zx, so, zo, MODES[mode]), [{"xf": xf}], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    y = out.outputs[0]["yo"].astype(np.float64)
    codes = np.rint(y / float(so)).astype(np.int64) + zo
    return {"q": q, "y": codes, "yf": y, "sx": sx, "zx": zx, "so": so, "zo": zo, "mode": mode,
            "float_nodes": list(out.float_nodes)}


def spec_float(p: dict[str, Any]) -> np.ndarray:
    """The float32 resize of a probe's dequantized codes (spec/qnn_resize.py, ONNX's weights from
    geometry.resize_plan)."""
    from openqnn.backends.geometry import resize_plan
    from openqnn.backends.htp.spec import qnn_resize

    mode = MODES[p["mode"]]
    q = p["q"]
    out_shape = tuple(int(n * s) for n, s in zip(q.shape, mode["scales"]))
    attrs = {"interpolation_mode": mode["mode"], "transformation_mode": mode["coordinate_transformation_mode"],
             "scales": [float(s) for s in mode["scales"]], "roi": [], "antialias": False,
             "nearest_mode": mode.get("nearest_mode", "round_prefer_floor"), "cubic_coeff": -0.75,
             "exclude_outside": False, "extrapolation_value": 0.0}
    axes, _ = resize_plan(attrs, tuple(q.shape), out_shape)
    v = qnn_resize.dequantize(q, float(p["sx"]), p["zx"])
    for r in axes:
        if r.index is not None:
            v = np.take(v, r.index, axis=r.axis)
            continue
        assert r.matrix is not None
        taps = int((r.matrix != 0).sum(axis=1).max())
        idx = np.argsort(r.matrix == 0, axis=1, kind="stable")[:, :taps]  # each row's taps, in input order
        w = np.take_along_axis(r.matrix, idx, axis=1).astype(np.float32)
        v = qnn_resize.filter_axes(v, [(r.axis, idx, w)])
    return v


def spec_codes(p: dict[str, Any]) -> np.ndarray:
    """openqnn's rule (spec/qnn_resize.py) on a probe's input codes: float32 resize, float16 quantization."""
    from openqnn.backends.htp.spec import qnn_resize

    return qnn_resize.quantize(spec_float(p), float(p["so"]), p["zo"], 255)


def exact_codes(p: dict[str, Any]) -> np.ndarray:
    """Exact rounding (half to even) of the float32 result: ONNX Runtime's QuantizeLinear."""
    y = spec_float(p)
    return np.clip(np.rint(y.astype(np.float64) / float(p["so"])) + p["zo"], 0, 255).astype(np.int64)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fidelity.resize_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="73")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("modes", nargs="*", choices=[[], *MODES], default=[])
    args = ap.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    for mode in args.modes or MODES:
        for seed in range(args.seeds):
            p = probe(args.arch, mode, seed)
            print(f"v{args.arch} {mode} seed {seed}: spec {np.mean(spec_codes(p) == p['y']):.2%}, exact rounding "
                  f"{np.mean(exact_codes(p) == p['y']):.2%} (QNN EP's float nodes: {p['float_nodes']})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
