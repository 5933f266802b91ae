"""IR tensors: name, static shape, data type, kind, optional data and encoding."""

from __future__ import annotations

import enum
import math
import operator
from dataclasses import dataclass, field

import numpy as np

from openqnn.ir.dtype import DType

__all__ = ["Encoding", "Tensor", "TensorKind", "qrange"]


class TensorKind(enum.Enum):
    """Who writes and reads a tensor, as QNN's ``QNN_TENSOR_TYPE_*``."""

    APP_WRITE = "APP_WRITE"  # graph input
    APP_READ = "APP_READ"  # graph output
    NATIVE = "NATIVE"  # intermediate
    STATIC = "STATIC"  # weights and other constants


def qrange(bitwidth: int, signed: bool = False) -> tuple[int, int]:
    """The integer range of a ``bitwidth``-bit encoding: [0, 2^bw - 1], or signed [-2^(bw-1), 2^(bw-1) - 1].
    The one copy of it (quantization.encodings.math exports it with quantize and dequantize)."""
    if signed:
        return -(1 << (bitwidth - 1)), (1 << (bitwidth - 1)) - 1
    return 0, (1 << bitwidth) - 1


@dataclass(frozen=True)
class Encoding:
    """A quantization encoding: ``real = scale * (q + offset)`` (QNN's sign: offset = -zero_point).

    Per-tensor encodings hold one scale and offset; per-axis encodings hold one per slice of
    ``axis``. q is unsigned, in [0, 2^bw - 1] (symmetric weights: offset -2^(bw-1)), unless
    ``is_signed`` (32-bit biases: signed q, offset 0). The quantization stage fills these; a float
    model has none.

    Per-block encodings (QNN's block encodings, AIMET's PER_BLOCK; weights only) also set
    ``block_axis`` and ``block_size``: one scale/offset per output channel (``axis``) and per block of
    ``block_size`` consecutive elements along ``block_axis`` (the reduction axis), stored row-major
    as [channels, blocks]. ``block_scale_bitwidth`` marks an LPBQ encoding (QNN's blockwise
    expansion): each channel's block scales are one float scale times unsigned integers in
    [1, 2^block_scale_bitwidth], the largest being 2^block_scale_bitwidth.

    ``qmin`` / ``qmax`` restrict q (the same integers as above: unsigned unless ``is_signed``) to a
    narrower range than the bitwidth's (``--restrict_quantization_steps``); None: the full range.
    """

    bitwidth: int
    scale: tuple[float, ...]
    offset: tuple[int, ...]
    axis: int | None = None
    symmetric: bool = False
    is_signed: bool = False
    block_size: int | None = None
    block_axis: int | None = None
    block_scale_bitwidth: int | None = None
    qmin: int | None = None
    qmax: int | None = None

    def __post_init__(self) -> None:
        try:
            bitwidth = None if isinstance(self.bitwidth, bool) else operator.index(self.bitwidth)
        except TypeError:
            bitwidth = None
        if bitwidth is None or not 1 <= bitwidth <= 32:
            raise ValueError(f"bitwidth {self.bitwidth!r} must be an integer in [1, 32]")
        bad = [s for s in self.scale if not (math.isfinite(s) and s > 0)]
        if bad:
            raise ValueError(f"scale {bad[0]!r} must be a finite positive number")
        if len(self.scale) != len(self.offset):
            raise ValueError("Encoding needs as many offsets as scales")
        if self.axis is None and len(self.scale) != 1:
            raise ValueError("a per-tensor Encoding has exactly one scale")
        if (self.block_size is None) != (self.block_axis is None):
            raise ValueError("a per-block Encoding needs both block_size and block_axis")
        if self.block_size is not None:
            if self.axis is None:
                raise ValueError("a per-block Encoding needs a channel axis")
            if self.block_size < 1:
                raise ValueError(f"block_size {self.block_size} must be positive")
            if self.block_axis == self.axis:
                raise ValueError(f"block_axis {self.block_axis} must differ from the channel axis")
        elif self.block_scale_bitwidth is not None:
            raise ValueError("block_scale_bitwidth (LPBQ) needs a per-block Encoding")
        if self.block_scale_bitwidth is not None and not 1 <= self.block_scale_bitwidth <= 16:
            raise ValueError(f"block_scale_bitwidth {self.block_scale_bitwidth} must be in [1, 16]")
        if (self.qmin is None) != (self.qmax is None):
            raise ValueError("a restricted Encoding needs both qmin and qmax")
        if self.qmin is not None and self.qmax is not None:
            lo, hi = self._full_range()
            if not lo <= self.qmin < self.qmax <= hi:
                raise ValueError(f"restricted range [{self.qmin}, {self.qmax}] is not inside the "
                                 f"{self.bitwidth}-bit range [{lo}, {hi}]")

    def _full_range(self) -> tuple[int, int]:
        return qrange(self.bitwidth, self.is_signed)

    @property
    def per_block(self) -> bool:
        return self.block_size is not None

    @property
    def int_range(self) -> tuple[int, int]:
        """The integers q may take: [qmin, qmax] when restricted, else the bitwidth's full range."""
        if self.qmin is not None and self.qmax is not None:
            return self.qmin, self.qmax
        return self._full_range()

    def shape_error(self, shape: tuple[int, ...]) -> str | None:
        """Why this encoding does not fit a tensor of ``shape`` (None: it fits)."""
        rank = len(shape)
        n = len(self.scale)
        if self.axis is None:
            return None
        if not 0 <= self.axis < max(rank, 1):
            return f"its axis {self.axis} is outside rank {rank}"
        channels = shape[self.axis] if rank else 1
        if self.block_size is None or self.block_axis is None:
            if n != channels:
                return f"{n} per-channel values for {channels} channels along axis {self.axis} (shape {shape})"
            return None
        if not 0 <= self.block_axis < rank:
            return f"its block axis {self.block_axis} is outside rank {rank}"
        length = shape[self.block_axis]
        if length % self.block_size:
            return (f"block size {self.block_size} does not divide the {length} elements along its block axis "
                    f"{self.block_axis} (shape {shape})")
        blocks = length // self.block_size
        if n != channels * blocks:
            return (f"{n} per-block values, but {channels} channels x {blocks} blocks of {self.block_size} "
                    f"make {channels * blocks} (shape {shape})")
        if self.block_scale_bitwidth is not None:
            try:
                self.lpbq_factors(shape)
            except ValueError as e:
                return str(e)
        return None

    @staticmethod
    def expand_lpbq(channel_scale: np.ndarray, block_scales: np.ndarray) -> tuple[float, ...]:
        """Per-block scales (row-major [channels, blocks]) of an LPBQ encoding: float scale x integer."""
        cs = np.asarray(channel_scale, dtype=np.float64).reshape(-1, 1)
        k = np.asarray(block_scales, dtype=np.float64).reshape(cs.shape[0], -1)
        return tuple(float(v) for v in (cs * k).reshape(-1))

    def lpbq_factors(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(per-channel float scales [C], per-block integer scales [C, B], per-channel offsets [C]) of an
        LPBQ encoding on a tensor of ``shape``; ValueError when its scales are not of that form."""
        if self.block_scale_bitwidth is None or self.axis is None or self.block_axis is None or not self.block_size:
            raise ValueError("not an LPBQ encoding")
        channels, blocks = shape[self.axis], shape[self.block_axis] // self.block_size
        grid = np.asarray(self.scale, dtype=np.float64).reshape(channels, blocks)
        offsets = np.asarray(self.offset, dtype=np.int64).reshape(channels, blocks)
        if np.any(offsets != offsets[:, :1]):
            raise ValueError("LPBQ encoding with different offsets within a channel")
        levels = 1 << self.block_scale_bitwidth
        cs = grid.max(axis=1) / levels
        k = grid / cs[:, None]
        ki = np.round(k)
        if np.any(np.abs(k - ki) > 1e-6 * ki) or ki.min() < 1 or ki.max() > levels:
            raise ValueError(f"LPBQ encoding whose block scales are not a channel scale times integers in "
                             f"[1, {levels}]")
        return cs, ki.astype(np.int64), offsets[:, 0]

    def arrays(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(scale float64, offset int64) shaped to broadcast against a tensor of ``shape``: per-tensor
        as scalars' shape [1, ...], per-axis along ``axis``, per-block expanded along ``block_axis``."""
        rank = len(shape)
        scale = np.asarray(self.scale, dtype=np.float64)
        offset = np.asarray(self.offset, dtype=np.int64)
        target = [1] * rank
        if self.axis is None or not rank:
            return scale.reshape(target), offset.reshape(target)
        error = self.shape_error(shape)
        if error:
            raise ValueError(f"encoding does not fit shape {shape}: {error}")
        if self.block_size is None or self.block_axis is None:
            target[self.axis] = len(self.scale)
            return scale.reshape(target), offset.reshape(target)
        channels, blocks = shape[self.axis], shape[self.block_axis] // self.block_size
        grids = [np.repeat(a.reshape(channels, blocks), self.block_size, axis=1) for a in (scale, offset)]
        if self.axis > self.block_axis:
            grids = [g.T for g in grids]
        target[self.axis], target[self.block_axis] = shape[self.axis], shape[self.block_axis]
        return grids[0].reshape(target), grids[1].reshape(target)


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
