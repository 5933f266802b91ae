"""What every backend shares about configuration: checked settings, capabilities, and the registry entry.

A backend's folder holds its config dataclass and a :class:`BackendSpec` (name, QNN library name,
config section, capabilities, and how to create it); ``backends/__init__.py`` lists the specs. Nothing
outside ``backends/`` branches on a backend's name: it asks the spec's :class:`Capabilities`.

Ranges of the numeric settings (``LIMITS``): ``num_threads`` 1 to 256 (``MAX_THREADS``: more threads than
any phone or workstation has cores only thrash, and huge counts crash thread pools); ``hvx_threads`` the same; ``device_id`` 0 to
63; ``optimization_level`` (QNN's ``O``) 1 to 3; ``vtcm_mb`` 1 to 8 (and at most the VTCM of the HTP arch in use); ``soc_model`` 0 to 9999 (and a
known Snapdragon model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from openqnn.backends.threads import MODE_POLICIES
from openqnn.errors import InvalidConfigError

__all__ = ["LIMITS", "MAX_THREADS", "PERFORMANCE_MODES", "BackendSpec", "Capabilities", "check_num_threads",
           "check_setting", "validate_config"]

MAX_THREADS = 256
# inclusive ranges of the integer settings
LIMITS: dict[str, tuple[int, int]] = {"num_threads": (1, MAX_THREADS), "hvx_threads": (1, MAX_THREADS),
                                      "device_id": (0, 63), "vtcm_mb": (1, 8), "soc_model": (0, 9999),
                                      "optimization_level": (1, 3)}

# QNN's power/performance profiles; what each means on a host is in backends/threads.py
PERFORMANCE_MODES = tuple(MODE_POLICIES)


def check_setting(what: str, key: str, value: Any, choices: Sequence[str] | None = None) -> Any:
    """``value`` of setting ``key`` (``what``: how the error names it), checked for kind, range and choice.
    ``enable_*`` and ``fp16_*`` keys are booleans, ``LIMITS`` keys integers, the rest strings."""
    kind: type = bool if key.startswith(("enable_", "fp16_")) else int if key in LIMITS else str
    if kind is bool:
        if not isinstance(value, bool):
            raise InvalidConfigError(f"{what} = {value!r} must be true or false")
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        article = "an integer" if kind is int else "a string"
        raise InvalidConfigError(f"{what} = {value!r} must be {article}")
    if key in LIMITS and isinstance(value, int):
        lo, hi = LIMITS[key]
        if not lo <= value <= hi:
            raise InvalidConfigError(f"{what} = {value} is out of range; use {lo} to {hi}")
    if key == "performance_mode":
        choices = PERFORMANCE_MODES
    if choices and value not in choices:
        raise InvalidConfigError(f"{what} = {value!r} is not valid; use one of {', '.join(choices)}")
    return value


def check_num_threads(value: Any, what: str = "num_threads") -> int:
    """A thread count in 1..MAX_THREADS (``what`` names it in the error)."""
    return check_setting(what, "num_threads", value)


def validate_config(config: Any, section: str, choices: Mapping[str, Sequence[str]] | None = None) -> None:
    """Check every field of a config dataclass (None is allowed where it is the default)."""
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None and f.default is None:
            continue
        check_setting(f"{section}.{f.name}", f.name, value, (choices or {}).get(f.name))


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, for the runtime, the tools and the backend selector to ask.

    ``precisions``: what it computes in (``fp32``, ``fp16``, ``hybrid``, ``int8``, ``int16``), the one it
    prefers first; ``native_integer_io``: it takes and returns quantized integers (``--use_native_input_files``);
    ``quantized_only``: a float model needs quantizing (or a float mode) first; ``devices``: where it executes;
    ``fallback``: it runs the nodes other backends cannot; ``contexts``: its prepared graphs are data
    (``plan``/``bind``), so they can be saved as context binaries; ``qnn_contexts``: it writes QNN's own context
    binaries (``write_qnn_context``, :class:`~openqnn.backends.base.QnnContextBackend`), which Qualcomm's
    ``qnn-net-run --retrieve_context`` loads on a device.

    What the target processor offers, as the guide's ``BackendSelector`` scores it (:mod:`openqnn.runtime.selection`;
    docs/backend-selection.md): ``npu``: a dedicated neural processing unit (the guide's performance pick);
    ``max_tensor_bytes``: the largest tensor it handles well (HTP: its 8 MB of VTCM; the guide's figures);
    ``power_efficiency``: the guide's relative figure, 0 to 1."""

    precisions: tuple[str, ...]
    native_integer_io: bool = False
    quantized_only: bool = False
    devices: tuple[str, ...] = ("cpu",)
    fallback: bool = False
    contexts: bool = False
    qnn_contexts: bool = False
    npu: bool = False
    max_tensor_bytes: int = 512 * 1024 * 1024
    power_efficiency: float = 0.4


@dataclass(frozen=True)
class BackendSpec:
    """A backend's registry entry. ``create(config, num_threads)`` builds it; None where this build cannot
    (``unavailable`` says why and what to do). ``probe()``, where given, says why this machine cannot run
    the backend (e.g. no CUDA GPU), or None when it can; it runs only when asked (:meth:`why_unavailable`).
    ``op_types()``: the op types its kernel registry holds (a builder may still refuse a node's attributes:
    the backend's ``unsupported`` decides node by node)."""

    name: str
    library: str  # QNN's library name, e.g. libQnnHtp.so
    config_class: type
    capabilities: Capabilities
    create: Callable[[Any, int | None], Any] | None = None
    unavailable: str = ""
    probe: Callable[[], str | None] | None = None
    op_types: Callable[[], frozenset[str]] = frozenset  # the IR op types its kernel builders take (loaded on call)

    def why_unavailable(self) -> str | None:
        """Why this build or this machine cannot run the backend (one phrase that says what to do), or None."""
        if self.create is None:
            return self.unavailable
        return self.probe() if self.probe is not None else None

    @property
    def config_section(self) -> str:
        """The backend's section in a backend config file, e.g. ``htp_config`` (``qnn_htp_config`` for
        ``qnn-htp``)."""
        return f"{self.name.replace('-', '_')}_config"
