"""Probe how QNN's HTP simulator computes an 8-bit Add / Sub, one encoding at a time.

``python -m tests.fidelity.eltwise_probe --arch 73 [--op Add] [--count 8]``

Each probe runs every pair of 8-bit input codes (a 256 x 256 tensor of each) through a QDQ Add or Sub
with chosen input encodings (s_a, z_a), (s_b, z_b) and output encoding (s_o, z_o).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from tests.fidelity.harness import simulate, simulator_missing


def _model(op: str, shape_a: tuple[int, ...], shape_b: tuple[int, ...], sa: np.float32, za: int,
           sb: np.float32, zb: int, so: np.float32, zo: int, bits: int = 8) -> bytes:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    dt = np.uint8 if bits == 8 else np.uint16
    inits = [nh.from_array(np.array(sa), "sa"), nh.from_array(np.array(za, dt), "za"),
             nh.from_array(np.array(sb), "sb"), nh.from_array(np.array(zb, dt), "zb"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, dt), "zo")]
    nodes = [helper.make_node("QuantizeLinear", ["af", "sa", "za"], ["aq"]),
             helper.make_node("DequantizeLinear", ["aq", "sa", "za"], ["a"]),
             helper.make_node("QuantizeLinear", ["bf", "sb", "zb"], ["bq"]),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"]),
             helper.make_node(op, ["a", "b"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("af", TensorProto.FLOAT, shape_a),
                                           helper.make_tensor_value_info("bf", TensorProto.FLOAT, shape_b)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def probe(arch: str, op: str, sa: float, za: int, sb: float, zb: int, so: float, zo: int,
          qa: np.ndarray | None = None, qb: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The simulator's output codes for input codes ``qa`` and ``qb`` (default: every pair of 8-bit
    codes, ``qa[i, j] = i``, ``qb[i, j] = j``), with the float32 scales used."""
    if qa is None or qb is None:
        qa, qb = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    sa32, sb32, so32 = np.float32(sa), np.float32(sb), np.float32(so)
    af = (sa32 * (qa.astype(np.float32) - np.float32(za))).astype(np.float32)
    bf = (sb32 * (qb.astype(np.float32) - np.float32(zb))).astype(np.float32)
    model = _model(op, af.shape, bf.shape, sa32, za, sb32, zb, so32, zo)
    out = simulate(model, [{"af": af, "bf": bf}], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    y = out.outputs[0]["yo"].astype(np.float64)
    return {"qa": np.broadcast_to(qa, y.shape), "qb": np.broadcast_to(qb, y.shape),
            "y": np.rint(y / float(so32)).astype(np.int64) + zo,
            "sa": np.float64(sa32), "sb": np.float64(sb32), "so": np.float64(so32),
            "za": np.int64(za), "zb": np.int64(zb), "zo": np.int64(zo)}


def exact_codes(p: dict[str, np.ndarray], sub: bool = False) -> np.ndarray:
    va = (p["qa"] - p["za"]) * p["sa"]
    vb = (p["qb"] - p["zb"]) * p["sb"]
    v = (va - vb if sub else va + vb) / p["so"]
    return np.clip(np.floor(v + 0.5) + p["zo"], 0, 255).astype(np.int64)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity.eltwise_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="73")
    p.add_argument("--op", default="Add", choices=["Add", "Sub"])
    args = p.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
