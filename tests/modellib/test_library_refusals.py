"""What qnn-model-lib-generator and the library loader refuse, and how.

Each refusal is the right openqnn error, one line, naming the file (or flag) at fault and what to do; through
the CLI it is exit status 2 with one ``error:`` line, no traceback, and nothing written. A library is judged
from its ELF before it is opened, because dlopen runs a library's constructors: a library of another tool or
of another machine is refused without any of its code running (a constructor that writes a marker file
proves it). A stripped model library still loads: strip drops .symtab, not the dynamic symbols it exports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import make_model
from openqnn.cli import context_binary_generator, model_lib_generator, net_run
from openqnn.errors import InvalidModelError, LibraryBuildError, ModelLibraryError
from openqnn.modellib import build_library
from openqnn.modellib.elf import host_machine, read_elf
from openqnn.modellib.library import ENTRY_POINTS
from openqnn.modellib.toolchain import find_toolchain, host_target, include_dir
from openqnn.serialization import graph_to_json

HOST = host_target()
F = TensorProto.FLOAT

# a library of another tool: it exports something else, and its constructor leaves a marker where it runs
FOREIGN_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#ifdef __cplusplus
extern "C" {
#endif
__attribute__((constructor)) static void leave_marker(void) {
  const char* path = getenv("OPENQNN_TEST_MARKER");
  if (path) { FILE* f = fopen(path, "w"); if (f) { fputs("constructor ran\n", f); fclose(f); } }
}
__attribute__((visibility("default"))) int other_tool_entry(int x) { return x + 1; }
#ifdef __cplusplus
}
#endif
"""

# the entry points qnn-model-lib-generator adds, hand-written (as build.py's _wrapper writes them), with the
# weights in the file beside the library and the ABI version as given
WRAPPER = """#include "openqnn/model_api.h"
const void* openqnn_model_weights(uint64_t* size) { *size = 0; return nullptr; }
uint32_t openqnn_model_abi_version(void) { return %du; }
const char* openqnn_model_info(void) {
  return "{\\"name\\": \\"tiny\\", \\"target\\": \\"%s\\", \\"weights\\": \\"file\\", \\"weights_file\\": \\"tiny.bin\\"}";
}
"""


def _cxx() -> list[str]:
    try:
        return list(find_toolchain(HOST).cxx)
    except LibraryBuildError as e:
        pytest.skip(f"no C++ compiler for this machine: {e}")


def _compile(out: Path, *sources: Path) -> Path:
    subprocess.run([*_cxx(), "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-I", str(include_dir()),
                    *map(str, sources), "-o", str(out)], check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A small convolution model as tiny.cpp / tiny_net.json / tiny.bin, and an input list for qnn-net-run (no
    compiler needed)."""
    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((0.3 * rng.standard_normal((4, 3, 3, 3))).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["output"])]
    graph = openqnn.convert(make_model(nodes, [("input", F, [1, 3, 8, 8])], [("output", F, [1, 4, 8, 8])], [w]))
    net_json, bin_path = openqnn.save(graph, d / "tiny.cpp")
    rng.random((1, 3, 8, 8), dtype=np.float32).tofile(d / "in.raw")
    (d / "inputs.txt").write_text(f"{d / 'in.raw'}\n")
    return SimpleNamespace(dir=d, cpp=d / "tiny.cpp", net_json=net_json, bin=bin_path, inputs=d / "inputs.txt")


@pytest.fixture(scope="module")
def tiny(model: SimpleNamespace) -> SimpleNamespace:
    """``model`` built into libtiny.so, and a library of another tool (libforeign.so)."""
    _cxx()
    lib = build_library(model.cpp, model.bin, name="tiny", output=model.dir / "libtiny.so")[HOST]
    (model.dir / "foreign.c").write_text(FOREIGN_SOURCE)
    foreign = _compile(model.dir / "libforeign.so", model.dir / "foreign.c")
    return SimpleNamespace(**vars(model), lib=lib, foreign=foreign)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _one_line(msg: str, *says: str) -> str:
    assert "\n" not in msg and "Traceback" not in msg, msg
    for s in says:
        assert s in msg, (s, msg)
    return msg


def _cli_refuses(capsys: pytest.CaptureFixture[str], tool: object, argv: list[str], *says: str,
                 watch: Path | None = None) -> str:
    """``tool.main(argv)`` exits 2 with one ``error:`` line (no traceback, nothing on stdout) holding ``says``,
    and writes nothing under ``watch``."""
    before = _tree(watch) if watch is not None else None
    rc = tool.main(argv)  # type: ignore[attr-defined]
    cap = capsys.readouterr()
    assert rc == 2, cap
    assert cap.err.startswith("error: ") and cap.err.count("\n") == 1 and cap.err.endswith("\n"), cap.err
    assert cap.out == "", cap.out
    if watch is not None:
        assert _tree(watch) == before, sorted(_tree(watch) - before)  # type: ignore[operator]
    return _one_line(cap.err.rstrip("\n"), *says)


def _load_refused(path: Path, *says: str, at: Path | None = None) -> str:
    """openqnn.load refuses ``path`` with one line that starts with the file at fault (``at``, else ``path``)."""
    with pytest.raises(ModelLibraryError) as e:
        openqnn.load(path)
    msg = str(e.value)
    assert msg.startswith(f"{at or path}: "), msg
    return _one_line(msg, *says)


def _refused_everywhere(model: SimpleNamespace, capsys: pytest.CaptureFixture[str], path: Path, *says: str) -> None:
    """openqnn.load, Session, qnn-net-run --model and qnn-context-binary-generator --model all refuse ``path``."""
    _load_refused(path, *says)
    with pytest.raises(ModelLibraryError, match=re.escape(says[0]) if says else None):
        openqnn.Session(path)
    work = path.parent / "work"
    work.mkdir(exist_ok=True)
    _cli_refuses(capsys, net_run, ["--model", str(path), "--input_list", str(model.inputs), "--output_dir",
                                   str(work / "results")], str(path), *says, watch=work)
    _cli_refuses(capsys, context_binary_generator, ["--model", str(path), "--backend", "htp", "--input_list",
                                                    str(model.inputs), "--output_dir", str(work / "ctx")],
                 str(path), *says, watch=work)
    work.rmdir()


# ---------------------------------------------------------------------------------------------------------
# building


def test_missing_compiler_says_what_to_install(model: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("OPENQNN_CXX", raising=False)
    machine = host_machine()
    with pytest.raises(LibraryBuildError) as e:
        build_library(model.cpp, model.bin, name="tiny", output=tmp_path / "out")
    _one_line(str(e.value), f"-t {HOST}: no C++ compiler for {machine} found on PATH; install ")
    if HOST == "x86_64-linux-clang":
        assert "apt install clang, or apt install g++" in str(e.value)
    _cli_refuses(capsys, model_lib_generator, ["-c", str(model.cpp), "-o", str(tmp_path / "out")],
                 "no C++ compiler", "install", watch=tmp_path)
    assert not (tmp_path / "out").exists()


def test_openqnn_cxx_that_cannot_run(model: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENQNN_CXX", str(tmp_path / "no-such-c++"))
    _cli_refuses(capsys, model_lib_generator, ["-c", str(model.cpp), "-o", str(tmp_path / "libtiny.so")],
                 f"-t {HOST}: cannot run {tmp_path / 'no-such-c++'}", watch=tmp_path)


@pytest.mark.parametrize(("argv", "says"), [
    (["-t", "riscv64-linux"], "-t riscv64-linux: unknown target; use one of x86_64-linux-clang, aarch64-linux, "
                              "aarch64-android"),
    (["-t", HOST, HOST], "a target is given twice"),
    (["-l", "my/lib"], "-l 'my/lib': a library name is letters, digits"),
    (["--target_backends", "npu"], "npu"),
    (["--target_backends", ","], "--target_backends ',': name backends separated by commas"),
], ids=["unknown_target", "target_twice", "bad_name", "unknown_backend", "no_backend"])
def test_flags_refused_before_building(model: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       argv: list[str], says: str) -> None:
    _cli_refuses(capsys, model_lib_generator, ["-c", str(model.cpp), "-o", str(tmp_path / "out"), *argv], says,
                 watch=tmp_path)


def test_unknown_target_through_the_api(model: SimpleNamespace, tmp_path: Path) -> None:
    with pytest.raises(LibraryBuildError, match=r"^-t riscv64-linux: unknown target; use one of "):
        build_library(model.cpp, model.bin, name="tiny", output=tmp_path / "out", targets=["riscv64-linux"])
    assert not any(tmp_path.iterdir())


def test_two_targets_into_one_file(model: SimpleNamespace, tmp_path: Path) -> None:
    try:  # every target's compiler is found before anything else is judged
        for t in ("x86_64-linux-clang", "aarch64-linux"):
            find_toolchain(t)
    except LibraryBuildError as e:
        pytest.skip(str(e))
    with pytest.raises(LibraryBuildError, match=r"^-o \S*x\.so: one file cannot hold the libraries of 2 targets; "
                                                r"give a folder$"):
        build_library(model.cpp, model.bin, name="tiny", output=tmp_path / "x.so",
                      targets=["x86_64-linux-clang", "aarch64-linux"])
    assert not any(tmp_path.iterdir())


def test_missing_source_or_weights(model: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "libx.so"
    with pytest.raises(LibraryBuildError) as e:
        build_library(tmp_path / "nope.cpp", model.bin, name="x", output=out)
    _one_line(str(e.value), f"-c {tmp_path / 'nope.cpp'}: no such source file")
    with pytest.raises(LibraryBuildError) as e:
        build_library(model.cpp, tmp_path / "nope.bin", name="x", output=out)
    _one_line(str(e.value), f"-b {tmp_path / 'nope.bin'}: no such weights file")
    _cli_refuses(capsys, model_lib_generator, ["-c", str(tmp_path / "nope.cpp"), "-o", str(out)],
                 "nope.cpp: no such source file", watch=tmp_path)
    # -b defaults to the .bin beside the .cpp
    shutil.copy(model.cpp, tmp_path / "lonely.cpp")
    _cli_refuses(capsys, model_lib_generator, ["-c", str(tmp_path / "lonely.cpp"), "-o", str(out)],
                 f"-b {tmp_path / 'lonely.bin'}: no such weights file", watch=tmp_path)
    # a .bin that is no weights file the converter wrote
    (tmp_path / "lonely.bin").write_text("not weights")
    with pytest.raises(InvalidModelError) as bad:
        build_library(tmp_path / "lonely.cpp", tmp_path / "lonely.bin", name="x", output=out)
    _one_line(str(bad.value), f"{tmp_path / 'lonely.bin'}: not a weights file written by the converter")
    assert not out.exists()


def test_source_that_does_not_compile_names_the_compiler_error(tiny: SimpleNamespace, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    text = tiny.cpp.read_text()
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("  m.io("))
    bad = tmp_path / "bad.cpp"
    bad.write_text(text.replace("  m.io(", "  m.iox("))
    out = tmp_path / "libbad.so"
    with pytest.raises(LibraryBuildError) as e:
        build_library(bad, tiny.bin, name="bad", output=out)
    msg = _one_line(str(e.value), f"-c {bad}: ", f"failed for {HOST}: ")
    assert re.search(rf"bad\.cpp:{line}:\d+: error: .*iox", msg), msg  # the compiler's own line
    _cli_refuses(capsys, model_lib_generator, ["-c", str(bad), "-b", str(tiny.bin), "-o", str(out)],
                 f"bad.cpp:{line}:", watch=tmp_path)


def test_failed_build_into_a_folder_writes_nothing(tiny: SimpleNamespace, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "src" / "bad.cpp"
    bad.parent.mkdir()
    bad.write_text(tiny.cpp.read_text().replace("  m.io(", "  m.iox("))
    assert model_lib_generator.main(["-c", str(bad), "-b", str(tiny.bin), "-o", str(tmp_path / "libs")]) == 2
    capsys.readouterr()
    assert not (tmp_path / "libs").exists(), sorted(_tree(tmp_path / "libs"))


@pytest.mark.parametrize("output", ["folder.so", "afile/libtiny.so", "afile", "afile/sub"],
                         ids=["so_is_a_folder", "parent_is_a_file", "folder_is_a_file", "above_is_a_file"])
def test_output_that_cannot_be_written(tiny: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       output: str) -> None:
    (tmp_path / "folder.so").mkdir()
    (tmp_path / "afile").write_text("a file")
    _cli_refuses(capsys, model_lib_generator, ["-c", str(tiny.cpp), "-o", str(tmp_path / output)],
                 f"-o {tmp_path / output}", watch=tmp_path)


def test_source_without_compose_is_refused_by_the_build(tiny: SimpleNamespace, tmp_path: Path) -> None:
    """A source whose function is renamed compiles, but exports no openqnn_compose: the build checks the exports
    (model_api.h declares openqnn_compose extern "C", so dropping extern "C" alone keeps it exported)."""
    cpp = tmp_path / "renamed.cpp"
    text = tiny.cpp.read_text()
    assert 'extern "C" OPENQNN_EXPORT int32_t openqnn_compose(' in text
    cpp.write_text(text.replace('extern "C" OPENQNN_EXPORT int32_t openqnn_compose(',
                                'extern "C" OPENQNN_EXPORT int32_t my_compose('))
    out = tmp_path / "librenamed.so"
    with pytest.raises(LibraryBuildError) as e:
        build_library(cpp, tiny.bin, name="renamed", output=out)
    _one_line(str(e.value), f"-c {cpp}: the library exports no openqnn_compose", 'extern "C"')
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["renamed.cpp"]


# ---------------------------------------------------------------------------------------------------------
# loading


def test_library_of_another_tool_is_refused_without_running_it(tiny: SimpleNamespace, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "constructor-ran"
    # the marker works: dlopen of the library (in another process) runs its constructor
    subprocess.run([sys.executable, "-c", "import ctypes, sys; ctypes.CDLL(sys.argv[1])", str(tiny.foreign)],
                   check=True, env={"OPENQNN_TEST_MARKER": str(marker), "PATH": "/usr/bin:/bin"})
    assert marker.read_text() == "constructor ran\n"
    marker.unlink()
    monkeypatch.setenv("OPENQNN_TEST_MARKER", str(marker))
    lib = tmp_path / "libforeign.so"
    shutil.copy(tiny.foreign, lib)
    _refused_everywhere(tiny, capsys, lib, "not an openqnn model library (a library of another tool?)",
                        "it does not export openqnn_model_abi_version")
    assert not marker.exists()

    # the same library, patched to say it is for another machine
    data = bytearray(lib.read_bytes())
    data[18:20] = (183 if host_machine() != "aarch64" else 62).to_bytes(2, "little")
    other = tmp_path / "libforeign_other_arch.so"
    other.write_bytes(bytes(data))
    _load_refused(other, "a library built for")
    assert not marker.exists()


def _system_library() -> Path | None:
    import ctypes.util

    name = ctypes.util.find_library("z")
    if name is None:
        return None
    dirs = [sysconfig.get_config_var("LIBDIR"), f"/lib/{host_machine()}-linux-gnu", f"/usr/lib/{host_machine()}-linux-gnu",
            "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    for d in dirs:
        if d and (Path(d) / name).is_file():
            return Path(d) / name
    return None


def test_system_library_is_refused(model: SimpleNamespace) -> None:
    z = _system_library()
    if z is None:
        pytest.skip("no libz found where this test looks")
    _load_refused(z, "not an openqnn model library", "it does not export openqnn_model_abi_version, "
                  "openqnn_model_info, openqnn_model_weights, openqnn_compose")


def test_library_for_another_machine(tiny: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(tiny.lib.read_bytes())
    other, other_name = (183, "aarch64") if host_machine() != "aarch64" else (62, "x86_64")
    data[18:20] = other.to_bytes(2, "little")
    lib = tmp_path / "libother.so"
    lib.write_bytes(bytes(data))
    assert read_elf(lib).machine == other_name
    _refused_everywhere(tiny, capsys, lib, f"a library built for {other_name}, but this machine is {host_machine()}",
                        f"qnn-model-lib-generator -t {HOST}")
    data[18:20] = (999).to_bytes(2, "little")
    lib.write_bytes(bytes(data))
    _load_refused(lib, "a library built for e_machine 999, but this machine is")


def test_truncated_library(tiny: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny.lib.read_bytes()
    lib = tmp_path / "libhalf.so"
    lib.write_bytes(data[: len(data) // 2])
    _refused_everywhere(tiny, capsys, lib, f"the file has {len(data) // 2}", "rebuild it with qnn-model-lib-generator")
    lib.write_bytes(data[:40])
    _load_refused(lib, "truncated: 40 bytes, shorter than an ELF header")


@pytest.mark.parametrize(("content", "says"), [
    (b"just some text, not a library\n", "not an ELF shared library (it starts with b'just')"),
    (b"", "not an ELF shared library"),
    (b"\x7fELF\x09\x01" + bytes(100), "corrupt ELF header (class 9, byte order 1)"),
], ids=["text", "empty", "bad_class"])
def test_file_that_is_no_elf_library(model: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     content: bytes, says: str) -> None:
    lib = tmp_path / "libnot.so"
    lib.write_bytes(content)
    _refused_everywhere(model, capsys, lib, says)


def test_missing_library(tmp_path: Path) -> None:
    _load_refused(tmp_path / "libnothere.so", "no such model library")


def test_relocatable_object_is_not_a_shared_library(tiny: SimpleNamespace, tmp_path: Path) -> None:
    obj = tmp_path / "tiny.o"
    subprocess.run([*_cxx(), "-std=c++17", "-c", "-fPIC", "-I", str(include_dir()), str(tiny.cpp), "-o", str(obj)],
                   check=True, capture_output=True)
    lib = tmp_path / "libobject.so"
    obj.rename(lib)
    _load_refused(lib, "an ELF file but not a shared library")


@pytest.mark.parametrize("version", [1, 2, 0])
def test_abi_version(tiny: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str], version: int) -> None:
    """The generated source with hand-written entry points: version 1 loads (the wrapper is right), any other
    is refused naming both versions."""
    wrapper = tmp_path / "wrapper.cpp"
    wrapper.write_text(WRAPPER % (version, HOST))
    lib = _compile(tmp_path / "libtiny.so", tiny.cpp, wrapper)
    shutil.copy(tiny.bin, tmp_path / "tiny.bin")
    assert set(ENTRY_POINTS) <= read_elf(lib).symbols
    if version == 1:
        assert graph_to_json(openqnn.load(lib)) == graph_to_json(openqnn.load(tiny.net_json))
        return
    _refused_everywhere(tiny, capsys, lib, f"model library ABI version {version}, but this openqnn "
                        f"{openqnn.__version__} speaks version 1", "rebuild it with qnn-model-lib-generator")


def test_library_without_compose(tiny: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrapper = tmp_path / "wrapper.cpp"
    wrapper.write_text(WRAPPER % (1, HOST))
    lib = _compile(tmp_path / "libnocompose.so", wrapper)
    _refused_everywhere(tiny, capsys, lib, "an openqnn model library stripped of its entry points",
                        "it does not export openqnn_compose")


def test_stripped_library_still_loads(tiny: SimpleNamespace, tmp_path: Path) -> None:
    """strip removes .symtab and debug sections; the entry points are dynamic symbols (.dynsym), which the
    dynamic linker needs and strip keeps, so the loader still finds them."""
    strip = shutil.which("strip")
    if strip is None:
        pytest.skip("no strip (binutils) on PATH")
    for flags in ([], ["--strip-all"]):
        lib = tmp_path / f"libstripped{len(flags)}.so"
        shutil.copy(tiny.lib, lib)
        subprocess.run([strip, *flags, str(lib)], check=True, capture_output=True)
        assert lib.stat().st_size < tiny.lib.stat().st_size
        assert read_elf(lib).symbols == read_elf(tiny.lib).symbols
        assert graph_to_json(openqnn.load(lib)) == graph_to_json(openqnn.load(tiny.net_json))
        x = {"input": np.ones((1, 3, 8, 8), np.float32)}
        np.testing.assert_array_equal(openqnn.Session(lib).run(x)["output"], openqnn.Session(tiny.lib).run(x)["output"])


def test_weights_file_of_another_model_beside_the_library(tiny: SimpleNamespace, tmp_path: Path) -> None:
    so = tmp_path / "libtiny.so"
    build_library(tiny.cpp, tiny.bin, name="tiny", output=so, weights="file")
    (tmp_path / "tiny.bin").write_bytes(b"\x08" + bytes(7) + b"{}      ")  # a valid, empty safetensors file
    msg = _load_refused(so, "tensor 'w': its data")
    assert "is no array of the weights tiny.bin" in msg
    (tmp_path / "tiny.bin").write_bytes(b"\xff" * 8)
    _load_refused(so, "the weights' header runs past their end", at=tmp_path / "tiny.bin")

