"""The accuracy debugger: a converted or quantized model, layer by layer, against its framework model.

The ONNX model runs in ONNX Runtime with every intermediate tensor made an output; the openqnn model runs on a
backend with every intermediate it shares by name with the ONNX model made an output too (a context binary
holds only its outputs: those are compared). Activations the IR holds channels last are transposed back to
the source's layout. Per layer, over all inferences: cosine similarity, SQNR (signal to quantization noise, dB)
and the largest absolute error, with the layer's encoding.

A layer's SQNR includes the error of everything before it, so a layer with too few bits drags every later one
down. Layers are ranked by the SQNR they **lose**: the lowest SQNR of their inputs minus their own (an input
without a comparison counts as exact), which points at the layer that adds the error rather than the ones
that inherit it. Where the converter fused an activation into the node before it (Conv + Relu), the IR's
tensor holds the activation's output: the ONNX tensor after the activation is compared as well, and the closer
of the two kept.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openqnn.errors import InvalidConfigError
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Encoding, TensorKind
from openqnn.profiling.log import write_csv_table
from openqnn.serialization.netjson import atomic_write

__all__ = ["LayerError", "compare_layers", "read_layer_sqnr", "write_layer_chart", "write_layer_csv"]

EXACT_DB = 200.0  # the SQNR of an exact match
# activations the converter fuses into the node before them: the IR tensor holds the activation's output
FUSABLE = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Gelu"})


@dataclass(frozen=True)
class LayerError:
    """One compared tensor: ``layer`` (the tensor's name), the node that makes it, and how far it is from the
    framework model's (``sqnr_drop``: dB lost in this node, see the module docstring)."""

    layer: str
    node: str
    op_type: str
    cosine: float
    sqnr_db: float
    sqnr_drop_db: float
    max_abs_error: float
    encoding: str
    shape: tuple[int, ...]


def _encoding_text(enc: Encoding | None) -> str:
    if enc is None:
        return "float"
    if enc.axis is not None:
        return f"{enc.bitwidth}-bit per-axis (axis {enc.axis}, {len(enc.scale)} scales)"
    return f"{enc.bitwidth}-bit scale {float(enc.scale[0]):.6g} offset {int(enc.offset[0])}"


def _as_source_layout(ours: np.ndarray, ref_shape: tuple[int, ...]) -> np.ndarray | None:
    """``ours`` in the reference's shape: as it is, channels-last to channels-first, or reshaped (same size)."""
    if ours.shape == ref_shape:
        return ours
    if ours.ndim == len(ref_shape) >= 3:
        moved = np.moveaxis(ours, -1, 1)
        if moved.shape == ref_shape:
            return moved
    if ours.size == math.prod(ref_shape):
        return ours.reshape(ref_shape)
    return None


def _ort_outputs(model: Any, names: Sequence[str], feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, Any]]:
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    inputs = {i.name for i in sess.get_inputs()}
    return [dict(zip(outs, sess.run(None, {k: v for k, v in f.items() if k in inputs}))) for f in feeds]


def compare_layers(framework_model: str | os.PathLike[str], model: str | os.PathLike[str] | Graph,
                   feeds: Sequence[Mapping[str, np.ndarray]], backend: str = "htp") -> list[LayerError]:
    """Compare ``model`` (a graph, ``_net.json``, model library or context binary) on ``backend`` with
    ``framework_model`` (ONNX) in ONNX Runtime over ``feeds``; worst layer (most SQNR lost) first."""
    import onnx

    from openqnn.api import load
    from openqnn.runtime.context import is_context
    from openqnn.runtime.session import Session

    src = Path(framework_model)
    try:
        proto = onnx.load(str(src))
    except Exception as e:
        raise InvalidConfigError(f"--framework_model {src}: cannot be read as ONNX ({type(e).__name__}: {e}); "
                                 "give the .onnx the model was converted from") from None
    onnx_names = {o for n in proto.graph.node for o in n.output if o}
    consumers: dict[str, list[Any]] = {}
    for n in proto.graph.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    # the output of a lone activation after a tensor: what the IR holds where it was fused
    after = {t: cs[0].output[0] for t, cs in consumers.items()
             if len(cs) == 1 and cs[0].op_type in FUSABLE and t in onnx_names}
    if not isinstance(model, Graph) and is_context(model):
        session = Session(model, backend=backend)
        graph = session.graph
        compared = [n for n in graph.outputs if n in onnx_names]
    else:
        graph = model if isinstance(model, Graph) else load(Path(model))
        compared = [t.name for t in graph.tensors.values()
                    if t.kind in (TensorKind.NATIVE, TensorKind.APP_READ) and t.name in onnx_names]
        probe = graph.copy()
        probe.outputs = list(dict.fromkeys([*graph.outputs, *compared]))
        session = Session(probe, backend=backend)
    if not compared:
        raise InvalidConfigError(f"--model: no tensor of it has a name in {src}; give the ONNX model it was "
                                 "converted from")
    refs = _ort_outputs(proto, list(dict.fromkeys([*compared, *(after[n] for n in compared if n in after)])), feeds)
    ours = [session.run(dict(f)) for f in feeds]

    makers = {o: n for n in graph.nodes for o in n.outputs}
    stats: dict[str, tuple[float, float, float]] = {}
    for name in compared:
        candidates = [m for m in (_metrics(refs, ours, ref, name) for ref in (name, after.get(name))
                                  if ref is not None) if m is not None]
        if candidates:
            stats[name] = max(candidates, key=lambda m: m[1])

    # the SQNR a tensor arrives with: compared ones their own; graph inputs their quantization's; others
    # (tensors the ONNX model has no name for) that of their own inputs
    known = {name: m[1] for name, m in stats.items()}
    known.update(_input_sqnr(graph, feeds))

    def arriving(x: str, depth: int = 0) -> float:
        if x in known:
            return known[x]
        t = graph.tensors.get(x)
        node = makers.get(x)
        if t is None or t.kind is TensorKind.STATIC or node is None or depth > 50:
            return EXACT_DB
        known[x] = min((arriving(i, depth + 1) for i in node.inputs if i), default=EXACT_DB)
        return known[x]

    out = []
    for name, (cos, sqnr, worst) in stats.items():
        node = makers.get(name)
        before = min((arriving(x) for x in (node.inputs if node else ()) if x), default=EXACT_DB)
        t = graph.tensors[name]
        enc = _encoding_text(t.encoding)
        weights = [graph.tensors[x] for x in (node.inputs if node else ()) if x in graph.tensors
                   and graph.tensors[x].kind is TensorKind.STATIC and graph.tensors[x].encoding is not None]
        if weights:
            enc = f"output {enc}; weights {_encoding_text(weights[0].encoding)}"
        out.append(LayerError(name, node.name if node else name, node.op_type if node else "?", cos, sqnr,
                              max(0.0, before - sqnr), worst, enc, tuple(t.shape)))
    return sorted(out, key=lambda e: (-e.sqnr_drop_db, e.sqnr_db))


def _input_sqnr(graph: Graph, feeds: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """The SQNR of each quantized graph input's own quantization over ``feeds``."""
    from openqnn.quantization.encodings.math import dequantize, quantize

    out: dict[str, float] = {}
    for t in graph.input_tensors():
        enc = t.encoding
        if enc is None or enc.axis is not None:
            continue
        num = den = 0.0
        for f in feeds:
            x = np.asarray(f[t.name], dtype=np.float32)
            q = quantize(x, enc.scale[0], enc.offset[0], enc.bitwidth, bounds=enc.int_range)
            d = np.asarray(dequantize(q, enc.scale[0], enc.offset[0]), dtype=np.float64) - x
            num += float((x.astype(np.float64) ** 2).sum())
            den += float((d * d).sum())
        out[t.name] = _sqnr_db(num, den)
    return out


def _metrics(refs: Sequence[Mapping[str, Any]], ours: Sequence[Mapping[str, np.ndarray]], ref_name: str,
             name: str) -> tuple[float, float, float] | None:
    """(cosine, SQNR dB, max abs error) of our ``name`` against the reference's ``ref_name`` over every
    inference; None where the shapes do not correspond."""
    num = den = dot = nb = 0.0
    worst = 0.0
    for r, o in zip(refs, ours):
        ref = np.asarray(r[ref_name], dtype=np.float64)
        got = _as_source_layout(np.asarray(o[name], dtype=np.float64), ref.shape)
        if got is None:
            return None
        diff = ref - got
        num += float((ref * ref).sum())
        den += float((diff * diff).sum())
        dot += float((ref * got).sum())
        nb += float((got * got).sum())
        worst = max(worst, float(np.abs(diff).max(initial=0.0)))
    cos = dot / math.sqrt(num * nb) if num > 0 and nb > 0 else (1.0 if num == nb else 0.0)
    return cos, _sqnr_db(num, den), worst


def _sqnr_db(signal: float, noise: float) -> float:
    """Signal to quantization noise in dB from the two energies (``EXACT_DB`` for no noise)."""
    return EXACT_DB if noise == 0 else min(EXACT_DB, 10 * math.log10(max(signal, 1e-30) / noise))


CSV_FIELDS = ("rank", "layer", "node", "op_type", "sqnr_drop_db", "sqnr_db", "cosine", "max_abs_error", "encoding",
              "shape")


def write_layer_csv(rows: Sequence[LayerError], path: str | os.PathLike[str]) -> Path:
    return write_csv_table(path, CSV_FIELDS, (
        [k, e.layer, e.node, e.op_type, f"{e.sqnr_drop_db:.3f}", f"{e.sqnr_db:.3f}", f"{e.cosine:.6f}",
         f"{e.max_abs_error:.6g}", e.encoding, "x".join(map(str, e.shape))] for k, e in enumerate(rows, 1)))


def write_layer_chart(rows: Sequence[LayerError], path: str | os.PathLike[str], top: int = 30) -> Path:
    """An SVG bar chart of the SQNR each layer loses, worst first (red: more than 6 dB lost)."""
    from openqnn.profiling.svg import bar_chart

    shown = list(rows[:top])
    svg = bar_chart([f"{e.node} ({e.op_type})" for e in shown], [e.sqnr_drop_db for e in shown], "dB",
                    ["#c2453d" if e.sqnr_drop_db > 6 else "#3b6fb6" for e in shown],
                    "SQNR lost per layer against the framework model (worst first)")
    p = Path(path)
    with atomic_write(p) as f:
        f.write(svg)
    return p


def read_layer_sqnr(path: str | os.PathLike[str]) -> dict[str, float]:
    """node -> the SQNR (dB) it loses, from the debugger's CSV (for the profile report's suggestions)."""
    p = Path(path)
    try:
        with open(p, newline="") as f:
            return {row["node"]: float(row["sqnr_drop_db"]) for row in csv.DictReader(f)}
    except FileNotFoundError:
        raise InvalidConfigError(f"--accuracy_csv {p}: no such file; give qnn-accuracy-debugger's "
                                 "layer_comparison.csv") from None
    except (KeyError, ValueError, OSError) as e:
        raise InvalidConfigError(f"--accuracy_csv {p}: not qnn-accuracy-debugger's CSV ({e})") from None
