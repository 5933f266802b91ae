"""Imports flow one way (STYLE.md): cli -> api -> runtime -> backends / quantization / frontends -> passes / ops ->
ir -> errors. Below the API no module imports ``openqnn.api``, ``openqnn.cli`` or the package root, not even
inside a function (a lazy import is still a dependency the wrong way round)."""

from __future__ import annotations

import ast
from pathlib import Path

import openqnn

_SRC = Path(openqnn.__file__).parent
# the layers below the API (the API's own level: api.py, cli/, inference.py, profiling/, onnx_backend.py, docs.py,
# demo.py and the package's __init__)
_BELOW = ("runtime", "backends", "quantization", "frontends", "passes", "ops", "ir", "serialization", "modellib",
          "errors.py", "fileio.py", "workers.py", "_version.py")
_ABOVE = ("api", "cli")


def _upward_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)] if node.module == "openqnn" \
                else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "openqnn" and (len(parts) == 1 or parts[1] in _ABOVE):
                found.append(f"{path.relative_to(_SRC.parent)}:{node.lineno} imports {name}")
    return found


def test_nothing_below_the_api_imports_the_api_the_cli_or_the_package_root() -> None:
    files = [p for name in _BELOW for p in ([_SRC / name] if name.endswith(".py") else (_SRC / name).rglob("*.py"))]
    assert len(files) > 100  # (the walk found the tree)
    bad = [line for f in files for line in _upward_imports(f)]
    assert not bad, "\n".join(bad)
