"""Backends by name: one registry line per backend. ``--backend`` takes a backend's name (``cpu``, ``gpu``,
``htp``, ``qnn-htp``) or QNN's library name (``libQnnCpu.so``, ``libQnnGpu.so``, ``libQnnHtp.so``; a path is
allowed; ``qnn-htp``, QNN's own HTP through ONNX Runtime, is ``libonnxruntime_providers_qnn.so``).

Each backend's folder holds its config dataclass and its :class:`BackendSpec` (capabilities, and how to
create it); adding a backend is its folder plus its line in ``SPECS``.
"""

from __future__ import annotations

from typing import Any

from openqnn.backends import cpu, gpu, htp, qnn_htp
from openqnn.backends.base import Backend, Executable, Fallback
from openqnn.backends.settings import BackendSpec, Capabilities
from openqnn.errors import InvalidConfigError

__all__ = ["SPECS", "Backend", "BackendSpec", "Capabilities", "Executable", "Fallback", "backend_spec",
           "create_backend"]

SPECS: dict[str, BackendSpec] = {spec.name: spec for spec in (
    cpu.SPEC,
    gpu.SPEC,
    htp.SPEC,
    qnn_htp.SPEC,
)}


def backend_spec(name: str) -> BackendSpec:
    """The registry entry for a backend name or QNN library name."""
    key = name.strip().rsplit("/", 1)[-1].lower()
    for spec in SPECS.values():
        if key in (spec.name, spec.library.lower(), spec.library.lower().removeprefix("lib").removesuffix(".so")):
            return spec
    raise InvalidConfigError(f"--backend {name}: unknown backend; use "
                             + ", ".join(f"{s.name} ({s.library})" for s in SPECS.values()))


def create_backend(name: str, config: Any = None, num_threads: int | None = None) -> Backend:
    """A backend by name, with its config dataclass (None: defaults) and a thread count."""
    spec = backend_spec(name)
    why = spec.why_unavailable()
    if why is not None or spec.create is None:
        available = ", ".join(s.name for s in SPECS.values() if s is not spec and s.why_unavailable() is None)
        raise InvalidConfigError(f"--backend {name}: {why}; available here: {available}")
    if config is not None and not isinstance(config, spec.config_class):
        raise InvalidConfigError(f"the {spec.name} backend takes a {spec.config_class.__name__}, "
                                 f"not a {type(config).__name__}")
    return spec.create(config, num_threads)
