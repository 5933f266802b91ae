"""Backend config files (the seed's ``backend_config.json``), validated key by key.

    {"cpu_config": {"num_threads": 4, "performance_mode": "balanced", "enable_fast_math": true},
     "gpu_config": {"device_id": 0, "precision_mode": "fp16", ...},
     "htp_config": {"vtcm_mb": 8, "precision_mode": "int8", ...}}

Each section belongs to one backend (``<name>_config``) and is read into that backend's config dataclass
(``backends/<name>/config.py``). An unknown section or key, a value of the wrong kind or a number out of
its range is an error that names the file and the key; the ranges are in ``backends/settings.py``
(``LIMITS``), and the config dataclasses check them too, so an API user gets the same errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from openqnn.backends import SPECS
from openqnn.backends.cpu.config import CpuConfig
from openqnn.backends.gpu.config import GpuConfig
from openqnn.backends.htp.config import HtpConfig
from openqnn.backends.settings import LIMITS, MAX_THREADS, check_num_threads
from openqnn.errors import InvalidConfigError
from openqnn.fileio import read_json

__all__ = ["LIMITS", "MAX_THREADS", "BackendConfig", "CpuConfig", "GpuConfig", "HtpConfig", "check_num_threads",
           "parse_backend_config", "read_backend_config"]


class BackendConfig:
    """One config dataclass per backend, by backend name: ``BackendConfig(htp=HtpConfig(vtcm_mb=4))``,
    ``config.htp`` (a backend's defaults where the file has no section for it). A backend name with a dash is
    written with an underscore here: ``BackendConfig(qnn_htp=QnnHtpConfig(dsp_arch="v73"))``."""

    def __init__(self, **sections: Any):
        sections = {_backend_name(k): v for k, v in sections.items()}
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

    def given(self) -> Mapping[str, Any]:
        """The sections given explicitly (from the file or the constructor)."""
        return dict(self._sections)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or _backend_name(name) not in SPECS:
            raise AttributeError(name)
        return self.section(_backend_name(name))

    def __repr__(self) -> str:
        return f"BackendConfig({', '.join(f'{k}={v!r}' for k, v in self._sections.items())})"


def _backend_name(key: str) -> str:
    """``qnn_htp`` (a Python identifier) -> ``qnn-htp`` where that is the registered name."""
    dashed = key.replace("_", "-")
    return dashed if key not in SPECS and dashed in SPECS else key


def parse_backend_config(doc: Any, where: str = "backend config") -> BackendConfig:
    """A backend config document (the parsed JSON); errors name ``where`` and the key."""
    sections = {spec.config_section: spec for spec in SPECS.values()}
    if not isinstance(doc, dict):
        raise InvalidConfigError(f"{where}: must be a JSON object with {' / '.join(sections)}")
    parts: dict[str, Any] = {}
    for section, body in doc.items():
        if section not in sections:
            raise InvalidConfigError(f"{where}: unknown section '{section}'; use {', '.join(sections)}")
        spec = sections[section]
        if not isinstance(body, dict):
            raise InvalidConfigError(f"{where}: {section} must be a JSON object")
        known = [f.name for f in fields(spec.config_class)]
        for key in body:
            if key not in known:
                raise InvalidConfigError(f"{where}: unknown key {section}.{key}; valid keys: {', '.join(known)}")
        try:
            parts[spec.name] = spec.config_class(**body)
        except InvalidConfigError as e:
            raise InvalidConfigError(f"{where}: {e}") from None
    return BackendConfig(**parts)


def read_backend_config(path: str | os.PathLike[str]) -> BackendConfig:
    """Read and validate a backend config file."""
    return parse_backend_config(read_json(path, f"--config_file {path}"), str(path))
