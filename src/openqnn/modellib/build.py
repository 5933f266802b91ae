"""Compiling ``<stem>.cpp`` and its weights into a model library (qnn-model-lib-generator).

The library is the source compiled with a small generated unit that exports the ABI version, a JSON
description (name, target, where its weights are) and the weights themselves: embedded in the library's
read-only data (``.incbin``: no C array to compile, so a 100 MB model builds in about a second), or for a
model above :data:`EMBED_LIMIT`, read from the ``.bin`` copied beside it. The result is checked (an ELF for
the target's machine exporting every entry point) and moved into place only then.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from openqnn._version import __version__
from openqnn.errors import LibraryBuildError
from openqnn.modellib.elf import ElfError, read_elf
from openqnn.modellib.library import ABI_VERSION, ENTRY_POINTS
from openqnn.modellib.source import c_string, weight_offsets
from openqnn.modellib.toolchain import Toolchain, canonical_target, find_toolchain, include_dir

__all__ = ["EMBED_LIMIT", "build_library", "check_lib_name", "embeds", "library_paths", "weights_note"]

log = logging.getLogger("openqnn.model_lib_generator")

EMBED_LIMIT = 1 << 30  # weights above this stay in a file beside the library (1 GiB)
WEIGHTS_MODES = ("auto", "embed", "file")
_TIMEOUT_S = 1800


def check_lib_name(name: str, flag: str) -> None:
    """A library's name: letters, digits, '_', '-' and '.' (it becomes a file name)."""
    if not name or not all(c.isalnum() or c in "_-." for c in name):
        raise LibraryBuildError(f"{flag} {name!r}: a library name is letters, digits, '_', '-' and '.'")


def library_paths(output: str | os.PathLike[str], name: str, targets: Sequence[str]) -> dict[str, Path]:
    """Where each target's library goes: ``output`` itself where it ends in ``.so`` (one target), otherwise
    ``output/<target>/lib<name>.so`` (QNN's layout)."""
    out = Path(output)
    if out.suffix == ".so":
        if len(targets) != 1:
            raise LibraryBuildError(f"-o {output}: one file cannot hold the libraries of {len(targets)} targets; "
                                    "give a folder")
        return {targets[0]: out}
    return {t: out / t / f"lib{name}.so" for t in targets}


def _wrapper(name: str, target: str, weights: Path | None, weights_file: str | None) -> str:
    """The generated unit: ABI version, description, weights."""
    info = {"name": name, "target": target, "openqnn_version": __version__, "abi_version": ABI_VERSION,
            "weights": "embedded" if weights is not None else "file"}
    if weights_file is not None:
        info["weights_file"] = weights_file
    lines = ['#include "openqnn/model_api.h"', ""]
    if weights is not None:
        path = str(weights.resolve()).replace("\\", "\\\\").replace('"', '\\"')  # the assembler's escapes
        asm = [".section .rodata.openqnn_weights,\"a\"", ".balign 64",
               ".globl openqnn_weights_begin", ".hidden openqnn_weights_begin", "openqnn_weights_begin:",
               f'.incbin "{path}"',
               ".globl openqnn_weights_end", ".hidden openqnn_weights_end", "openqnn_weights_end:", ".previous"]
        lines += ["// the weights, embedded as they are in the .bin (64-byte aligned, read-only)",
                  "__asm__(" + "\n        ".join(c_string(a + "\n") for a in asm) + ");",
                  'extern "C" const unsigned char openqnn_weights_begin[], openqnn_weights_end[];',
                  "",
                  "const void* openqnn_model_weights(uint64_t* size) {",
                  "  *size = static_cast<uint64_t>(openqnn_weights_end - openqnn_weights_begin);",
                  "  return openqnn_weights_begin;",
                  "}"]
    else:
        lines += ["const void* openqnn_model_weights(uint64_t* size) {", "  *size = 0;", "  return nullptr;", "}"]
    lines += ["",
              "uint32_t openqnn_model_abi_version(void) { return OPENQNN_MODEL_ABI_VERSION; }",
              f"const char* openqnn_model_info(void) {{ return {c_string(json.dumps(info))}; }}", ""]
    return "\n".join(lines)


def build_library(cpp: str | os.PathLike[str], bin_path: str | os.PathLike[str], *, name: str,
                  output: str | os.PathLike[str], targets: Sequence[str] = ("x86_64-linux-clang",),
                  weights: str = "auto") -> dict[str, Path]:
    """Compile ``cpp`` with the weights ``bin_path`` into a library per target; returns target -> path.
    Raises :class:`LibraryBuildError` (no compiler, a compile error, a wrong result) with nothing written."""
    src, binp = Path(cpp), Path(bin_path)
    if not src.is_file():
        raise LibraryBuildError(f"-c {src}: no such source file; write it with qnn-onnx-converter --output_path "
                                f"{src.name}")
    if not binp.is_file():
        raise LibraryBuildError(f"-b {binp}: no such weights file; the converter writes it beside {src.name}")
    if weights not in WEIGHTS_MODES:
        raise LibraryBuildError(f"--weights {weights}: use one of {', '.join(WEIGHTS_MODES)}")
    check_lib_name(name, "-l")
    weight_offsets(binp)  # a weights file the converter wrote (refused here, before compiling)
    canon = [canonical_target(t) for t in targets]
    if len(set(canon)) != len(canon):
        raise LibraryBuildError(f"-t {' '.join(targets)}: a target is given twice")
    chains = {t: find_toolchain(t) for t in canon}  # every compiler found before anything is built
    dests = library_paths(output, name, canon)
    for dest in dests.values():
        _check_dest(dest, output)
    size = binp.stat().st_size
    embed = embeds(size, weights)
    built: dict[str, Path] = {}
    for t in canon:
        built[t] = _build_one(src, binp, name, chains[t], dests[t], embed, size)
    return built


def embeds(size: int, weights: str) -> bool:
    """Whether weights of ``size`` bytes are embedded under ``--weights`` mode ``weights``."""
    return weights == "embed" or (weights == "auto" and size <= EMBED_LIMIT)


def _check_dest(dest: Path, output: str | os.PathLike[str]) -> None:
    """Refuse an output the library cannot be written to, before anything is built."""
    if dest.is_dir():
        raise LibraryBuildError(f"-o {output}: {dest} is a folder; give a file name ending in .so, or another folder")
    for parent in dest.parents:
        if parent.exists():
            if not parent.is_dir():
                raise LibraryBuildError(f"-o {output}: {parent} is a file, not a folder; give another output path")
            if not os.access(parent, os.W_OK):
                raise LibraryBuildError(f"-o {output}: {parent} is not writable; give another output path")
            break


def _build_one(src: Path, binp: Path, name: str, tc: Toolchain, dest: Path, embed: bool, size: int) -> Path:
    weights_file = None if embed else f"{dest.stem.removeprefix('lib')}.bin"
    # built in a temporary folder, then copied beside the destination and renamed into place: a failure leaves
    # no file and no folder behind
    with tempfile.TemporaryDirectory(prefix="openqnn-lib-") as tmp:
        work = Path(tmp)
        wrapper = work / "openqnn_library.cpp"
        wrapper.write_text(_wrapper(name, tc.target, binp if embed else None, weights_file))
        out = work / dest.name
        cmd = [*tc.cxx, "-std=c++17", "-shared", "-fPIC", "-O1", "-fvisibility=hidden", "-fno-exceptions",
               "-fno-rtti", "-I", str(include_dir()), *tc.flags, str(src), str(wrapper), "-o", str(out)]
        log.info("%s: %s", tc.target, " ".join(cmd))
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
        except OSError as e:
            raise LibraryBuildError(f"-t {tc.target}: cannot run {tc.describe()} ({e.strerror or e})") from None
        except subprocess.TimeoutExpired:
            raise LibraryBuildError(f"-t {tc.target}: {tc.describe()} ran past {_TIMEOUT_S} s on {src}") from None
        if r.returncode != 0:
            lines = r.stderr.strip().splitlines()
            first = next((ln for ln in lines if "error" in ln), lines[-1] if lines else f"exit status {r.returncode}")
            raise LibraryBuildError(f"-c {src}: {tc.describe()} failed for {tc.target}: {first.strip()[:300]}")
        for line in r.stderr.splitlines():
            log.debug("%s", line)
        try:
            info = read_elf(out)
        except ElfError as e:
            raise LibraryBuildError(f"{tc.describe()} wrote no shared library for {tc.target} ({e})") from None
        if info.machine != tc.machine:
            raise LibraryBuildError(f"{tc.describe()} built a {info.machine} library, not {tc.machine}, for "
                                    f"-t {tc.target}; install that target's compiler")
        missing = [s for s in ENTRY_POINTS if s not in info.symbols]
        if missing:
            raise LibraryBuildError(f"-c {src}: the library exports no {', '.join(missing)}; keep the source's "
                                    "openqnn_compose as the converter wrote it (extern \"C\" OPENQNN_EXPORT)")
        files = [(out, dest)] + ([(binp, dest.with_name(weights_file))] if weights_file is not None else [])
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            for source, target in files:
                staged = target.with_name(f".{target.name}.tmp{os.getpid()}")
                try:
                    shutil.copyfile(source, staged)
                    os.replace(staged, target)
                finally:
                    staged.unlink(missing_ok=True)
        except OSError as e:
            raise LibraryBuildError(f"{dest}: cannot be written ({e.strerror or e}); give another output path") from None
    log.info("%s: %s library (%s), %s", dest, tc.target, tc.describe(), weights_note(dest, size, embed))
    return dest


def weights_note(dest: Path, size: int, embed: bool) -> str:
    """Where a library's weights are, for the log: embedded, or in the file beside it and why."""
    if embed:
        return f"weights embedded ({size / 2**20:.1f} MB)"
    why = (f"above the {EMBED_LIMIT >> 20} MiB embedding limit" if size > EMBED_LIMIT else "--weights file")
    return (f"weights in {dest.stem.removeprefix('lib')}.bin beside it ({size / 2**20:.1f} MB, {why}): ship it with "
            "the library")
