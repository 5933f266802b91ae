"""Backends by name. ``--backend`` takes ``cpu|gpu|htp`` or QNN's library names."""

from __future__ import annotations

from collections.abc import Callable

from openqnn.backends.base import Backend, Executable, Fallback
from openqnn.errors import InvalidConfigError

__all__ = ["BACKENDS", "Backend", "Executable", "Fallback", "get_backend", "resolve_backend_name"]

_ALIASES = {"libqnncpu.so": "cpu", "libqnngpu.so": "gpu", "libqnnhtp.so": "htp", "qnncpu": "cpu",
            "qnngpu": "gpu", "qnnhtp": "htp"}


def _cpu(**kw: object) -> Backend:
    from openqnn.backends.cpu import CpuBackend, CpuConfig

    return CpuBackend(CpuConfig(**kw))  # type: ignore[arg-type]


def _htp(**kw: object) -> Backend:
    from openqnn.backends.htp import HtpBackend
    from openqnn.runtime.config import HtpConfig

    config = kw.pop("config", None) or HtpConfig()
    return HtpBackend(config, **kw)  # type: ignore[arg-type]


BACKENDS: dict[str, Callable[..., Backend]] = {"cpu": _cpu, "htp": _htp}
KNOWN = ("cpu", "gpu", "htp")


def resolve_backend_name(name: str) -> str:
    """``cpu``/``gpu``/``htp`` for a backend name or QNN library name (path allowed)."""
    key = name.strip().rsplit("/", 1)[-1].lower()
    key = _ALIASES.get(key, key)
    if key not in KNOWN:
        raise InvalidConfigError(
            f"--backend {name}: unknown backend; use cpu, gpu or htp (or libQnnCpu.so, libQnnGpu.so, libQnnHtp.so)"
        )
    if key not in BACKENDS:
        raise InvalidConfigError(
            f"--backend {name}: the {key} backend is not available in this openqnn build yet; available: "
            + ", ".join(sorted(BACKENDS))
        )
    return key


def get_backend(name: str, **options: object) -> Backend:
    return BACKENDS[resolve_backend_name(name)](**options)
