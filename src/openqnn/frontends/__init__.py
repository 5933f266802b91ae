"""Frontends: source models -> IR graphs (before passes). See :mod:`openqnn.frontends.base`.

``BUILTIN`` lists the frontend packages openqnn ships; each registers itself when imported and imports
no framework until its ``load`` runs, so looking a frontend up costs nothing.
"""

from __future__ import annotations

import importlib

__all__ = ["BUILTIN", "load_builtin"]

BUILTIN: tuple[str, ...] = ("onnx", "pytorch", "tflite", "tensorflow", "caffe")


def load_builtin() -> None:
    """Import (and so register) every built-in frontend package."""
    for name in BUILTIN:
        importlib.import_module(f"openqnn.frontends.{name}")
