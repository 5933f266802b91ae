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
from openqnn.fileio import read_json
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


# scales are stored as float32 (QNN's Qnn_ScaleOffset_t): positive, finite, and not lost in float32
_F32_MAX, _F32_TINY = float(np.finfo(np.float32).max), float(np.finfo(np.float32).tiny)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(v: Any, where: str, what: str) -> float:
    """A finite JSON number (within float32's range: encodings are float32 on every backend)."""
    if not _is_number(v):
        raise _err(where, f"{what} {v!r} is not a number")
    try:
        x = float(v)
    except OverflowError:  # an integer beyond float64
        x = float("inf")
    if not np.isfinite(x) or abs(x) > _F32_MAX:
        raise _err(where, f"{what} {v!r} is not a finite float32 number")
    return x


def _integer(v: Any, where: str, what: str) -> int:
    """A JSON integer (an integral float such as 8.0 passes)."""
    if _is_number(v) and isinstance(v, float) and np.isfinite(v) and v == int(v):
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise _err(where, f"{what} {v!r} is not an integer")
    return v


def _rounded(v: Any, where: str, what: str) -> int:
    """The nearest integer of a finite number (0.6.1 files may write offsets as floats)."""
    return round(_number(v, where, what))


def _scale(v: Any, where: str, name: str) -> float:
    x = _number(v, where, f"tensor '{name}': scale")
    if not x >= _F32_TINY:
        raise _err(where, f"tensor '{name}': scale {v!r} must be positive (at least {_F32_TINY:.3g}); fix or "
                          "regenerate the encodings")
    return x


def _check_offset(offset: int, bw: int, where: str, name: str) -> int:
    """QNN's offset (minus the zero point) of a ``bw``-bit encoding lies in [-(2^bw - 1), 0]."""
    if not -((1 << bw) - 1) <= offset <= 0:
        raise _err(where, f"tensor '{name}': offset {offset} is outside [{-((1 << bw) - 1)}, 0] for {bw} bits "
                          "(QNN's offset is minus the zero point)")
    return offset


def _numbers(v: Any, where: str, what: str, *, allow_scalar: bool = True) -> list[Any]:
    """The numbers of a (possibly nested) JSON array, row-major; a bare number is one."""
    if _is_number(v) and allow_scalar:
        return [v]
    if not isinstance(v, list):
        raise _err(where, f"{what} must be a list of numbers, not {type(v).__name__}")
    out: list[Any] = []
    stack = [iter(v)]
    while stack:
        item = next(stack[-1], stack)
        if item is stack:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        elif _is_number(item):
            out.append(item)
        else:
            raise _err(where, f"{what} holds {item!r}, which is not a number")
    return out


def _bitwidth(value: Any, where: str, allowed: tuple[int, ...] = ALLOWED_BITWIDTHS) -> int:
    bw = _integer(value, where, "bitwidth")
    if bw not in allowed:
        raise _err(where, f"bitwidth {bw} is not allowed; use one of {', '.join(map(str, allowed))}")
    return bw


def _bool(v: Any, where: str, what: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):  # AIMET 0.6.1 writes "True" / "False"
        return v.strip().lower() == "true"
    raise _err(where, f"{what} {v!r} must be true or false")


def _dtype(v: Any, where: str, name: str) -> str:
    if not isinstance(v, str) or v.lower() not in ("int", "float"):
        raise _err(where, f"tensor '{name}': dtype {v!r} is not valid; use int or float")
    return v.lower()


def _name(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v:
        raise _err(where, f"an encoding entry's name {v!r} must be a non-empty string")
    return v


def _reconcile(name: str, where: str, bw: int, scale: float | None, offset: int | None, lo: float | None,
               hi: float | None) -> tuple[float | None, int | None]:
    """Check scale/offset against min/max; return the offset in QNN's sign convention."""
    if scale is None or offset is None or lo is None:
        return scale, offset
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


_LEGACY_KEYS = {"bitwidth", "min", "max", "scale", "offset", "is_symmetric", "dtype"}


def _legacy_entry(name: str, raw: Any, where: str, default_bw: int | None) -> EncodingSpec:
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(i, dict) for i in items):
        raise _err(where, f"tensor '{name}': expected an object or a list of objects")
    dtype = _dtype(items[0].get("dtype", "int"), where, name)
    bw = _bitwidth(items[0].get("bitwidth", default_bw if default_bw is not None else 8), f"{where}: '{name}'",
                   (16, 32) if dtype == "float" else ALLOWED_BITWIDTHS)
    scales: list[float] = []
    offsets: list[int] = []
    mins: list[float] = []
    maxs: list[float] = []
    for it in items:
        sc = _scale(it["scale"], where, name) if "scale" in it else None
        off = _rounded(it["offset"], where, f"tensor '{name}': offset") if "offset" in it else None
        lo = _number(it["min"], where, f"tensor '{name}': min") if "min" in it else None
        hi = _number(it["max"], where, f"tensor '{name}': max") if "max" in it else None
        if lo is not None and hi is not None and lo > hi:
            raise _err(where, f"tensor '{name}': min {lo} is above max {hi}")
        sc, off = _reconcile(name, where, bw, sc, off, lo, hi)
        if off is not None and dtype == "int":
            _check_offset(off, bw, where, name)
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
        None if sym is None else _bool(sym, where, f"tensor '{name}': is_symmetric"),
        dtype,
        None,
    )


def _v1_entry(raw: Any, where: str) -> EncodingSpec:
    if not isinstance(raw, dict):
        raise _err(where, f"an encoding entry must be an object, not {type(raw).__name__}")
    if "name" not in raw:
        raise _err(where, "an encoding entry has no 'name'")
    name = _name(raw["name"], where)
    dtype = _dtype(raw.get("dtype", "INT"), where, name)
    bw = _bitwidth(raw.get("bw", 8), f"{where}: '{name}'", (16, 32) if dtype == "float" else ALLOWED_BITWIDTHS)
    enc_type = raw.get("enc_type", "PER_TENSOR")
    if not isinstance(enc_type, str) or enc_type.upper() not in ("PER_TENSOR", "PER_CHANNEL", "PER_BLOCK", "LPBQ",
                                                                  "VECTOR"):
        raise _err(where, f"tensor '{name}': unknown enc_type {enc_type!r}; use PER_TENSOR, PER_CHANNEL, PER_BLOCK "
                          "or LPBQ")
    enc_type = enc_type.upper()
    if enc_type == "VECTOR":
        raise _err(where, f"tensor '{name}': VECTOR encodings are not supported")
    scale = tuple(_scale(s, where, name) for s in _numbers(raw.get("scale", []), where,
                                                              f"tensor '{name}': scale")) or None
    offset = tuple(_check_offset(_integer(o, where, f"tensor '{name}': offset"), bw, where, name)
                   for o in _numbers(raw.get("offset", []), where, f"tensor '{name}': offset")) or None
    if dtype == "int" and (scale is None or offset is None or len(scale) != len(offset)):
        raise _err(where, f"tensor '{name}': needs as many scales as offsets")
    if enc_type == "PER_TENSOR" and scale is not None and len(scale) != 1:
        raise _err(where, f"tensor '{name}': PER_TENSOR encoding with {len(scale)} scales")
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
        ints = tuple(_integer(k, where, f"tensor '{name}': per_block_int_scale value")
                     for k in _numbers(raw["per_block_int_scale"], where, f"tensor '{name}': per_block_int_scale"))
        n = len(scale or ())
        if not n or not ints or len(ints) % n:
            raise _err(where, f"tensor '{name}': {len(ints)} per_block_int_scale values for {n} channel scales")
        if min(ints) < 1 or max(ints) > 1 << (bw - compressed):
            raise _err(where, f"tensor '{name}': per_block_int_scale values must lie in [1, {1 << (bw - compressed)}]")
        if offset is not None and any(o != -(1 << (bw - 1)) for o in offset):
            raise _err(where, f"tensor '{name}': LPBQ encodings are symmetric; offsets must be {-(1 << (bw - 1))}")
    return EncodingSpec(name, bw, scale, offset, None, None, _bool(raw.get("is_sym", False), where,
                                                                    f"tensor '{name}': is_sym"),
                        dtype, None, block_size, compressed, ints)


_ONNX_DTYPES = {"int4": (4, True), "uint4": (4, False), "int8": (8, True), "uint8": (8, False),
                "int16": (16, True), "uint16": (16, False), "int32": (32, True), "uint32": (32, False)}


def _v2_entry(raw: Any, where: str) -> EncodingSpec:
    if not isinstance(raw, dict):
        raise _err(where, f"an entry of 'encodings' must be an object with name, output_dtype and y_scale, "
                          f"not {type(raw).__name__}")
    name = _name(raw.get("name", ""), where)
    odt = raw.get("output_dtype", "uint8")
    if not isinstance(odt, str):
        raise _err(where, f"tensor '{name}': output_dtype {odt!r} must be a string such as uint8")
    odt = odt.lower()
    if odt not in _ONNX_DTYPES:
        if odt in ("float16", "float32"):
            return EncodingSpec(name, 16 if odt == "float16" else 32, dtype="float")
        raise _err(where, f"tensor '{name}': output_dtype {odt} is not supported; use one of "
                          f"{', '.join(_ONNX_DTYPES)}, float16, float32")
    bw, signed = _ONNX_DTYPES[odt]
    if "per_block_int_scale" in raw:
        raise _err(where, f"tensor '{name}': LPBQ entries of the 2.x format are not supported; use AIMET 1.0.0 "
                          "encodings (enc_type LPBQ)")
    if "y_scale" not in raw:
        raise _err(where, f"tensor '{name}': has no y_scale")
    scale = tuple(_scale(s, where, name) for s in _numbers(raw["y_scale"], where, f"tensor '{name}': y_scale"))
    if not scale:
        raise _err(where, f"tensor '{name}': y_scale is empty")
    zps = [_integer(z, where, f"tensor '{name}': y_zero_point")
           for z in _numbers(raw.get("y_zero_point", 0), where, f"tensor '{name}': y_zero_point")]
    if len(zps) == 1:
        zps *= len(scale)
    if len(zps) != len(scale):
        raise _err(where, f"tensor '{name}': {len(zps)} y_zero_point values for {len(scale)} scales")
    lo, hi = qmath.qrange(bw, signed)
    if any(not lo <= z <= hi for z in zps):
        raise _err(where, f"tensor '{name}': y_zero_point values must lie in [{lo}, {hi}] for {odt}")
    axis = raw.get("axis")
    if axis is not None:
        axis = _integer(axis, where, f"tensor '{name}': axis")
    block_size = raw.get("block_size")
    if block_size is not None and (_integer(block_size, where, f"tensor '{name}': block_size") < 1):
        raise _err(where, f"tensor '{name}': block_size {block_size} must be positive")
    # ONNX: real = (q - zp) * scale with q signed or unsigned; QNN's unsigned domain shifts by 2^(bw-1)
    shift = (1 << (bw - 1)) if signed else 0
    offset = tuple(int(-(z + shift)) for z in zps)
    symmetric = signed and not any(zps)
    return EncodingSpec(name, bw, scale, offset, None, None, symmetric, "int", axis,
                        None if block_size is None else int(block_size))


_TOP_KEYS = {"version", "activation_encodings", "param_encodings", "encodings", "activation_bitwidth",
             "param_bitwidth", "bias_bitwidth", "excluded_layers", "quantizer_args"}


def read_encodings(path: str | os.PathLike[str]) -> EncodingsFile:
    """Parse an overrides / encodings file in any supported format; errors name the file and tensor.

    Every scale is a positive finite float32, every offset fits its bitwidth, min <= max, bitwidths
    are the allowed ones; a file that breaks one of these is refused, not repaired."""
    p = Path(path)
    where = str(p)
    doc = read_json(p, where)
    if not isinstance(doc, dict):
        raise _err(where, "must be a JSON object (activation_encodings / param_encodings, or encodings)")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise _err(where, f"unknown top-level key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(_TOP_KEYS))}")
    version = doc.get("version", "0.6.1")
    if not isinstance(version, str) or version.split(".")[0] not in ("0", "1", "2"):
        raise _err(where, f"version {version!r} is not one openqnn reads; use 0.6.1, 1.0.0 or 2.x")
    out = EncodingsFile(version=version)
    for key, attr in (("activation_bitwidth", "activation_bitwidth"), ("param_bitwidth", "param_bitwidth"),
                      ("bias_bitwidth", "bias_bitwidth")):
        if key in doc:
            setattr(out, attr, _bitwidth(doc[key], f"{where}: {key}"))
    try:
        if "encodings" in doc:  # 2.x
            if not isinstance(doc["encodings"], list):
                raise _err(where, "'encodings' (AIMET 2.x) must be a list of objects with name, output_dtype, "
                                  "y_scale")
            for raw in doc["encodings"]:
                spec = _v2_entry(raw, where)
                _add(out.activations, spec, where)
            return out
        for section, target, default_bw in (("activation_encodings", out.activations, out.activation_bitwidth),
                                             ("param_encodings", out.params, out.param_bitwidth)):
            body = doc.get(section, {})
            if isinstance(body, list):  # 1.0.0
                for raw in body:
                    _add(target, _v1_entry(raw, where), where)
            elif isinstance(body, dict):
                for name, raw in body.items():
                    target[name] = _legacy_entry(name, raw, where, default_bw)
            else:
                raise _err(where, f"{section} must be an object or a list")
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # a shape of document no check above foresaw
        if isinstance(e, InvalidConfigError):
            raise
        raise _err(where, f"malformed encoding ({type(e).__name__}: {e})") from None
    return out


def _add(target: dict[str, EncodingSpec], spec: EncodingSpec, where: str) -> None:
    if spec.name in target:
        raise _err(where, f"tensor '{spec.name}' has two encodings; keep one")
    target[spec.name] = spec


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
