"""Backend config files (the seed's ``backend_config.json``), validated key by key.

    {"cpu_config": {"num_threads": 4, "performance_mode": "balanced", "enable_fast_math": true},
     "gpu_config": {"device_id": 0, "precision_mode": "fp16", ...},
     "htp_config": {"vtcm_mb": 8, "precision_mode": "int8", ...}}

An unknown section or key, or a value of the wrong kind, is an error that names it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from openqnn.errors import InvalidConfigError

__all__ = ["BackendConfig", "CpuConfig", "GpuConfig", "HtpConfig", "load_backend_config", "parse_backend_config"]

PERFORMANCE_MODES = ("default", "burst", "sustained_high_performance", "high_performance", "balanced",
                     "low_balanced", "high_power_saver", "power_saver", "low_power_saver", "extreme_power_saver")


@dataclass(frozen=True)
class CpuConfig:
    num_threads: int | None = None
    performance_mode: str = "default"
    enable_fast_math: bool = False


@dataclass(frozen=True)
class GpuConfig:
    device_id: int = 0
    performance_mode: str = "default"
    precision_mode: str = "fp32"
    enable_transform_optimization: bool = False


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


@dataclass(frozen=True)
class BackendConfig:
    cpu: CpuConfig = CpuConfig()
    gpu: GpuConfig = GpuConfig()
    htp: HtpConfig = HtpConfig()


_SECTIONS = {"cpu_config": ("cpu", CpuConfig), "gpu_config": ("gpu", GpuConfig), "htp_config": ("htp", HtpConfig)}
_CHOICES = {
    "performance_mode": PERFORMANCE_MODES,
    "precision_mode": {"gpu": ("fp32", "fp16", "hybrid"), "htp": ("int8", "int16", "fp16", "mixed")},
    "dsp_arch": ("v68", "v69", "v73", "v75", "v79", "v81"),
}


def _check(where: str, section: str, key: str, value: Any, default: Any) -> Any:
    expected: type | tuple[type, ...]
    if isinstance(default, bool):
        expected = bool
    elif isinstance(default, int) or key in ("num_threads", "vtcm_mb", "soc_model", "device_id"):
        expected = int
    else:
        expected = str
    if value is None and default is None:
        return None
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise InvalidConfigError(f"{where}: {section}.{key} = {value!r} must be a {expected.__name__}")
    if isinstance(value, int) and value < 0:
        raise InvalidConfigError(f"{where}: {section}.{key} = {value} must not be negative")
    if key in ("num_threads",) and value == 0:
        raise InvalidConfigError(f"{where}: {section}.{key} must be at least 1")
    choices = _CHOICES.get(key)
    if isinstance(choices, dict):
        choices = choices.get(section.split("_")[0])
    if choices and value not in choices:
        raise InvalidConfigError(f"{where}: {section}.{key} = {value!r} is not valid; use one of {', '.join(choices)}")
    return value


def parse_backend_config(doc: Any, where: str = "backend config") -> BackendConfig:
    if not isinstance(doc, dict):
        raise InvalidConfigError(f"{where}: must be a JSON object with cpu_config / gpu_config / htp_config")
    parts: dict[str, Any] = {}
    for section, body in doc.items():
        if section not in _SECTIONS:
            raise InvalidConfigError(f"{where}: unknown section '{section}'; use {', '.join(_SECTIONS)}")
        attr, cls = _SECTIONS[section]
        if not isinstance(body, dict):
            raise InvalidConfigError(f"{where}: {section} must be a JSON object")
        known = {f.name: f.default for f in fields(cls)}
        for key in body:
            if key not in known:
                raise InvalidConfigError(f"{where}: unknown key {section}.{key}; valid keys: {', '.join(known)}")
        parts[attr] = cls(**{k: _check(where, section, k, v, known[k]) for k, v in body.items()})
    return BackendConfig(**parts)


def load_backend_config(path: str | os.PathLike[str], backend: str) -> dict[str, Any]:
    """Validate a backend config file and return the Session options for ``backend``."""
    return {"config": read_backend_config(path)}


def read_backend_config(path: str | os.PathLike[str]) -> BackendConfig:
    """Read and validate a backend config file."""
    p = Path(path)
    if not p.is_file():
        raise InvalidConfigError(f"--config_file {p}: no such file")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InvalidConfigError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return parse_backend_config(doc, str(p))
