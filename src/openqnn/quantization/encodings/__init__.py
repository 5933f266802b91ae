"""Encodings: the arithmetic and the file formats."""

from openqnn.quantization.encodings.formats import (
    EncodingsFile,
    EncodingSpec,
    read_encodings,
    write_encodings,
)

__all__ = ["EncodingSpec", "EncodingsFile", "read_encodings", "write_encodings"]
