"""The htp backend: a bit-exact, integer-only emulation of a fixed-point NPU (Hexagon HTP).

Importing this package is light (the config, the arch table and the registry entry); the backend and
its kernels load on first use of ``HtpBackend`` or ``HtpExecutable``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openqnn.backends.base import Fallback
from openqnn.backends.htp.arch import ARCHS, HtpArch
from openqnn.backends.htp.config import SPEC, HtpConfig

if TYPE_CHECKING:
    from openqnn.backends.htp.backend import HtpBackend
    from openqnn.backends.htp.executable import HtpExecutable

__all__ = ["ARCHS", "SPEC", "Fallback", "HtpArch", "HtpBackend", "HtpConfig", "HtpExecutable"]


def __getattr__(name: str) -> object:
    if name == "HtpBackend":
        from openqnn.backends.htp.backend import HtpBackend

        return HtpBackend
    if name == "HtpExecutable":
        from openqnn.backends.htp.executable import HtpExecutable

        return HtpExecutable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
