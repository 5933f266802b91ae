"""Probe how QNN's HTP simulator computes an element-wise Add, Sub or Mul of 8-bit or 16-bit codes.

``python -m tests.fidelity.eltwise_probe --arch 73 [--op Add] [--bits 8] [--count 8] [--shape same]``

Each probe is a QDQ Add, Sub or Mul with chosen input encodings ``(s_a, z_a)``, ``(s_b, z_b)`` and output encoding
``(s_o, z_o)``. With 8-bit codes the inputs are every pair of codes (``q_a[i, j] = i``, ``q_b[i, j] = j``, 65,536
outputs); with 16-bit codes, random codes. ``--shape`` broadcasts instead: a row against a column (8-bit), a
channel vector or a scalar against a ``[1, 16, 16, 16]`` tensor, either side first. The probe prints, per
encoding, the share of the simulator's codes that openqnn's spec (``src/openqnn/backends/htp/spec/
qnn_eltwise.py``) and exact rounding reproduce.

``--regime wide`` (8-bit Add / Sub) probes output steps finer than the inputs' sum / 64 (``a + b >= 64`` with
``a = s_a / s_o``, ``b = s_b / s_o``; an attention mask's Add): ``--count`` encodings with ``b`` from 66 to
3000 (``--wide-max`` raises it), ``a`` from 0.02 to 8, either operand the large one, all in one graph of
small outputs (5 codes of the second operand, near its zero point, against every code of the first: 1,280
outputs per encoding).

Findings on onnxruntime-qnn 2.7.0 (QNN 2.51), v68 = v73: an Add / Sub is the ``floor`` of a linear function
of the raw codes whose coefficients are 16-bit multipliers sharing one exponent, a Mul one rounding of the
exact product of the centred codes; the spec reproduces every code of every probe (exact rounding: 96-100%
per 8-bit probe, 47-100% per 16-bit probe); where ``a + b >= 64`` the Add's sum less its zero is shifted
left, the output zero point added after (docs/htp-fidelity.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from openqnn.backends.htp.spec.qnn_eltwise import QnnAddSpec, QnnMulSpec, complements
from tests.fidelity.harness import simulate, simulate_probe, simulator_missing

Encodings = tuple[float, int, float, int, float, int]  # s_a, z_a, s_b, z_b, s_o, z_o
SHAPES = ("same", "rows", "channel", "channel_first", "scalar", "scalar_first")


def _model(op: str, shape_a: tuple[int, ...], shape_b: tuple[int, ...], sa: np.float32, za: int,
           sb: np.float32, zb: int, so: np.float32, zo: int, bits: int, const_b: np.ndarray | None = None) -> bytes:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    dt = np.uint8 if bits == 8 else np.uint16
    inits = [nh.from_array(np.array(sa), "sa"), nh.from_array(np.array(za, dt), "za"),
             nh.from_array(np.array(sb), "sb"), nh.from_array(np.array(zb, dt), "zb"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, dt), "zo")]
    quantize_b = [helper.make_node("QuantizeLinear", ["bf", "sb", "zb"], ["bq"])]
    inputs = [helper.make_tensor_value_info("af", TensorProto.FLOAT, shape_a),
              helper.make_tensor_value_info("bf", TensorProto.FLOAT, shape_b)]
    if const_b is not None:  # a constant operand: its codes are an initializer
        inits.append(nh.from_array(const_b.astype(dt), "bq"))
        quantize_b, inputs = [], inputs[:1]
    nodes = [helper.make_node("QuantizeLinear", ["af", "sa", "za"], ["aq"]),
             helper.make_node("DequantizeLinear", ["aq", "sa", "za"], ["a"]),
             *quantize_b,
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"]),
             helper.make_node(op, ["a", "b"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", inputs, [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def input_codes(rng: np.random.Generator, bits: int, shape: str = "same") -> tuple[np.ndarray, np.ndarray]:
    """The probe's input codes: every pair of 8-bit codes, or random 16-bit ones; ``shape`` broadcasts."""
    if bits == 8 and shape in ("same", "rows"):
        q = np.arange(256)
        return (np.meshgrid(q, q, indexing="ij") if shape == "same" else (q[:, None], q[None, :]))
    full = rng.integers(0, 1 << bits, (1, 16, 16, 16))
    other = rng.integers(0, 1 << bits, (1, 16, 16, 16))
    small = {"same": other, "rows": other[:, :, :1, :], "channel": other[:, :, :1, :1], "scalar": other[:, :1, :1, :1],
             "channel_first": other[:, :, :1, :1], "scalar_first": other[:, :1, :1, :1]}[shape]
    return (small, full) if shape.endswith("_first") else (full, small)


def probe(arch: str, op: str, enc: Encodings, qa: np.ndarray, qb: np.ndarray, bits: int = 8,
          const_b: bool = False) -> dict[str, np.ndarray]:
    """The simulator's output codes ``y`` for input codes ``qa`` and ``qb`` (broadcast) of the encodings
    ``enc``, with the broadcast input codes and the float32 scales used; ``const_b``: ``qb`` is a constant of
    the graph."""
    sa, za, sb, zb, so, zo = enc
    sa32, sb32, so32 = np.float32(sa), np.float32(sb), np.float32(so)
    af = (sa32 * (qa.astype(np.float32) - np.float32(za))).astype(np.float32)
    bf = (sb32 * (qb.astype(np.float32) - np.float32(zb))).astype(np.float32)
    model = _model(op, af.shape, bf.shape, sa32, za, sb32, zb, so32, zo, bits, qb if const_b else None)
    out = simulate(model, [{"af": af} if const_b else {"af": af, "bf": bf}], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    y = out.outputs[0]["yo"].astype(np.float64)
    return {"qa": np.broadcast_to(qa, y.shape).astype(np.int64), "qb": np.broadcast_to(qb, y.shape).astype(np.int64),
            "y": np.rint(y / float(so32)).astype(np.int64) + zo,
            "sa": np.float64(sa32), "sb": np.float64(sb32), "so": np.float64(so32)}


def qnn_spec(op: str, enc: Encodings, bits: int, complement: bool = False) -> QnnAddSpec | QnnMulSpec | None:
    """openqnn's spec; ``complement``: the operands' shapes differ in their last three dimensions
    (``qnn_eltwise.complements``)."""
    if op == "Mul":
        return QnnMulSpec.of(*enc, bitwidth=bits)
    return QnnAddSpec.of(*enc, subtract=op == "Sub", bitwidth=bits, complement=complement)


def spec_codes(p: dict[str, np.ndarray], op: str, enc: Encodings, bits: int, complement: bool = False) -> np.ndarray:
    spec = qnn_spec(op, enc, bits, complement)
    assert spec is not None, f"the spec does not reach {enc}"
    return spec.apply_np(p["qa"], p["qb"])


def exact_codes(p: dict[str, np.ndarray], op: str, enc: Encodings, bits: int) -> np.ndarray:
    _, za, _, zb, _, zo = enc
    va, vb = (p["qa"] - za) * p["sa"], (p["qb"] - zb) * p["sb"]
    v = (va * vb if op == "Mul" else va - vb if op == "Sub" else va + vb) / p["so"]
    return np.clip(np.floor(v + 0.5) + zo, 0, (1 << bits) - 1).astype(np.int64)


def random_encodings(rng: np.random.Generator, count: int, bits: int, product: bool = False) -> list[Encodings]:
    """Input scale ratios 1, 2, 1/3, 7.3 or random (e^-3 to e^3), output scales 1/5 to 40 times the larger
    input's (the spec's whole reach but the rarest corners; ``product``: 1/20 to 20 times a mid-range
    product's, ``s_a * s_b * 2^(bits - 1)``), zero points mid-range or random."""
    top = (1 << bits) - 1
    out = []
    for i in range(count):
        sa = float(rng.uniform(0.002, 0.05)) / (1 << (bits - 8))
        ratio = float(rng.choice([1.0, 2.0, 1 / 3, 7.3])) if i % 2 else float(np.exp(rng.uniform(-3, 3)))
        sb = sa * ratio
        so = max(sa, sb) * float(np.exp(rng.uniform(np.log(0.2), np.log(40))))
        if product:
            so = sa * sb * (1 << (bits - 1)) * float(np.exp(rng.uniform(np.log(0.05), np.log(20))))
        za, zb, zo = (int(z) for z in rng.integers(0, top + 1, 3))
        if i % 3 == 0:
            za = zb = zo = (top + 1) // 2
        out.append((sa, za, sb, zb, so, zo))
    return out


def wide_encodings(rng: np.random.Generator, count: int, b_max: float = 3000.0) -> list[Encodings]:
    """Encodings whose ``a + b`` is 64 or more (``--regime wide``): ``b = s_b / s_o`` log-uniform from 66 to
    ``b_max``, ``a`` from 0.02 to 8, every fifth one with the large operand first; zero points random, every
    third one with z_a = z_o = 128, every fourth one z_b = 255 (a mask's encoding)."""
    out = []
    for i in range(count):
        so = float(np.exp(rng.uniform(np.log(0.02), np.log(0.5))))
        b = float(np.exp(rng.uniform(np.log(66), np.log(b_max))))
        a = float(np.exp(rng.uniform(np.log(0.02), np.log(8))))
        za, zb, zo = (int(z) for z in rng.integers(0, 256, 3))
        if i % 3 == 0:
            za, zo = 128, 128
        if i % 4 == 0:
            zb = 255
        out.append((b * so, zb, a * so, za, so, zo) if i % 5 == 4 else (a * so, za, b * so, zb, so, zo))
    return out


def wide_codes(enc: Encodings) -> tuple[np.ndarray, np.ndarray]:
    """A wide probe's codes: every code of the first operand (columns) against 5 codes of the second (rows)
    near its zero point."""
    z = enc[3]
    rows = [q for q in range(z - 2, z + 3) if 0 <= q <= 255]
    rows += [0 if z > 127 else 255] * (5 - len(rows))
    return np.arange(256)[None, :].repeat(5, 0), np.array(rows)[:, None].repeat(256, 1)


def probe_many(arch: str, op: str, encs: Sequence[Encodings]) -> list[np.ndarray]:
    """The simulator's output codes of one 8-bit Add or Sub per encoding, all in one graph (one session), on
    :func:`wide_codes`' inputs: small outputs, each its own graph output."""
    import onnx
    from onnx import TensorProto, helper

    nodes, inits, inputs, outputs, feed = [], [], [], [], {}
    for k, enc in enumerate(encs):
        sa, za, sb, zb, so, zo = enc
        qa, qb = wide_codes(enc)
        af = (np.float32(sa) * (qa.astype(np.float32) - np.float32(za))).astype(np.float32)
        bf = (np.float32(sb) * (qb.astype(np.float32) - np.float32(zb))).astype(np.float32)
        g = onnx.load_model_from_string(_model(op, af.shape, bf.shape, np.float32(sa), za, np.float32(sb), zb,
                                               np.float32(so), zo, 8)).graph
        rename = {n: f"k{k}_{n}" for n in ("af", "bf", "sa", "za", "sb", "zb", "so", "zo", "aq", "a", "bq", "b", "y",
                                           "yq", "yo")}
        for node in g.node:
            node.input[:] = [rename[x] for x in node.input]
            node.output[:] = [rename[x] for x in node.output]
            nodes.append(node)
        for t in g.initializer:
            t.name = rename[t.name]
            inits.append(t)
        inputs += [helper.make_tensor_value_info(rename["af"], TensorProto.FLOAT, af.shape),
                   helper.make_tensor_value_info(rename["bf"], TensorProto.FLOAT, bf.shape)]
        outputs.append(helper.make_tensor_value_info(rename["yo"], TensorProto.FLOAT, None))
        feed[rename["af"]], feed[rename["bf"]] = af, bf
    out = simulate_probe(nodes, inits, inputs, outputs, feed, arch)
    return [np.rint(out.outputs[0][f"k{k}_yo"].astype(np.float64) / float(np.float32(enc[4]))).astype(np.int64)
            + enc[5] for k, enc in enumerate(encs)]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity.eltwise_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="73")
    p.add_argument("--op", default="Add", choices=["Add", "Sub", "Mul"])
    p.add_argument("--bits", type=int, default=8, choices=[8, 16])
    p.add_argument("--count", type=int, default=8, help="random encodings")
    p.add_argument("--shape", default="same", choices=SHAPES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--regime", default="spec", choices=["spec", "wide"],
                   help="wide: 8-bit Add / Sub with a + b >= 64, many small probes in one graph")
    p.add_argument("--wide-max", type=float, default=3000.0, help="the largest s_b / s_o of --regime wide")
    args = p.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    rng = np.random.default_rng(args.seed)
    if args.regime == "wide":
        if args.op == "Mul" or args.bits != 8:
            p.error("--regime wide is for 8-bit Add and Sub")
        encs = wide_encodings(rng, args.count, args.wide_max)
        hits = total = 0
        for enc, y in zip(encs, probe_many(args.arch, args.op, encs)):
            spec = qnn_spec(args.op, enc, 8)
            assert isinstance(spec, QnnAddSpec)
            qa, qb = wide_codes(enc)
            ok = spec.apply_np(qa, qb) == y
            hits, total = hits + int(ok.sum()), total + ok.size
            print(f"v{args.arch} {args.op} a8 wide a={enc[0] / enc[4]:.4g} b={enc[2] / enc[4]:.4g} "
                  f"z={enc[1]},{enc[3]},{enc[5]} lsh={spec.lsh}: spec {ok.mean():.4%} of {ok.size}")
        print(f"v{args.arch} {args.op} wide: spec {hits / total:.4%} of {total} codes, {len(encs)} encodings")
        return 0
    for enc in random_encodings(rng, args.count, args.bits, product=args.op == "Mul"):
        qa, qb = input_codes(rng, args.bits, args.shape)
        r = probe(args.arch, args.op, enc, qa, qb, args.bits)
        spec = qnn_spec(args.op, enc, args.bits, complements(qa.shape, qb.shape))
        ours = "outside the spec" if spec is None else f"spec {np.mean(spec.apply_np(r['qa'], r['qb']) == r['y']):.4%}"
        print(f"v{args.arch} {args.op} a{args.bits} {args.shape} s_b/s_a={enc[2] / enc[0]:.4g} "
              f"s_o/max={enc[4] / max(enc[0], enc[2]):.4g} z={enc[1]},{enc[3]},{enc[5]}: {ours}, exact rounding "
              f"{np.mean(exact_codes(r, args.op, enc, args.bits) == r['y']):.4%} of {r['y'].size}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
