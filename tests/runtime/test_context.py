"""Compiled models: openqnn.compile -> Context.save -> Session("x.bin"), bit-identical to preparing, with
nothing prepared again on open, and clean refusals."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import make_model
from openqnn.backends.htp import kernels as htp_kernels
from openqnn.backends.htp import native
from openqnn.backends.htp.kernels import conv, gemm, requant
from openqnn.backends.htp.kernels.registry import HtpBuildContext, background_binding, deferred
from openqnn.backends.htp.spec.qnn_matmul import QnnMatMulSpec
from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec
from openqnn.errors import ContextError
from openqnn.runtime.config import BackendConfig, HtpConfig
from openqnn.runtime.context import open_context
from openqnn.runtime.context_format import describe_context, read_context, write_context

F = TensorProto.FLOAT


def _cnn():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)

    def init(name: str, *shape: int) -> object:
        return numpy_helper.from_array((0.3 * rng.standard_normal(shape)).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Sigmoid", ["c2"], ["s2"]),
             helper.make_node("MaxPool", ["s2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
             helper.make_node("Softmax", ["y"], ["prob"])]
    inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("w2", 8, 1, 3, 3), init("b2", 8), init("wf", 10, 128),
             init("bf", 10)]
    return make_model(nodes, [("x", F, [1, 3, 8, 8])], [("prob", F, [1, 10])], inits)


@pytest.fixture(scope="module")
def quantized() -> openqnn.Graph:
    rng = np.random.default_rng(1)
    cal = [{"x": rng.random((1, 3, 8, 8), dtype=np.float32)} for _ in range(8)]
    return openqnn.quantize(openqnn.convert(_cnn()), cal, openqnn.QuantizerConfig(use_per_channel_quantization=True))


@pytest.fixture(scope="module")
def saved(quantized: openqnn.Graph, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return openqnn.compile(quantized, "htp").save(tmp_path_factory.mktemp("ctx") / "htp_context.bin")


def _feeds(n: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(2)
    return [{"x": rng.random((1, 3, 8, 8), dtype=np.float32)} for _ in range(n)]


def test_context_runs_bit_identical_to_preparing(quantized: openqnn.Graph, saved: Path) -> None:
    prepared, opened = openqnn.Session(quantized, backend="htp"), openqnn.Session(saved)
    assert opened.backend.name == "htp" and [t.name for t in opened.inputs] == ["x"]
    for f in _feeds():
        a, b = prepared.run(f, native_outputs=True), opened.run(f, native_outputs=True)
        np.testing.assert_array_equal(a["prob"], b["prob"])
        np.testing.assert_array_equal(prepared.run(f)["prob"], opened.run(f)["prob"])
    ref = openqnn.Session(saved, backend="libQnnHtp.so")  # the context's own backend may be named
    np.testing.assert_array_equal(ref.run(_feeds(1)[0])["prob"], opened.run(_feeds(1)[0])["prob"])


def test_opening_a_context_prepares_nothing(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No kernel builder runs and no build context is made: kernel choice, tables, packing and proofs all
    come from the file."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("prepare-time work while opening a context")

    for op in list(htp_kernels.HTP_KERNELS):
        monkeypatch.setitem(htp_kernels.HTP_KERNELS, op, refuse)
    monkeypatch.setattr(HtpBuildContext, "__init__", refuse)
    # the searches and proofs prepare runs: requantization forms, exactness bounds, channel splits
    monkeypatch.setattr(requant.Requant, "_decide", refuse)
    monkeypatch.setattr(requant.Requant, "_window", refuse)
    monkeypatch.setattr(requant.Requant, "_affine", refuse)
    monkeypatch.setattr(requant, "quantize_multiplier", refuse)
    monkeypatch.setattr(conv, "channel_parts", refuse)
    monkeypatch.setattr(conv, "qconv_bound", refuse)
    monkeypatch.setattr(gemm.FusedSetup, "data", refuse)
    monkeypatch.setattr(gemm, "col_bound", refuse)
    # QNN's requantization constants (the default arithmetic) are read from the plan, not derived again
    monkeypatch.setattr(QnnRequantSpec, "of", refuse)
    monkeypatch.setattr(QnnMatMulSpec, "of", refuse)
    monkeypatch.setattr(native, "qnn_int_form", refuse)  # the int32 form's proof
    if native.int8_available():  # the fused int8 kernels' requantization is bound from the plan: none is made
        monkeypatch.setattr(requant._Accumulator, "of", refuse)
        monkeypatch.setattr(requant.QnnRequant, "from_attrs", refuse)
        # and their small weights are kept packed as this machine's kernels read them: nothing is packed again
        assert any(p.attrs.get("fused_packing") == native.int8_isa() for p in open_context(saved).graph().steps)
        monkeypatch.setattr(native, "int8_gemm_pack", refuse)
        monkeypatch.setattr(native.library(), "gemm_pack", refuse)
    sess = openqnn.Session(saved)
    assert sess.run(_feeds(1)[0])["prob"].shape == (1, 10)


def test_weights_packed_for_other_kernels_are_packed_again(quantized: openqnn.Graph, saved: Path) -> None:
    """A plan whose int8 weights are packed for other kernels (another machine's: named so here) packs them from its
    weights on binding: the same bits."""
    if not native.int8_available():
        pytest.skip("no native int8 kernels here")
    from dataclasses import replace

    from openqnn.backends.htp.arch import ARCHS
    from openqnn.backends.htp.executable import HtpExecutable

    prepared = open_context(saved).graph()
    # (another machine's packing: named so, and its bytes unusable here; taken as they are, the outputs would differ)
    other = [replace(p, attrs={**p.attrs, "fused_packing": "elsewhere"},
                     arrays={**p.arrays, "fused_packed": np.zeros_like(p.arrays["fused_packed"])})
             if "fused_packing" in p.attrs else p for p in prepared.steps]
    assert other != list(prepared.steps)
    moved = HtpExecutable.from_plans(prepared.io, other, ARCHS[prepared.arch])
    ref = openqnn.Session(quantized, backend="htp")
    for f in _feeds():
        np.testing.assert_array_equal(moved.run(f, native_outputs=True)["prob"], ref.run(f, native_outputs=True)["prob"])


def _convnet():  # type: ignore[no-untyped-def]
    """3x3 convolutions deep enough for the int8 ones (the native im2col GEMM's or oneDNN's: their weights bind in
    the background)."""
    rng = np.random.default_rng(5)

    def init(name: str, *shape: int) -> object:
        return numpy_helper.from_array((0.2 * rng.standard_normal(shape)).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["y"], pads=[1, 0, 1, 0], strides=[2, 2])]
    inits = [init("w1", 16, 8, 3, 3), init("b1", 16), init("w2", 32, 16, 3, 3), init("b2", 32),
             init("w3", 8, 32, 3, 3), init("b3", 8)]
    return make_model(nodes, [("x", F, [1, 8, 12, 12])], [("y", F, [1, 8, 6, 5])], inits)


def test_convolutions_packed_in_the_background_are_bit_identical(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    feeds = [{"x": rng.random((1, 8, 12, 12), dtype=np.float32)} for _ in range(6)]
    q = openqnn.quantize(openqnn.convert(_convnet()), feeds[:4],
                         openqnn.QuantizerConfig(use_per_channel_quantization=True))
    ctx = openqnn.compile(q, "htp")
    kinds = [s.attrs["kind"] for s in ctx.graph().steps if s.kernel == "htp.conv2d"]
    if conv._onednn_qconv_ok(torch.device("cpu")) or conv.native.int8_available():  # kinds binding in the background
        assert {"int8_conv", "im2col_native"} & set(kinds), kinds
    path = ctx.save(tmp_path / "conv.bin")
    prepared, opened = openqnn.Session(q, backend="htp"), openqnn.Session(path)
    for f in feeds:
        np.testing.assert_array_equal(prepared.run(f, native_outputs=True)["y"], opened.run(f, native_outputs=True)["y"])


def test_background_binding_waits_for_every_job_and_names_a_failure() -> None:
    done: list[int] = []

    def slow(i: int) -> int:
        time.sleep(0.01)
        done.append(i)
        return i

    def broken() -> None:
        raise RuntimeError("no such primitive\nsecond line")

    with background_binding():
        cells = [deferred("job", slow, i) for i in range(5)]
        assert cells == [[]] * 5  # filled only when the block ends, after waiting for every job
    assert cells == [[i] for i in range(5)] and sorted(done) == list(range(5))
    assert deferred("now", slow, 7) == [7]  # outside the block: called at once
    with pytest.raises(openqnn.InvalidModelError, match=r"^packing: RuntimeError: no such primitive; prepare"):
        with background_binding():
            deferred("packing", broken)
            late = deferred("late", slow, 9)
    assert late == [9]  # the other jobs were still waited for


def test_several_graphs_share_arrays(quantized: openqnn.Graph, tmp_path: Path) -> None:
    one = openqnn.compile(quantized, "htp").save(tmp_path / "one.bin")
    two = openqnn.compile({"a": quantized, "b": quantized}, "htp").save(tmp_path / "two.bin")
    arrays = describe_context(two)["arrays"]
    assert arrays["referenced_bytes"] >= 2 * describe_context(one)["arrays"]["stored_bytes"]
    assert arrays["stored_bytes"] == describe_context(one)["arrays"]["stored_bytes"]  # stored once
    ctx = open_context(two)
    assert sorted(ctx.graphs) == ["a", "b"]
    with pytest.raises(openqnn.InvalidConfigError, match="holds 2 graphs"):
        openqnn.Session(two)
    f = _feeds(1)[0]
    np.testing.assert_array_equal(openqnn.Session(two, graph_name="b").run(f)["prob"],
                                  openqnn.Session(one).run(f)["prob"])


def test_refusals(quantized: openqnn.Graph, saved: Path, tmp_path: Path) -> None:
    data = saved.read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x10
    (tmp_path / "flip.bin").write_bytes(bytes(flipped))
    for name in ("cut.bin", "flip.bin"):
        with pytest.raises(openqnn.InvalidModelError, match=name):
            openqnn.Session(tmp_path / name)
    with pytest.raises(openqnn.InvalidModelError, match="cpu"):
        openqnn.Session(saved, backend="cpu")
    with pytest.raises(openqnn.InvalidConfigError, match=r"prepared for v73, and v75 was asked for"):
        openqnn.Session(saved, config=BackendConfig(htp=HtpConfig(dsp_arch="v75")))
    with pytest.raises(openqnn.InvalidConfigError, match="cannot write context binaries yet"):
        openqnn.compile(quantized, "gpu")


def test_session_refuses_a_flip_anywhere_as_corrupt(saved: Path, tmp_path: Path) -> None:
    """Session binds while the checksum runs in a worker thread: a flipped byte in the plans' JSON, the arrays'
    header, the weights or the header is still refused as corrupt (the checksum is waited for before anything
    else is said), on one line, and no session is made."""
    data = saved.read_bytes()
    meta_len, arr_off = struct.unpack_from("<QQ", data, 64)
    spots = {"metadata": 128 + meta_len // 2, "a plan's key": data.index(b'"kernel"', 128) + 2,
             "arrays header": arr_off + 8 + 10, "weights": len(data) - 5, "version": 9}
    for what, at in spots.items():
        flipped = bytearray(data)
        flipped[at] ^= 0x04
        bad = tmp_path / f"flip_{what.replace(' ', '_')}.bin"
        bad.write_bytes(bytes(flipped))
        with pytest.raises(openqnn.InvalidModelError) as e:
            openqnn.Session(bad)
        msg = str(e.value)
        assert "\n" not in msg and str(bad) in msg, (what, msg)
        if what != "version":  # a flip in the format version is refused by its number, before any checksum
            assert "checksum mismatch" in msg, (what, msg)


def test_session_refuses_intact_steps_that_do_not_bind(saved: Path, tmp_path: Path) -> None:
    """A file with a good checksum whose plan lacks what a kernel's binder reads (not one openqnn wrote): one
    ContextError line naming the file, not the binder's KeyError."""
    raw = read_context(saved)
    name, g = next(iter(raw.graphs.items()))
    plan = json.loads(json.dumps(g.plan).replace('"qmax"', '"qmaz"'))
    assert plan != g.plan
    forged = tmp_path / "forged.bin"
    write_context(forged, backend=raw.header.backend, arch=raw.header.arch, graphs={name: plan},
                  arrays={name: dict(g.arrays)})
    with pytest.raises(ContextError, match=r"forged\.bin: its prepared steps do not bind \(KeyError") as e:
        openqnn.Session(forged)
    assert "\n" not in str(e.value)
    # an array no step names, or a step naming an array the file lacks
    stray = tmp_path / "stray.bin"
    write_context(stray, backend=raw.header.backend, arch=raw.header.arch, graphs={name: g.plan},
                  arrays={name: {**g.arrays, "0/zzz": np.zeros(3, np.int8)}})
    with pytest.raises(ContextError, match=r"stray\.bin: graph '.*': array '0/zzz' belongs to no step"):
        openqnn.Session(stray)
    lacking = tmp_path / "lacking.bin"
    first = next(iter(g.arrays))
    write_context(lacking, backend=raw.header.backend, arch=raw.header.arch, graphs={name: g.plan},
                  arrays={name: {k: v for k, v in g.arrays.items() if k != first}})
    step = first.split("/")[0]
    with pytest.raises(ContextError, match=rf"lacking\.bin: graph '.*' step {step} is malformed \(KeyError"):
        openqnn.Session(lacking)


def test_a_partly_quantized_model_compiles_with_its_cpu_fallbacks(tmp_path: Path) -> None:
    """Nodes htp refuses are planned on the fallback backend, as data: the context runs them bit-identically
    and reports each with its reason."""
    graph = openqnn.convert(_cnn())
    (tmp_path / "o.json").write_text(json.dumps({"version": "1.0.0", "activation_encodings": [], "param_encodings": [
        {"name": "w1", "bw": 8, "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": True, "offset": [-128],
         "scale": [0.01]}]}))
    from openqnn.quantization.encodings import read_encodings

    partly = openqnn.quantize(graph, None, overrides=read_encodings(tmp_path / "o.json"))
    prepared = openqnn.Session(partly, backend="htp")
    path = openqnn.compile(partly, "htp").save(tmp_path / "partly.bin")
    opened = openqnn.Session(path)
    assert opened.fallbacks and opened.fallbacks == prepared.fallbacks
    assert all(f.reason for f in opened.fallbacks)
    for f in _feeds(2):
        np.testing.assert_array_equal(prepared.run(f)["prob"], opened.run(f)["prob"])


def test_a_refused_node_between_quantized_ones_falls_back_with_its_conversions(
        quantized: openqnn.Graph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(node: object, ctx: object) -> None:
        raise htp_kernels.Unsupported("refused for this test")

    monkeypatch.setitem(htp_kernels.HTP_KERNELS, "Sigmoid", refuse)
    prepared = openqnn.Session(quantized, backend="htp")
    assert [f.reason for f in prepared.fallbacks] == ["refused for this test"]
    ctx = openqnn.compile(quantized, "htp")
    kinds = [s.kernel for s in ctx.graph().steps]
    assert kinds.count("htp.cpu_fallback") == 1, kinds
    opened = openqnn.Session(ctx.save(tmp_path / "fallback.bin"))
    assert opened.fallbacks == prepared.fallbacks
    for f in _feeds():
        np.testing.assert_array_equal(prepared.run(f, native_outputs=True)["prob"],
                                      opened.run(f, native_outputs=True)["prob"])


def test_a_context_opens_bit_identically_where_the_isa_is_lower(tmp_path: Path) -> None:
    """Prepared here (every kernel this CPU has), opened where the htp helpers are built for AVX2 or for no
    SIMD at all and oneDNN is capped to AVX2: the binders fall back along each step's kinds, same bits."""
    rng = np.random.default_rng(8)
    feeds = [{"x": rng.random((1, 8, 12, 12), dtype=np.float32)} for _ in range(5)]
    q = openqnn.quantize(openqnn.convert(_convnet()), feeds[:4],
                         openqnn.QuantizerConfig(use_per_channel_quantization=True))
    path = openqnn.compile(q, "htp").save(tmp_path / "here.bin")
    np.save(tmp_path / "x.npy", feeds[4]["x"])
    want = openqnn.Session(path).run(feeds[4], native_outputs=True)["y"]
    code = ("import sys, numpy as np, openqnn\n"
            "s = openqnn.Session(sys.argv[1])\n"
            "np.save(sys.argv[3], s.run({'x': np.load(sys.argv[2])}, native_outputs=True)['y'])\n")
    for isa in ("avx2", "baseline"):
        env = dict(os.environ, OPENQNN_MAX_ISA=isa, ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2",
                   OPENQNN_CACHE_DIR=str(tmp_path / isa))
        out = tmp_path / f"{isa}.npy"
        r = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "x.npy"), str(out)], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        np.testing.assert_array_equal(np.load(out), want)


def _wide_convnet():  # type: ignore[no-untyped-def]
    """Five 3x3 convolutions of 256 channels: weights over BACKGROUND_BYTES, a file of several checksum chunks."""
    rng = np.random.default_rng(9)
    nodes, inits, x = [], [], "x"
    for i in range(5):
        inits += [numpy_helper.from_array((0.05 * rng.standard_normal((256, 256, 3, 3))).astype(np.float32), f"w{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    return make_model(nodes, [("x", F, [1, 256, 4, 4])], [(x, F, [1, 256, 4, 4])], inits)


def _open_and_run(path: str, x: np.ndarray, out: str) -> None:
    torch.set_num_threads(1)  # PyTorch's own OpenMP threads do not survive fork either (as in DataLoader workers)
    np.save(out, openqnn.Session(path).run({"x": x}, native_outputs=True)["r4"])


def test_a_forked_process_opens_contexts(tmp_path: Path) -> None:
    """The worker threads that check a context and pack its weights do not survive fork: a child process
    must get its own (a reused pool would wait forever)."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("this platform cannot fork")

    rng = np.random.default_rng(10)
    feeds = [{"x": rng.random((1, 256, 4, 4), dtype=np.float32)} for _ in range(3)]
    q = openqnn.quantize(openqnn.convert(_wide_convnet()), feeds[:2],
                         openqnn.QuantizerConfig(use_per_channel_quantization=True))
    path = openqnn.compile(q, "htp").save(tmp_path / "wide.bin")
    assert path.stat().st_size > 2 << 20  # three checksum chunks or more
    want = openqnn.Session(path).run(feeds[2], native_outputs=True)["r4"]  # the parent's pool exists now
    child = multiprocessing.get_context("fork").Process(target=_open_and_run,
                                                        args=(str(path), feeds[2]["x"], str(tmp_path / "c.npy")))
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
        raise AssertionError("the forked process hung opening a context")
    assert child.exitcode == 0
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), want)
