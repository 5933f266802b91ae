"""Backend config files (the seed's ``backend_config.json``), validated key by key.

    {"cpu_config": {"num_threads": 4, "performance_mode": "balanced", "enable_fast_math": true},
     "gpu_config": {"device_id": 0, "precision_mode": "fp16", ...},
     "htp_config": {"vtcm_mb": 8, "precision_mode": "int8", ...}}

An unknown section or key, a value of the wrong kind or a number out of its range is an error that
names the file and the key. The ranges (``LIMITS``): ``num_threads`` 1 to 256 (``MAX_THREADS``: more
threads than any phone or workstation has cores only thrash, and huge counts crash thread pools);
``device_id`` 0 to 63; ``vtcm_mb`` 1 to the VTCM of the HTP arch in use (8 MB at most); ``soc_model``
one of the known Snapdragon models. The config dataclasses check the same ranges, so an API user
gets the same errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from openqnn.errors import InvalidConfigError
from openqnn.fileio import read_json

__all__ = ["LIMITS", "MAX_THREADS", "BackendConfig", "CpuConfig", "GpuConfig", "HtpConfig", "check_num_threads",
           "load_backend_config", "parse_backend_config", "read_backend_config"]

MAX_THREADS = 256
# inclusive ranges of the integer settings
LIMITS: dict[str, tuple[int, int]] = {"num_threads": (1, MAX_THREADS), "device_id": (0, 63), "vtcm_mb": (1, 8),
                                      "soc_model": (0, 9999)}

PERFORMANCE_MODES = ("default", "burst", "sustained_high_performance", "high_performance", "balanced",
                     "low_balanced", "high_power_saver", "power_saver", "low_power_saver", "extreme_power_saver")


@dataclass(frozen=True)
class CpuConfig:
    num_threads: int | None = None
    performance_mode: str = "default"
    enable_fast_math: bool = False

    def __post_init__(self) -> None:
        _validate(self, "cpu_config")


@dataclass(frozen=True)
class GpuConfig:
    device_id: int = 0
    performance_mode: str = "default"
    precision_mode: str = "fp32"
    enable_transform_optimization: bool = False

    def __post_init__(self) -> None:
        _validate(self, "gpu_config")


@dataclass(frozen=True)
class HtpConfig:
    device_id: int = 0
    performance_mode: str = "default"
    precision_mode: str = "int8"
    vtcm_mb: int | None = None
    enable_dma: bool = False
    soc_model: int | None = None
    dsp_arch: str | None = None
    fp16_relaxed_precision: bool = False

    def __post_init__(self) -> None:
        _validate(self, "htp_config")


_CHOICES = {
    "performance_mode": PERFORMANCE_MODES,
    "precision_mode": {"gpu": ("fp32", "fp16", "hybrid"), "htp": ("int8", "int16", "fp16", "mixed")},
    "dsp_arch": ("v68", "v69", "v73", "v75", "v79", "v81"),
}


def check_num_threads(value: Any, what: str = "num_threads") -> int:
    """A thread count in 1..MAX_THREADS (``what`` names it in the error)."""
    return _check(what, "num_threads", value, "cpu")


def _check(what: str, key: str, value: Any, section: str) -> Any:
    """``value`` of setting ``key`` (``what``: how the error names it), checked for kind, range and choice."""
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
    choices = _CHOICES.get(key)
    if isinstance(choices, dict):
        choices = choices.get(section)
    if choices and value not in choices:
        raise InvalidConfigError(f"{what} = {value!r} is not valid; use one of {', '.join(choices)}")
    return value


def _validate(config: Any, section: str) -> None:
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None and f.default is None:
            continue
        _check(f"{section}.{f.name}", f.name, value, section.split("_")[0])


@dataclass(frozen=True)
class BackendConfig:
    cpu: CpuConfig = CpuConfig()
    gpu: GpuConfig = GpuConfig()
    htp: HtpConfig = HtpConfig()


_SECTIONS = {"cpu_config": ("cpu", CpuConfig), "gpu_config": ("gpu", GpuConfig), "htp_config": ("htp", HtpConfig)}

def parse_backend_config(doc: Any, where: str = "backend config") -> BackendConfig:
    """A backend config document (the parsed JSON); errors name ``where`` and the key."""
    if not isinstance(doc, dict):
        raise InvalidConfigError(f"{where}: must be a JSON object with cpu_config / gpu_config / htp_config")
    parts: dict[str, Any] = {}
    for section, body in doc.items():
        if section not in _SECTIONS:
            raise InvalidConfigError(f"{where}: unknown section '{section}'; use {', '.join(_SECTIONS)}")
        attr, cls = _SECTIONS[section]
        if not isinstance(body, dict):
            raise InvalidConfigError(f"{where}: {section} must be a JSON object")
        known = {f.name for f in fields(cls)}
        for key in body:
            if key not in known:
                raise InvalidConfigError(f"{where}: unknown key {section}.{key}; valid keys: {', '.join(known)}")
        try:
            parts[attr] = cls(**body)
        except InvalidConfigError as e:
            raise InvalidConfigError(f"{where}: {e}") from None
    if "htp" in parts:
        _check_htp_arch(parts["htp"], where)
    return BackendConfig(**parts)


def _check_htp_arch(config: HtpConfig, where: str) -> None:
    """dsp_arch / soc_model name a known arch, and vtcm_mb fits its VTCM."""
    from openqnn.backends.htp.arch import resolve_arch

    try:
        arch = resolve_arch(config.dsp_arch, config.soc_model)
    except InvalidConfigError as e:
        raise InvalidConfigError(f"{where}: {e}") from None
    if config.vtcm_mb is not None and config.vtcm_mb > arch.vtcm_mb:
        raise InvalidConfigError(f"{where}: htp_config.vtcm_mb = {config.vtcm_mb} is more than the {arch.vtcm_mb} MB "
                                 f"of VTCM of {arch.name}; use 1 to {arch.vtcm_mb}")


def load_backend_config(path: str | os.PathLike[str], backend: str) -> dict[str, Any]:
    """Validate a backend config file and return the Session options for ``backend``."""
    return {"config": read_backend_config(path)}


def read_backend_config(path: str | os.PathLike[str]) -> BackendConfig:
    """Read and validate a backend config file."""
    return parse_backend_config(read_json(path, f"--config_file {path}"), str(path))
