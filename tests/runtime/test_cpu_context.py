"""cpu context binaries: ``openqnn.compile(graph, "cpu").save(p)`` then ``Session(p)`` runs bit-identically to
``Session(net.json, backend="cpu")`` -- a real MobileNetV2, fusions, shared GEMMs, a multi-output op, a shared
weight, a quantized graph simulated on cpu -- and opening a context runs no fusion analysis."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import make_model
from openqnn.backends.cpu import fusion, steps
from openqnn.backends.cpu.plan import Plan
from openqnn.cli import context_binary_generator, net_run
from openqnn.errors import ContextError
from openqnn.runtime.context import open_context

F = TensorProto.FLOAT


def _small_model():  # type: ignore[no-untyped-def]
    """conv -> conv + add + relu (fused) -> conv + relu (fused, the same weights as the one before) -> three
    Gemms of one input (one shared GEMM) -> a Split (two outputs) and a Clip with no upper bound."""
    rng = np.random.default_rng(0)

    def init(name: str, *shape: int) -> object:
        return numpy_helper.from_array((0.3 * rng.standard_normal(shape)).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "c1"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2", "b2"], ["c3"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c3"], ["r3"]),
             helper.make_node("Flatten", ["r3"], ["f"]),
             helper.make_node("Gemm", ["f", "wq", "bq"], ["q"], transB=1),
             helper.make_node("Gemm", ["f", "wk", "bk"], ["k"], transB=1),
             helper.make_node("Gemm", ["f", "wv", "bv"], ["v"], transB=1),
             helper.make_node("Split", ["q"], ["s0", "s1"], axis=1, num_outputs=2),
             helper.make_node("Add", ["k", "v"], ["kv"]),
             helper.make_node("Clip", ["kv", "lo"], ["y"])]
    inits = [init("w1", 4, 3, 3, 3), init("b1", 4), init("w2", 4, 4, 3, 3), init("b2", 4),
             init("wq", 6, 256), init("bq", 6), init("wk", 6, 256), init("bk", 6), init("wv", 6, 256), init("bv", 6),
             numpy_helper.from_array(np.array(-0.5, np.float32), "lo")]
    return make_model(nodes, [("x", F, [1, 3, 8, 8])],
                      [("s0", F, [1, 3]), ("s1", F, [1, 3]), ("v", F, [1, 6]), ("y", F, [1, 6])], inits, opset=18)


def _feeds(n: int = 3) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(2)
    return [{"x": rng.standard_normal((1, 3, 8, 8), dtype=np.float32)} for _ in range(n)]


def _compare(graph: openqnn.Graph, tmp_path: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    """Save ``graph``, compile its _net.json for cpu; the context must run bit-identically to the _net.json."""
    json_path, _ = openqnn.save(graph, tmp_path / "model.cpp")
    ctx = openqnn.compile(openqnn.load(json_path), "cpu").save(tmp_path / "cpu_context.bin")
    want, got = openqnn.Session(json_path, backend="cpu"), openqnn.Session(ctx)
    assert got.backend.name == "cpu"
    for f in feeds:
        w, g = want.run(f), got.run(f)
        assert list(g) == list(w)
        for name in w:
            assert g[name].dtype == w[name].dtype and np.array_equal(g[name], w[name]), name
    return ctx


def _kernels(ctx: Path) -> list[str]:
    return [s.kernel for s in open_context(ctx).graph().steps]


def test_mobilenet_v2_context_is_bit_identical(tmp_path: Path) -> None:
    from benchmarks.zoo import MODELS, export, make_inputs

    spec = MODELS["mobilenet_v2"]
    graph = openqnn.convert(export(spec, tmp_path), input_dims={"input": (1, 3, 224, 224)})
    ctx = _compare(graph, tmp_path, [make_inputs(spec, seed=s) for s in range(2)])
    kernels = _kernels(ctx)
    # 16 inverted residual blocks: expansion, depthwise and projection (10 of them with the residual Add) in one step
    # each; the other convolutions with their epilogues
    pw_dw = [s.op_type for s in open_context(ctx).graph().steps if s.kernel == "cpu.pw_dw"]
    assert len(pw_dw) == 16 and all("DepthWiseConv2d+ReluMinMax+Conv2d" in o for o in pw_dw)
    assert sum(o.endswith("+ElementWiseAdd") for o in pw_dw) == 10 and kernels.count("cpu.fused") >= 3
    assert set(kernels) <= {"cpu.node", "cpu.fused", "cpu.pw_dw"}


def test_fusions_shared_gemm_and_multi_output(tmp_path: Path) -> None:
    graph = openqnn.convert(_small_model())
    ctx = _compare(graph, tmp_path, _feeds())
    prepared = open_context(ctx).graph()
    kinds = {s.kernel: s for s in prepared.steps}
    assert {"cpu.node", "cpu.fused", "cpu.shared_gemm"} <= set(kinds), [s.op_type for s in prepared.steps]
    assert kinds["cpu.shared_gemm"].op_type.startswith("FullyConnected*")
    assert any(len(s.outputs) == 2 for s in prepared.steps)  # the Split
    # the weights both convolutions read are stored once in the file
    from openqnn.runtime.context_format import describe_context

    info = describe_context(ctx)
    assert info["arrays"]["referenced"] > info["arrays"]["stored"], info["arrays"]


@pytest.mark.parametrize("config", [
    openqnn.QuantizerConfig(use_per_channel_quantization=True),
    openqnn.QuantizerConfig(weights_bitwidth=4, weights_block_size=1, weights_block_scale_bitwidth=4),  # LPBQ
], ids=["per_channel", "lpbq"])
def test_quantized_graph_simulated_on_cpu(tmp_path: Path, config: openqnn.QuantizerConfig) -> None:
    rng = np.random.default_rng(1)
    cal = [{"x": rng.standard_normal((1, 3, 8, 8), dtype=np.float32)} for _ in range(8)]
    q = openqnn.quantize(openqnn.convert(_small_model()), cal, config)
    ctx = _compare(q, tmp_path, _feeds())
    assert set(_kernels(ctx)) == {"cpu.node"}  # a simulation fuses nothing: every activation is fake-quantized
    assert open_context(ctx).graph().io.tensors["x"].encoding is not None
    # its quantized weights are kept as the model has them, and not laid out beside them too
    assert not any("prepared" in s.attrs for s in open_context(ctx).graph().steps)


def test_opening_runs_no_fusion_analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = openqnn.convert(_small_model())
    ctx = openqnn.compile(graph, "cpu").save(tmp_path / "cpu_context.bin")
    want = openqnn.Session(graph, backend="cpu").run(_feeds(1)[0])

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("opening a context analysed the graph")

    for module in (steps, fusion):
        monkeypatch.setattr(module, "fuse_epilogues", refuse)
        monkeypatch.setattr(module, "share_gemms", refuse)
    monkeypatch.setattr(steps, "plan_steps", refuse)
    got = openqnn.Session(ctx).run(_feeds(1)[0])
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_refusals_at_plan_time(tmp_path: Path) -> None:
    graph = openqnn.convert(_small_model())
    graph.nodes[0].attrs["pads_note"] = {1, 2}  # not JSON: refused when planned, nothing written
    with pytest.raises(openqnn.UnsupportedOpError, match=rf"node '{graph.nodes[0].name}'.*not JSON"):
        openqnn.compile(graph, "cpu")
    graph = openqnn.convert(_small_model())
    graph.nodes[1].attrs["group"] = 1.5  # JSON, but an int attribute: it would not read back as it is
    with pytest.raises(openqnn.UnsupportedOpError, match=r"step 'c1' .* does not read back"):
        openqnn.compile(graph, "cpu")
    graph = openqnn.convert(_small_model())
    graph.outputs.append("w1")
    with pytest.raises(openqnn.UnsupportedOpError, match="output 'w1' is a constant"):
        openqnn.compile(graph, "cpu")


def test_bad_plans_are_refused_on_bind() -> None:
    prepared = openqnn.compile(openqnn.convert(_small_model()), "cpu").graph()
    with pytest.raises(openqnn.InvalidModelError, match="which neither the graph's inputs nor an earlier step"):
        Plan.from_plans(prepared.io, prepared.steps[::-1])
    with pytest.raises(ContextError, match=r"'cpu\.nope' is not a cpu step kernel"):
        Plan.from_plans(prepared.io, [replace(prepared.steps[0], kernel="cpu.nope"), *prepared.steps[1:]])
    found = next(((i, s) for i, s in enumerate(prepared.steps) if "prepared" in s.attrs), None)
    if found is None:
        pytest.skip("no kernel here lays its weights out (neither the native float32 kernels nor oneDNN)")
    i, step = found
    doc = step.attrs["prepared"]
    for bad in ({**doc, "arrays": [*doc["arrays"], "missing#0"]},  # an operand the step does not hold
                {**doc, "sources": {t: {**s, "of": "missing#0"} for t, s in doc["sources"].items()}}):
        steps = list(prepared.steps)
        steps[i] = replace(step, attrs={**step.attrs, "prepared": bad})
        with pytest.raises(ContextError, match="prepared operands are not its arrays' names"):
            Plan.from_plans(prepared.io, steps)


def test_generator_writes_a_cpu_context(tmp_path: Path) -> None:
    json_path, _ = openqnn.save(openqnn.convert(_small_model()), tmp_path / "model.cpp")
    feeds = _feeds(2)
    for i, f in enumerate(feeds):
        f["x"].tofile(tmp_path / f"in{i}.raw")
    (tmp_path / "inputs.txt").write_text("".join(f"{tmp_path / f'in{i}.raw'}\n" for i in range(len(feeds))))
    out = tmp_path / "ctx"
    assert context_binary_generator.main(["--model", str(json_path), "--backend", "cpu", "--output_dir",
                                          str(out)]) == 0
    assert (out / "cpu_context.bin").is_file()
    specs = json.loads((out / "input_specs.json").read_text())
    assert specs["inputs"][0]["name"] == "x" and specs["inputs"][0]["encoding"] is None
    assert net_run.main(["--retrieve_context", str(out / "cpu_context.bin"), "--input_list",
                         str(tmp_path / "inputs.txt"), "--output_dir", str(tmp_path / "results")]) == 0
    want = openqnn.Session(json_path, backend="cpu")
    for i, f in enumerate(feeds):
        ref = want.run(f)
        for name in ref:
            got = np.fromfile(tmp_path / "results" / f"Result_{i}" / f"{name}.raw", np.float32)
            np.testing.assert_array_equal(got, ref[name].ravel())


def _mixed_model():  # type: ignore[no-untyped-def]
    """A 3x3 convolution of 8 channels (oneDNN's on several threads, where every convolution then runs on oneDNN), a
    1x1 convolution and a depthwise one (native on one thread), then a FullyConnected."""
    rng = np.random.default_rng(7)

    def init(name: str, *shape: int) -> object:
        return numpy_helper.from_array((0.3 * rng.standard_normal(shape)).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"]),
             helper.make_node("Conv", ["c2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], group=16),
             helper.make_node("Flatten", ["c3"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    inits = [init("w1", 16, 8, 3, 3), init("b1", 16), init("w2", 16, 16, 1, 1), init("w3", 16, 1, 3, 3),
             init("b3", 16), init("wf", 5, 16 * 36), init("bf", 5)]
    return make_model(nodes, [("x", F, [1, 8, 6, 6])], [("y", F, [1, 5])], inits)


def _mixed_feeds() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(8)
    return [{"x": rng.standard_normal((1, 8, 6, 6), dtype=np.float32)} for _ in range(2)]


def _native_or_skip() -> None:
    from openqnn.backends.cpu import native

    if native.library() is None:
        pytest.skip("the native float32 kernels are not built on this machine")


def test_weights_are_kept_as_the_kernels_read_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The native kernels' packed weights are in the context in their stead: opening packs nothing and reads no weight
    back, and each weight is stored once."""
    _native_or_skip()
    from openqnn.backends.cpu import native
    from openqnn.backends.cpu.kernels import prepared

    graph = openqnn.convert(_mixed_model())
    json_path, _ = openqnn.save(graph, tmp_path / "model.cpp")
    want = openqnn.Session(json_path, backend="cpu", num_threads=1)
    ctx = openqnn.compile(openqnn.load(json_path), "cpu").save(tmp_path / "cpu_context.bin")
    plans = open_context(ctx).graph().steps
    held = {name for p in plans for name in p.arrays}
    sources = {t: s for p in plans for t, s in p.attrs.get("prepared", {}).get("sources", {}).items()}
    # (w1: oneDNN's convolution, kept as [cout, cin, kh, kw], which oneDNN lays out for the CPU it runs on)
    assert {"w1", "w2", "w3", "b3", "wf", "bf"} == set(sources) and not held & set(sources)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights laid out again while opening a context")

    monkeypatch.setattr(native, "pack", refuse)
    monkeypatch.setattr(prepared, "read_source", refuse)
    from openqnn.backends.cpu.kernels import registry

    monkeypatch.setattr(registry, "read_source", refuse)
    got = openqnn.Session(ctx, num_threads=1)
    for f in _mixed_feeds():
        w, g = want.run(f), got.run(f)
        assert np.array_equal(g["y"], w["y"])


def test_weights_read_back_for_another_layout_or_kernel(tmp_path: Path) -> None:
    """A context whose panels this machine's kernels do not read (another panel width: renamed here), or opened on
    two threads (oneDNN's convolutions, which take the weights as the model has them), reads its weights back from the
    stored operands exactly: the same bits as preparing the _net.json there."""
    _native_or_skip()
    from openqnn.backends.cpu import native

    graph = openqnn.convert(_mixed_model())
    json_path, _ = openqnn.save(graph, tmp_path / "model.cpp")
    ctx = openqnn.compile(openqnn.load(json_path), "cpu").save(tmp_path / "cpu_context.bin")
    prepared = open_context(ctx).graph()
    width = f"sgemm{native.panel_width()}:"

    def other(plan):  # type: ignore[no-untyped-def]
        doc = plan.attrs.get("prepared")
        if doc is None:
            return plan
        rename = {n: n.replace(width, "sgemm999:") for n in doc["arrays"]}
        sources = {t: {**s, "of": rename[s["of"]]} for t, s in doc["sources"].items()}
        return replace(plan, attrs={**plan.attrs, "prepared": {"arrays": sorted(rename.values()), "sources": sources}},
                       arrays={rename.get(k, k): v for k, v in plan.arrays.items()})

    assert any(width in n for p in prepared.steps for n in p.arrays)
    moved = Plan.from_plans(prepared.io, [other(p) for p in prepared.steps])
    want = Plan(openqnn.load(json_path))
    for f in _mixed_feeds():
        x = want.to_torch_inputs(f)
        assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(want.run_torch(x), moved.run_torch(x)))
    two = openqnn.Session(ctx, num_threads=2)
    assert any(path == "onednn" for _, path in two._exe.paths)  # type: ignore[attr-defined]
    ref = openqnn.Session(json_path, backend="cpu", num_threads=2)
    for f in _mixed_feeds():
        assert np.array_equal(two.run(f)["y"], ref.run(f)["y"])


def test_read_source_undoes_the_layouts() -> None:
    from openqnn.backends.cpu.kernels.prepared import read_source

    rng = np.random.default_rng(3)
    w = rng.standard_normal((7, 19)).astype(np.float32)  # [k, n]: 19 columns in panels of 8
    panels = np.zeros((3, 7, 8), np.float32)
    for j in range(3):
        cols = w[:, 8 * j:8 * j + 8]
        panels[j, :, :cols.shape[1]] = cols
    flat = {"p": panels.reshape(-1)}
    assert np.array_equal(read_source({"of": "p", "panels": [7, 8], "cols": [0, 19]}, flat, (7, 19)), w)
    assert np.array_equal(read_source({"of": "p", "panels": [7, 8], "cols": [4, 11], "transposed": True}, flat,
                                      (7, 7)), w[:, 4:11].T)
    with pytest.raises(ValueError):
        read_source({"of": "p", "panels": [5, 8]}, flat, (7, 19))


def test_borrowed_operands_are_aligned_and_quiet() -> None:
    """An operand read from a context is used in place where it is 64-byte aligned, else copied into an aligned
    buffer; neither warns about a read-only array."""
    import warnings

    from openqnn.backends.plan import borrow

    base = np.zeros(256, np.float32)
    start = (-base.ctypes.data % 64) // 4  # the first 64-byte aligned element
    for offset in (0, 1):
        a = base[start + offset:start + offset + 64]
        a.flags.writeable = False
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            t = borrow(a)
        assert t.data_ptr() % 64 == 0 and np.array_equal(t.numpy(), a)
        assert (t.data_ptr() == a.ctypes.data) == (offset == 0)
