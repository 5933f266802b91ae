"""A model case (``--models``'s, e.g. bert/16/a8_pc, mobilenet_v2/64/a8_pc) layer by layer: every quantized
activation made a graph output, openqnn's htp against the simulator per tensor in graph order (share
identical, max and mean difference in codes).

    python -m tests.fidelity.model_layers [--model bert] [--full] [--arch 73] [--feeds 2] [--save layers.npz]

``--save``: both sides' codes per tensor ("sim|<name>", "oq|<name>"), for a closer look at one op
(``attention_probe`` reads them).
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bert", help="a --models case name's prefix")
    ap.add_argument("--full", action="store_true", help="the full-size case (224x224; bert: 64 tokens)")
    ap.add_argument("--variant", default="a8_pc", help="the case's variant (e.g. a8_pc_calibrated for bert)")
    ap.add_argument("--arch", default="73")
    ap.add_argument("--feeds", type=int, default=2)
    ap.add_argument("--save", default=None)
    args = ap.parse_args(argv)
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
