"""Tables read off Qualcomm's HTP simulator where the arithmetic behind them is not found (docs/htp-fidelity.md,
"16-bit Gelu and Atan as measured tables (stop 30)"): data measured entry by entry, shipped in ``tables/`` as
safetensors (no pickle), written by the probes in ``tests/fidelity`` and checked there against a fresh reading."""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
from safetensors.numpy import load

if TYPE_CHECKING:  # (importlib.resources.abc: Python 3.11 on)
    from importlib.resources.abc import Traversable

__all__ = ["measured_table", "table_path"]


def table_path(file: str) -> Traversable:
    """Where the table ``file`` (e.g. ``gelu16_gate.safetensors``) lives in the installed package."""
    return resources.files(__package__).joinpath(f"tables/{file}")


@functools.cache
def measured_table(file: str, key: str, size: int) -> np.ndarray:
    """The table ``key`` of ``file`` as int64, read-only, read once; a RuntimeError naming it where it does not hold
    ``size`` entries (a broken install)."""
    table = load(table_path(file).read_bytes())[key].astype(np.int64)
    if table.shape != (size,):
        raise RuntimeError(f"openqnn's measured htp table {file} holds {table.shape}, not ({size},); reinstall openqnn")
    table.flags.writeable = False
    return table
