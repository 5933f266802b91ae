"""The safetensors layout as openqnn reads it directly (weights files, context binaries' array blocks,
model libraries' embedded weights): its dtype codes, and its header's entries with absolute offsets."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

__all__ = ["DTYPES", "Entry", "entries"]

DTYPES: dict[str, np.dtype] = {code: np.dtype(s) for code, s in (
    ("BOOL", "?"), ("U8", "u1"), ("I8", "i1"), ("U16", "<u2"), ("I16", "<i2"), ("F16", "<f2"),
    ("U32", "<u4"), ("I32", "<i4"), ("F32", "<f4"), ("U64", "<u8"), ("I64", "<i8"), ("F64", "<f8"))}
MAX_HEADER = 100 * 2**20


@dataclass(frozen=True)
class Entry:
    name: str
    dtype: str  # the file's code ("F32", ...); DTYPES maps the ones openqnn reads
    shape: tuple[int, ...]
    offset: int  # in bytes from the file's start
    size: int


def entries(head: bytes | memoryview) -> dict[str, Entry]:
    """The arrays a safetensors file declares, from its first bytes (at least the 8-byte length and the
    header). Raises ValueError (what is wrong) for anything else."""
    view = memoryview(head).cast("B")
    if len(view) < 8:
        raise ValueError(f"are truncated ({len(view)} bytes, shorter than the 8-byte header length)")
    (n,) = struct.unpack_from("<Q", view, 0)
    if n > min(len(view) - 8, MAX_HEADER):
        raise ValueError(f"header runs past their end (its length is {n})")
    try:
        header = json.loads(bytes(view[8:8 + n]).decode("utf-8"))
        out = {}
        for name, e in header.items():
            if name == "__metadata__":
                continue
            begin, end = (int(v) for v in e["data_offsets"])
            out[name] = Entry(name, str(e["dtype"]), tuple(int(d) for d in e["shape"]), 8 + n + begin, end - begin)
    except (UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"header is corrupt ({type(err).__name__}: {err})") from None
    return out
