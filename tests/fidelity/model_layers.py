"""A model case (``--models``'s, e.g. bert/16/a8_pc, mobilenet_v2/64/a8_pc) layer by layer: every quantized
activation made a graph output, openqnn's htp against the simulator per tensor in graph order (share
identical, max and mean difference in codes).

    python -m tests.fidelity.model_layers [--model bert] [--full] [--arch 73] [--feeds 2] [--save layers.npz]

``--save``: both sides' codes per tensor ("sim|<name>", "oq|<name>"), for a closer look at one op
(``attention_probe`` reads them).

``--alone``: every op (data movement, Gather and Cast left out) fed alone, as a one-node model, with openqnn's own
whole-model codes of its inputs, to the simulator and to openqnn's htp: the ops' own differences, free of what
their inputs carry (and of the float16 output path hiding 8-bit codes z = 4m behind z + 1, which a model's graph
outputs go through where the op's output alone does not). Context a one-node model lacks is not tested (a computed
MatMul operand written as int8: "oq alone" against "oq model" shows where openqnn's codes depend on it).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np


@dataclass
class TensorResult:
    op: str  # the producer's op type ("-": a graph input)
    name: str
    identical: float
    max: int
    mean: float


def layer_results(arch: str, feeds: int = 2, save: dict[str, np.ndarray] | None = None,
                  log: bool = False, model: str = "bert", full: bool = False, variant: str = "a8_pc"
                  ) -> list[TensorResult]:
    """Every quantized activation of a model case (the first whose name starts with ``model``; ``full``: the
    full-size cases) as a graph output, the simulator's codes against
    openqnn's htp (``arithmetic: "qnn"``, read through the simulator's float16 output path), in graph order.
    ``save``: filled with both sides' codes. Raises where the simulator refuses the model."""
    import openqnn
    from openqnn.backends.htp.config import HtpConfig
    from openqnn.runtime.config import BackendConfig
    from tests.fidelity.cases import model_cases
    from tests.fidelity.harness import Prepared, _sim_output, export_bytes, simulate, through_output_path

    case = next(c for c in model_cases(full) if c.name.startswith(model) and c.variant == variant)
    prep = case.prepare()
    g = prep.graph.copy()
    outs = list(g.outputs)
    for n in g.nodes:
        for t in n.outputs:
            e = g.tensors[t].encoding
            if e is not None and len(e.scale) == 1 and t not in outs and g.tensors[t].data is None:
                outs.append(t)
    g.outputs = outs
    p2 = Prepared(case, g, prep.sim_feeds[:feeds], prep.oq_feeds[:feeds])
    sim = simulate(export_bytes(p2), p2.sim_feeds, arch)
    if sim.outputs is None:
        raise RuntimeError(f"refused: {sim.refusal}")
    if log:
        print(f"QNN on floats: {sim.float_nodes}")
    cfg = BackendConfig(htp=HtpConfig(dsp_arch=f"v{arch}", arithmetic="qnn"))
    sess = openqnn.Session(g, backend="htp", config=cfg)
    ours = [sess.run(f, native_inputs=True, native_outputs=True) for f in p2.oq_feeds]
    producer = {o: n for n in g.nodes for o in n.outputs}
    results = []
    for t in outs:
        try:
            rec = [_sim_output(p2, t, o[t]) for o in sim.outputs]
        except Exception as e:
            if log:
                print(f"{t}: {str(e)[:100]}")
            continue
        th = np.stack([c for c, _ in rec])
        # openqnn's codes as the simulator's float16 output dequantization would show them (harness.recover_output)
        off = g.tensors[t].encoding.offset[0]  # type: ignore[union-attr]
        us = np.stack([through_output_path(np.asarray(o[t]).astype(np.int64), m, off) if m is not None
                       else np.asarray(o[t]).astype(np.int64) for o, (_, m) in zip(ours, rec)])
        if save is not None:
            save[f"sim|{t}"], save[f"oq|{t}"] = th, us
        d = (us - th).ravel()
        n = producer.get(t)
        r = TensorResult(n.op_type if n else "-", t, float(np.mean(d == 0)), int(np.abs(d).max()), float(d.mean()))
        results.append(r)
        if log:
            print(f"{r.op:20s} {t[:48]:48s} {r.identical:7.2%} max {r.max:3d} mean {r.mean:+.3f}")
    return results


def alone_results(arch: str, feeds: int = 2, log: bool = False, model: str = "bert", full: bool = False,
                  variant: str = "a8_pc") -> list[TensorResult]:
    """Every op of a model case fed alone (a one-node model of the quantized graph) with openqnn's own whole-model
    codes of its inputs, the simulator's output codes against openqnn's htp on the same one-node model (through the
    float16 output path where the simulator's output took it). Ops the simulator refuses alone are skipped."""
    import openqnn
    from openqnn.backends.htp.config import HtpConfig
    from openqnn.runtime.config import BackendConfig
    from tests.fidelity.cases import model_cases
    from tests.fidelity.harness import Prepared, export_bytes, recover_output, simulate, through_output_path

    case = next(c for c in model_cases(full) if c.name.startswith(model) and c.variant == variant)
    prep = case.prepare()
    g = prep.graph.copy()
    g.outputs = list(g.outputs) + [t for n in g.nodes for t in n.outputs
                                   if g.tensors[t].encoding is not None and t not in g.outputs]
    cfg = BackendConfig(htp=HtpConfig(dsp_arch=f"v{arch}", arithmetic="qnn"))
    sess = openqnn.Session(g, backend="htp", config=cfg)
    ours = []
    for f in prep.oq_feeds[:feeds]:
        o = dict(sess.run(f, native_inputs=True, native_outputs=True))
        o.update(f)
        ours.append(o)
    results = []
    for node in prep.graph.nodes:
        ins = [x for x in node.inputs if x and g.tensors[x].data is None]
        if node.op_type in ("Reshape", "Transpose", "Gather", "Cast") or not all(x in ours[0] for x in ins):
            continue
        sg = prep.graph.copy()
        sg.nodes = [n for n in sg.nodes if n.name == node.name]
        sg.inputs, sg.outputs = ins, [t for t in node.outputs if sg.tensors[t].encoding is not None]
        sg.remove_unused()
        of = [{x: np.asarray(o[x]) for x in ins} for o in ours]
        sf = []
        for f in of:
            d = {}
            for x, q in f.items():
                e = sg.tensors[x].encoding
                d[x] = q if e is None else (np.float32(e.scale[0]) * (q.astype(np.int64) + int(e.offset[0]))
                                            .astype(np.float32)).astype(np.float32)
            sf.append(d)
        sim = simulate(export_bytes(Prepared(case, sg, sf, of)), sf, arch)
        if sim.outputs is None:
            if log:
                print(f"{node.op_type:20s} {node.name[:48]:48s} refused alone")
            continue
        alone = openqnn.Session(sg, backend="htp", config=cfg)
        mine = [alone.run(f, native_inputs=True, native_outputs=True) for f in of]
        for i, t in enumerate(sg.outputs):
            e = sg.tensors[t].encoding
            assert e is not None
            diffs, same_model = [], []
            for o, m, so in zip(ours, mine, sim.outputs):
                c, path = recover_output(so[list(so)[i]], float(np.float32(e.scale[0])), int(e.offset[0]), e.bitwidth, t)
                a, w = np.asarray(m[t]).astype(np.int64), np.asarray(o[t]).astype(np.int64)
                if path is not None:
                    a, w = (through_output_path(v, path, int(e.offset[0])) for v in (a, w))
                diffs.append((a - c).ravel())
                same_model.append((a == w).ravel())
            d = np.concatenate(diffs)
            r = TensorResult(node.op_type, t, float(np.mean(d == 0)), int(np.abs(d).max()), float(d.mean()))
            results.append(r)
            if log:
                print(f"{r.op:20s} {t[:48]:48s} {r.identical:8.3%} ({np.count_nonzero(d)} of {d.size} differ) max "
                      f"{r.max:3d}  (oq alone = oq model {np.mean(np.concatenate(same_model)):.2%})", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bert", help="a --models case name's prefix")
    ap.add_argument("--full", action="store_true", help="the full-size case (224x224; bert: 64 tokens)")
    ap.add_argument("--variant", default="a8_pc", help="the case's variant (e.g. a8_pc_calibrated for bert)")
    ap.add_argument("--arch", default="73")
    ap.add_argument("--feeds", type=int, default=2)
    ap.add_argument("--save", default=None)
    ap.add_argument("--alone", action="store_true", help="every op fed alone with openqnn's own input codes")
    args = ap.parse_args(argv)
    if args.alone:
        alone_results(args.arch, args.feeds, log=True, model=args.model, full=args.full, variant=args.variant)
        return
    save: dict[str, np.ndarray] = {}
    try:
        layer_results(args.arch, args.feeds, save, log=True, model=args.model, full=args.full,
                      variant=args.variant)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    if args.save:
        np.savez(args.save, **save)


if __name__ == "__main__":
    main()
