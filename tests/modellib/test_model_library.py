"""Model libraries end to end: the converter's <stem>.cpp compiled by qnn-model-lib-generator into
lib<name>.so, loaded by openqnn.load / Session / qnn-net-run / qnn-context-binary-generator.

What is checked: a library composes exactly the graph of its _net.json and runs bit-identically to it (the
seed's SimpleModel on cpu, a fully quantized ResNet-18 on htp, where a context made from the library and one
made from the graph agree too); the CLI's -o forms; editing the .cpp changes the model, and an edit that
breaks the graph is one line naming the node; names of any characters survive the .cpp; cross builds
(aarch64-linux, aarch64-android) with a real cross compiler where one is installed, and the cross-build
flow with a stand-in compiler everywhere; --target_backends' placement; weights kept beside the library.

The libraries are built once per module (a build takes a fraction of a second; exporting the models
takes the longest).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import make_model
from openqnn.cli import context_binary_generator, model_lib_generator, net_run, onnx_converter
from openqnn.errors import LibraryBuildError, ModelLibraryError
from openqnn.modellib import build_library, library_info
from openqnn.modellib.elf import host_machine, read_elf
from openqnn.modellib.library import ENTRY_POINTS
from openqnn.modellib.toolchain import find_toolchain, host_target
from openqnn.serialization import graph_to_json

HOST = host_target()  # x86_64-linux-clang on an x86-64 machine (QNN's name, whichever compiler builds it)
SIZE = 32  # the SimpleModel's input is 1x3x32x32 here (the demo's 224 is slower and adds nothing)


def _toolchain_or_skip() -> None:
    try:
        find_toolchain(HOST)
    except LibraryBuildError as e:
        pytest.skip(f"no C++ compiler for this machine: {e}")


def _same_graph(a: openqnn.Graph, b: openqnn.Graph) -> None:
    assert graph_to_json(a) == graph_to_json(b)
    for name, t in a.tensors.items():
        other = b.tensors[name].data
        if t.data is not None or other is not None:
            assert t.data is not None and other is not None, name
            np.testing.assert_array_equal(t.data, other, err_msg=name)
            assert t.data.dtype == other.dtype, name


def _feeds(n: int, size: int = SIZE, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"input": rng.standard_normal((1, 3, size, size), dtype=np.float32)} for _ in range(n)]


def _export_simple_model(path: Path) -> Path:
    """openqnn.demo.export_simple_model, with a 32x32 input (the demo's export fixes 224x224)."""
    import torch

    from openqnn.demo import build_simple_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(build_simple_model(), (torch.randn(1, 3, SIZE, SIZE),), str(path), export_params=True,
                          opset_version=11, do_constant_folding=True, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch_size"},
                                                                 "output": {0: "batch_size"}}, dynamo=False)
    return path


@pytest.fixture(scope="module")
def simple(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The seed's SimpleModel: simple.onnx -> simple.cpp / simple_net.json / simple.bin -> libsimple.so."""
    _toolchain_or_skip()
    d = tmp_path_factory.mktemp("simple")
    onnx_path = _export_simple_model(d / "simple.onnx")
    graph = openqnn.convert(onnx_path, input_dims={"input": (1, 3, SIZE, SIZE)})
    net_json, bin_path = openqnn.save(graph, d / "simple.cpp")
    lib = build_library(d / "simple.cpp", bin_path, name="simple", output=d / "libsimple.so")[HOST]
    return SimpleNamespace(dir=d, onnx=onnx_path, cpp=d / "simple.cpp", net_json=net_json, bin=bin_path, lib=lib)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """ResNet-18 (benchmarks/zoo.py's torchvision definition, seeded), 1x3x64x64, W8A8 with per-channel
    weights from three seeded calibration inputs, saved as r18.cpp and built into libr18.so."""
    _toolchain_or_skip()
    from benchmarks.zoo import MODELS, export, make_inputs

    d = tmp_path_factory.mktemp("resnet18")
    spec = MODELS["resnet18"]
    graph = openqnn.convert(export(spec, d, 64), input_dims={"input": (1, 3, 64, 64)})
    calib = [make_inputs(spec, 1, 64, seed=100 + i) for i in range(3)]
    q = openqnn.quantize(graph, calib, openqnn.QuantizerConfig(use_per_channel_quantization=True))
    net_json, bin_path = openqnn.save(q, d / "r18.cpp")
    lib = build_library(d / "r18.cpp", bin_path, name="r18", output=d / "libr18.so")[HOST]
    feeds = [make_inputs(spec, 1, 64, seed=200 + i) for i in range(2)]
    return SimpleNamespace(dir=d, graph=q, cpp=d / "r18.cpp", net_json=net_json, bin=bin_path, lib=lib, feeds=feeds)


# ---------------------------------------------------------------------------------------------------------
# 1. round trip


def test_library_composes_the_net_json_graph_and_runs_bit_identically(simple: SimpleNamespace) -> None:
    from_lib, from_json = openqnn.load(simple.lib), openqnn.load(simple.net_json)
    _same_graph(from_lib, from_json)
    info = read_elf(simple.lib)
    assert info.machine == host_machine() and info.shared
    assert info.symbols == set(ENTRY_POINTS)  # -fvisibility=hidden: nothing else is exported
    meta = library_info(simple.lib)
    assert meta["name"] == "simple" and meta["target"] == HOST and meta["weights"] == "embedded"
    assert meta["abi_version"] == 1 and meta["openqnn_version"] == openqnn.__version__
    a, b = openqnn.Session(simple.lib), openqnn.Session(simple.net_json, backend="cpu")
    for f in _feeds(3):
        np.testing.assert_array_equal(a.run(f)["output"], b.run(f)["output"])


def test_cpp_reads_one_line_per_tensor_and_node(simple: SimpleNamespace) -> None:
    text = simple.cpp.read_text()
    graph = openqnn.load(simple.net_json)
    assert '#include "openqnn/model_api.h"' in text
    assert 'extern "C" OPENQNN_EXPORT int32_t openqnn_compose(const OpenqnnModelApi* api)' in text
    assert len(re.findall(r"^  m\.tensor\(", text, re.M)) == len(graph.tensors)
    assert len(re.findall(r"^  m\.node\(", text, re.M)) == len(graph.nodes)
    assert "//   qnn-model-lib-generator -c simple.cpp -b simple.bin -t x86_64-linux-clang -l simple" in text


def test_cli_convert_build_and_run(simple: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """qnn-onnx-converter -> qnn-model-lib-generator (-o X.so and -o folder) -> qnn-net-run --model X.so."""
    cpp = tmp_path / "model.cpp"
    assert onnx_converter.main(["--input_network", str(simple.onnx), "--output_path", str(cpp),
                                "--input_dim", "input", f"1,3,{SIZE},{SIZE}"]) == 0
    assert {p.name for p in tmp_path.iterdir()} >= {"model.cpp", "model_net.json", "model.bin"}
    so = tmp_path / "X.so"
    assert model_lib_generator.main(["-c", str(cpp), "-b", str(tmp_path / "model.bin"), "-t", HOST, "-l", "model",
                                     "-o", str(so)]) == 0
    assert so.is_file() and library_info(so)["name"] == "model"
    folder = tmp_path / "libs"
    assert model_lib_generator.main(["-c", str(cpp), "-t", HOST, "-l", "mynet", "-o", str(folder)]) == 0
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [HOST, f"{HOST}/libmynet.so"]
    out = capsys.readouterr().out
    assert f"{folder / HOST / 'libmynet.so'}  ({HOST}; weights embedded (" in out
    _same_graph(openqnn.load(so), openqnn.load(tmp_path / "model_net.json"))
    _same_graph(openqnn.load(folder / HOST / "libmynet.so"), openqnn.load(so))

    feeds = _feeds(2, seed=3)
    for i, f in enumerate(feeds):
        f["input"].tofile(tmp_path / f"in{i}.raw")
    (tmp_path / "inputs.txt").write_text("".join(f"{tmp_path / f'in{i}.raw'}\n" for i in range(len(feeds))))
    for model, results in ((so, "from_lib"), (tmp_path / "model_net.json", "from_json")):
        assert net_run.main(["--model", str(model), "--backend", "libQnnCpu.so", "--input_list",
                             str(tmp_path / "inputs.txt"), "--output_dir", str(tmp_path / results)]) == 0
    for i in range(len(feeds)):
        got = np.fromfile(tmp_path / "from_lib" / f"Result_{i}" / "output.raw", np.float32)
        want = np.fromfile(tmp_path / "from_json" / f"Result_{i}" / "output.raw", np.float32)
        assert got.size == 10
        np.testing.assert_array_equal(got, want)


def test_default_output_is_model_libs_folder_for_this_machine(simple: SimpleNamespace, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert model_lib_generator.main(["-c", str(simple.cpp)]) == 0  # -b beside the .cpp, -l its stem, -t this machine
    lib = tmp_path / "model_libs" / HOST / "libsimple.so"
    _same_graph(openqnn.load(lib), openqnn.load(simple.net_json))


# ---------------------------------------------------------------------------------------------------------
# 2. a fully quantized ResNet-18 on htp


def test_quantized_resnet18_library_json_and_contexts_are_bit_identical_on_htp(resnet: SimpleNamespace,
                                                                               tmp_path: Path) -> None:
    from_lib = openqnn.load(resnet.lib)
    _same_graph(from_lib, openqnn.load(resnet.net_json))
    assert all(t.encoding is not None for t in from_lib.tensors.values())  # every tensor, weights and biases too
    ctx_api = openqnn.compile(resnet.graph, "htp").save(tmp_path / "api_context.bin")
    assert context_binary_generator.main(["--model", str(resnet.lib), "--backend", "htp", "--output_dir",
                                          str(tmp_path / "ctx"), "--binary_file", "lib_context"]) == 0
    sessions = {"library": openqnn.Session(resnet.lib, backend="htp"),
                "net_json": openqnn.Session(resnet.net_json, backend="htp"),
                "context": openqnn.Session(ctx_api),
                "context_from_library": openqnn.Session(tmp_path / "ctx" / "lib_context.bin")}
    assert not sessions["library"].fallbacks  # fully quantized: every node runs on htp
    for f in resnet.feeds:
        outs = {k: s.run(f, native_outputs=True)["logits"] for k, s in sessions.items()}
        assert outs["library"].dtype == np.uint8 and outs["library"].shape == (1, 1000)
        assert len(np.unique(outs["library"])) > 10  # not a constant output
        for k, v in outs.items():
            np.testing.assert_array_equal(v, outs["library"], err_msg=k)


# ---------------------------------------------------------------------------------------------------------
# 3. editing the .cpp


def _node_line(text: str, node: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith(f'  m.node("{node}", ')]
    assert len(lines) == 1, node
    return lines[0]


def _edit(text: str, node: str, pattern: str, repl: str) -> str:
    line = _node_line(text, node)
    new, n = re.subn(pattern, repl, line)
    assert n == 1, (pattern, line)
    return text.replace(line, new)


def test_editing_the_cpp_changes_the_model(simple: SimpleNamespace, tmp_path: Path) -> None:
    """Rebuilt at the same path and loaded again in this process: the new library, not the one loaded first."""
    text = simple.cpp.read_text()
    cpp, lib = tmp_path / "simple.cpp", tmp_path / "libsimple.so"
    cpp.write_text(text)
    build_library(cpp, simple.bin, name="simple", output=lib)
    feeds = _feeds(2, seed=4)
    before = [openqnn.Session(lib).run(f)["output"] for f in feeds]

    # conv2: dilation 2 with padding 2 (same output shape)
    edited = _edit(text, "/conv2/Conv", r'"dilation": \{"dims": \[2\], "data": \[1, 1\]',
                   '"dilation": {"dims": [2], "data": [2, 2]')
    edited = _edit(edited, "/conv2/Conv", r'"pad_amount": \{"dims": \[2, 2\], "data": \[\[1, 1\], \[1, 1\]\]',
                   '"pad_amount": {"dims": [2, 2], "data": [[2, 2], [2, 2]]')
    cpp.write_text(edited)
    build_library(cpp, simple.bin, name="simple", output=lib)
    g = openqnn.load(lib)
    conv2 = next(n for n in g.nodes if n.name == "/conv2/Conv")
    assert tuple(conv2.attrs["dilation"]) == (2, 2) and tuple(map(tuple, conv2.attrs["pad_amount"])) == ((2, 2), (2, 2))
    after = [openqnn.Session(lib).run(f)["output"] for f in feeds]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))
    untouched = openqnn.load(simple.net_json)  # the _net.json is as the converter wrote it
    assert tuple(next(n for n in untouched.nodes if n.name == "/conv2/Conv").attrs["dilation"]) == (1, 1)

    # the first Relu becomes a Sigmoid (an op type swapped in place)
    cpp.write_text(_edit(text, "/relu/Relu", r'"Relu"', '"Sigmoid"'))
    build_library(cpp, simple.bin, name="simple", output=lib)
    g = openqnn.load(lib)
    assert next(n for n in g.nodes if n.name == "/relu/Relu").op_type == "Sigmoid"
    swapped = openqnn.Session(lib).run(feeds[0])["output"]
    assert not np.array_equal(swapped, before[0])


@pytest.mark.parametrize(("pattern", "repl", "says"), [
    (r'\{"/relu/Relu_output_0", "conv2\.weight"', '{"/relu/Relu_outptu_0", "conv2.weight"',
     r"'/relu/Relu_outptu_0' is not a tensor"),
    (r'"group": 1\}', '"group": 1,}', r"its params is not JSON"),
    (r'"group": 1\}', '"group": "one"}', r"group='one' is not a valid int"),
    (r'"Conv2d"', '"Conv2dd"', r"unknown op type 'Conv2dd'"),
], ids=["missing_tensor", "bad_json", "bad_param", "unknown_op"])
def test_an_edit_that_breaks_the_graph_is_one_line_naming_the_node(simple: SimpleNamespace, tmp_path: Path,
                                                                    pattern: str, repl: str, says: str) -> None:
    cpp, lib = tmp_path / "broken.cpp", tmp_path / "libbroken.so"
    cpp.write_text(_edit(simple.cpp.read_text(), "/conv2/Conv", pattern, repl))
    build_library(cpp, simple.bin, name="broken", output=lib)  # it compiles: the graph is judged on load
    with pytest.raises(ModelLibraryError) as e:
        openqnn.load(lib)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(lib)) and "'/conv2/Conv'" in msg, msg
    assert re.search(says, msg), msg
    assert "fix the model's .cpp" in msg


def test_an_edited_tensor_line_is_checked_against_the_weights(simple: SimpleNamespace, tmp_path: Path) -> None:
    text = simple.cpp.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith('  m.tensor("conv1.bias", "STATIC"'))
    off, size = map(int, re.search(r"(\d+)u, (\d+)u\);$", line).groups())  # type: ignore[union-attr]
    cases = {  # edit -> what the refusal says
        line.replace("{32u}", "{4u, 8u}"): "tensor 'conv1.bias' holds (32,)/float32, the model says (4, 8)/FLOAT_32",
        line.replace(f"{off}u, {size}u", f"{off + 4}u, {size - 4}u"):
            f"tensor 'conv1.bias': its data ({off + 4}, {size - 4}) is no array of the weights",
        line.replace(f"{off}u, {size}u", "OPENQNN_NO_DATA"): "no data for static tensor 'conv1.bias'",
        line.replace('"STATIC"', '"STATIK"'): "'STATIK' is not one of APP_WRITE, APP_READ, NATIVE, STATIC",
    }
    for i, (new, says) in enumerate(cases.items()):
        cpp, lib = tmp_path / f"t{i}.cpp", tmp_path / f"libt{i}.so"
        cpp.write_text(text.replace(line, new))
        build_library(cpp, simple.bin, name=f"t{i}", output=lib)
        with pytest.raises(ModelLibraryError) as e:
            openqnn.load(lib)
        assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_data_on_a_native_tensor_is_refused(simple: SimpleNamespace, tmp_path: Path) -> None:
    text = simple.cpp.read_text()
    static = next(ln for ln in text.splitlines() if ln.startswith('  m.tensor("conv1.bias", "STATIC"'))
    data = re.search(r"\d+u, \d+u\);$", static).group(0)  # type: ignore[union-attr]
    native = next(ln for ln in text.splitlines() if ln.startswith('  m.tensor("/relu/Relu_output_0", "NATIVE"'))
    cpp, lib = tmp_path / "native.cpp", tmp_path / "libnative.so"
    cpp.write_text(text.replace(native, native.replace("OPENQNN_NO_DATA);", data)))
    build_library(cpp, simple.bin, name="native", output=lib)
    with pytest.raises(ModelLibraryError, match="/relu/Relu_output_0"):
        openqnn.load(lib)


# ---------------------------------------------------------------------------------------------------------
# 4. names of any characters


ODD = ['in "quoted"', "back\\slash\\", "ünï€😀", ')oq"', "tab\tnew\nline?", "??=trigraph", "R\"oq(raw)oq\""]


def test_odd_names_survive_the_cpp(tmp_path: Path) -> None:
    _toolchain_or_skip()
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), ODD[1])
    nodes = [helper.make_node("MatMul", [ODD[0], ODD[1]], [ODD[2]], name=ODD[3]),
             helper.make_node("Relu", [ODD[2]], [ODD[4]], name=ODD[5]),
             helper.make_node("Neg", [ODD[4]], [ODD[6]], name=ODD[6])]
    model = make_model(nodes, [(ODD[0], TensorProto.FLOAT, [1, 2])], [(ODD[6], TensorProto.FLOAT, [1, 3])], [w])
    graph = openqnn.convert(model, name='gr"aph\\ ü)oq"')
    # JSON goes into a raw string literal R"oq(...)oq": JSON escapes every '"' in its strings, so no text can end it
    graph.metadata["note"] = ')oq" and \\ and ü'
    d = tmp_path / 'we"ird\\dir ü'  # the .incbin path has a quote, a backslash and non-ASCII
    d.mkdir()
    net_json, bin_path = openqnn.save(graph, d / "odd.cpp")
    text = (d / "odd.cpp").read_text()
    names = [ln for ln in text.splitlines() if ln.startswith(("  m.tensor(", "  m.node(", "  m.io("))]
    assert len(names) == 5 + 3 + 1 and all(ln.isascii() for ln in names)  # names: octal escapes past ASCII
    assert _graph_line(text).endswith(r'"note": ")oq\" and \\ and ü"}, "converter_command": ""})oq");')
    lib = build_library(d / "odd.cpp", bin_path, name="odd", output=d / "libodd.so")[HOST]
    from_lib = openqnn.load(lib)
    _same_graph(from_lib, openqnn.load(net_json))
    assert set(ODD) <= set(from_lib.tensors) | {n.name for n in from_lib.nodes}
    assert from_lib.name == 'gr"aph\\ ü)oq"' and from_lib.metadata["note"] == ')oq" and \\ and ü'
    x = {ODD[0]: np.array([[1.0, -2.0]], np.float32)}
    np.testing.assert_array_equal(openqnn.Session(lib).run(x)[ODD[6]],
                                  openqnn.Session(net_json, backend="cpu").run(x)[ODD[6]])


def _graph_line(text: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith("  m.graph("))


def test_a_file_name_with_a_newline_still_compiles(simple: SimpleNamespace, tmp_path: Path) -> None:
    graph = openqnn.load(simple.net_json)
    _, bin_path = openqnn.save(graph, tmp_path / "two\nlines.cpp")
    lib = build_library(tmp_path / "two\nlines.cpp", bin_path, name="two", output=tmp_path / "libtwo.so")[HOST]
    _same_graph(openqnn.load(lib), graph)


# ---------------------------------------------------------------------------------------------------------
# 5. aarch64


@pytest.mark.parametrize("target", ["aarch64-linux", "aarch64-android"])
def test_aarch64_library_with_an_installed_cross_compiler(simple: SimpleNamespace, tmp_path: Path,
                                                          target: str) -> None:
    try:
        find_toolchain(target)
    except LibraryBuildError as e:
        pytest.skip(f"no {target} compiler here: {e}")
    lib = build_library(simple.cpp, simple.bin, name="simple", output=tmp_path, targets=[target])[target]
    assert lib == tmp_path / target / "libsimple.so"
    info = read_elf(lib)
    assert info.machine == "aarch64" and info.bits == 64 and info.shared
    assert set(ENTRY_POINTS) <= info.symbols
    if host_machine() == "aarch64":
        _same_graph(openqnn.load(lib), openqnn.load(simple.net_json))
        return
    with pytest.raises(ModelLibraryError, match=rf"built for aarch64, but this machine is {host_machine()}"):
        openqnn.load(lib)


def _stand_in_compiler(path: Path, patch_machine: int | None) -> Path:
    """An executable that runs this machine's compiler (with the PATH of this process as it is now, where the
    compiler finds its assembler and linker) and, where asked, writes another e_machine into the library it
    produced: the cross-build flow without a cross compiler."""
    host = list(find_toolchain(HOST).cxx)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""#!{sys.executable}
import os, subprocess, sys
args = sys.argv[1:]
rc = subprocess.call({host!r} + args, env=dict(os.environ, PATH={os.environ["PATH"]!r}))
if rc == 0 and {patch_machine!r} is not None:
    with open(args[args.index("-o") + 1], "r+b") as f:
        f.seek(18)
        f.write(({patch_machine!r}).to_bytes(2, "little"))
sys.exit(rc)
""")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _only_stand_ins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PATH holds only the stand-ins' folder (an installed cross compiler must not be found), and this machine's
    compiler is OPENQNN_CXX, a stand-in that runs it as it is."""
    bin_dir = tmp_path / "bin"
    host = _stand_in_compiler(tmp_path / "host" / "c++", None)
    bin_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("OPENQNN_CXX", str(host))
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


@pytest.mark.parametrize("target", ["aarch64-linux", "aarch64-android"])
def test_cross_build_flow_with_a_stand_in_compiler(simple: SimpleNamespace, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], target: str) -> None:
    """Whether or not a cross compiler is installed: the toolchain is found where openqnn looks for one (PATH,
    the NDK under ANDROID_NDK_ROOT), the library is checked to be aarch64, this machine refuses it naming both
    machines, and --target_backends still prints a placement (from a library built for this machine)."""
    _toolchain_or_skip()
    if host_machine() == "aarch64":
        pytest.skip("this machine is aarch64: its own compiler builds aarch64-linux")
    bin_dir = _only_stand_ins(monkeypatch, tmp_path)
    if target == "aarch64-linux":
        cxx = _stand_in_compiler(bin_dir / "aarch64-linux-gnu-g++", 183)
    else:
        ndk = tmp_path / "ndk"
        cxx = _stand_in_compiler(ndk / "toolchains/llvm/prebuilt/linux-x86_64/bin/aarch64-linux-android24-clang++",
                                 183)
        _stand_in_compiler(cxx.with_name("aarch64-linux-android19-clang++"), 183)  # below the minimum API
        _stand_in_compiler(cxx.with_name("aarch64-linux-android33-clang++"), 183)  # the lowest one is used
        monkeypatch.setenv("ANDROID_NDK_ROOT", str(ndk))
    tc = find_toolchain(target)
    assert tc.cxx == (str(cxx),) and tc.machine == "aarch64"
    out = tmp_path / "libs"
    assert model_lib_generator.main(["-c", str(simple.cpp), "-t", target, "-o", str(out),
                                     "--target_backends", "cpu"]) == 0
    printed = capsys.readouterr().out
    lib = out / target / "libsimple.so"
    assert f"{lib}  ({target}; weights embedded (" in printed and "cpu: 8 of 8 nodes run here" in printed
    assert sorted(p.name for p in out.rglob("*")) == sorted(["libsimple.so", target])  # nothing else kept
    assert read_elf(lib).machine == "aarch64" and set(ENTRY_POINTS) <= read_elf(lib).symbols
    with pytest.raises(ModelLibraryError) as e:
        openqnn.load(lib)
    assert f"built for aarch64, but this machine is {host_machine()}" in str(e.value)
    assert str(lib) in str(e.value) and f"-t {HOST}" in str(e.value)


def test_a_compiler_that_builds_for_another_machine_is_refused(simple: SimpleNamespace, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler named aarch64-linux-gnu-g++ that writes x86-64 code: the result is checked, nothing kept."""
    _toolchain_or_skip()
    if host_machine() == "aarch64":
        pytest.skip("this machine is aarch64")
    bin_dir = _only_stand_ins(monkeypatch, tmp_path)
    _stand_in_compiler(bin_dir / "aarch64-linux-gnu-g++", None)
    out = tmp_path / "out" / "libaarch.so"
    with pytest.raises(LibraryBuildError, match=r"built a x86_64 library, not aarch64, for -t aarch64-linux"):
        build_library(simple.cpp, simple.bin, name="simple", output=out, targets=["aarch64-linux"])
    assert not out.exists() and not out.parent.exists()


def test_the_first_cross_compiler_on_path_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _toolchain_or_skip()
    if host_machine() == "aarch64":
        pytest.skip("this machine is aarch64")
    first = _stand_in_compiler(tmp_path / "z_first" / "aarch64-linux-gnu-g++", 183)
    second = _stand_in_compiler(tmp_path / "a_second" / "aarch64-linux-gnu-g++", 183)
    monkeypatch.setenv("PATH", os.pathsep.join([str(first.parent), str(second.parent)]))
    assert shutil.which("aarch64-linux-gnu-g++") == str(first)
    assert find_toolchain("aarch64-linux").cxx[0] == str(first)


# ---------------------------------------------------------------------------------------------------------
# 7. --target_backends


def test_target_backends_prints_the_placement(simple: SimpleNamespace, resnet: SimpleNamespace, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    n = len(resnet.graph.nodes)
    assert model_lib_generator.main(["-c", str(resnet.cpp), "-t", HOST, "-o", str(tmp_path / "r18"),
                                     "--target_backends", "htp,gpu,cpu"]) == 0
    out = capsys.readouterr().out
    assert f"placement of 'resnet18' ({n} nodes):" in out
    assert f"  htp: {n} of {n} nodes run here\n" in out
    assert re.search(r"^  gpu: not available here", out, re.M)
    assert f"  cpu: {n} of {n} nodes run here" in out
    assert out.index("htp:") < out.index("gpu:") < out.index("cpu:")  # in the order given

    assert model_lib_generator.main(["-c", str(simple.cpp), "-o", str(tmp_path / "simple"),
                                     "--target_backends", "libQnnHtp.so, cpu"]) == 0
    out = capsys.readouterr().out
    assert "placement of 'simple' (8 nodes):" in out and "cpu: 8 of 8 nodes run here" in out
    assert re.search(r"^  htp: the model is float and this backend runs quantized models: quantize it", out, re.M)


# ---------------------------------------------------------------------------------------------------------
# 8. weights beside the library


def test_weights_beside_the_library(simple: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    so = tmp_path / "beside" / "libmodel.so"
    assert model_lib_generator.main(["-c", str(simple.cpp), "-o", str(so), "--weights", "file"]) == 0
    assert "weights in model.bin beside it" in capsys.readouterr().out  # what to ship is said
    assert sorted(p.name for p in so.parent.iterdir()) == ["libmodel.so", "model.bin"]
    assert (so.parent / "model.bin").read_bytes() == simple.bin.read_bytes()
    assert so.stat().st_size < simple.bin.stat().st_size  # the weights are not in the library
    info = library_info(so)
    assert info["weights"] == "file" and info["weights_file"] == "model.bin"
    _same_graph(openqnn.load(so), openqnn.load(simple.net_json))
    f = _feeds(1, seed=5)[0]
    np.testing.assert_array_equal(openqnn.Session(so).run(f)["output"], openqnn.Session(simple.lib).run(f)["output"])

    folder = tmp_path / "libs"
    assert model_lib_generator.main(["-c", str(simple.cpp), "-l", "net", "-o", str(folder), "--weights", "file"]) == 0
    assert sorted(p.name for p in (folder / HOST).iterdir()) == ["libnet.so", "net.bin"]
    embedded = tmp_path / "libembedded.so"
    assert model_lib_generator.main(["-c", str(simple.cpp), "-o", str(embedded), "--weights", "embed"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beside", "libembedded.so", "libs"]
    capsys.readouterr()

    (so.parent / "model.bin").unlink()
    with pytest.raises(ModelLibraryError) as e:
        openqnn.load(so)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(so))
    assert f"its weights file {so.parent / 'model.bin'} is missing; keep model.bin beside the library" in msg
    (tmp_path / "in.raw").write_bytes(f["input"].tobytes())
    (tmp_path / "inputs.txt").write_text(f"{tmp_path / 'in.raw'}\n")
    assert net_run.main(["--model", str(so), "--input_list", str(tmp_path / "inputs.txt"), "--output_dir",
                         str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "model.bin is missing" in err
    assert not (tmp_path / "results").exists()
