"""IR tensors: name, static shape, data type, kind, optional data and encoding."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from openqnn.ir.dtype import DType

__all__ = ["Encoding", "Tensor", "TensorKind"]


class TensorKind(enum.Enum):
    """Who writes and reads a tensor, as QNN's ``QNN_TENSOR_TYPE_*``."""

    APP_WRITE = "APP_WRITE"  # graph input
    APP_READ = "APP_READ"  # graph output
    NATIVE = "NATIVE"  # intermediate
    STATIC = "STATIC"  # weights and other constants


@dataclass(frozen=True)
class Encoding:
    """A quantization encoding: ``real = scale * (q + offset)`` (QNN's sign: offset = -zero_point).

    Per-tensor encodings hold one scale and offset; per-axis encodings hold one per slice of
    ``axis``. q is unsigned, in [0, 2^bw - 1] (symmetric weights: offset -2^(bw-1)), unless
    ``is_signed`` (32-bit biases: signed q, offset 0). The quantization stage fills these; a float
    model has none.
    """

    bitwidth: int
    scale: tuple[float, ...]
    offset: tuple[int, ...]
    axis: int | None = None
    symmetric: bool = False
    is_signed: bool = False

    def __post_init__(self) -> None:
        if len(self.scale) != len(self.offset):
            raise ValueError("Encoding needs as many offsets as scales")
        if self.axis is None and len(self.scale) != 1:
            raise ValueError("a per-tensor Encoding has exactly one scale")


@dataclass
class Tensor:
    """One IR tensor. Shapes are static; STATIC tensors carry their data.

    ``src_axis_format`` / ``axis_format`` record the layout in the source framework and inside
    the IR (e.g. ``NCHW`` / ``NHWC``) for graph inputs and outputs.
    """

    name: str
    shape: tuple[int, ...]
    dtype: DType
    kind: TensorKind = TensorKind.NATIVE
    data: np.ndarray | None = field(default=None, repr=False)
    encoding: Encoding | None = None
    src_axis_format: str | None = None
    axis_format: str | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def is_static(self) -> bool:
        return self.kind is TensorKind.STATIC
