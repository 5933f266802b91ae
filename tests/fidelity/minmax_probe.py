"""Probe how QNN's HTP simulator requantizes 8-bit inputs in Concat, Max, Min and Where.

``python -m tests.fidelity.minmax_probe --arch 73 [--op Concat] [--u8] [--count 8]``

Concat: two [1, 256] inputs holding every code, each of its own encoding, joined along the last axis into a
third encoding (512 outputs); float graph inputs through QuantizeLinear / DequantizeLinear, or (``--u8``)
uint8 graph inputs through a DequantizeLinear. Max / Min: every pair of codes (65,536 outputs), as
``eltwise_probe``. Where: every pair of codes with a random boolean graph input as the condition
(65,536 outputs). The probe prints the share of the simulator's codes that openqnn's spec
(``src/openqnn/backends/htp/spec/qnn_eltwise.py``) and exact rounding reproduce.

Findings on onnxruntime-qnn 2.7.0 (QNN 2.51), v68 = v73: Max / Min take the larger / smaller of the operands'
codes requantized into the output encoding by ``QnnConvertSpec``, and so does a Concat of uint8 graph inputs;
a Concat of float graph inputs quantizes the float values straight into its output encoding through float16
(``input_quantize_codes``); both 100% (docs/htp-fidelity.md). Where (stop 25) selects its operands' codes
requantized by ``QnnConvertSpec``, as Max / Min.

``probe16`` (every uint16 code of one operand of Max / Min / Where) and ``probe16_clip`` (a uint16 Clip) serve the
16-bit tests in ``tests/fidelity/test_qnn_where.py`` (docs/htp-fidelity.md, "16-bit pools, reductions and
element-wise ops").
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from openqnn.backends.htp.spec.qnn_eltwise import QnnConvertSpec, input_quantize_codes
from tests.fidelity.eltwise_probe import Encodings, _model, random_encodings
from tests.fidelity.harness import simulate, simulator_missing


def _model16(op: str, sa: float, za: int, sb: float, zb: int, so: float, zo: int) -> bytes:
    """A QDQ Max / Min / Where of two [1, 256, 256] float graph inputs through uint16 QuantizeLinear /
    DequantizeLinear (Where: a boolean graph input "c" first)."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    inits = [nh.from_array(np.array(v, np.float32 if k[0] == "s" else np.uint16), k)
             for k, v in (("sa", sa), ("za", za), ("sb", sb), ("zb", zb), ("so", so), ("zo", zo))]
    shape = (1, 256, 256)
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("af", "bf")]
    if op == "Where":
        ins.insert(0, helper.make_tensor_value_info("c", TensorProto.BOOL, shape))
    nodes = [helper.make_node("QuantizeLinear", ["af", "sa", "za"], ["aq"]),
             helper.make_node("DequantizeLinear", ["aq", "sa", "za"], ["a"]),
             helper.make_node("QuantizeLinear", ["bf", "sb", "zb"], ["bq"]),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"]),
             helper.make_node(op, ["c", "a", "b"] if op == "Where" else ["a", "b"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", ins, [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def probe16(arch: str, op: str, rng: np.random.Generator, ratio: float) -> tuple[np.ndarray, dict[str, float]]:
    """uint16 codes (docs/htp-fidelity.md, "16-bit pools, reductions and element-wise ops"): operand a holds every
    code once and operand b stays out of the way (Max: b at its lowest value, Min: its highest; Where: a random
    condition, b every code in a random order), at ``s_a / s_o`` about ``ratio``. Returns the simulator's codes and
    the encodings (keys sa, za, sb, zb, so, zo; the condition as "c" and b's codes as "qb" for Where)."""
    sa = float(np.float32(rng.uniform(1e-5, 1e-3)))
    so = float(np.float32(sa / (ratio * float(rng.uniform(0.9, 1.1)))))
    za, zo = int(rng.integers(0, 65536)), int(rng.integers(0, 65536))
    q = np.arange(65536)
    info: dict[str, float] = {"sa": sa, "za": za, "so": so, "zo": zo}
    if op == "Where":
        sb, zb = float(np.float32(sa * rng.uniform(0.5, 2))), int(rng.integers(0, 65536))
        qb = rng.permutation(65536)
        c = rng.integers(0, 2, 65536).astype(bool)
        info.update(c=c, qb=qb)  # type: ignore[arg-type]
    else:
        sb, zb = sa, (65535 if op == "Max" else 0)
        qb = np.full(65536, 0 if op == "Max" else 65535)
    info.update(sb=sb, zb=zb)
    feeds = {"af": (np.float32(sa) * (q.astype(np.float32) - np.float32(za))).reshape(1, 256, 256),
             "bf": (np.float32(sb) * (qb.astype(np.float32) - np.float32(zb))).reshape(1, 256, 256)}
    if op == "Where":
        feeds["c"] = info["c"].reshape(1, 256, 256)  # type: ignore[union-attr]
    out = simulate(_model16(op, sa, za, sb, zb, so, zo), [feeds], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    y = out.outputs[0]["yo"].astype(np.float64).reshape(-1)
    return np.rint(y / float(np.float32(so))).astype(np.int64) + zo, info


def probe16_clip(arch: str, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """A uint16 QDQ Clip (Clip is Max and Min with constant bounds) of every input code at random encodings and
    bounds inside the output range: the simulator's codes and the parameters (sx, zx, so, zo, lo, hi)."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    sx, zx = float(np.float32(rng.uniform(1e-4, 1e-3))), int(rng.integers(0, 65536))
    span = sx * 65535
    lo = float(rng.uniform(-0.3, 0.1)) * span
    hi = lo + float(rng.uniform(0.2, 0.6)) * span
    so = float(np.float32((hi - min(lo, 0.0)) / 65535 * rng.uniform(1.0, 1.2)))
    zo = int(np.clip(round(-min(lo, 0.0) / so), 0, 65535))
    inits = [nh.from_array(np.array(v, np.float32 if k[0] != "z" else np.uint16), k)
             for k, v in (("sx", sx), ("zx", zx), ("so", so), ("zo", zo), ("lo", lo), ("hi", hi))]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x"]),
             helper.make_node("Clip", ["x", "lo", "hi"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, (1, 256, 256))],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()
    q = np.arange(65536)
    xf = (np.float32(sx) * (q.astype(np.float32) - np.float32(zx))).reshape(1, 256, 256)
    out = simulate(model, [{"xf": xf}], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    y = out.outputs[0]["yo"].astype(np.float64).reshape(-1)
    return np.rint(y / float(np.float32(so))).astype(np.int64) + zo, {"sx": sx, "zx": zx, "so": so, "zo": zo,
                                                                      "lo": lo, "hi": hi}


def _concat_model(sa: np.float32, za: int, sb: np.float32, zb: int, so: np.float32, zo: int, u8: bool = False) -> bytes:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    dt = np.uint8
    inits = [nh.from_array(np.array(sa), "sa"), nh.from_array(np.array(za, dt), "za"),
             nh.from_array(np.array(sb), "sb"), nh.from_array(np.array(zb, dt), "zb"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, dt), "zo")]
    kind = TensorProto.UINT8 if u8 else TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("aq" if u8 else "af", kind, (1, 256)),
              helper.make_tensor_value_info("bq" if u8 else "bf", kind, (1, 256))]
    quantize = [] if u8 else [helper.make_node("QuantizeLinear", ["af", "sa", "za"], ["aq"]),
                              helper.make_node("QuantizeLinear", ["bf", "sb", "zb"], ["bq"])]
    nodes = [*quantize,
             helper.make_node("DequantizeLinear", ["aq", "sa", "za"], ["a"]),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["y"], axis=1),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", inputs, [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def _where_model(sa: np.float32, za: int, sb: np.float32, zb: int, so: np.float32, zo: int) -> bytes:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    inits = [nh.from_array(np.array(sa), "sa"), nh.from_array(np.array(za, np.uint8), "za"),
             nh.from_array(np.array(sb), "sb"), nh.from_array(np.array(zb, np.uint8), "zb"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, np.uint8), "zo")]
    inputs = [helper.make_tensor_value_info("c", TensorProto.BOOL, (256, 256)),
              helper.make_tensor_value_info("af", TensorProto.FLOAT, (256, 256)),
              helper.make_tensor_value_info("bf", TensorProto.FLOAT, (256, 256))]
    nodes = [helper.make_node("QuantizeLinear", ["af", "sa", "za"], ["aq"]),
             helper.make_node("QuantizeLinear", ["bf", "sb", "zb"], ["bq"]),
             helper.make_node("DequantizeLinear", ["aq", "sa", "za"], ["a"]),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"]),
             helper.make_node("Where", ["c", "a", "b"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", inputs, [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def where_condition() -> np.ndarray:
    """The Where probe's condition: a fixed random half of the [256, 256] pairs."""
    return np.random.default_rng(1234).random((256, 256)) < 0.5


def probe(arch: str, op: str, enc: Encodings, u8: bool = False) -> dict[str, np.ndarray]:
    """The simulator's codes: Concat -> ``ya``, ``yb`` (each input's 256 codes as output codes; ``u8``: uint8
    graph inputs); Max / Min -> ``y`` [256, 256] over ``q_a`` (rows) and ``q_b`` (columns)."""
    sa, za, sb, zb, so, zo = enc
    sa32, sb32, so32 = np.float32(sa), np.float32(sb), np.float32(so)
    q = np.arange(256)
    if op == "Concat":
        qa, qb = q[None, :], q[None, :]
        model = _concat_model(sa32, za, sb32, zb, so32, zo, u8)
    elif op == "Where":
        qa, qb = np.meshgrid(q, q, indexing="ij")
        model = _where_model(sa32, za, sb32, zb, so32, zo)
    else:
        qa, qb = np.meshgrid(q, q, indexing="ij")
        model = _model(op, qa.shape, qb.shape, sa32, za, sb32, zb, so32, zo, 8)
    af = (sa32 * (qa.astype(np.float32) - np.float32(za))).astype(np.float32)
    bf = (sb32 * (qb.astype(np.float32) - np.float32(zb))).astype(np.float32)
    feed = {"aq": qa.astype(np.uint8), "bq": qb.astype(np.uint8)} if u8 else {"af": af, "bf": bf}
    if op == "Where":
        feed["c"] = where_condition()
    out = simulate(model, [feed], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    y = np.rint(out.outputs[0]["yo"].astype(np.float64) / float(so32)).astype(np.int64) + zo
    if op == "Concat":
        return {"ya": y[0, :256], "yb": y[0, 256:]}
    return {"y": y}


def exact_requant(q: np.ndarray, s: float, z: int, so: float, zo: int) -> np.ndarray:
    v = (q - z) * float(np.float32(s)) / float(np.float32(so))
    return np.clip(np.floor(v + 0.5) + zo, 0, 255).astype(np.int64)


def spec_codes(op: str, enc: Encodings, u8: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """openqnn's codes of every input code of each operand (None outside the spec): the float16 quantization of
    a Concat's float graph inputs, QNN's requantization otherwise."""
    sa, za, sb, zb, so, zo = enc
    q = np.arange(256)
    if op == "Concat" and not u8:
        return input_quantize_codes(sa, za, so, zo, q), input_quantize_codes(sb, zb, so, zo, q)
    ca, cb = QnnConvertSpec.of(sa, za, so, zo), QnnConvertSpec.of(sb, zb, so, zo)
    return None if ca is None or cb is None else (ca.table(), cb.table())


def combine(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The op's codes from each operand's: joined (Concat), every pair's max / min, or the one Where's
    condition selects."""
    if op == "Concat":
        return np.concatenate([a, b])
    if op == "Where":
        return np.where(where_condition(), a[:, None], b[None, :])
    return (np.maximum if op == "Max" else np.minimum)(a[:, None], b[None, :])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity.minmax_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="73")
    p.add_argument("--op", default="Concat", choices=["Concat", "Max", "Min", "Where"])
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--u8", action="store_true", help="Concat: uint8 graph inputs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    rng = np.random.default_rng(args.seed)
    q = np.arange(256)
    for enc in random_encodings(rng, args.count, 8):
        sa, za, sb, zb, so, zo = enc
        r = probe(args.arch, args.op, enc, args.u8)
        ea, eb = exact_requant(q, sa, za, so, zo), exact_requant(q, sb, zb, so, zo)
        ours = spec_codes(args.op, enc, args.u8)
        y = np.concatenate([r["ya"], r["yb"]]) if args.op == "Concat" else r["y"]
        spec = "outside the spec" if ours is None else f"spec {np.mean(combine(args.op, *ours) == y):.4%}"
        print(f"v{args.arch} {args.op} s_a/s_o={sa / so:.4g} s_b/s_o={sb / so:.4g} z={za},{zb},{zo}: {spec}, "
              f"exact rounding {np.mean(combine(args.op, ea, eb) == y):.4%} of {y.size}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
