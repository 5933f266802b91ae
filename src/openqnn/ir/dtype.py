"""Data types of IR tensors, named as QNN names them."""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["DType"]


class DType(enum.Enum):
    """A tensor element type. Values are QNN's ``QNN_DATATYPE_*`` names."""

    FLOAT_32 = "QNN_DATATYPE_FLOAT_32"
    FLOAT_16 = "QNN_DATATYPE_FLOAT_16"
    FLOAT_64 = "QNN_DATATYPE_FLOAT_64"
    INT_8 = "QNN_DATATYPE_INT_8"
    INT_16 = "QNN_DATATYPE_INT_16"
    INT_32 = "QNN_DATATYPE_INT_32"
    INT_64 = "QNN_DATATYPE_INT_64"
    UINT_8 = "QNN_DATATYPE_UINT_8"
    UINT_16 = "QNN_DATATYPE_UINT_16"
    UINT_32 = "QNN_DATATYPE_UINT_32"
    UINT_64 = "QNN_DATATYPE_UINT_64"
    BOOL_8 = "QNN_DATATYPE_BOOL_8"
    UFIXED_POINT_8 = "QNN_DATATYPE_UFIXED_POINT_8"
    UFIXED_POINT_16 = "QNN_DATATYPE_UFIXED_POINT_16"
    SFIXED_POINT_4 = "QNN_DATATYPE_SFIXED_POINT_4"
    SFIXED_POINT_8 = "QNN_DATATYPE_SFIXED_POINT_8"
    SFIXED_POINT_16 = "QNN_DATATYPE_SFIXED_POINT_16"
    SFIXED_POINT_32 = "QNN_DATATYPE_SFIXED_POINT_32"

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype holding this type's values (fixed-point types hold their integers)."""
        return np.dtype(_TO_NUMPY[self])

    @property
    def is_float(self) -> bool:
        return self in (DType.FLOAT_32, DType.FLOAT_16, DType.FLOAT_64)

    @property
    def is_fixed_point(self) -> bool:
        return self.name.startswith(("UFIXED", "SFIXED"))

    @property
    def is_integer(self) -> bool:
        return not self.is_float and not self.is_fixed_point and self is not DType.BOOL_8

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @staticmethod
    def from_numpy(dtype: np.dtype | type) -> DType:
        """The DType of a numpy dtype; raises ValueError for types the IR has no name for."""
        key = np.dtype(dtype).str.lstrip("<>=|")
        try:
            return _FROM_NUMPY[key]
        except KeyError:
            raise ValueError(f"numpy dtype {np.dtype(dtype)} has no IR data type") from None


_TO_NUMPY = {
    DType.FLOAT_32: "f4",
    DType.FLOAT_16: "f2",
    DType.FLOAT_64: "f8",
    DType.INT_8: "i1",
    DType.INT_16: "i2",
    DType.INT_32: "i4",
    DType.INT_64: "i8",
    DType.UINT_8: "u1",
    DType.UINT_16: "u2",
    DType.UINT_32: "u4",
    DType.UINT_64: "u8",
    DType.BOOL_8: "b1",
    DType.UFIXED_POINT_8: "u1",
    DType.UFIXED_POINT_16: "u2",
    DType.SFIXED_POINT_4: "i1",
    DType.SFIXED_POINT_8: "i1",
    DType.SFIXED_POINT_16: "i2",
    DType.SFIXED_POINT_32: "i4",
}
_FROM_NUMPY = {
    "f4": DType.FLOAT_32,
    "f2": DType.FLOAT_16,
    "f8": DType.FLOAT_64,
    "i1": DType.INT_8,
    "i2": DType.INT_16,
    "i4": DType.INT_32,
    "i8": DType.INT_64,
    "u1": DType.UINT_8,
    "u2": DType.UINT_16,
    "u4": DType.UINT_32,
    "u8": DType.UINT_64,
    "b1": DType.BOOL_8,
}
