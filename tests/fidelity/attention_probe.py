"""Probe what QNN's HTP simulator computes in BERT's attention pattern: Q.K^T MatMul -> Div by a constant ->
mask Add -> Softmax -> softmax x V MatMul, cut after each node, with the BERT case's encodings and the
simulator's own query/key/value codes (``model_layers --save``), every intermediate a graph output.

    python -m tests.fidelity.attention_probe --arch 68 --codes layers.npz [--layer 0]

(``layers.npz`` from ``python -m tests.fidelity.model_layers --arch 68 --save layers.npz``.) Finding
(onnxruntime-qnn 2.7.0, QNN 2.51, v68 and v73): with query and key as graph inputs (or the key through a
Transpose of one), Q.K^T's codes are the MatMul spec's at every cut (MatMul alone, -> Div, -> mask Add,
-> Softmax, -> softmax x V): nothing downstream changes them. The encoder's Q.K^T differs (v68 layer 0:
82.3% of the spec of the written codes) because its key is computed: FullyConnected -> Reshape -> Transpose
writes it as int8 (zero point 128) for the MatMul, src/openqnn/backends/htp/rewrite.py. (The written softmax
codes cannot be read back exactly: the float16 output path writes 4 -> 5 and 5 -> 5, so a softmax x V
compared from them is not a finding.)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from tests.fidelity.harness import recover_output, simulate

STAGES = ("MatMul", "Div", "Add", "Softmax", "MatMul_1")


def attention_model(enc: dict[str, tuple[float, int]], upto: str, kt_from_op: bool = False,
                    expose: Sequence[str] = STAGES) -> bytes:
    """A QDQ model of the attention pattern up to stage ``upto``; inputs ``q`` [1, H, T, D], ``kt``
    [1, H, D, T] (``kt_from_op``: ``k`` [1, H, T, D] through a Transpose), ``mask`` [1, 1, 1, T] (already on
    its grid), ``v`` [1, H, T, D]; ``enc`` name -> (scale, zero point) for q, k, s (scores), d (divided), m
    (mask), a (masked), p (probabilities), v, o (output), c (the Div constant's)."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    inits = [nh.from_array(np.array(np.float32(sc)), f"s_{n}") for n, (sc, _) in enc.items()]
    inits += [nh.from_array(np.array(z, np.uint8), f"z_{n}") for n, (_, z) in enc.items()]
    inits += [nh.from_array(np.array(255, np.uint8), "cq")]

    def qdq(name: str, src: str, out: str) -> list:  # type: ignore[type-arg]
        return [helper.make_node("QuantizeLinear", [src, f"s_{name}", f"z_{name}"], [f"{out}_q"]),
                helper.make_node("DequantizeLinear", [f"{out}_q", f"s_{name}", f"z_{name}"], [out])]

    nodes = qdq("q", "qf", "qd") + qdq("m", "mf", "md") + qdq("v", "vf", "vd")
    if kt_from_op:
        nodes += [*qdq("k", "kf", "kd"), helper.make_node("Transpose", ["kd"], ["kt"], perm=[0, 1, 3, 2])]
        nodes += qdq("k", "kt", "ktd")
    else:
        nodes += qdq("k", "ktf", "ktd")
    nodes += [helper.make_node("DequantizeLinear", ["cq", "s_c", "z_c"], ["cd"])]
    nodes += [helper.make_node("MatMul", ["qd", "ktd"], ["s"]), *qdq("s", "s", "sd")]
    outs = ["sd"]
    chain = [("Div", helper.make_node("Div", ["sd", "cd"], ["d"]), "d", "dd"),
             ("Add", helper.make_node("Add", ["dd", "md"], ["a"]), "a", "ad"),
             ("Softmax", helper.make_node("Softmax", ["ad"], ["p"], axis=-1), "p", "pd"),
             ("MatMul_1", helper.make_node("MatMul", ["pd", "vd"], ["o"]), "o", "od")]
    for stage, node, raw, deq in chain:
        if STAGES.index(stage) > STAGES.index(upto):
            break
        nodes += [node, *qdq(raw[0], raw, deq)]
        outs.append(deq)
    outs = [o for o, st in zip(["sd", "dd", "ad", "pd", "od"], STAGES) if o in outs and (st in expose or o == outs[-1])]
    ins = [("qf", "q"), ("mf", "m"), ("vf", "v"), ("kf" if kt_from_op else "ktf", "k")]
    shapes = {"qf": [1, 4, 16, 32], "kf": [1, 4, 16, 32], "ktf": [1, 4, 32, 16], "mf": [1, 1, 1, 16], "vf": [1, 4, 16, 32]}
    g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n, _ in ins],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


OUT_ENC = {"sd": "s", "dd": "d", "ad": "a", "pd": "p", "od": "o"}


def run(arch: str, enc: dict[str, tuple[float, int]], codes: dict[str, np.ndarray], upto: str,
        kt_from_op: bool = False, expose: Sequence[str] = STAGES) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The simulator's codes (and float16 output-path masks) of each exposed stage, per feed (codes given
    [F, 1, H, ...] for q, kt, mask, v)."""
    m = attention_model(enc, upto, kt_from_op, expose)
    f = lambda q, n: (np.float32(enc[n][0]) * (q.astype(np.float32) - np.float32(enc[n][1]))).astype(np.float32)  # noqa: E731
    feeds = []
    for i in range(len(codes["q"])):
        fd = {"qf": f(codes["q"][i], "q"), "mf": f(codes["m"][i], "m"), "vf": f(codes["v"][i], "v")}
        if kt_from_op:
            fd["kf"] = f(np.swapaxes(codes["kt"][i], -1, -2), "k")
        else:
            fd["ktf"] = f(codes["kt"][i], "k")
        feeds.append(fd)
    out = simulate(m, feeds, arch)
    if out.outputs is None:
        raise RuntimeError(out.refusal)
    res: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in out.outputs[0]:
        sc, z = enc[OUT_ENC[name]]
        rec = [recover_output(o[name], sc, -z, 8, name) for o in out.outputs]
        res[name] = (np.stack([c for c, _ in rec]), np.stack([p for _, p in rec]))
    return res


def bert_inputs(path: str, layer: int) -> tuple[dict[str, tuple[float, int]], dict[str, np.ndarray]]:
    """The BERT case's attention encodings of ``layer`` and the simulator's codes saved by ``model_layers --save``."""
    from tests.fidelity.cases import model_cases

    case = next(c for c in model_cases() if c.name.startswith("bert"))
    g = case.prepare().graph
    p = f"/layers.{layer}/"
    names = {"q": p + "Transpose_output_0", "k": p + "Transpose_2_output_0", "s": p + "MatMul_output_0",
             "d": p + "Div_output_0", "m": "/Mul_output_0", "a": p + "Add_output_0", "p": p + "Softmax_output_0",
             "v": p + "Transpose_1_output_0", "o": p + "MatMul_1_output_0", "c": p + "Constant_9_output_0"}
    enc = {}
    for k, t in names.items():
        e = g.tensors[t].encoding
        enc[k] = (float(np.float32(e.scale[0])), -int(e.offset[0]))  # type: ignore[union-attr]
    d = np.load(path)
    codes = {"q": d["sim|" + names["q"]], "kt": d["sim|" + names["k"]], "m": d["sim|" + names["m"]],
             "v": d["sim|" + names["v"]]}
    codes.update({f"sim_{k}": d["sim|" + names[k]] for k in ("s", "d", "a", "p", "o")})
    return enc, codes


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="68")
    ap.add_argument("--codes", required=True)
    ap.add_argument("--layer", type=int, default=0)
    args = ap.parse_args(argv)
    from openqnn.backends.htp.spec.qnn_matmul import QnnMatMulSpec

    enc, codes = bert_inputs(args.codes, args.layer)
    sa, za = enc["q"]
    sb, zb = enc["k"]
    so, zo = enc["s"]
    spec = QnnMatMulSpec.of(f"v{args.arch}", sa * sb / so, zo).apply_np(codes["q"] - za, codes["kt"] - zb)
    for kt_op in (False, True):
        for upto in STAGES:
            res = run(args.arch, enc, codes, upto, kt_op)
            s, _ = res["sd"]
            line = f"kt_from_op={kt_op!s:5s} upto {upto:9s} scores=spec {np.mean(s == spec):.4f} =model {np.mean(s == codes['sim_s']):.4f}"
            for n, k in (("dd", "d"), ("ad", "a"), ("pd", "p"), ("od", "o")):
                if n in res:
                    line += f"  {k}=model {np.mean(res[n][0] == codes['sim_' + k]):.4f}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
