"""ONNX's own node test cases, run in-process through :mod:`openqnn.onnx_backend`.

The cases come from ``onnx.backend.test.case.node.collect_testcases()`` (the onnx wheel ships their
generators, not the ``data/node`` directories). A case is *selected* when every node in its model
(subgraphs included) is a default-domain op in :data:`OP_SET` and no tensor in it (graph inputs,
outputs, value infos, initializers, constant attributes, ``Cast``'s ``to``, the data sets) has an
element type from :data:`SKIPPED_ELEM_TYPES`. Outputs are compared the way
``onnx.backend.test.runner.Runner.assert_similar_outputs`` does: same count, same shape, same dtype,
``np.testing.assert_allclose`` with the case's rtol/atol (1e-3 / 1e-7 for every node case).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import signal
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

OP_SET = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace Div Dropout Einsum Elu Equal Erf
Exp Expand Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater
GreaterOrEqual GroupNormalization HardSigmoid HardSwish Identity InstanceNormalization IsInf IsNaN LayerNormalization
LeakyRelu Less LessOrEqual Log LogSoftmax LpNormalization LRN MatMul Max MaxPool Mean Min Mish Mod Mul Neg Not Or Pad
Pow PRelu Range Reciprocal ReduceL1 ReduceL2 ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize Round ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice
Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh Tile TopK Transpose Trilu Unsqueeze Where
Xor
""".split())

# element types openqnn's IR has no type for (left out of the selection, not counted as failures)
SKIPPED_ELEM_TYPES = {
    getattr(TensorProto, n): n
    for n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "FLOAT4E2M1",
              "INT4", "UINT4", "INT2", "UINT2", "BFLOAT16", "STRING", "COMPLEX64", "COMPLEX128")
    if hasattr(TensorProto, n)
}
DEFAULT_TIMEOUT_S = 60


@dataclass
class Case:
    name: str
    model: onnx.ModelProto
    data_sets: list[tuple[list, list]]
    rtol: float
    atol: float
    ops: tuple[str, ...]  # op types in the model, in node order, unique
    op: str = ""  # the op the case tests (for grouping reports)
    expanded: bool = False  # a function-expanded variant (``*_expanded*``)


@dataclass
class Selection:
    selected: list[Case] = field(default_factory=list)
    # name -> why the case is not selected
    skipped_ops: dict[str, str] = field(default_factory=dict)
    skipped_types: dict[str, str] = field(default_factory=dict)


def _iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _iter_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _iter_nodes(g)


def _type_elems(tp: onnx.TypeProto) -> Iterator[int | str]:
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        yield tp.tensor_type.elem_type
    elif kind == "sparse_tensor_type":
        yield tp.sparse_tensor_type.elem_type
    elif kind is not None:
        yield f"{kind} value"  # sequences, optionals, maps: not tensors


def _elem_types(case_model: onnx.ModelProto, data_sets: list) -> Iterator[int | str]:
    def graph_types(g: onnx.GraphProto) -> Iterator[int | str]:
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            yield from _type_elems(vi.type)
        for t in g.initializer:
            yield t.data_type
        for node in g.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t.data_type
                elif attr.type == onnx.AttributeProto.TENSORS:
                    for t in attr.tensors:
                        yield t.data_type
                elif attr.type == onnx.AttributeProto.GRAPH:
                    yield from graph_types(attr.g)
                if node.op_type == "Cast" and attr.name == "to":
                    yield attr.i

    yield from graph_types(case_model.graph)
    for inputs, outputs in data_sets:
        for x in list(inputs) + list(outputs):
            if isinstance(x, TensorProto):
                yield x.data_type
            elif isinstance(x, (np.ndarray, np.generic)):
                if x.dtype == object:
                    yield TensorProto.STRING
            else:
                yield f"{type(x).__name__} value"


_EXPANDED = re.compile(r"_expanded(_ver\d+)?$")


def _case_op(name: str, ops: tuple[str, ...], by_name: dict[str, tuple[str, ...]]) -> tuple[str, bool]:
    m = _EXPANDED.search(name)
    if m:
        base = by_name.get(name[: m.start()])
        if base and len(base) == 1:
            return base[0], True
        return (ops[0] if ops else "?"), True
    real = [o for o in ops if o != "Constant"]
    return (real[0] if len(real) == 1 else (ops[-1] if ops else "?")), False


@functools.lru_cache(maxsize=1)
def collect() -> Selection:
    """All of ONNX's node test cases, split into selected and not selected (with reasons)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            cases = collect_testcases(None)
    sel = Selection()
    infos = []
    seen = set()
    for tc in cases:
        if tc.name in seen:
            continue
        seen.add(tc.name)
        ops: list[str] = []
        bad_domain = None
        for n in _iter_nodes(tc.model.graph):
            if n.domain not in ("", "ai.onnx"):
                bad_domain = n.domain
            if n.op_type not in ops:
                ops.append(n.op_type)
        infos.append((tc, tuple(ops), bad_domain))
    by_name = {tc.name: ops for tc, ops, _ in infos}
    for tc, ops, bad_domain in infos:
        outside = [o for o in ops if o not in OP_SET]
        if bad_domain is not None:
            sel.skipped_ops[tc.name] = f"domain {bad_domain}"
            continue
        if outside:
            sel.skipped_ops[tc.name] = "ops outside the set: " + ", ".join(outside)
            continue
        bad = sorted({SKIPPED_ELEM_TYPES.get(t, None) if isinstance(t, int) else t
                      for t in _elem_types(tc.model, tc.data_sets)} - {None})
        if bad:
            sel.skipped_types[tc.name] = "element types " + ", ".join(bad)
            continue
        op, expanded = _case_op(tc.name, ops, by_name)
        sel.selected.append(Case(tc.name, tc.model, tc.data_sets, tc.rtol, tc.atol, ops, op, expanded))
    sel.selected.sort(key=lambda c: c.name)
    return sel


def case_names() -> list[str]:
    return [c.name for c in collect().selected]


@functools.lru_cache(maxsize=1)
def _by_name() -> dict[str, Case]:
    return {c.name: c for c in collect().selected}


def get_case(name: str) -> Case:
    return _by_name()[name]


class CaseTimeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise CaseTimeout(f"case ran longer than {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _normalize(x):
    if isinstance(x, TensorProto):
        return numpy_helper.to_array(x)
    return x


def assert_similar_outputs(ref_outputs, outputs, rtol: float, atol: float) -> None:
    """Mirror of ``onnx.backend.test.runner.Runner.assert_similar_outputs`` for tensors."""
    np.testing.assert_equal(len(outputs), len(ref_outputs))
    for i, (out, ref) in enumerate(zip(outputs, ref_outputs)):
        out = np.asarray(out)
        ref = np.asarray(ref)
        if out.shape != ref.shape:  # the runner's assert_array_equal on the shapes, with a readable message
            raise AssertionError(f"Output {i} has incorrect shape {out.shape}, expected {ref.shape}")
        if ref.dtype == object:
            np.testing.assert_array_equal(out, ref)
            continue
        np.testing.assert_equal(out.dtype, ref.dtype, err_msg=f"Output {i} has dtype {out.dtype}, expected {ref.dtype}")
        np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol, err_msg=f"Output {i}")


def run_case(case: Case, timeout: float | None = DEFAULT_TIMEOUT_S, info: dict | None = None,
             freeze_inputs: bool = True) -> dict:
    """Run one case through openqnn's ONNX backend; raises on any mismatch.

    ``info`` (returned, and filled in as the case runs so it survives a failure) collects
    ``frozen_inputs`` (graph inputs the adapter baked in as constants) and ``native_dtype_cast``
    (outputs openqnn produced in another dtype than the model declares, cast by the adapter).
    """
    from openqnn import onnx_backend

    info = {} if info is None else info
    info.update(native_dtype_cast=[], frozen_inputs=[])
    rep = None
    try:
        with _time_limit(timeout), warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            rep = onnx_backend.prepare(case.model, "CPU", check_model=False, freeze_inputs=freeze_inputs)
            for inputs, ref_outputs in case.data_sets:
                outs = list(rep.run([_normalize(x) for x in inputs]))
                for name, native, want in zip(rep.output_names, rep.native_output_dtypes, rep.output_dtypes):
                    if want is not None and native != want:
                        info["native_dtype_cast"].append(f"{name}: openqnn gave {native}, cast to {want}")
                assert_similar_outputs([_normalize(x) for x in ref_outputs], outs, case.rtol, case.atol)
    finally:
        if rep is not None:
            info["frozen_inputs"] = sorted(rep.frozen_inputs)
    return info


def quiet_logs() -> None:
    logging.getLogger("openqnn").setLevel(logging.ERROR)
