"""Seeded fuzzing of the model loaders: ONNX files (the converter) and ``_net.json`` + ``.bin``.

Small valid models are built here (a float Conv/Relu/MaxPool/Gemm ONNX model, and the same model
quantized and saved as ``_net.json`` + ``.bin``), then mutated with a seeded RNG: bytes flipped and
files truncated, protobuf fields broken (data types, raw data, dims, attributes, dangling inputs,
cycles, duplicate names, missing outputs), JSON fields deleted or retyped, scales made NaN/Inf/zero,
bitwidths made illegal, shapes made absurd, the weights path pointed outside the model's folder.

Every case is run in-process (``openqnn.convert`` + ``openqnn.save``; ``openqnn.load`` +
``Session(...).run`` on cpu and htp) and a sample through the command-line tools in a subprocess
with a timeout. The tests assert that each outcome is success or an :class:`openqnn.OpenQnnError`
(never another exception, never a signal or a hang), that an error leaves no file in the output
folder, and that the cases known to be wrong are refused rather than silently accepted. Counts go
to ``/tmp/item7a_figures.md``.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn

SEED = 20240711
N_ONNX = 330
N_NETJSON = 330
N_CLI = 12  # subprocess cases (half converter, half net-run)
CASE_TIMEOUT_S = 20  # in-process guard; a case normally takes milliseconds
CLI_TIMEOUT_S = 60
FIGURES = Path("/tmp/item7a_figures.md")

X = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)


# -- the valid models ----------------------------------------------------------------------------

def conv_model() -> onnx.ModelProto:
    """x [1,3,4,4] -> Conv 3x3 (pads 1) -> Relu -> MaxPool 2x2 -> Reshape [1,16] -> Gemm -> y [1,5]."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "B"),
        numpy_helper.from_array(np.array([1, 16], np.int64), "S"),
        numpy_helper.from_array(rng.standard_normal((5, 16)).astype(np.float32), "G"),
        numpy_helper.from_array(rng.standard_normal((5,)).astype(np.float32), "GB"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1],
                         kernel_shape=[3, 3], dilations=[1, 1], group=1),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "S"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "G", "GB"], ["y"], name="gemm", transB=1),
    ]
    graph = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def pool_model() -> onnx.ModelProto:
    """x [1,2,6,6] -> AveragePool 3x3 stride 2 (pads 1) -> Add const -> Sigmoid -> y."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("AveragePool", ["x"], ["a"], name="avg", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a", "K"], ["s"], name="add"),
        helper.make_node("Sigmoid", ["s"], ["y"], name="sig"),
    ]
    inits = [numpy_helper.from_array(rng.standard_normal((1, 2, 1, 1)).astype(np.float32), "K")]
    graph = helper.make_graph(nodes, "fuzz2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The valid models, checked to convert, save, load and run, before anything is mutated."""
    d = tmp_path_factory.mktemp("fuzz_base")
    out: dict[str, Any] = {"onnx": [conv_model(), pool_model()]}
    graph = openqnn.convert(out["onnx"][0])
    qgraph = openqnn.quantize(graph, [{"x": X}])
    json_path, bin_path = openqnn.save(qgraph, d / "q.cpp")
    out["json"] = json.loads(json_path.read_text())
    out["bin"] = bin_path.read_bytes()
    out["dir"] = d
    loaded = openqnn.load(json_path)
    for backend in ("cpu", "htp"):
        openqnn.Session(loaded, backend=backend).run({"x": X})
    return out


# -- outcomes ------------------------------------------------------------------------------------

@dataclass
class Outcome:
    loader: str
    mutation: str
    must_refuse: bool
    status: str = "accepted"  # accepted | refused | defect
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def failures(self) -> list[str]:
        bad = []
        for o in self.outcomes:
            if o.status == "defect":
                bad.append(f"[{o.loader}] {o.mutation}: {o.detail}")
            elif o.must_refuse and o.status != "refused":
                bad.append(f"[{o.loader}] {o.mutation}: accepted, but the model is wrong")
        return bad


class _CaseTimeout(Exception):
    pass


def _guarded(fn: Callable[[], None]) -> None:
    """Run ``fn`` with an alarm so a hang fails the case instead of the whole run."""
    use_alarm = hasattr(signal, "SIGALRM") and os.name == "posix"
    if use_alarm:
        def on_alarm(signum: int, frame: object) -> None:
            raise _CaseTimeout(f"no answer within {CASE_TIMEOUT_S} s")
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(CASE_TIMEOUT_S)
    try:
        fn()
    finally:
        if use_alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def _run_case(outcome: Outcome, fn: Callable[[], None], out_dir: Path) -> Outcome:
    start = time.perf_counter()
    try:
        _guarded(fn)
    except openqnn.OpenQnnError as e:
        outcome.status, outcome.detail = "refused", str(e)
        if "\n" in str(e):
            outcome.status, outcome.detail = "defect", f"multi-line error message: {str(e)[:200]!r}"
        left = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
        if left:
            outcome.status, outcome.detail = "defect", f"error left files behind: {left} ({e})"
    except Exception as e:
        outcome.status, outcome.detail = "defect", f"{type(e).__name__}: {str(e)[:300]}"
    outcome.seconds = time.perf_counter() - start
    return outcome


# -- ONNX mutations ------------------------------------------------------------------------------
# Each takes (model, rng) and returns the mutated model or the bytes of the file, and a flag: True
# when the result is wrong and must be refused.

OnnxMutation = Callable[[onnx.ModelProto, random.Random], tuple[onnx.ModelProto | bytes, bool]]


def _init(m: onnx.ModelProto, rng: random.Random, float_only: bool = False) -> onnx.TensorProto:
    inits = [i for i in m.graph.initializer if not float_only or i.data_type == TensorProto.FLOAT]
    return rng.choice(inits)


def _node(m: onnx.ModelProto, op_types: tuple[str, ...]) -> onnx.NodeProto | None:
    return next((n for n in m.graph.node if n.op_type in op_types), None)


def _set_attr(node: onnx.NodeProto, name: str, value: Any) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def m_short_raw_data(m, rng):
    t = _init(m, rng)
    cut = rng.randint(1, len(t.raw_data))
    t.raw_data = t.raw_data[:-cut]
    return m, True


def m_long_raw_data(m, rng):
    t = _init(m, rng)
    t.raw_data = t.raw_data + bytes(rng.randint(1, 9) * 8)
    return m, True


def m_bad_data_type(m, rng):
    _init(m, rng).data_type = rng.choice([999, 0, 27, 10**6, 2**31 - 1])
    return m, True


def m_other_data_type(m, rng):
    _init(m, rng).data_type = rng.choice([TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT8, TensorProto.FLOAT16,
                                          TensorProto.BOOL, TensorProto.STRING, TensorProto.COMPLEX64, TensorProto.UINT64])
    return m, False


def m_bad_dims(m, rng):
    t = _init(m, rng)
    size = int(np.prod(t.dims))
    while True:
        dims = [rng.choice([0, 1, 2, 3, 5, 7, 16, 1000, 2**40]) for _ in range(rng.randint(0, 5))]
        if int(np.prod(dims, dtype=object)) != size:
            break
    t.ClearField("dims")
    t.dims.extend(dims)
    return m, True


def m_negative_dims(m, rng):
    t = _init(m, rng)
    dims = list(t.dims) or [1]
    dims[rng.randrange(len(dims))] *= -1
    t.ClearField("dims")
    t.dims.extend(dims)
    return m, True


def m_pads_length(m, rng):
    n = _node(m, ("Conv", "MaxPool", "AveragePool"))
    _set_attr(n, "pads", [1] * rng.choice([1, 2, 3, 5, 6, 8]))
    return m, True


def m_negative_pads(m, rng):
    n = _node(m, ("Conv", "MaxPool", "AveragePool"))
    pads = [1, 1, 1, 1]
    pads[rng.randrange(4)] = -rng.randint(1, 5)
    _set_attr(n, "pads", pads)
    return m, True


def m_strides(m, rng):
    n = _node(m, ("Conv", "MaxPool", "AveragePool"))
    strides = [1, 1]
    strides[rng.randrange(2)] = rng.choice([0, -1, -2, -100])
    _set_attr(n, "strides", strides)
    return m, True


def m_strides_length(m, rng):
    n = _node(m, ("Conv", "MaxPool", "AveragePool"))
    _set_attr(n, "strides", [1] * rng.choice([1, 3, 4]))
    return m, True


def m_dilations(m, rng):
    n = _node(m, ("Conv",)) or _node(m, ("MaxPool", "AveragePool"))
    _set_attr(n, "dilations", [rng.choice([0, -1]), 1])
    return m, True


def m_kernel_shape(m, rng):
    n = _node(m, ("Conv",))
    if n is None:  # pooling: a kernel of zero, negative, or larger than the padded input
        _set_attr(_node(m, ("MaxPool", "AveragePool")), "kernel_shape", rng.choice([[0, 2], [-1, 3], [99, 3], [3]]))
        return m, True
    _set_attr(n, "kernel_shape", rng.choice([[2, 2], [5, 5], [3], [3, 3, 3], [0, 3], [-3, 3]]))
    return m, True


def m_kernel_too_big(m, rng):
    """A consistent Conv whose kernel is larger than the padded input (or a pool's window is)."""
    n = _node(m, ("Conv",))
    if n is None:
        _set_attr(_node(m, ("MaxPool", "AveragePool")), "kernel_shape", [9, 9])
        return m, True
    k = rng.choice([7, 9, 15])
    w = next(i for i in m.graph.initializer if i.name == n.input[1])
    w.CopyFrom(numpy_helper.from_array(np.ones((4, 3, k, k), np.float32), w.name))
    _set_attr(n, "kernel_shape", [k, k])
    return m, True


def m_weight_inconsistent(m, rng):
    """The Conv weight's shape disagrees with the input channels, group or bias (data kept consistent)."""
    n = _node(m, ("Conv",))
    if n is None:
        _set_attr(_node(m, ("MaxPool", "AveragePool")), "pads", [9, 9, 9, 9])  # pads larger than the window
        return m, False
    w = next(i for i in m.graph.initializer if i.name == n.input[1])
    choice = rng.randrange(4)
    if choice == 0:
        w.CopyFrom(numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), w.name))  # 2 input channels, x has 3
    elif choice == 1:
        w.CopyFrom(numpy_helper.from_array(np.ones((4, 3, 3), np.float32), w.name))  # rank 3 for a 2-D conv
    elif choice == 2:
        _set_attr(n, "group", rng.choice([2, 0, -1, 4]))
    else:
        b = next(i for i in m.graph.initializer if i.name == n.input[2])
        b.CopyFrom(numpy_helper.from_array(np.ones((rng.choice([3, 5, 8]),), np.float32), b.name))
    return m, True


def m_attr_type(m, rng):
    n = rng.choice(list(m.graph.node))
    name = rng.choice(["pads", "strides", "kernel_shape", "group", "transB", "dilations", "auto_pad", "ceil_mode"])
    _set_attr(n, name, rng.choice([1.5, "SAME", [1.5, 2.5], ["a", "b"], 7, -1, [2**62, 1]]))
    return m, False


def m_bad_auto_pad(m, rng):
    n = _node(m, ("Conv", "MaxPool", "AveragePool"))
    _set_attr(n, "auto_pad", rng.choice(["BOGUS", "same", ""]))
    return m, True


def m_dangling_input(m, rng):
    n = rng.choice(list(m.graph.node))
    n.input[rng.randrange(len(n.input))] = rng.choice(["nowhere", "x ", "", "W_missing"]) or "nowhere"
    return m, True


def m_cycle(m, rng):
    nodes = list(m.graph.node)
    i = rng.randrange(len(nodes))
    j = rng.randrange(i, len(nodes))  # node i reads the output of node j >= i
    nodes[i].input[0] = nodes[j].output[0]
    return m, True


def m_duplicate_output(m, rng):
    nodes = list(m.graph.node)
    i, j = rng.sample(range(len(nodes)), 2)
    nodes[j].output[0] = rng.choice([nodes[i].output[0], "x", m.graph.initializer[0].name])
    return m, True


def m_duplicate_node_name(m, rng):
    for n in m.graph.node:
        n.name = "same"
    return m, False


def m_no_outputs(m, rng):
    del m.graph.output[:]
    return m, True


def m_unknown_output(m, rng):
    m.graph.output[0].name = rng.choice(["nothing", "", "W_"])
    return m, True


def m_remove_node(m, rng):
    del m.graph.node[rng.randrange(len(m.graph.node))]
    return m, True


def m_unknown_op(m, rng):
    n = rng.choice(list(m.graph.node))
    n.op_type = rng.choice(["NoSuchOp", "", "conv"])
    return m, True


def m_domain(m, rng):
    rng.choice(list(m.graph.node)).domain = "com.example"
    return m, True


def m_opset(m, rng):
    m.opset_import[0].version = rng.choice([0, 1, 6, 99, 10**6])
    return m, True


def m_input_dims(m, rng):
    dims = m.graph.input[0].type.tensor_type.shape.dim
    d = dims[rng.randrange(len(dims))]
    d.dim_value = rng.choice([0, 1, 7, 100, 2**40])
    return m, False


def m_input_rank(m, rng):
    shape = m.graph.input[0].type.tensor_type.shape
    if rng.random() < 0.5:
        del shape.dim[-1]
    else:
        shape.dim.add().dim_value = 2
    return m, True


def m_input_elem_type(m, rng):
    m.graph.input[0].type.tensor_type.elem_type = rng.choice([0, 8, 99, TensorProto.INT64, TensorProto.DOUBLE])
    return m, False


def m_external_data(m, rng):
    t = _init(m, rng)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    for k, v in (("location", rng.choice(["../../../../etc/passwd", "/etc/passwd", "missing.bin", "sub/../../x"])),
                 ("offset", "0"), ("length", "64")):
        e = t.external_data.add()
        e.key, e.value = k, v
    return m, True


def m_gemm_trans(m, rng):
    n = _node(m, ("Gemm",))
    if n is None:
        return m_remove_node(m, rng)
    _set_attr(n, "transB", 0)
    return m, True


def m_reshape_shape(m, rng):
    s = next((i for i in m.graph.initializer if i.name == "S"), None)
    if s is None:
        return m_bad_dims(m, rng)
    s.CopyFrom(numpy_helper.from_array(np.array(rng.choice([[1, 15], [2, 16], [-1, -1], [0, 0], [1, 2**40]]),
                                                np.int64), "S"))
    return m, True


def m_byte_flips(m, rng):
    data = bytearray(m.SerializeToString())
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data), False


def m_truncate(m, rng):
    data = m.SerializeToString()
    return data[: rng.randrange(0, len(data))], False


def m_garbage(m, rng):
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))), False


ONNX_MUTATIONS: list[OnnxMutation] = [
    m_short_raw_data, m_long_raw_data, m_bad_data_type, m_other_data_type, m_bad_dims, m_negative_dims,
    m_pads_length, m_negative_pads, m_strides, m_strides_length, m_dilations, m_kernel_shape, m_kernel_too_big,
    m_weight_inconsistent, m_attr_type, m_bad_auto_pad, m_dangling_input, m_cycle, m_duplicate_output,
    m_duplicate_node_name, m_no_outputs, m_unknown_output, m_remove_node, m_unknown_op, m_domain, m_opset,
    m_input_dims, m_input_rank, m_input_elem_type, m_external_data, m_gemm_trans, m_reshape_shape,
    m_byte_flips, m_truncate, m_garbage,
]


def onnx_case(bases: dict[str, Any], i: int, root: Path) -> tuple[str, Path, bool]:
    """Case i: (mutation name, path of the mutated .onnx, must it be refused)."""
    rng = random.Random(SEED * 1000 + i)
    mutation = ONNX_MUTATIONS[i % len(ONNX_MUTATIONS)]
    base = copy.deepcopy(bases["onnx"][rng.randrange(len(bases["onnx"]))])
    result, must = mutation(base, rng)
    case_dir = root / f"onnx{i:04d}"
    case_dir.mkdir()
    path = case_dir / "m.onnx"
    path.write_bytes(result if isinstance(result, bytes) else result.SerializeToString())
    return mutation.__name__[2:], path, must


# -- _net.json / .bin mutations ------------------------------------------------------------------
# Each takes (doc, bin bytes, case folder, rng), may write extra files, and returns (doc or text,
# bin bytes, must_refuse).

def _tensors(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["graph"]["tensors"]


def _quantized(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    names = [n for n, t in _tensors(doc).items() if t["quant_params"].get("definition") == "QNN_DEFINITION_DEFINED"]
    return _tensors(doc)[rng.choice(names)]["quant_params"]


def _conv(doc: dict[str, Any]) -> dict[str, Any]:
    return next(n for n in doc["graph"]["nodes"].values() if n["type"] == "Conv2d")


def _scale_slots(qp: dict[str, Any]) -> list[dict[str, Any]]:
    if "scale_offset" in qp:
        return [qp["scale_offset"]]
    return qp["axis_scale_offset"]["scale_offsets"]


def j_scale(doc, blob, d, rng):
    qp = _quantized(doc, rng)
    rng.choice(_scale_slots(qp))["scale"] = rng.choice([float("nan"), float("inf"), float("-inf"), -0.5, 0, 0.0,
                                                        -1e-30])
    return doc, blob, True


def j_scale_type(doc, blob, d, rng):
    rng.choice(_scale_slots(_quantized(doc, rng)))["scale"] = rng.choice(["0.1", None, [0.1], {"v": 1}, True])
    return doc, blob, True


def j_offset(doc, blob, d, rng):
    rng.choice(_scale_slots(_quantized(doc, rng)))["offset"] = rng.choice([10**30, -(10**30), 0.5, "0", None, 2**40])
    return doc, blob, True


def j_bitwidth(doc, blob, d, rng):
    _quantized(doc, rng)["bitwidth"] = rng.choice([7, 0, -8, 3, 12, 64, 2**40, 8.5, "8", None, True])
    return doc, blob, True


def j_encoding_kind(doc, blob, d, rng):
    _quantized(doc, rng)["encoding"] = rng.choice(["QNN_QUANTIZATION_ENCODING_BOGUS", "", 3,
                                                   "QNN_QUANTIZATION_ENCODING_AXIS_SCALE_OFFSET"])
    return doc, blob, True


def j_qrange(doc, blob, d, rng):
    qp = _quantized(doc, rng)
    bw, signed = qp["bitwidth"], qp.get("is_signed", False)
    lo, hi = (-(1 << (bw - 1)), (1 << (bw - 1)) - 1) if signed else (0, (1 << bw) - 1)
    qp["qmin"], qp["qmax"] = rng.choice([(5, 3), (lo - 1, hi), (lo, hi + 1), (lo, lo), (1, None), (0.5, 3)])
    return doc, blob, True


def j_no_outputs(doc, blob, d, rng):
    doc["graph"]["outputs"] = []
    return doc, blob, True


def j_unknown_output(doc, blob, d, rng):
    doc["graph"]["outputs"] = rng.choice([["nothing"], [""], ["y", "y"], [3]])
    return doc, blob, True


def j_bin_path(doc, blob, d, rng):
    outside = d.parent / f"{d.name}_outside.bin"
    outside.write_bytes(blob)
    doc["model.bin"] = rng.choice(["/etc/passwd", "../q.bin", "sub/../../q.bin", str(outside), f"../{outside.name}",
                                   "..", ".", "/", "q.bin/", "\\..\\q.bin", 7, ["q.bin"]])
    return doc, blob, True


def j_bin_missing(doc, blob, d, rng):
    doc["model.bin"] = rng.choice(["nothere.bin", "q_net.json"])
    return doc, blob, True


def j_dims(doc, blob, d, rng):
    t = rng.choice(list(_tensors(doc).values()))
    old = list(t["dims"])
    while t["dims"] == old:
        t["dims"] = rng.choice([[], [0], [-1, 3, 4, 4], [1, 3, 4, 2**40], [2**62] * 4, [1] * 40, [1.5, 2],
                                ["4"], "1,3,4,4", None, [1, 3, 4], old[::-1] if len(set(old)) > 1 else [7] * len(old),
                                [d + 1 for d in old]])
    return doc, blob, True


def _with_weight(doc, blob, name: str, arr: np.ndarray) -> bytes:
    from safetensors.numpy import load, save

    blobs = dict(load(blob))
    blobs[name] = arr
    _tensors(doc)[name]["dims"] = list(arr.shape)
    return save(blobs)


def j_conv_kernel(doc, blob, d, rng):
    """The Conv2d filter replaced, data and dims consistent, by an absurd one: a kernel larger than the
    padded input, zero dims, or channels that disagree with the input or the bias."""
    w = _conv(doc)["input_names"][1]
    shape = rng.choice([(9, 9, 3, 4), (7, 3, 3, 4), (3, 3, 2, 4), (3, 3, 3, 5), (3, 3, 3, 0), (0, 3, 3, 4),
                        (3, 3, 3), (3, 3, 1, 3, 4), (3, 3, 6, 4)])
    return doc, _with_weight(doc, blob, w, np.ones(shape, np.float32)), True


def j_conv_params(doc, blob, d, rng):
    params = _conv(doc)["tensor_params"]
    key = rng.choice(["stride", "dilation", "pad_amount"])
    bad = {"stride": [[0, 1], [-1, 1], [1], [1, 1, 1]], "dilation": [[0, 0], [-2, 1], [1]],
           "pad_amount": [[1, 1], [[-1, 1], [1, 1]], [[1, 1]], [[1, 1, 1], [1, 1, 1]], [[9, 9], [9, 9]]]}[key]
    data = rng.choice(bad)
    params[key] = {"dims": list(np.shape(data)), "data": data, "data_type": "QNN_DATATYPE_INT_32"}
    # pads of 9 on a 4x4 input make a bigger output than the model says: refused by shape inference
    return doc, blob, True


def j_conv_group(doc, blob, d, rng):
    _conv(doc)["scalar_params"]["group"] = rng.choice([0, -1, 2, 3, 2**62])
    return doc, blob, True


def j_conv_param_dims(doc, blob, d, rng):
    params = _conv(doc)["tensor_params"]
    key = rng.choice(list(params))
    params[key]["dims"] = rng.choice([[5], [2, 3], [-1], [2**40]])
    return doc, blob, True


def j_node_inputs(doc, blob, d, rng):
    n = rng.choice(list(doc["graph"]["nodes"].values()))
    choice = rng.randrange(3)
    if choice == 0:
        n["input_names"][0] = rng.choice(["nowhere", "", 5])
    elif choice == 1:  # a cycle: the node reads its own output
        n["input_names"][0] = n["output_names"][0]
    else:
        n["input_names"] = n["input_names"][:0]
    return doc, blob, True


def j_duplicate_producer(doc, blob, d, rng):
    nodes = list(doc["graph"]["nodes"].values())
    a, b = rng.sample(range(len(nodes)), 2)
    nodes[b]["output_names"] = list(nodes[a]["output_names"])
    return doc, blob, True


def j_node_type(doc, blob, d, rng):
    rng.choice(list(doc["graph"]["nodes"].values()))["type"] = rng.choice(["NoSuchOp", "", None, 3, "Conv3d"])
    return doc, blob, True


def j_tensor_kind(doc, blob, d, rng):
    t = rng.choice(list(_tensors(doc).values()))
    t["type"] = rng.choice(["BOGUS", None, 1, "STATIC" if t["type"] != "STATIC" else "NATIVE"])
    return doc, blob, True


def j_data_type(doc, blob, d, rng):
    rng.choice(list(_tensors(doc).values()))["data_type"] = rng.choice(["QNN_DATATYPE_BOGUS", "float32", None,
                                                                        "QNN_DATATYPE_INT_32", 5])
    return doc, blob, True


REQUIRED_PATHS = [("graph",), ("graph", "tensors"), ("graph", "nodes"), ("graph", "inputs"), ("graph", "outputs"),
                  ("format",)]


def j_delete_required(doc, blob, d, rng):
    path = rng.choice([*REQUIRED_PATHS, "tensor", "node", "qp"])
    if path == "tensor":
        t = rng.choice(list(_tensors(doc).values()))
        del t[rng.choice(["type", "data_type", "dims"])]
    elif path == "node":
        n = rng.choice(list(doc["graph"]["nodes"].values()))
        del n[rng.choice(["type", "input_names", "output_names"])]
    elif path == "qp":
        qp = _quantized(doc, rng)
        del qp[rng.choice(["bitwidth", "encoding", "scale_offset" if "scale_offset" in qp else "axis_scale_offset"])]
    else:
        target = doc
        for k in path[:-1]:
            target = target[k]
        del target[path[-1]]
    return doc, blob, True


def _leaves(obj: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _leaves(v, (*path, k))] + ([path] if path else [])
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _leaves(v, (*path, i))] + ([path] if path else [])
    return [path]


def _set_path(doc: Any, path: tuple, value: Any, delete: bool = False) -> None:
    target = doc
    for k in path[:-1]:
        target = target[k]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value


def j_delete_random(doc, blob, d, rng):
    _set_path(doc, rng.choice(_leaves(doc)), None, delete=True)
    return doc, blob, False


def j_retype_random(doc, blob, d, rng):
    _set_path(doc, rng.choice(_leaves(doc)), rng.choice(["x", 0, -1, 1.5, None, True, [], {}, [1, 2], {"a": 1}]))
    return doc, blob, False


def j_huge_number(doc, blob, d, rng):
    numeric = [p for p in _leaves(doc) if isinstance(_get(doc, p), int | float) and not isinstance(_get(doc, p), bool)]
    _set_path(doc, rng.choice(numeric), rng.choice([1e308, -1e308, 10**40, -(10**40), 2**63, 2**31, 1e-320]))
    return doc, blob, False


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def j_deep_nesting(doc, blob, d, rng):
    depth = rng.choice([100000, 30, 500])
    path = rng.choice(_leaves(doc))
    text = json.dumps(doc)
    marker = "\"__DEEP__\""
    _set_path(doc, path, "__DEEP__")
    text = json.dumps(doc).replace(marker, "[" * depth + "1" + "]" * depth, 1)
    return text, blob, depth > 1000


def j_duplicate_key(doc, blob, d, rng):
    text = json.dumps(doc)
    return text.replace("{", "{\"format\": \"openqnn_net\", ", 1) if rng.random() < 0.5 else text.replace(
        "\"graph_name\"", "\"graph_name\": \"a\", \"graph_name\"", 1), blob, True


def j_truncate_json(doc, blob, d, rng):
    text = json.dumps(doc, indent=1)
    return text[: rng.randrange(0, len(text) - 2)], blob, True


def j_flip_json(doc, blob, d, rng):
    data = bytearray(json.dumps(doc, indent=1).encode())
    for _ in range(rng.randint(1, 6)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data), blob, False


def j_bin_truncate(doc, blob, d, rng):
    return doc, blob[: rng.randrange(0, len(blob) - 1)], True


def j_bin_flip(doc, blob, d, rng):
    data = bytearray(blob)
    header = 8 + int.from_bytes(blob[:8], "little")
    for _ in range(rng.randint(1, 6)):
        # half the flips hit the header (lengths, offsets, dtypes), half the tensor data
        pos = rng.randrange(header) if rng.random() < 0.5 else rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
    return doc, bytes(data), False


def j_bin_garbage(doc, blob, d, rng):
    return doc, rng.choice([b"", b"\x00" * 8, b"\xff" * 8 + b"{}", os.urandom(64), (2**60).to_bytes(8, "little")]), True


def j_bin_dtype(doc, blob, d, rng):
    """A weight stored with another dtype or shape than the JSON says."""
    from safetensors.numpy import load, save

    blobs = dict(load(blob))
    name = rng.choice([n for n in blobs if n in _tensors(doc)])
    arr = blobs[name]
    blobs[name] = arr.astype(np.float64) if rng.random() < 0.5 else arr.reshape(-1)[:-1] if arr.size > 1 else arr[None]
    return doc, save(blobs), True


NETJSON_MUTATIONS = [
    j_scale, j_scale_type, j_offset, j_bitwidth, j_encoding_kind, j_qrange, j_no_outputs, j_unknown_output,
    j_bin_path, j_bin_missing, j_dims, j_conv_kernel, j_conv_params, j_conv_group, j_conv_param_dims,
    j_node_inputs, j_duplicate_producer, j_node_type, j_tensor_kind, j_data_type, j_delete_required,
    j_delete_random, j_retype_random, j_huge_number, j_deep_nesting, j_duplicate_key, j_truncate_json,
    j_flip_json, j_bin_truncate, j_bin_flip, j_bin_garbage, j_bin_dtype,
]


def netjson_case(bases: dict[str, Any], i: int, root: Path) -> tuple[str, Path, bool]:
    """Case i: (mutation name, path of the mutated _net.json beside its .bin, must it be refused)."""
    rng = random.Random(SEED * 7919 + i)
    mutation = NETJSON_MUTATIONS[i % len(NETJSON_MUTATIONS)]
    case_dir = root / f"net{i:04d}"
    case_dir.mkdir()
    doc, blob, must = mutation(copy.deepcopy(bases["json"]), bases["bin"], case_dir, rng)
    path = case_dir / "q_net.json"
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    else:
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    (case_dir / "q.bin").write_bytes(blob)
    return mutation.__name__[2:], path, must


# -- the tests -----------------------------------------------------------------------------------

def _record(tally: Tally, title: str) -> None:
    """Counts by loader and mutation, appended to FIGURES (one section per test)."""
    by_loader: dict[str, Counter[str]] = {}
    by_mutation: dict[tuple[str, str], Counter[str]] = {}
    for o in tally.outcomes:
        by_loader.setdefault(o.loader, Counter())[o.status] += 1
        by_mutation.setdefault((o.loader, o.mutation), Counter())[o.status] += 1
    slowest = max(tally.outcomes, key=lambda o: o.seconds)
    lines = [f"## {title}", "", f"seed {SEED}; {len(tally.outcomes)} cases; slowest case {slowest.seconds:.2f} s "
             f"([{slowest.loader}] {slowest.mutation})", "",
             "| loader | cases | refused | accepted | defects |", "| --- | --- | --- | --- | --- |"]
    for loader, c in sorted(by_loader.items()):
        lines.append(f"| {loader} | {sum(c.values())} | {c['refused']} | {c['accepted']} | {c['defect']} |")
    lines += ["", "| loader | mutation | must be refused | cases | refused | accepted | defects |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    must = Counter((o.loader, o.mutation) for o in tally.outcomes if o.must_refuse)
    for (loader, mutation), c in sorted(by_mutation.items()):
        lines.append(f"| {loader} | {mutation} | {must[(loader, mutation)]} | {sum(c.values())} | "
                     f"{c['refused']} | {c['accepted']} | {c['defect']} |")
    try:  # one section per test, replaced when the test runs again
        sections = FIGURES.read_text().split("\n## ") if FIGURES.exists() else []
        sections = [s for s in sections if s.strip() and not s.lstrip("# ").startswith(title)]
        text = "\n## ".join([*sections, "\n".join(lines)[3:]])
        FIGURES.write_text(("" if text.startswith("# ") else "# item 7a: model loader fuzzing\n\n## ") + text + "\n")
    except OSError:
        pass
    print("\n".join(lines))


def _check(tally: Tally, title: str) -> None:
    _record(tally, title)
    failures = tally.failures()
    assert not failures, f"{len(failures)} of {len(tally.outcomes)} fuzz cases failed:\n" + "\n".join(failures[:60])


def test_fuzz_onnx_converter(bases: dict[str, Any], tmp_path: Path) -> None:
    """Mutated ONNX files through openqnn.convert + openqnn.save."""
    tally = Tally()
    for i in range(N_ONNX):
        name, path, must = onnx_case(bases, i, tmp_path)
        out_dir = path.parent / "out"

        def run(path: Path = path, out_dir: Path = out_dir) -> None:
            graph = openqnn.convert(path)
            openqnn.save(graph, out_dir / "m.cpp")

        tally.outcomes.append(_run_case(Outcome("onnx", name, must), run, out_dir))
    _check(tally, "ONNX files: openqnn.convert + save")


def test_fuzz_netjson_loader(bases: dict[str, Any], tmp_path: Path) -> None:
    """Mutated _net.json / .bin through openqnn.load and Session(...).run on cpu and htp."""
    tally = Tally()
    for i in range(N_NETJSON):
        name, path, must = netjson_case(bases, i, tmp_path)

        def run(path: Path = path) -> None:
            graph = openqnn.load(path)
            for backend in ("cpu", "htp"):
                out = openqnn.Session(graph, backend=backend).run({"x": X})
                assert set(out) == set(graph.outputs)

        tally.outcomes.append(_run_case(Outcome("netjson", name, must), run, path.parent / "no_outputs_here"))
    _check(tally, "_net.json + .bin: openqnn.load + Session.run (cpu, htp)")


def _cli(args: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return None


def test_fuzz_cli_sample(bases: dict[str, Any], tmp_path: Path) -> None:
    """A sample of the mutated files through qnn-onnx-converter and qnn-net-run in subprocesses: exit 0,
    or exit 2 with one ``error:`` line; no signal, no hang, no file left in the output folder on error."""
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(SEED)
    raw = tmp_path / "x.raw"
    X.tofile(raw)
    input_list = tmp_path / "list.txt"
    input_list.write_text(f"{raw}\n")
    jobs = []
    for i in rng.sample(range(N_ONNX), N_CLI // 2):
        name, path, must = onnx_case(bases, i, tmp_path)
        out = path.parent / "out"
        jobs.append(("qnn-onnx-converter", name, must, out,
                     ["openqnn.cli.onnx_converter", "--input_network", str(path), "--output_path", str(out / "m.cpp")]))
    for i in rng.sample(range(N_NETJSON), N_CLI - N_CLI // 2):
        name, path, must = netjson_case(bases, i, tmp_path)
        out = path.parent / "out"
        jobs.append(("qnn-net-run", name, must, out,
                     ["openqnn.cli.net_run", "--model", str(path), "--backend", rng.choice(["cpu", "htp"]),
                      "--input_list", str(input_list), "--output_dir", str(out)]))
    def timed(job: tuple) -> tuple[subprocess.CompletedProcess[str] | None, float]:
        start = time.perf_counter()
        return _cli(job[4]), time.perf_counter() - start

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(timed, jobs))
    tally = Tally()
    for (tool, name, must, out, _), (proc, seconds) in zip(jobs, results):
        o = Outcome(tool, name, must, seconds=seconds)
        if proc is None:
            o.status, o.detail = "defect", f"no answer within {CLI_TIMEOUT_S} s"
        elif proc.returncode == 0:
            o.status = "accepted"
        elif proc.returncode == 2:
            o.status, o.detail = "refused", proc.stderr.strip()
            lines = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
            left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) if out.exists() else []
            if len(lines) != 1 or "Traceback" in proc.stderr:
                o.status, o.detail = "defect", f"expected one 'error:' line: {proc.stderr[-500:]!r}"
            elif left:
                o.status, o.detail = "defect", f"error left files in {out}: {left}"
        else:  # 1 is an internal error; negative is a signal
            o.status, o.detail = "defect", f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"
        tally.outcomes.append(o)
    _check(tally, "command line sample (subprocess)")


def test_save_failure_leaves_no_files(tmp_path: Path) -> None:
    """A model that cannot be written (a folder holds the _net.json's name) is an OpenQnnError, and no
    lone .bin or temporary file is left behind."""
    graph = openqnn.convert(conv_model())
    (tmp_path / "m_net.json").mkdir()
    with pytest.raises(openqnn.InvalidConfigError, match=r"m_net\.json"):
        openqnn.save(graph, tmp_path / "m.cpp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m_net.json"]


def _net_case(bases: dict[str, Any], tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    doc = copy.deepcopy(bases["json"])
    edit(doc)
    (tmp_path / "q.bin").write_bytes(bases["bin"])
    path = tmp_path / "q_net.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("backend", ["cpu", "htp"])
@pytest.mark.parametrize(("edit", "names"), [
    (lambda d: d["graph"]["tensors"]["x"]["quant_params"]["scale_offset"].update(scale=float("nan")),
     "tensors['x'].quant_params.scale_offset.scale"),
    (lambda d: d["graph"]["tensors"]["x"]["quant_params"]["scale_offset"].update(scale=float("inf")), "scale inf"),
    (lambda d: d["graph"]["tensors"]["x"]["quant_params"]["scale_offset"].update(scale=-0.5), "scale -0.5"),
    (lambda d: d["graph"]["tensors"]["x"]["quant_params"]["scale_offset"].update(scale=0), "scale 0"),
    (lambda d: d["graph"]["tensors"]["x"]["quant_params"].update(bitwidth=7), "bitwidth: 7 is not a legal bitwidth"),
    (lambda d: d.update({"model.bin": "/etc/passwd"}), "model.bin: '/etc/passwd'"),
    (lambda d: d["graph"].update(outputs=[]), "graph.outputs: the graph has no outputs"),
    (lambda d: _conv(d)["tensor_params"]["pad_amount"].update(dims=[2], data=[1, 1]), "pad_amount"),
])
def test_reported_net_json_cases_are_refused(bases: dict[str, Any], tmp_path: Path, edit, names: str,
                                             backend: str) -> None:
    """The fuzzer's reports against _net.json: refused at load with a message naming file and field."""
    path = _net_case(bases, tmp_path, edit)
    with pytest.raises(openqnn.InvalidModelError) as e:
        openqnn.Session(path, backend=backend)
    assert str(path) in str(e.value) and names in str(e.value), str(e.value)


def test_missing_conv_stride_takes_the_schema_default(bases: dict[str, Any], tmp_path: Path) -> None:
    """A Conv2d without ``stride`` (a KeyError before) reads the op schema's default, as the converter
    would have written it."""
    (tmp_path / "ref").mkdir()
    ref = openqnn.Session(_net_case(bases, tmp_path / "ref", lambda d: None), backend="cpu").run({"x": X})
    path = _net_case(bases, tmp_path, lambda d: _conv(d)["tensor_params"].pop("stride"))
    out = openqnn.Session(path, backend="cpu").run({"x": X})
    np.testing.assert_array_equal(out["y"], ref["y"])


@pytest.mark.parametrize(("mutate", "names"), [
    (lambda m: setattr(m.graph.initializer[0], "raw_data", m.graph.initializer[0].raw_data[:-4]), "initializer 'W'"),
    (lambda m: setattr(m.graph.initializer[0], "data_type", 999), "initializer 'W' has data_type 999"),
    (lambda m: _set_attr(m.graph.node[0], "pads", [1, 1]), "node 'conv' (Conv): pads [1, 1]"),
    (lambda m: _set_attr(m.graph.node[0], "strides", [0, 1]), "node 'conv' (Conv)"),
    (lambda m: _set_attr(m.graph.node[0], "kernel_shape", [5, 5]), "kernel_shape [5, 5]"),
    (lambda m: m.graph.output.pop(), "no outputs"),
])
def test_reported_onnx_cases_are_refused(tmp_path: Path, mutate, names: str) -> None:
    """The fuzzer's reports against ONNX files: refused with a message naming the file and the initializer
    or node."""
    model = conv_model()
    mutate(model)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises((openqnn.ConversionError, openqnn.InvalidModelError)) as e:
        openqnn.convert(path)
    assert names in str(e.value), str(e.value)


def test_error_messages_stay_one_line_whatever_the_names_hold(tmp_path: Path) -> None:
    """Found with another fuzz seed: a flipped byte put a newline into an input's name, and the error naming
    it ran over two lines. Every OpenQnnError shows control characters escaped."""
    from openqnn.errors import InvalidModelError

    assert str(InvalidModelError("input 'x\x12\n' has no shape")) == "input 'x\\x12\\n' has no shape"
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x\n1"], ["y"])], "g",
        [helper.make_tensor_value_info("x\n1", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(openqnn.OpenQnnError) as info:
        openqnn.convert(model)
    assert "\n" not in str(info.value) and "x\\n1" in str(info.value)
