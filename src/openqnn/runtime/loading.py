"""Reading a prepared-for-loading model: a ``_net.json`` (with its ``.bin``) or a model library, for
``openqnn.load`` and for the runtime's own use (``Session("x_net.json")``), so that the runtime does not
import the API above it."""

from __future__ import annotations

import os
from pathlib import Path

from openqnn.ir.graph import Graph

__all__ = ["load_graph"]


def load_graph(path: str | os.PathLike[str]) -> Graph:
    """Read a ``<stem>_net.json`` model (``<stem>.cpp`` / ``<stem>`` also find it) or a model library
    (``lib<name>.so`` from ``qnn-model-lib-generator``: its graph composed through the C ABI)."""
    from openqnn.modellib import is_model_library, load_library
    from openqnn.serialization import load_model, model_paths

    p = Path(path)
    if p.suffix == ".so" or is_model_library(p):
        return load_library(p)
    if not p.name.endswith("_net.json"):
        p = model_paths(p)[0]
    return load_model(p)
