"""Compilers for qnn-model-lib-generator's targets, found on this machine.

``x86_64-linux-clang`` (clang++ or g++, whichever is installed; QNN's name, whichever compiler builds
it), ``aarch64-linux`` (a cross compiler such as Debian's ``g++-aarch64-linux-gnu``, or the host's own
on an aarch64 machine) and ``aarch64-android`` (the NDK's clang under ``ANDROID_NDK_ROOT``). A missing
one is a :class:`~openqnn.errors.LibraryBuildError` that says what to install.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from openqnn.errors import LibraryBuildError
from openqnn.modellib.elf import host_machine

__all__ = ["TARGETS", "Toolchain", "find_toolchain", "host_target", "target_machine"]

# target -> (ELF machine, what to install when no compiler is found)
TARGETS: dict[str, tuple[str, str]] = {
    "x86_64-linux-clang": ("x86_64", "install clang or g++ (Debian/Ubuntu: apt install clang, or apt install g++; "
                                     "on another machine: apt install g++-x86-64-linux-gnu)"),
    "aarch64-linux": ("aarch64", "install an aarch64 cross compiler (Debian/Ubuntu: apt install "
                                 "g++-aarch64-linux-gnu)"),
    "aarch64-android": ("aarch64", "install the Android NDK and set ANDROID_NDK_ROOT to it "
                                   "(https://developer.android.com/ndk/downloads)"),
}
# QNN's other target names for the same builds
ALIASES = {"x86_64-linux": "x86_64-linux-clang", "aarch64-ubuntu-gcc9.4": "aarch64-linux",
           "aarch64-oe-linux-gcc11.2": "aarch64-linux", "aarch64-oe-linux-gcc9.3": "aarch64-linux",
           "aarch64-oe-linux-gcc8.2": "aarch64-linux"}
MIN_ANDROID_API = 21


@dataclass(frozen=True)
class Toolchain:
    target: str
    machine: str  # the ELF machine its libraries are for
    cxx: tuple[str, ...]  # the compiler command (with any target flags)
    flags: tuple[str, ...] = ()

    def describe(self) -> str:
        return " ".join(self.cxx)


def canonical_target(name: str) -> str:
    t = ALIASES.get(name, name)
    if t not in TARGETS:
        raise LibraryBuildError(f"-t {name}: unknown target; use one of {', '.join(TARGETS)}")
    return t


def target_machine(name: str) -> str:
    return TARGETS[canonical_target(name)][0]


def host_target() -> str:
    """The target whose libraries this machine loads."""
    return {"x86_64": "x86_64-linux-clang", "aarch64": "aarch64-linux"}.get(host_machine(), "x86_64-linux-clang")


def _which(*names: str) -> str | None:
    for n in names:
        found = shutil.which(n)
        if found:
            return found
    return None


def _versioned(prefix: str) -> list[str]:
    """``prefix`` and ``prefix-NN`` on PATH, in PATH's order (as ``which`` finds them); within one folder the
    unversioned name first, then the newest version."""
    found: list[str] = []
    seen: set[str] = set()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        here: list[tuple[tuple[int, int], str]] = []
        for f in glob.glob(os.path.join(glob.escape(d or "."), prefix + "*")):
            base = os.path.basename(f)
            m = re.fullmatch(re.escape(prefix) + r"(?:-(\d+))?", base)
            if m and base not in seen and os.path.isfile(f) and os.access(f, os.X_OK):
                here.append(((0, 0) if m.group(1) is None else (1, -int(m.group(1))), f))
        for _, f in sorted(here):
            seen.add(os.path.basename(f))
            found.append(f)
    return found


def _android() -> Toolchain | None:
    root = os.environ.get("ANDROID_NDK_ROOT") or os.environ.get("ANDROID_NDK_HOME")
    if not root:
        return None
    best: tuple[int, str] | None = None
    for f in glob.glob(os.path.join(glob.escape(root), "toolchains", "llvm", "prebuilt", "*", "bin",
                                    "aarch64-linux-android*-clang++")):
        m = re.search(r"aarch64-linux-android(\d+)-clang\+\+$", f)
        if m and int(m.group(1)) >= MIN_ANDROID_API and (best is None or int(m.group(1)) < best[0]):
            best = (int(m.group(1)), f)
    if best is None:
        return None
    return Toolchain("aarch64-android", "aarch64", (best[1],), ("-static-libstdc++",))


def find_toolchain(target: str) -> Toolchain:
    """The compiler for ``target`` on this machine (``OPENQNN_CXX`` overrides it for the host's target)."""
    t = canonical_target(target)
    machine, install = TARGETS[t]
    host = host_machine()
    if t == "aarch64-android":
        tc = _android()
        if tc is None:
            where = os.environ.get("ANDROID_NDK_ROOT")
            detail = (f"ANDROID_NDK_ROOT={where} holds no aarch64-linux-android{MIN_ANDROID_API}+ clang++"
                      if where else "ANDROID_NDK_ROOT is not set")
            raise LibraryBuildError(f"-t {target}: no Android NDK ({detail}); {install}")
        return tc
    override = os.environ.get("OPENQNN_CXX")
    if override and machine == host:
        return Toolchain(t, machine, tuple(override.split()))
    candidates: list[str] = []
    if machine == host:
        native = _which("clang++", "g++", "c++")
        if native:
            candidates.append(native)
    candidates += _versioned(f"{machine}-linux-gnu-g++")
    if not candidates:
        raise LibraryBuildError(f"-t {target}: no C++ compiler for {machine} found on PATH; {install}")
    return Toolchain(t, machine, (candidates[0],))


def compiler_missing_hint(target: str) -> str:
    return TARGETS[canonical_target(target)][1]


def include_dir() -> Path:
    """The folder holding ``openqnn/model_api.h``."""
    return Path(__file__).resolve().parent / "include"
