"""Prepared operands: the weights a cpu kernel lays out once (the native GEMM's packed panels, a depthwise weight
per tap), kept in its step plan so that binding a context binary lays nothing out again.

A step plan holds them beside its static tensors (``attrs["prepared"]``)::

    {"arrays":  ["sgemm32:...#0", "sgemm32:...#1"],      the operands (float32 arrays of the step's)
     "sources": {"conv1.weight": {"of": "sgemm32:...#0",  a static tensor the plan no longer holds itself,
                                  "panels": [576, 32]},   read back from an operand where something asks for
                 "conv1.bias": {"of": "sgemm32:...#1",    it: another machine's kernels (another panel width)
                                "cols": [0, 64]}}}         or another implementation (oneDNN on several threads)

so a context stores each weight once, in the layout this machine's kernels read. A source is read back exactly
(the layouts only move floats): ``panels`` [k, nr] undoes :func:`~openqnn.backends.cpu.native.pack` (rows of k,
panels of nr columns), ``cols`` [a, b) takes columns (of those rows, or elements of a vector), ``transposed`` turns
the rows over, ``perm`` reorders axes, and the result takes the tensor's shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Source", "read_source"]


@dataclass(frozen=True)
class Source:
    """How a static tensor reads back from operand ``operand`` (an index into what a kernel's ``make`` returns):
    ``panels`` (k, nr) where the operand is packed panels of [k, n] rows, ``cols`` a column range of those rows
    (of a vector: an element range), ``transposed`` where the tensor is the rows' transpose, ``perm`` where the
    tensor's axes are the operand's in another order (oneDNN's [cout, cin, kh, kw] of the IR's [kh, kw, cin, cout])."""

    tensor: str
    operand: int
    panels: tuple[int, int] | None = None
    cols: tuple[int, int] | None = None
    transposed: bool = False
    perm: tuple[int, ...] | None = None  # the tensor's axes are the operand's in this order

    def to_json(self, array: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"of": array}
        if self.perm is not None:
            doc["perm"] = list(self.perm)
        if self.panels is not None:
            doc["panels"] = list(self.panels)
        if self.cols is not None:
            doc["cols"] = list(self.cols)
        if self.transposed:
            doc["transposed"] = True
        return doc


def read_source(doc: Mapping[str, Any], arrays: Mapping[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """The static tensor of shape ``shape`` that a source (:meth:`Source.to_json`) reads back from ``arrays``: a new
    float32 array. ValueError where the source does not fit its operand."""
    a = np.asarray(arrays[doc["of"]])
    perm = doc.get("perm")
    if perm is not None:
        if sorted(perm) != list(range(a.ndim)):
            raise ValueError(f"{perm} is no order of {a.ndim} axes")
        a = a.transpose(perm)
    panels = doc.get("panels")
    if panels is not None:
        k, nr = int(panels[0]), int(panels[1])
        if k <= 0 or nr <= 0 or a.ndim != 1 or a.size % (k * nr):
            raise ValueError(f"{a.size} floats are no panels of {k} rows of {nr} columns")
        a = a.reshape(-1, k, nr).transpose(1, 0, 2).reshape(k, -1)  # [k, panels * nr]
    cols = doc.get("cols")
    if cols is not None:
        lo, hi = int(cols[0]), int(cols[1])
        if not 0 <= lo <= hi <= a.shape[-1]:
            raise ValueError(f"columns [{lo}, {hi}) of {a.shape[-1]}")
        a = a[..., lo:hi]
    if doc.get("transposed"):
        a = a.T
    return np.array(a, dtype=np.float32, order="C").reshape(shape)
