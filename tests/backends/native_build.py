"""Building openqnn's native C sources into a standalone check program and running it (natively, or under an
emulator): what the cross-build tests of the cpu and htp kernels share."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

from openqnn.backends import native
from openqnn.profiling.platform import cpu_info

X86 = platform.machine().lower() in ("x86_64", "amd64")


def sources(check: Path, *names: str) -> list[Path]:
    """The check program's source and the named C sources of :mod:`openqnn.backends.native`."""
    return [check, *(Path(native.__file__).with_name(n) for n in names)]


def cpu_flags() -> set[str]:
    """This CPU's feature flags (/proc/cpuinfo)."""
    return cpu_info()[1]


def build_and_run(cc: str, flags: Sequence[str], srcs: Sequence[Path], out: Path, runner: Sequence[str]) -> str:
    """Compile ``srcs`` with ``cc`` and ``flags`` into ``out``, run it (under ``runner``, e.g. qemu), return its
    output; a failed build or run fails the calling test with the tail of its messages."""
    built = subprocess.run([cc, "-O2", *flags, "-pthread", "-o", str(out), *map(str, srcs), "-lm"],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    ran = subprocess.run([*runner, str(out)], capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    return ran.stdout.strip()
