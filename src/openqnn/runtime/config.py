"""Backend config files (the seed's ``backend_config.json``), validated key by key.

    {"cpu_config": {"num_threads": 4, "performance_mode": "balanced", "enable_fast_math": true},
     "gpu_config": {"device_id": 0, "precision_mode": "fp16", ...},
     "htp_config": {"vtcm_mb": 8, "precision_mode": "int8", ...},
     "openqnn": {"force_backend": {"LayerNorm": "cpu"}, "disable_cpu_fallback": false},
     "backend_extensions": {"shared_library_path": "libQnnHtpNetRunExtensions.so",
                            "config_file_path": "htp_extensions.json"}}

Each ``<name>_config`` section belongs to one backend and is read into that backend's config dataclass
(``backends/<name>/config.py``). ``openqnn`` holds placement (:class:`PlacementConfig`). ``backend_extensions``
is QNN's form: an HTP backend-extension file (``graphs`` / ``devices`` / ``context``) whose keys are read
into the htp section (:func:`htp_extension_settings`). An unknown section or key, a value of the wrong kind or a
number out of its range is an error that names the file and the key; the ranges are in
``backends/settings.py`` (``LIMITS``), and the config dataclasses check them too, so an API user gets the same
errors. Every key does something or is refused with the reason it means nothing here (docs/backend-config.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from openqnn.backends import SPECS, backend_spec
from openqnn.backends.cpu.config import CpuConfig
from openqnn.backends.gpu.config import GpuConfig
from openqnn.backends.htp.config import HtpConfig
from openqnn.backends.partition import PlacementConfig
from openqnn.backends.settings import LIMITS, MAX_THREADS, check_num_threads
from openqnn.errors import InvalidConfigError
from openqnn.fileio import read_json

__all__ = ["LIMITS", "MAX_THREADS", "BackendConfig", "CpuConfig", "GpuConfig", "HtpConfig", "PlacementConfig",
           "check_num_threads", "htp_extension_settings", "parse_backend_config", "read_backend_config"]

PLACEMENT_SECTION = "openqnn"
EXTENSIONS_SECTION = "backend_extensions"


class BackendConfig:
    """One config dataclass per backend, by backend name: ``BackendConfig(htp=HtpConfig(vtcm_mb=4))``,
    ``config.htp`` (a backend's defaults where the file has no section for it); ``placement`` (the
    ``openqnn`` section: forced placement, ``disable_cpu_fallback``). A backend name with a dash is written with
    an underscore here: ``BackendConfig(qnn_htp=QnnHtpConfig(dsp_arch="v73"))``."""

    def __init__(self, placement: PlacementConfig | None = None, **sections: Any):
        sections = {_backend_name(k): v for k, v in sections.items()}
        if placement is not None and not isinstance(placement, PlacementConfig):
            raise InvalidConfigError(f"BackendConfig: placement takes a PlacementConfig, not {type(placement).__name__}")
        self.placement = placement or PlacementConfig()
        for name, value in sections.items():
            if name not in SPECS:
                raise InvalidConfigError(f"BackendConfig: unknown backend '{name}'; use {', '.join(SPECS)}")
            cls = SPECS[name].config_class
            if not isinstance(value, cls):
                raise InvalidConfigError(f"BackendConfig: {name} takes a {cls.__name__}, not {type(value).__name__}")
        self._sections: dict[str, Any] = dict(sections)

    def section(self, backend: str) -> Any:
        """The config dataclass of ``backend`` (its defaults where none was given)."""
        if backend not in self._sections:
            self._sections[backend] = SPECS[backend].config_class()
        return self._sections[backend]

    def with_section(self, backend: str, **changes: Any) -> BackendConfig:
        """A copy with ``backend``'s section changed (checked as the file's keys are)."""
        sections = dict(self._sections)
        sections[backend] = replace(self.section(backend), **changes)
        return BackendConfig(self.placement, **sections)

    def with_placement(self, **changes: Any) -> BackendConfig:
        """A copy with the placement changed."""
        return BackendConfig(replace(self.placement, **changes), **self._sections)

    def given(self) -> Mapping[str, Any]:
        """The sections given explicitly (from the file or the constructor)."""
        return dict(self._sections)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or _backend_name(name) not in SPECS:
            raise AttributeError(name)
        return self.section(_backend_name(name))

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self._sections.items()]
        if self.placement != PlacementConfig():
            parts.insert(0, f"placement={self.placement!r}")
        return f"BackendConfig({', '.join(parts)})"


def _backend_name(key: str) -> str:
    """``qnn_htp`` (a Python identifier) -> ``qnn-htp`` where that is the registered name."""
    dashed = key.replace("_", "-")
    return dashed if key not in SPECS and dashed in SPECS else key


def parse_backend_config(doc: Any, where: str = "backend config", base: str | os.PathLike[str] | None = None
                         ) -> BackendConfig:
    """A backend config document (the parsed JSON); errors name ``where`` and the key. ``base``: the folder a
    backend extension's ``config_file_path`` is relative to (the config file's; else the working folder)."""
    sections = {spec.config_section: spec for spec in SPECS.values()}
    names = [*sections, PLACEMENT_SECTION, EXTENSIONS_SECTION]
    if not isinstance(doc, dict):
        raise InvalidConfigError(f"{where}: must be a JSON object with {' / '.join(names)}")
    bodies: dict[str, dict[str, Any]] = {}
    placement = PlacementConfig()
    for section, body in doc.items():
        if section not in names:
            raise InvalidConfigError(f"{where}: unknown section '{section}'; use {', '.join(names)}")
        if not isinstance(body, dict):
            raise InvalidConfigError(f"{where}: {section} must be a JSON object")
        if section == PLACEMENT_SECTION:
            placement = _placement(body, where)
            continue
        if section == EXTENSIONS_SECTION:
            spec, settings = _extension(body, where, base)
        else:
            spec, settings = sections[section], body
        known = [f.name for f in fields(spec.config_class)]
        for key in settings:
            if key not in known:
                raise InvalidConfigError(f"{where}: unknown key {section}.{key}; valid keys: {', '.join(known)}")
        merged = bodies.setdefault(spec.name, {})
        for key, value in settings.items():
            if key in merged and merged[key] != value:
                raise InvalidConfigError(f"{where}: {spec.config_section}.{key} is given twice, as {merged[key]!r} and "
                                         f"{value!r} (the {spec.config_section} section and the backend extension); "
                                         "give it once")
            merged[key] = value
    parts: dict[str, Any] = {}
    for name, body in bodies.items():
        try:
            parts[name] = SPECS[name].config_class(**body)
        except InvalidConfigError as e:
            raise InvalidConfigError(f"{where}: {e}") from None
    return BackendConfig(placement, **parts)


def _placement(body: Mapping[str, Any], where: str) -> PlacementConfig:
    known = [f.name for f in fields(PlacementConfig)]
    for key in body:
        if key not in known:
            raise InvalidConfigError(f"{where}: unknown key {PLACEMENT_SECTION}.{key}; valid keys: {', '.join(known)}")
    forced = body.get("force_backend", {})
    if not isinstance(forced, dict) or not all(isinstance(v, str) for v in forced.values()):
        raise InvalidConfigError(f"{where}: {PLACEMENT_SECTION}.force_backend must map op types or node names to "
                                 'backend names, e.g. {"LayerNorm": "cpu"}')
    targets = {}
    for key, value in forced.items():
        try:
            targets[key] = backend_spec(value).name
        except InvalidConfigError:
            raise InvalidConfigError(f"{where}: {PLACEMENT_SECTION}.force_backend.{key} = {value!r} is not a backend; "
                                     f"use {', '.join(SPECS)}") from None
    disable = body.get("disable_cpu_fallback", False)
    if not isinstance(disable, bool):
        raise InvalidConfigError(f"{where}: {PLACEMENT_SECTION}.disable_cpu_fallback = {disable!r} must be true or false")
    return PlacementConfig(targets, disable)


# QNN HTP backend-extension keys, by section, and the htp_config field each sets (None: refused, for the reason)
_GRAPH_KEYS: dict[str, str | None] = {"graph_names": "", "vtcm_mb": "vtcm_mb", "O": "optimization_level",
                                      "fp16_relaxed_precision": "fp16_relaxed_precision", "hvx_threads": "hvx_threads"}
_DEVICE_KEYS: dict[str, str | None] = {"device_id": "device_id", "soc_model": "soc_model", "dsp_arch": "dsp_arch",
                                       "cores": ""}
_CORE_KEYS: dict[str, str | None] = {"core_id": "", "perf_profile": "performance_mode"}
_CONTEXT_KEYS: dict[str, str | None] = {"weight_sharing_enabled": ""}
_MEANINGLESS = {
    "dlbc": "deep-learning bandwidth compression saves DDR traffic on a device; the emulator moves no data over DDR",
    "rpc_control_latency": "there is no RPC: the emulator runs in this process",
    "rpc_polling_time": "there is no RPC: the emulator runs in this process",
    "hmx_timeout_us": "there is no HMX unit to time out: the emulator runs on the host CPU",
}


def htp_extension_settings(doc: Any, where: str) -> dict[str, Any]:
    """The ``htp_config`` settings an HTP backend-extension document sets. ``graphs``: ``vtcm_mb`` (0: the
    arch's VTCM), ``O``, ``fp16_relaxed_precision``, ``hvx_threads`` (``graph_names`` may name the graphs;
    openqnn applies the settings to every graph, so several entries must agree); ``devices`` (one device):
    ``device_id``, ``soc_model``, ``dsp_arch``, ``cores`` (core 0; ``perf_profile`` -> ``performance_mode``);
    ``context``: ``weight_sharing_enabled`` false only (each graph of an openqnn context holds its weights)."""
    if not isinstance(doc, dict):
        raise InvalidConfigError(f"{where}: must be a JSON object with graphs / devices / context")
    out: dict[str, Any] = {}

    def entries(section: str) -> list[tuple[str, dict[str, Any]]]:
        value = doc[section]
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(x, dict) for x in items):
            raise InvalidConfigError(f"{where}: {section} must be a JSON object or a list of them")
        return [(f"{section}[{i}]" if isinstance(value, list) else section, x) for i, x in enumerate(items)]

    def take(path: str, body: dict[str, Any], keys: Mapping[str, str | None]) -> None:
        for key, value in body.items():
            if key in _MEANINGLESS:
                raise InvalidConfigError(f"{where}: {path}.{key} is refused: {_MEANINGLESS[key]}; drop it")
            if key not in keys:
                raise InvalidConfigError(f"{where}: unknown key {path}.{key}; valid keys: {', '.join(keys)}")
            field_ = keys[key]
            if not field_:
                continue
            if field_ == "fp16_relaxed_precision" and value in (0, 1) and not isinstance(value, bool):
                value = bool(value)
            if field_ == "vtcm_mb" and value == 0 and not isinstance(value, bool):
                continue  # QNN's 0: all the VTCM the arch has
            if field_ in out and out[field_] != value:
                raise InvalidConfigError(f"{where}: {path}.{key} = {value!r} contradicts {out[field_]!r} set before; "
                                         "openqnn applies one set of settings to every graph and core")
            out[field_] = value

    for section in doc:
        if section not in ("graphs", "devices", "context"):
            raise InvalidConfigError(f"{where}: unknown section '{section}'; use graphs, devices, context")
    if "graphs" in doc:
        for path, body in entries("graphs"):
            names = body.get("graph_names", [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise InvalidConfigError(f"{where}: {path}.graph_names must be a list of graph names")
            take(path, body, _GRAPH_KEYS)
    if "devices" in doc:
        devices = entries("devices")
        if len(devices) > 1:
            raise InvalidConfigError(f"{where}: devices lists {len(devices)} devices; openqnn emulates one HTP device")
        for path, body in devices:
            take(path, body, _DEVICE_KEYS)
            cores = body.get("cores", [])
            if not isinstance(cores, list) or not all(isinstance(c, dict) for c in cores):
                raise InvalidConfigError(f"{where}: {path}.cores must be a list of JSON objects")
            for i, core in enumerate(cores):
                if core.get("core_id", 0) != 0:
                    raise InvalidConfigError(f"{where}: {path}.cores[{i}].core_id = {core['core_id']!r}: openqnn "
                                             "emulates one HTP core, core 0; use 0")
                take(f"{path}.cores[{i}]", core, _CORE_KEYS)
    if "context" in doc:
        for path, body in entries("context"):
            take(path, body, _CONTEXT_KEYS)
            if body.get("weight_sharing_enabled", False) is not False:
                raise InvalidConfigError(f"{where}: {path}.weight_sharing_enabled is refused: each graph of an "
                                         "openqnn context holds its own weights; drop it or set false")
    return out


def _extension(body: Mapping[str, Any], where: str, base: str | os.PathLike[str] | None) -> tuple[Any, dict[str, Any]]:
    """The backend and settings of a ``backend_extensions`` section (QNN's form)."""
    known = ("shared_library_path", "config_file_path")
    for key in body:
        if key not in known:
            raise InvalidConfigError(f"{where}: unknown key {EXTENSIONS_SECTION}.{key}; valid keys: {', '.join(known)}")
    lib = body.get("shared_library_path")
    # the extension library names the backend it extends: libQnnHtpNetRunExtensions.so extends libQnnHtp.so
    extended = [s for s in SPECS.values() if isinstance(lib, str)
                and Path(lib).name.lower().startswith(s.library.lower().removesuffix(".so"))]
    if not extended or not {"vtcm_mb", "hvx_threads"} <= {f.name for f in fields(extended[0].config_class)}:
        raise InvalidConfigError(f"{where}: {EXTENSIONS_SECTION}.shared_library_path = {lib!r}: openqnn reads HTP "
                                 "backend extensions (libQnnHtpNetRunExtensions.so); give that library's name")
    path = body.get("config_file_path")
    if not isinstance(path, str) or not path:
        raise InvalidConfigError(f"{where}: {EXTENSIONS_SECTION}.config_file_path must name the HTP backend "
                                 "extension config (a JSON file with graphs / devices / context)")
    found = Path(path)
    if not found.is_absolute() and base is not None and (Path(base) / found).exists():
        found = Path(base) / found
    ext_where = f"{where}: {EXTENSIONS_SECTION}.config_file_path {found}"
    settings = htp_extension_settings(read_json(found, ext_where), str(found))
    return extended[0], settings


def read_backend_config(path: str | os.PathLike[str]) -> BackendConfig:
    """Read and validate a backend config file."""
    return parse_backend_config(read_json(path, f"--config_file {path}"), str(path), Path(path).parent)
