"""The backend registry: names and QNN library names, capabilities instead of names, configs by section,
and a new backend is its folder plus one registry line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import openqnn
from openqnn.backends import SPECS, BackendSpec, Capabilities, backend_spec, create_backend
from openqnn.backends.settings import validate_config
from openqnn.runtime.config import read_backend_config

SRC = Path(openqnn.__file__).parent


@pytest.mark.parametrize(("given", "name"), [("cpu", "cpu"), ("libQnnHtp.so", "htp"), ("/opt/qnn/lib/libQnnCpu.so", "cpu"),
                                             ("QnnHtp", "htp"), ("GPU", "gpu")])
def test_names_and_library_names(given: str, name: str) -> None:
    assert backend_spec(given).name == name


def test_unknown_and_unavailable_backends_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(openqnn.InvalidConfigError, match=r"--backend npu: unknown backend; use cpu \(libQnnCpu.so\)"):
        backend_spec("npu")
    gpu = SPECS["gpu"]
    monkeypatch.setitem(SPECS, "gpu", replace(gpu, create=None, unavailable="not in this build"))
    with pytest.raises(openqnn.InvalidConfigError, match=r"--backend libQnnGpu\.so: not in this build; "
                                                         "available here: cpu, htp"):
        create_backend("libQnnGpu.so")
    monkeypatch.setitem(SPECS, "gpu", replace(gpu, probe=lambda: "no GPU here; use cpu"))
    with pytest.raises(openqnn.InvalidConfigError, match="--backend gpu: no GPU here; use cpu; available here: cpu, htp"):
        create_backend("gpu")


def test_capabilities() -> None:
    assert SPECS["htp"].capabilities.native_integer_io and SPECS["htp"].capabilities.quantized_only
    assert not SPECS["cpu"].capabilities.native_integer_io and SPECS["cpu"].capabilities.fallback
    for spec in SPECS.values():
        if spec.why_unavailable() is None:
            assert create_backend(spec.name).capabilities == spec.capabilities


def test_native_io_asks_the_capability(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from helpers import make_model

    graph = openqnn.convert(make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", TensorProto.FLOAT, [1, 4])],
                                       [("y", TensorProto.FLOAT, [1, 4])]))
    with pytest.raises(openqnn.InvalidConfigError, match="the cpu backend takes and returns floats"):
        openqnn.Session(graph).run({"x": np.zeros((1, 4), np.float32)}, native_outputs=True)


@dataclass(frozen=True)
class ToyConfig:
    num_threads: int | None = None
    performance_mode: str = "default"

    def __post_init__(self) -> None:
        validate_config(self, "toy_config")


def _toy(config: Any, num_threads: int | None) -> Any:
    from openqnn.backends.cpu.backend import CpuBackend
    from openqnn.backends.cpu.config import CpuConfig

    backend = CpuBackend(CpuConfig(num_threads=num_threads or (config.num_threads if config else None)))
    backend.name = "toy"  # type: ignore[misc]
    return backend


def test_a_new_backend_is_one_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering a spec is all it takes: --backend, Session, and its config file section."""
    monkeypatch.setitem(SPECS, "toy", BackendSpec("toy", "libQnnToy.so", ToyConfig, Capabilities(("fp32",)), _toy))
    (tmp_path / "cfg.json").write_text(json.dumps({"toy_config": {"num_threads": 1, "performance_mode": "burst"}}))
    config = read_backend_config(tmp_path / "cfg.json")
    assert config.toy == ToyConfig(1, "burst")
    from onnx import TensorProto, helper

    from helpers import make_model

    graph = openqnn.convert(make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", TensorProto.FLOAT, [1, 4])],
                                       [("y", TensorProto.FLOAT, [1, 4])]))
    sess = openqnn.Session(graph, backend="libQnnToy.so", config=config)
    assert sess.backend.name == "toy"
    np.testing.assert_array_equal(sess.run({"x": np.array([[-1, 2, -3, 4]], np.float32)})["y"], [[0, 2, 0, 4]])
    (tmp_path / "bad.json").write_text(json.dumps({"toy_config": {"performance_mode": "warp"}}))
    with pytest.raises(openqnn.InvalidConfigError, match=r"toy_config\.performance_mode = 'warp' is not valid"):
        read_backend_config(tmp_path / "bad.json")


def test_no_backend_name_is_compared_outside_backends() -> None:
    names = "|".join(SPECS)
    compare = re.compile(rf"""(==|!=|\bin\b|\bis\b)\s*\(?["']({names})["']|["']({names})["']\s*(==|!=|\bin\b)""")
    found = [f"{p.relative_to(SRC)}:{i}: {line.strip()}"
             for p in sorted(SRC.rglob("*.py")) if "backends" not in p.relative_to(SRC).parts
             for i, line in enumerate(p.read_text().splitlines(), 1) if compare.search(line)]
    assert not found, found


def test_importing_openqnn_and_backend_specs_stays_light() -> None:
    code = ("import sys, openqnn, openqnn.backends, openqnn.runtime.config; "
            "print(sorted(m for m in ('torch', 'onnx', 'openqnn.backends.htp.kernels') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_htp_reaches_cpu_only_through_the_fallback_path() -> None:
    """htp shares geometry, dtypes and Unsupported with cpu through backends/ modules, and runs fallback
    nodes (and the float functions its lookup tables are built from) through backends/fallback.py."""
    found = [f"{p.relative_to(SRC)}:{i}: {line.strip()}"
             for p in sorted((SRC / "backends" / "htp").rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if "openqnn.backends.cpu" in line]
    assert not found, found
