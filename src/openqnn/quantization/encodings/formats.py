"""Encodings files: read every format in use, write AIMET 1.0.0.

Read:
- the seed's / QNN's ``quantization_config.json`` and AIMET 0.6.1: ``{"activation_encodings":
  {name: {...} or [{...}, ...]}, "param_encodings": {...}}`` with bitwidth, min, max, scale, offset,
  is_symmetric, dtype; top-level ``activation_bitwidth`` / ``param_bitwidth`` / ``bias_bitwidth``;
- AIMET 1.0.0: ``{"version": "1.0.0", "activation_encodings": [{"name", "enc_type", "dtype", "bw",
  "is_sym", "scale": [...], "offset": [...], "block_size"?}], "param_encodings": [...]}``; PER_BLOCK
  entries hold [channels, blocks] scales row-major; LPBQ entries hold per-channel scales at the
  decompressed ``bw``, ``compressed_bw`` and ``per_block_int_scale`` ([channels, blocks] integers:
  block scale = channel scale x integer);
- AIMET 2.x (ONNX-aligned): ``{"version": "2.x", "encodings": [{"name", "output_dtype", "y_scale",
  "y_zero_point"?, "axis"?, "block_size"?}]}``.

Offsets are QNN's (real = scale * (q + offset)). Files that write the zero point instead (the seed's
own example: min -2.5, scale 0.019608, offset 127) are recognised by checking scale/offset against
min/max; a pair that fits neither convention is an error naming the tensor.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openqnn.errors import InvalidConfigError
from openqnn.quantization.encodings import math as qmath

__all__ = ["EncodingSpec", "EncodingsFile", "read_encodings", "write_encodings"]

ALLOWED_BITWIDTHS = (4, 8, 16, 32)


@dataclass(frozen=True)
class EncodingSpec:
    """One tensor's encoding as a file gives it. ``scale``/``offset`` hold one entry per channel
    for per-axis encodings; None where the file gave only min/max (or only a bitwidth)."""

    name: str
    bitwidth: int
    scale: tuple[float, ...] | None = None
    offset: tuple[int, ...] | None = None
    min: tuple[float, ...] | None = None
    max: tuple[float, ...] | None = None
    symmetric: bool | None = None
    dtype: str = "int"  # "int" or "float"
    axis: int | None = None
    block_size: int | None = None
    compressed_bitwidth: int | None = None  # LPBQ: the weights' bitwidth (``bitwidth``: decompressed)
    per_block_int_scale: tuple[int, ...] | None = None  # LPBQ: [channels, blocks] integer block scales

    @property
    def is_lpbq(self) -> bool:
        return self.per_block_int_scale is not None

    @property
    def per_axis(self) -> bool:
        n = len(self.scale or self.min or ())
        return n > 1 or self.axis is not None


@dataclass
class EncodingsFile:
    activations: dict[str, EncodingSpec] = field(default_factory=dict)
    params: dict[str, EncodingSpec] = field(default_factory=dict)
    activation_bitwidth: int | None = None
    param_bitwidth: int | None = None
    bias_bitwidth: int | None = None
    version: str = "0.6.1"


def _err(where: str, msg: str) -> InvalidConfigError:
    return InvalidConfigError(f"{where}: {msg}")


def _bitwidth(value: Any, where: str) -> int:
    try:
        bw = int(value)
    except (TypeError, ValueError):
        raise _err(where, f"bitwidth {value!r} is not a number") from None
    if bw not in ALLOWED_BITWIDTHS:
        raise _err(where, f"bitwidth {bw} is not allowed; use one of {', '.join(map(str, ALLOWED_BITWIDTHS))}")
    return bw


def _bool(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("true", "1", "yes")


def _reconcile(name: str, where: str, bw: int, scale: float | None, offset: int | None, lo: float | None,
               hi: float | None) -> tuple[float | None, int | None]:
    """Check scale/offset against min/max; return the offset in QNN's sign convention."""
    if scale is None or offset is None or lo is None:
        return scale, offset
    if scale <= 0:
        raise _err(where, f"tensor '{name}': scale {scale} must be positive")
    steps = (1 << bw) - 1
    if hi is not None and abs((hi - lo) / steps - scale) > max(1e-6, 0.02 * scale):
        raise _err(where, f"tensor '{name}': scale {scale} does not match min {lo} / max {hi} at {bw} bits "
                          f"(expected {(hi - lo) / steps:.6g})")
    ideal = lo / scale  # QNN offset: min = scale * offset
    if abs(offset - ideal) <= 1.0:
        return scale, int(offset)
    if abs(-offset - ideal) <= 1.0:  # the file wrote the zero point
        return scale, -int(offset)
    raise _err(where, f"tensor '{name}': offset {offset} fits min {lo} and scale {scale} in neither QNN's convention "
                      f"(offset ~ {ideal:.1f}) nor the zero-point convention (~ {-ideal:.1f})")


def _legacy_entry(name: str, raw: Any, where: str, default_bw: int | None) -> EncodingSpec:
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(i, dict) for i in items):
        raise _err(where, f"tensor '{name}': expected an object or a list of objects")
    bw = _bitwidth(items[0].get("bitwidth", default_bw if default_bw is not None else 8), f"{where}: '{name}'")
    scales: list[float] = []
    offsets: list[int] = []
    mins: list[float] = []
    maxs: list[float] = []
    for it in items:
        sc = float(it["scale"]) if "scale" in it else None
        off = round(float(it["offset"])) if "offset" in it else None
        lo = float(it["min"]) if "min" in it else None
        hi = float(it["max"]) if "max" in it else None
        if lo is not None and hi is not None and lo > hi:
            raise _err(where, f"tensor '{name}': min {lo} is above max {hi}")
        sc, off = _reconcile(name, where, bw, sc, off, lo, hi)
        if sc is not None and off is not None:
            scales.append(sc)
            offsets.append(off)
        if lo is not None and hi is not None:
            mins.append(lo)
            maxs.append(hi)
    sym = items[0].get("is_symmetric")
    return EncodingSpec(
        name, bw,
        tuple(scales) if len(scales) == len(items) else None,
        tuple(offsets) if len(offsets) == len(items) else None,
        tuple(mins) if len(mins) == len(items) else None,
        tuple(maxs) if len(maxs) == len(items) else None,
        None if sym is None else _bool(sym),
        str(items[0].get("dtype", "int")).lower(),
        None,
    )


def _v1_entry(raw: dict[str, Any], where: str) -> EncodingSpec:
    try:
        name = str(raw["name"])
    except KeyError:
        raise _err(where, "an encoding entry has no 'name'") from None
    bw = _bitwidth(raw.get("bw", 8), f"{where}: '{name}'")
    dtype = str(raw.get("dtype", "INT")).lower()
    enc_type = str(raw.get("enc_type", "PER_TENSOR")).upper()
    scale = tuple(float(s) for s in raw.get("scale", [])) or None
    offset = tuple(int(o) for o in raw.get("offset", [])) or None
    if dtype == "int" and (scale is None or offset is None or len(scale) != len(offset)):
        raise _err(where, f"tensor '{name}': needs as many scales as offsets")
    if enc_type == "PER_TENSOR" and scale is not None and len(scale) != 1:
        raise _err(where, f"tensor '{name}': PER_TENSOR encoding with {len(scale)} scales")
    if enc_type not in ("PER_TENSOR", "PER_CHANNEL", "PER_BLOCK", "LPBQ", "VECTOR"):
        raise _err(where, f"tensor '{name}': unknown enc_type {enc_type}")
    if enc_type == "VECTOR":
        raise _err(where, f"tensor '{name}': VECTOR encodings are not supported")
    block_size = raw.get("block_size")
    if enc_type in ("PER_BLOCK", "LPBQ"):
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise _err(where, f"tensor '{name}': {enc_type} encoding needs a positive integer block_size, "
                              f"not {block_size!r}")
    elif block_size is not None:
        raise _err(where, f"tensor '{name}': block_size {block_size} on a {enc_type} encoding (use PER_BLOCK)")
    compressed = ints = None
    if enc_type == "LPBQ":
        if "compressed_bw" not in raw or "per_block_int_scale" not in raw:
            raise _err(where, f"tensor '{name}': LPBQ encoding needs compressed_bw and per_block_int_scale")
        compressed = _bitwidth(raw["compressed_bw"], f"{where}: '{name}' compressed_bw")
        if compressed >= bw:
            raise _err(where, f"tensor '{name}': LPBQ compressed_bw {compressed} must be below bw {bw}")
        ints = tuple(int(k) for k in np.asarray(raw["per_block_int_scale"], dtype=np.int64).reshape(-1))
        n = len(scale or ())
        if not n or len(ints) % n:
            raise _err(where, f"tensor '{name}': {len(ints)} per_block_int_scale values for {n} channel scales")
        if min(ints) < 1 or max(ints) > 1 << (bw - compressed):
            raise _err(where, f"tensor '{name}': per_block_int_scale values must lie in [1, {1 << (bw - compressed)}]")
        if offset is not None and any(o != -(1 << (bw - 1)) for o in offset):
            raise _err(where, f"tensor '{name}': LPBQ encodings are symmetric; offsets must be {-(1 << (bw - 1))}")
    return EncodingSpec(name, bw, scale, offset, None, None, _bool(raw.get("is_sym", False)), dtype,
                        None, block_size, compressed, ints)


_ONNX_DTYPES = {"int4": (4, True), "uint4": (4, False), "int8": (8, True), "uint8": (8, False),
                "int16": (16, True), "uint16": (16, False), "int32": (32, True), "uint32": (32, False)}


def _v2_entry(raw: dict[str, Any], where: str) -> EncodingSpec:
    name = str(raw.get("name", ""))
    if not name:
        raise _err(where, "an encoding entry has no 'name'")
    odt = str(raw.get("output_dtype", "uint8")).lower()
    if odt not in _ONNX_DTYPES:
        if odt in ("float16", "float32"):
            return EncodingSpec(name, 16 if odt == "float16" else 32, dtype="float")
        raise _err(where, f"tensor '{name}': output_dtype {odt} is not supported")
    bw, signed = _ONNX_DTYPES[odt]
    if "per_block_int_scale" in raw:
        raise _err(where, f"tensor '{name}': LPBQ entries of the 2.x format are not supported; use AIMET 1.0.0 "
                          "encodings (enc_type LPBQ)")
    scale = tuple(float(s) for s in np.asarray(raw["y_scale"], dtype=np.float64).reshape(-1))
    zp = np.asarray(raw.get("y_zero_point", 0), dtype=np.int64).reshape(-1)
    zp = np.broadcast_to(zp, (len(scale),))
    # ONNX: real = (q - zp) * scale with q signed or unsigned; QNN's unsigned domain shifts by 2^(bw-1)
    shift = (1 << (bw - 1)) if signed else 0
    offset = tuple(int(-(z + shift)) for z in zp)
    symmetric = signed and not np.any(zp)
    return EncodingSpec(name, bw, scale, offset, None, None, symmetric, "int", raw.get("axis"), raw.get("block_size"))


def read_encodings(path: str | os.PathLike[str]) -> EncodingsFile:
    """Parse an overrides / encodings file in any supported format; errors name the file and tensor."""
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise InvalidConfigError(f"{p}: no such encodings file")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _err(where, f"not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise _err(where, "must be a JSON object")
    out = EncodingsFile(version=str(doc.get("version", "0.6.1")))
    for key, attr in (("activation_bitwidth", "activation_bitwidth"), ("param_bitwidth", "param_bitwidth"),
                      ("bias_bitwidth", "bias_bitwidth")):
        if key in doc:
            setattr(out, attr, _bitwidth(doc[key], f"{where}: {key}"))
    try:
        if "encodings" in doc:  # 2.x
            for raw in doc["encodings"]:
                spec = _v2_entry(raw, where)
                out.activations[spec.name] = spec
            return out
        for section, target, default_bw in (("activation_encodings", out.activations, out.activation_bitwidth),
                                             ("param_encodings", out.params, out.param_bitwidth)):
            body = doc.get(section, {})
            if isinstance(body, list):  # 1.0.0
                for raw in body:
                    spec = _v1_entry(raw, where)
                    target[spec.name] = spec
            elif isinstance(body, dict):
                for name, raw in body.items():
                    target[name] = _legacy_entry(name, raw, where, default_bw)
            else:
                raise _err(where, f"{section} must be an object or a list")
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, InvalidConfigError):
            raise
        raise _err(where, f"malformed encoding ({type(e).__name__}: {e})") from None
    unknown = set(doc) - {"version", "activation_encodings", "param_encodings", "encodings", "activation_bitwidth",
                          "param_bitwidth", "bias_bitwidth", "excluded_layers", "quantizer_args"}
    if unknown:
        raise _err(where, f"unknown top-level key(s) {', '.join(sorted(unknown))}")
    return out


def spec_json_v1(spec: EncodingSpec) -> dict[str, Any]:
    """An AIMET 1.0.0 entry."""
    assert spec.scale is not None and spec.offset is not None
    if spec.is_lpbq:
        enc_type = "LPBQ"
    elif spec.block_size:
        enc_type = "PER_BLOCK"
    else:
        enc_type = "PER_CHANNEL" if len(spec.scale) > 1 else "PER_TENSOR"
    entry: dict[str, Any] = {
        "name": spec.name,
        "enc_type": enc_type,
        "dtype": spec.dtype.upper(),
        "bw": spec.bitwidth,
        "is_sym": bool(spec.symmetric),
        "scale": [float(s) for s in spec.scale],
        "offset": [int(o) for o in spec.offset],
    }
    if spec.block_size:
        entry["block_size"] = spec.block_size
    if spec.per_block_int_scale is not None:
        entry["compressed_bw"] = spec.compressed_bitwidth
        entry["per_block_int_scale"] = [int(k) for k in spec.per_block_int_scale]
    return entry


def write_encodings(path: str | os.PathLike[str], activations: list[EncodingSpec], params: list[EncodingSpec],
                    quantizer_args: dict[str, Any] | None = None) -> Path:
    """Write an AIMET 1.0.0 encodings file (atomically)."""
    from openqnn.serialization.netjson import atomic_write

    doc = {
        "version": "1.0.0",
        "activation_encodings": [spec_json_v1(s) for s in activations],
        "param_encodings": [spec_json_v1(s) for s in params],
        "excluded_layers": [],
        "quantizer_args": quantizer_args or {},
    }
    p = Path(path)
    with atomic_write(p) as f:
        json.dump(doc, f, indent=1)
    return p


def resolve(spec: EncodingSpec, symmetric_default: bool) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) arrays of a spec: given ones, else computed from min/max (min/max decide).

    LPBQ specs give [channels x blocks] scales (channel scale x block integer) at the compressed
    bitwidth, symmetric: offset -2^(compressed_bw - 1)."""
    if spec.per_block_int_scale is not None and spec.scale is not None and spec.compressed_bitwidth is not None:
        from openqnn.ir.tensor import Encoding

        cs = np.asarray(spec.scale, dtype=np.float64)
        ints = np.asarray(spec.per_block_int_scale, dtype=np.int64)
        scale = np.asarray(Encoding.expand_lpbq(cs, ints.reshape(cs.size, -1)), dtype=np.float64)
        return scale, np.full(scale.shape, -(1 << (spec.compressed_bitwidth - 1)), dtype=np.int64)
    if spec.min is not None and spec.max is not None:
        lo, hi = np.asarray(spec.min), np.asarray(spec.max)
        sym = spec.symmetric if spec.symmetric is not None else symmetric_default
        if sym:
            return qmath.symmetric(np.maximum(np.abs(lo), np.abs(hi)), spec.bitwidth)
        return qmath.asymmetric(lo, hi, spec.bitwidth)
    if spec.scale is None or spec.offset is None:
        raise InvalidConfigError(f"encoding of '{spec.name}' gives neither min/max nor scale/offset")
    return np.asarray(spec.scale, dtype=np.float64), np.asarray(spec.offset, dtype=np.int64)
