"""htp_config.arithmetic = "qnn": QNN's requantization of Max / Min operands and of a Concat's graph inputs
(spec/qnn_eltwise.py, ``QnnConvertSpec`` and ``input_quantize_codes``), without the simulator: the spec gives
known simulator codes (v68 = v73) where exact rounding does not, the fast path equals the reference, and
TFLite's arithmetic keeps its behaviour. (Against the simulator itself: tests/fidelity/test_qnn_concat.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext, QParams
from openqnn.backends.htp.kernels.registry import storage_dtype
from openqnn.backends.htp.spec.qnn_eltwise import (
    QnnConvert16Spec,
    QnnConvertSpec,
    convert_spec_for,
    input_quantize_codes,
    input_quantize_table,
)
from openqnn.ir import DType, Graph, Tensor, TensorKind
from openqnn.ir.tensor import Encoding
from openqnn.ops.build import emit

# (s_i, z_i, s_o, z_o): {input code: the simulator's output code}, codes where exact rounding differs
CONVERT_KNOWN = [
    ((0.03200458362698555, 128, 4.22829008102417, 128), {61: 128, 194: 129}),
    ((0.04393056407570839, 127, 0.018069345504045486, 33), {149: 87, 207: 228}),
    ((0.03140190243721008, 113, 0.007926798425614834, 36), {126: 88, 152: 191}),
    ((0.02656743861734867, 128, 0.17017613351345062, 128), {144: 131, 176: 136}),
    ((0.022319668903946877, 65, 0.7166650891304016, 164), {81: 165, 113: 166}),
    ((0.00332283740863204, 140, 0.052652508020401, 84), {37: 78, 132: 84}),
]
INPUT_KNOWN = [
    ((0.0398445762693882, 128, 0.08808693289756775, 128), {23: 80, 65: 99, 107: 118, 149: 138}),
    ((0.02134942263364792, 5, 0.017139850184321404, 15), {64: 89, 68: 94, 121: 160, 125: 165}),
    ((0.027978889644145966, 128, 0.013107671402394772, 128), {102: 72, 154: 184}),
]


# uint16 (s_i, z_i, s_o, z_o): {input code: the simulator's output code}, codes where exact rounding differs (Max
# on v73, Min on v68; docs/htp-fidelity.md, "16-bit pools, reductions and element-wise ops")
CONVERT16_KNOWN = [
    ((0.0006608586991205812, 17049, 0.0032636509276926517, 9834), {63: 6395, 65508: 19647}),
    ((0.00029294335399754345, 18214, 0.00033856622758321464, 25124), {14: 9376, 64910: 65527}),
]
# a Where operand (v68): {code: the simulator's}, where exact rounding and Max / Min's form differ
SELECT16_KNOWN = ((0.0004509073914960027, 13244, 0.00047781411558389664, 3227), {9879: 52, 10163: 320})


@pytest.mark.parametrize("enc,known", CONVERT16_KNOWN)
def test_convert16_spec_gives_known_simulator_codes(enc, known) -> None:
    s, z, so, zo = enc
    spec = QnnConvert16Spec.of(s, z, so, zo)
    assert spec is not None
    q = np.array(list(known))
    assert spec.apply_np(q).tolist() == list(known.values())
    exact = np.clip(np.floor((q - z) * float(np.float32(s)) / float(np.float32(so)) + 0.5) + zo, 0, 65535)
    assert exact.tolist() != list(known.values())
    np.testing.assert_array_equal(spec.table()[q], spec.apply_np(q))


def test_select16_adds_a_sixteenth_of_a_code() -> None:
    (s, z, so, zo), known = SELECT16_KNOWN
    q = np.array(list(known))
    sel, mm = QnnConvert16Spec.of(s, z, so, zo, select=True), QnnConvert16Spec.of(s, z, so, zo)
    assert sel is not None and mm is not None and sel.rnd - mm.rnd == 1 << 14
    assert sel.apply_np(q).tolist() == list(known.values()) and mm.apply_np(q).tolist() != list(known.values())
    assert QnnConvert16Spec.of(0.01, 100, 0.01, 100) is not None
    assert np.array_equal(QnnConvert16Spec.of(0.01, 100, 0.01, 100).table(), np.arange(65536))  # equal encodings
    assert QnnConvert16Spec.of(1.0, 0, 0.01, 0) is None  # outside the probed ratios


def _exact(enc: tuple[float, int, float, int], q: np.ndarray) -> np.ndarray:
    s, z, so, zo = enc
    return np.clip(np.floor((q - z) * float(np.float32(s)) / float(np.float32(so)) + 0.5) + zo, 0, 255)


@pytest.mark.parametrize("enc,known", CONVERT_KNOWN)
def test_convert_spec_gives_known_simulator_codes(enc, known) -> None:
    spec = QnnConvertSpec.of(*enc)
    assert spec is not None
    q = np.array(sorted(known))
    got = spec.apply_np(q)
    np.testing.assert_array_equal(got, [known[int(k)] for k in q])
    assert np.all(got != _exact(enc, q))  # where exact rounding is a code off
    np.testing.assert_array_equal(spec.table()[q], got)
    assert QnnConvertSpec.from_attrs(spec.to_attrs()) == spec


@pytest.mark.parametrize("enc,known", INPUT_KNOWN)
def test_input_quantization_gives_known_simulator_codes(enc, known) -> None:
    q = np.array(sorted(known))
    got = input_quantize_codes(*enc, q)
    np.testing.assert_array_equal(got, [known[int(k)] for k in q])
    assert np.all(got != _exact(enc, q))


def test_convert_spec_identities_and_reach() -> None:
    q = np.arange(256)
    assert np.array_equal(QnnConvertSpec.of(0.01, 100, 0.01, 100).table(), q)  # equal encodings
    np.testing.assert_array_equal(QnnConvertSpec.of(0.01, 100, 0.01, 90).table(), np.clip(q - 10, 0, 255))
    assert QnnConvertSpec.of(0.16, 0, 0.01, 0) is None  # output steps 16 times finer: not followed
    assert convert_spec_for("v73", "qnn", 0.02, 3, 0.01, 5, (8, 8)) is not None
    assert convert_spec_for("v73", "tflite", 0.02, 3, 0.01, 5, (8, 8)) is None
    assert convert_spec_for("v75", "qnn", 0.02, 3, 0.01, 5, (8, 8)) is None
    assert convert_spec_for("v68", "qnn", 0.02, 3, 0.01, 5, (8, 16)) is None
    assert isinstance(convert_spec_for("v68", "qnn", 0.02, 3, 0.01, 5, (16, 16)), QnnConvert16Spec)
    assert convert_spec_for("v68", "qnn", 0.02, 3, 0.01, 5, (16, 16), signed=True) is None
    assert input_quantize_table("v68", "qnn", 0.02, 3, 0.01, 5, (8, 8)) is not None
    assert input_quantize_table("v68", "tflite", 0.02, 3, 0.01, 5, (8, 8)) is None


def _enc(rng: np.random.Generator) -> Encoding:
    return Encoding(8, (float(np.exp(rng.uniform(-5, -2))),), (-int(rng.integers(0, 256)),))


def _graph(op: str, shapes: list[tuple[int, ...]], encs: list[Encoding], out: Encoding, attrs: dict) -> Graph:
    g = Graph("g")
    names = []
    for i, (shape, enc) in enumerate(zip(shapes, encs)):
        t = g.add_tensor(Tensor(f"x{i}", shape, DType.FLOAT_32, TensorKind.APP_WRITE))
        t.encoding = enc
        g.inputs.append(t.name)
        names.append(t.name)
    (y,) = emit(g, op, names, attrs, outputs=["out"])
    g.tensors[y].kind = TensorKind.APP_READ
    g.tensors[y].encoding = out
    g.outputs.append(y)
    return g


def _run(g: Graph, arch: str, arithmetic: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic=arithmetic))
    feeds = [rng.integers(0, 256, g.tensors[x].shape) for x in step.inputs]
    ref = step.reference(*[np.asarray(f, np.int64) for f in feeds])
    fast = step.fast(*[torch.from_numpy(np.asarray(f, np.int64)).to(storage_dtype(8)) for f in feeds])
    assert fast.dtype == storage_dtype(8)
    np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
    return ref, {"feeds": feeds, "plan": step.plan}


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("op", ["ElementWiseMaximum", "ElementWiseMinimum"])
@pytest.mark.parametrize("seed", range(4))
def test_max_min_fast_equals_the_qnn_spec(op: str, arch: str, seed: int) -> None:
    rng = np.random.default_rng([seed, len(op)])
    ea, eb, eo = _enc(rng), _enc(rng), _enc(rng)
    shape_b = [(2, 3, 5, 7), (1, 1, 5, 7), (7,), (2, 3, 1, 1)][seed]
    g = _graph(op, [(2, 3, 5, 7), shape_b], [ea, eb], eo, {})
    got, info = _run(g, arch, "qnn", rng)
    sa, sb = QnnConvertSpec.of(ea.scale[0], -ea.offset[0], eo.scale[0], -eo.offset[0]), \
        QnnConvertSpec.of(eb.scale[0], -eb.offset[0], eo.scale[0], -eo.offset[0])
    if sa is None or sb is None:  # outside the spec: TFLite's
        assert "qnn_a" not in info["plan"].attrs
        return
    assert "qnn_a" in info["plan"].attrs
    f = np.maximum if op == "ElementWiseMaximum" else np.minimum
    np.testing.assert_array_equal(got, f(sa.apply_np(info["feeds"][0]), sb.apply_np(info["feeds"][1])))
    _, tfl = _run(g, arch, "tflite", rng)  # TFLite's arithmetic keeps its rescale
    assert "qnn_a" not in tfl["plan"].attrs


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("op", ["ElementWiseMaximum", "ElementWiseMinimum"])
def test_max_min_16_bit_fast_equals_the_qnn_spec(op: str, arch: str) -> None:
    rng = np.random.default_rng([7, len(op)])
    for shape_b in [(2, 3, 5, 7), (1, 1, 5, 7)]:
        ea, eb, eo = (Encoding(16, (float(np.exp(rng.uniform(-9, -6))),), (-int(rng.integers(0, 65536)),))
                      for _ in range(3))
        g = _graph(op, [(2, 3, 5, 7), shape_b], [ea, eb], eo, {})
        node = g.nodes[0]
        step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic="qnn"))
        assert "qnn_a" in step.plan.attrs
        feeds = [rng.integers(0, 65536, g.tensors[x].shape) for x in step.inputs]
        ref = step.reference(*feeds)
        fast = step.fast(*[torch.from_numpy(f).to(storage_dtype(16)) for f in feeds])
        np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
        sa, sb = (QnnConvert16Spec.of(e.scale[0], -e.offset[0], eo.scale[0], -eo.offset[0]) for e in (ea, eb))
        assert sa is not None and sb is not None
        f = np.maximum if op == "ElementWiseMaximum" else np.minimum
        np.testing.assert_array_equal(ref, f(sa.apply_np(feeds[0]), sb.apply_np(feeds[1])))


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_concat_of_graph_inputs_fast_equals_the_qnn_spec(arch: str) -> None:
    rng = np.random.default_rng(11)
    encs = [_enc(rng), _enc(rng), _enc(rng)]
    eo = _enc(rng)
    encs[2] = eo  # one input already in the output's encoding: moved as it is
    g = _graph("Concat", [(1, 2, 3, 4), (1, 5, 3, 4), (1, 1, 3, 4)], encs, eo, {"axis": 1})
    got, info = _run(g, arch, "qnn", rng)
    parts = info["plan"].attrs["parts"]
    assert ["table" in p for p in parts] == [True, True, False]
    qo = QParams.of(eo)
    want = [input_quantize_codes(e.scale[0], -e.offset[0], float(qo.scale[0]), int(qo.zero_point[0]), f)
            for e, f in zip(encs[:2], info["feeds"][:2])] + [info["feeds"][2]]
    np.testing.assert_array_equal(got, np.concatenate(want, 1))
    _, tfl = _run(g, arch, "tflite", rng)  # TFLite's arithmetic: requantized as before
    assert all("flow" in p for p in tfl["plan"].attrs["parts"])


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_clip_16_bit_fast_equals_the_qnn_spec(arch: str) -> None:
    """A uint16 ReluMinMax between encodings: Where's requantization (QnnConvert16Spec, select) then the bounds."""
    rng = np.random.default_rng(9)
    ei, eo = Encoding(16, (3e-4,), (-30000,)), Encoding(16, (9e-5,), (0,))
    g = _graph("ReluMinMax", [(2, 3, 5, 7)], [ei], eo, {"min_value": 0.0, "max_value": 5.0})
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic="qnn"))
    assert "qnn" in step.plan.attrs
    x = rng.integers(0, 65536, (2, 3, 5, 7))
    ref = step.reference(x)
    np.testing.assert_array_equal(ref, step.fast(torch.from_numpy(x).to(storage_dtype(16))).numpy().astype(np.int64))
    spec = QnnConvert16Spec.of(3e-4, 30000, 9e-5, 0, select=True)
    assert spec is not None
    np.testing.assert_array_equal(ref, np.clip(spec.apply_np(x), 0, round(5.0 / float(np.float32(9e-5)))))
    tfl = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic="tflite"))
    assert "qnn" not in tfl.plan.attrs
