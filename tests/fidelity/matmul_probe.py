"""Probe how QNN's HTP simulator computes MatMul of two 8-bit activations.

``python -m tests.fidelity.matmul_probe --arch 73 [--seed 0] [--after]``

A QDQ model ``DQ(a) @ DQ(b) -> Q`` with chosen codes, scales and zero points; the simulator's output codes
are compared with candidate integer rules (share of identical codes): QNN's spec
(src/openqnn/backends/htp/spec/qnn_matmul.py), the convolutions' requantization of the exact accumulator,
exact rounding. The sweep covers K = 1..128, zero points with in[1]'s columns inside and outside int8's
range, and multipliers of different exponents. ``--after`` only runs the probe of a MatMul whose output also
feeds a Relu or a Softmax (the latter changes QNN's codes; docs/htp-fidelity.md).

Findings on onnxruntime-qnn 2.7.0 (QNN 2.51): the spec gives every code on v73 and all but 3 of 166,000 on
v68 (seeds 0 and 1); the conv rule alone 95.5-96.2%, exact rounding 93.4-95.5%.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from tests.fidelity.harness import simulate, simulator_missing


def model(a_shape: Sequence[int], b_shape: Sequence[int], sa: float, za: int, sb: float, zb: int, so: float, zo: int,
          bits: int = 8) -> bytes:
    """The QDQ MatMul model: float inputs ``a``, ``b`` (on their grids), output ``yo`` (dequantized)."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    dt = np.uint8 if bits == 8 else np.uint16
    inits = [nh.from_array(np.array(np.float32(s)), n) for s, n in ((sa, "sa"), (sb, "sb"), (so, "so"))]
    inits += [nh.from_array(np.array(z, dt), n) for z, n in ((za, "za"), (zb, "zb"), (zo, "zo"))]
    nodes = [helper.make_node("QuantizeLinear", ["af", "sa", "za"], ["aq"]),
             helper.make_node("DequantizeLinear", ["aq", "sa", "za"], ["a"]),
             helper.make_node("QuantizeLinear", ["bf", "sb", "zb"], ["bq"]),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"]),
             helper.make_node("MatMul", ["a", "b"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("af", TensorProto.FLOAT, list(a_shape)),
                                        helper.make_tensor_value_info("bf", TensorProto.FLOAT, list(b_shape))],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def sim_codes(arch: str, qa: np.ndarray, qb: np.ndarray, sa: float, za: int, sb: float, zb: int, so: float, zo: int,
              bits: int = 8) -> np.ndarray:
    """The simulator's output codes of ``qa @ qb`` (codes, any batch shape)."""
    m = model(qa.shape, qb.shape, sa, za, sb, zb, so, zo, bits)
    f = lambda q, s, z: (np.float32(s) * (q.astype(np.float32) - np.float32(z))).astype(np.float32)  # noqa: E731
    out = simulate(m, [{"af": f(qa, sa, za), "bf": f(qb, sb, zb)}], arch)
    if out.outputs is None:
        raise RuntimeError(out.refusal)
    y = out.outputs[0]["yo"].astype(np.float64)
    return np.rint(y / float(np.float32(so))).astype(np.int64) + zo


def random_case(rng: np.random.Generator, k: int, za: int, zb: int, target: float, batch: int = 2, m: int = 16,
                n: int = 24) -> dict[str, object]:
    """Random codes ``[batch, m, k] x [batch, k, n]`` with scales chosen so that the output spreads about
    ``target`` codes around its zero point (the multiplier follows from K and the zero points)."""
    qa = rng.integers(0, 256, (batch, m, k))
    qb = rng.integers(0, 256, (batch, k, n))
    sa, sb = float(rng.uniform(0.005, 0.05)), float(rng.uniform(0.005, 0.05))
    acc = np.matmul(qa - za, qb - zb)
    so = float(np.float32(sa * sb * max(float(acc.std()), 1.0) / target))
    return {"qa": qa, "qb": qb, "sa": sa, "za": za, "sb": sb, "zb": zb, "so": so, "zo": int(rng.integers(96, 160))}


def candidates(arch: str, case: dict[str, object]) -> dict[str, np.ndarray]:
    """The candidate rules' codes for a case: QNN's spec, the convolutions' rule on the exact accumulator,
    exact rounding."""
    from openqnn.backends.htp.spec.qnn_matmul import QnnMatMulSpec
    from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec

    qa, qb = np.asarray(case["qa"]), np.asarray(case["qb"])
    za, zb, zo = int(case["za"]), int(case["zb"]), int(case["zo"])  # type: ignore[call-overload]
    real = float(np.float32(case["sa"])) * float(np.float32(case["sb"])) / float(np.float32(case["so"]))
    acc = np.matmul(qa - za, qb - zb)
    return {"spec": QnnMatMulSpec.of(f"v{arch}", real, zo).apply_np(qa - za, qb - zb),
            "conv rule": QnnRequantSpec.of(f"v{arch}", np.array([real]), zo).apply_np(acc[..., None])[..., 0],
            "exact": np.clip(np.floor(acc * real + 0.5) + zo, 0, 255).astype(np.int64)}


def sweep(arch: str, seed: int = 0) -> list[tuple[str, dict[str, float]]]:
    """K x zero points x output spreads (multipliers of different exponents): share of identical codes."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in (1, 2, 8, 32, 64, 128):
        for za, zb in ((128, 128), (0, 128), (37, 0), (128, 0), (200, 120), (90, 100), (0, 0), (30, 140), (128, 250)):
            for target in (6.0, 40.0):
                case = random_case(rng, k, za, zb, target)
                sim = sim_codes(arch, np.asarray(case["qa"]), np.asarray(case["qb"]), float(case["sa"]),  # type: ignore[arg-type]
                                za, float(case["sb"]), zb, float(case["so"]), int(case["zo"]))  # type: ignore[arg-type, call-overload]
                same = {name: float(np.mean(c == sim)) for name, c in candidates(arch, case).items()}
                real = float(np.float32(case["sa"])) * float(np.float32(case["sb"])) / float(np.float32(case["so"]))  # type: ignore[arg-type]
                rows.append((f"v{arch} K={k:3d} za={za:3d} zb={zb:3d} M={real:.2e}", same))
    return rows


def after_op_probe(arch: str, after: str, seed: int = 4) -> float:
    """Share of a [1, 4, 16, 32] x [1, 4, 32, 16] MatMul's codes equal to the spec when its (exposed) output also
    feeds ``after`` ("none", "Relu", "Softmax"): QNN computes a MatMul that feeds a Softmax otherwise."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    from openqnn.backends.htp.spec.qnn_matmul import QnnMatMulSpec

    enc = {"a": (0.0158, 127), "b": (0.0168, 126), "s": (0.0536, 117), "p": (1 / 256, 0)}
    inits = [nh.from_array(np.array(np.float32(sc)), f"s_{n}") for n, (sc, _) in enc.items()]
    inits += [nh.from_array(np.array(z, np.uint8), f"z_{n}") for n, (_, z) in enc.items()]

    def qdq(name: str, src: str) -> list:  # type: ignore[type-arg]
        return [helper.make_node("QuantizeLinear", [src, f"s_{name}", f"z_{name}"], [f"{name}q"]),
                helper.make_node("DequantizeLinear", [f"{name}q", f"s_{name}", f"z_{name}"], [f"{name}d"])]

    nodes = qdq("a", "af") + qdq("b", "bf") + [helper.make_node("MatMul", ["ad", "bd"], ["y"])] + qdq("s", "y")
    if after != "none":
        nodes += [helper.make_node(after, ["sd"], ["t"], **({"axis": -1} if after == "Softmax" else {}))]
        nodes += qdq("p", "t")
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in (["sd"] + (["pd"] if after != "none" else []))]
    g = helper.make_graph(nodes, "after", [helper.make_tensor_value_info("af", TensorProto.FLOAT, [1, 4, 16, 32]),
                                           helper.make_tensor_value_info("bf", TensorProto.FLOAT, [1, 4, 32, 16])],
                          outs, inits)
    model_bytes = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()
    rng = np.random.default_rng(seed)
    qa, qb = rng.integers(60, 200, (1, 4, 16, 32)), rng.integers(60, 200, (1, 4, 32, 16))
    f = lambda q, n: (np.float32(enc[n][0]) * (q.astype(np.float32) - np.float32(enc[n][1]))).astype(np.float32)  # noqa: E731
    out = simulate(model_bytes, [{"af": f(qa, "a"), "bf": f(qb, "b")}], arch)
    if out.outputs is None:
        raise RuntimeError(out.refusal)
    so, zo = float(np.float32(enc["s"][0])), enc["s"][1]
    sim = np.rint(out.outputs[0]["sd"].astype(np.float64) / so).astype(np.int64) + zo
    real = float(np.float32(enc["a"][0])) * float(np.float32(enc["b"][0])) / so
    spec = QnnMatMulSpec.of(f"v{arch}", real, zo).apply_np(qa - enc["a"][1], qb - enc["b"][1])
    return float(np.mean(spec == sim))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity.matmul_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="73")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--after", action="store_true", help="only the MatMul-then-Relu/Softmax probe")
    args = p.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    for after in ("none", "Relu", "Softmax"):
        print(f"v{args.arch} MatMul feeding {after}: spec {after_op_probe(args.arch, after):.4%} identical", flush=True)
    if args.after:
        return 0
    total: dict[str, list[float]] = {}
    for label, same in sweep(args.arch, args.seed):
        print(label, "  ".join(f"{k} {v:.4f}" for k, v in same.items()), flush=True)
        for k, v in same.items():
            total.setdefault(k, []).append(v)
    print("mean:", "  ".join(f"{k} {np.mean(v):.4%} (min {np.min(v):.4f})" for k, v in total.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
