"""Session: load a model, prepare it for a backend once, run it many times."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openqnn.backends import get_backend
from openqnn.errors import InputDataError
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph

__all__ = ["Session", "TensorInfo"]


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as the application sees it."""

    name: str
    shape: tuple[int, ...]
    dtype: DType
    layout: str | None = None

    @property
    def numpy_dtype(self) -> np.dtype:
        return self.dtype.numpy


class Session:
    """A model prepared for one backend.

    >>> sess = openqnn.Session("model_net.json", backend="cpu")      # doctest: +SKIP
    >>> out = sess.run({"input": np.zeros((1, 3, 224, 224), np.float32)})  # doctest: +SKIP
    """

    def __init__(self, model: Graph | str | os.PathLike[str], backend: str = "cpu", num_threads: int | None = None):
        if isinstance(model, Graph):
            self.graph = model
        else:
            from openqnn.api import load

            self.graph = load(Path(model))
        options = {"num_threads": num_threads} if num_threads else {}
        self.backend = get_backend(backend, **options)
        self._exe = self.backend.prepare(self.graph)

    @property
    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(t.name, t.shape, t.dtype, t.src_axis_format) for t in self.graph.input_tensors()]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(t.name, t.shape, t.dtype, t.src_axis_format) for t in self.graph.output_tensors()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference: input name -> array, returns output name -> array."""
        unknown = sorted(set(feeds) - set(self.graph.inputs))
        if unknown:
            raise InputDataError(f"unknown input(s) {', '.join(unknown)}; the model's inputs are "
                                 f"{', '.join(self.graph.inputs)}")
        return self._exe.run(feeds)
