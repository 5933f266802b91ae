"""A QNN context binary's metadata, read by Qualcomm's own ``libQnnSystem`` (``QnnSystemContext_getBinaryInfo``).

``libQnnSystem.so`` ships in the ``onnxruntime-qnn`` wheel. It exports one symbol,
``QnnSystemInterface_getProviders``, whose function table starts with ``systemContextCreate``,
``systemContextGetBinaryInfo``, ``systemContextGetMetaData`` and ``systemContextFree``. The structures below
transcribe QNN's public headers (``QnnTypes.h``, ``System/QnnSystemContext.h``, ``System/QnnSystemInterface.h``,
``QnnDevice.h``, ``HTP/QnnHtpDevice.h``, ``HTP/QnnHtpSystemContext.h`` of QNN SDK 2.x); every layout is the C
ABI of x86_64 / aarch64 (ctypes lays them out as the C compiler does). Versions the headers define are read
(binary info v1..v3, graph info v1..v3, tensors v1/v2); a newer version is reported, not guessed at.

    info = read_binary_info("model_qnn.bin")     # a plain dict, ready for JSON
    info["graphs"][0]["inputs"][0]["encoding"]   # {"kind": "SCALE_OFFSET", "scale": [...], "offset": [...]}
"""

from __future__ import annotations

import ctypes as C
import os
from pathlib import Path
from typing import Any

from openqnn.errors import ContextError

__all__ = ["DATA_TYPES", "read_binary_info"]

# -- QnnTypes.h -------------------------------------------------------------------------------

DATA_TYPES: dict[int, str] = {
    0x0008: "INT_8", 0x0016: "INT_16", 0x0032: "INT_32", 0x0064: "INT_64",
    0x0108: "UINT_8", 0x0116: "UINT_16", 0x0132: "UINT_32", 0x0164: "UINT_64",
    0x0216: "FLOAT_16", 0x0226: "BFLOAT_16", 0x0232: "FLOAT_32", 0x0264: "FLOAT_64",
    0x0304: "SFIXED_POINT_4", 0x0308: "SFIXED_POINT_8", 0x0316: "SFIXED_POINT_16", 0x0332: "SFIXED_POINT_32",
    0x0404: "UFIXED_POINT_4", 0x0408: "UFIXED_POINT_8", 0x0416: "UFIXED_POINT_16", 0x0432: "UFIXED_POINT_32",
    0x0508: "BOOL_8", 0x0608: "STRING",
}
TENSOR_TYPES = {0: "APP_WRITE", 1: "APP_READ", 2: "APP_READWRITE", 3: "NATIVE", 4: "STATIC", 5: "NULL",
                6: "UPDATEABLE_STATIC", 7: "UPDATEABLE_NATIVE", 8: "UPDATEABLE_APP_WRITE", 9: "UPDATEABLE_APP_READ",
                10: "UPDATEABLE_APP_READWRITE", 11: "OPTIONAL_APP_WRITE", 12: "OPTIONAL_APP_READ",
                13: "OPTIONAL_APP_READWRITE"}
ENCODINGS = {0: "SCALE_OFFSET", 1: "AXIS_SCALE_OFFSET", 2: "BW_SCALE_OFFSET", 3: "BW_AXIS_SCALE_OFFSET", 4: "BLOCK",
             5: "BLOCKWISE_EXPANSION", 6: "VECTOR", 7: "FLOAT_BLOCK", 8: "BW_AXIS_SCALE_OFFSET_MAPPED",
             9: "BW_BLOCK_MAPPED", 10: "BW_BLOCKWISE_EXPANSION_MAPPED", 11: "BW_FLOAT_BLOCK"}
QNN_DEFINITION_DEFINED = 1
_UNDEFINED = 0x7FFFFFFF


class _Version(C.Structure):
    _fields_ = [("major", C.c_uint32), ("minor", C.c_uint32), ("patch", C.c_uint32)]


class _ScaleOffset(C.Structure):
    _fields_ = [("scale", C.c_float), ("offset", C.c_int32)]


class _BwScaleOffset(C.Structure):
    _fields_ = [("bitwidth", C.c_uint32), ("scale", C.c_float), ("offset", C.c_int32)]


class _AxisScaleOffset(C.Structure):
    _fields_ = [("axis", C.c_int32), ("numScaleOffsets", C.c_uint32), ("scaleOffset", C.POINTER(_ScaleOffset))]


class _BwAxisScaleOffset(C.Structure):
    _fields_ = [("bitwidth", C.c_uint32), ("axis", C.c_int32), ("numElements", C.c_uint32),
                ("scales", C.POINTER(C.c_float)), ("offsets", C.POINTER(C.c_int32))]


class _BlockEncoding(C.Structure):
    _fields_ = [("blockSize", C.POINTER(C.c_uint32)), ("scaleOffset", C.POINTER(_ScaleOffset))]


class _BwFloatBlockEncoding(C.Structure):
    _fields_ = [("bitwidth", C.c_uint32), ("blockSize", C.POINTER(C.c_uint32)), ("floatScaleOffset", C.c_void_p)]


class _EncodingUnion(C.Union):
    # the members of QnnTypes.h's union; the larger encodings are pointers there, so its size is fixed
    _fields_ = [("scaleOffsetEncoding", _ScaleOffset), ("axisScaleOffsetEncoding", _AxisScaleOffset),
                ("bwScaleOffsetEncoding", _BwScaleOffset), ("bwAxisScaleOffsetEncoding", _BwAxisScaleOffset),
                ("blockEncoding", _BlockEncoding), ("pointer", C.c_void_p),
                ("bwFloatBlockEncoding", _BwFloatBlockEncoding)]


class _QuantizeParams(C.Structure):
    _anonymous_ = ("u",)
    _fields_ = [("encodingDefinition", C.c_int32), ("quantizationEncoding", C.c_int32), ("u", _EncodingUnion)]


class _ClientBuffer(C.Structure):
    _fields_ = [("data", C.c_void_p), ("dataSize", C.c_uint32)]


class _MemUnion(C.Union):
    _fields_ = [("clientBuf", _ClientBuffer), ("memHandle", C.c_void_p), ("retrieveRaw", C.c_void_p)]


_TENSOR_V1: list[tuple[str, Any]] = [("id", C.c_uint32), ("name", C.c_char_p), ("type", C.c_int32), ("dataFormat", C.c_uint32),
              ("dataType", C.c_int32), ("quantizeParams", _QuantizeParams), ("rank", C.c_uint32),
              ("dimensions", C.POINTER(C.c_uint32)), ("memType", C.c_int32), ("mem", _MemUnion)]


class _TensorV1(C.Structure):
    _fields_ = _TENSOR_V1


class _SparseParams(C.Structure):
    _fields_ = [("type", C.c_int32), ("numSpecifiedElements", C.c_uint32), ("numSparseDimensions", C.c_uint32)]


class _TensorV2(C.Structure):
    _fields_ = [*_TENSOR_V1, ("isDynamicDimensions", C.POINTER(C.c_uint8)), ("sparseParams", _SparseParams),
                ("isProduced", C.c_uint8)]


class _TensorUnion(C.Union):
    _fields_ = [("v1", _TensorV1), ("v2", _TensorV2)]


class _Tensor(C.Structure):
    _anonymous_ = ("u",)
    _fields_ = [("version", C.c_int32), ("u", _TensorUnion)]


# -- QnnDevice.h, HTP/QnnHtpDevice.h: the platform a context was made for ----------------------------------

class _HtpOnChipDevice(C.Structure):
    _fields_ = [("vtcmSize", C.c_size_t), ("socModel", C.c_uint32), ("signedPdSupport", C.c_bool),
                ("dlbcSupport", C.c_bool), ("arch", C.c_int32)]


class _HtpDeviceInfoExtension(C.Structure):
    _fields_ = [("devType", C.c_int32), ("onChipDevice", _HtpOnChipDevice)]


class _HardwareDeviceInfoV1(C.Structure):
    _fields_ = [("deviceId", C.c_uint32), ("deviceType", C.c_uint32), ("numCores", C.c_uint32),
                ("cores", C.c_void_p), ("deviceInfoExtension", C.POINTER(_HtpDeviceInfoExtension))]


class _HardwareDeviceInfo(C.Structure):
    _fields_ = [("version", C.c_int32), ("v1", _HardwareDeviceInfoV1)]


class _PlatformInfoV1(C.Structure):
    _fields_ = [("numHwDevices", C.c_uint32), ("hwDevices", C.POINTER(_HardwareDeviceInfo))]


class _PlatformInfo(C.Structure):
    _fields_ = [("version", C.c_int32), ("v1", _PlatformInfoV1)]


# -- System/QnnSystemContext.h ------------------------------------------------------------------------

_GRAPH_V1: list[tuple[str, Any]] = [("graphName", C.c_char_p), ("numGraphInputs", C.c_uint32), ("graphInputs", C.POINTER(_Tensor)),
             ("numGraphOutputs", C.c_uint32), ("graphOutputs", C.POINTER(_Tensor))]
_GRAPH_V2: list[tuple[str, Any]] = [*_GRAPH_V1, ("numUpdateableTensors", C.c_uint32), ("updateableTensors", C.POINTER(_Tensor))]
_GRAPH_V3: list[tuple[str, Any]] = [*_GRAPH_V2, ("graphBlobInfoSize", C.c_uint32), ("graphBlobInfo", C.c_void_p),
             ("startOpIndex", C.c_uint32), ("endOpIndex", C.c_uint32)]


class _GraphInfoV1(C.Structure):
    _fields_ = _GRAPH_V1


class _GraphInfoV2(C.Structure):
    _fields_ = _GRAPH_V2


class _GraphInfoV3(C.Structure):
    _fields_ = _GRAPH_V3


class _GraphInfoUnion(C.Union):
    _fields_ = [("graphInfoV1", _GraphInfoV1), ("graphInfoV2", _GraphInfoV2), ("graphInfoV3", _GraphInfoV3)]


class _GraphInfo(C.Structure):
    _anonymous_ = ("u",)
    _fields_ = [("version", C.c_int32), ("u", _GraphInfoUnion)]


_BINARY_HEAD: list[tuple[str, Any]] = [("backendId", C.c_uint32), ("buildId", C.c_char_p), ("coreApiVersion", _Version),
                ("backendApiVersion", _Version), ("socVersion", C.c_char_p)]
_BINARY_V1: list[tuple[str, Any]] = [*_BINARY_HEAD, ("hwInfoBlobVersion", _Version), ("contextBlobVersion", _Version),
              ("hwInfoBlobSize", C.c_uint32), ("hwInfoBlob", C.c_void_p), ("contextBlobSize", C.c_uint64),
              ("numContextTensors", C.c_uint32), ("contextTensors", C.POINTER(_Tensor)), ("numGraphs", C.c_uint32),
              ("graphs", C.POINTER(_GraphInfo))]


class _BinaryInfoV1(C.Structure):
    _fields_ = _BINARY_V1


class _BinaryInfoV2(C.Structure):
    _fields_ = [*_BINARY_V1, ("platformInfo", C.POINTER(_PlatformInfo))]


class _BinaryInfoV3(C.Structure):
    _fields_ = [*_BINARY_HEAD, ("contextBlobVersion", _Version), ("contextBlobSize", C.c_uint64),
                ("numContextTensors", C.c_uint32), ("contextTensors", C.POINTER(_Tensor)), ("numGraphs", C.c_uint32),
                ("graphs", C.POINTER(_GraphInfo)), ("platformInfo", C.POINTER(_PlatformInfo)),
                ("contextMetadataSize", C.c_uint32), ("contextMetadata", C.c_void_p), ("socModel", C.c_uint32)]


class _BinaryInfoUnion(C.Union):
    _fields_ = [("contextBinaryInfoV1", _BinaryInfoV1), ("contextBinaryInfoV2", _BinaryInfoV2),
                ("contextBinaryInfoV3", _BinaryInfoV3)]


class _BinaryInfo(C.Structure):
    _anonymous_ = ("u",)
    _fields_ = [("version", C.c_int32), ("u", _BinaryInfoUnion)]


# -- HTP/QnnHtpSystemContext.h: the HTP's own blobs ---------------------------------------------------------

class _HtpContextBlobInfo(C.Structure):  # contextMetadata, version 1
    _fields_ = [("version", C.c_int32), ("dspArch", C.c_uint32)]


class _HtpGraphBlobInfoV1(C.Structure):  # graphBlobInfo, version 1
    _fields_ = [("version", C.c_int32), ("spillFillBufferSize", C.c_uint64), ("vtcmSize", C.c_uint32),
                ("optimizationLevel", C.c_uint32), ("htpDlbc", C.c_uint8), ("numHvxThreads", C.c_uint64)]


# -- System/QnnSystemInterface.h -------------------------------------------------------------------------

_Handle = C.c_void_p
_CreateFn = C.CFUNCTYPE(C.c_uint64, C.POINTER(_Handle))
_GetBinaryInfoFn = C.CFUNCTYPE(C.c_uint64, _Handle, C.c_void_p, C.c_uint64, C.POINTER(C.POINTER(_BinaryInfo)),
                               C.POINTER(C.c_uint64))
_FreeFn = C.CFUNCTYPE(C.c_uint64, _Handle)


class _SystemFunctions(C.Structure):  # the first entries of QnnSystemInterface_ImplementationV1_x_t
    _fields_ = [("systemContextCreate", _CreateFn), ("systemContextGetBinaryInfo", _GetBinaryInfoFn),
                ("systemContextGetMetaData", C.c_void_p), ("systemContextFree", _FreeFn)]


class _SystemInterface(C.Structure):
    _fields_ = [("backendId", C.c_uint32), ("providerName", C.c_char_p), ("systemApiVersion", _Version),
                ("functions", _SystemFunctions)]


SYSTEM_API_MAJOR = 1
# QnnCommon.h and the backends' headers: QNN_BACKEND_ID_*
BACKEND_IDS = {1: "REFERENCE", 2: "SAVER", 3: "CPU", 4: "GPU", 5: "DSP", 6: "HTP", 7: "HTA", 9: "IR", 12: "LPAI",
               13: "HTP_QEMU", 14: "GENAI_TRANSFORMER", 16: "LPAI_ISLAND"}


def _version(v: _Version) -> str:
    return f"{v.major}.{v.minor}.{v.patch}"


def _text(p: bytes | None) -> str | None:
    return p.decode("utf-8", "replace") if p is not None else None


def _floats(n: int, p: Any) -> list[float]:
    return [float(p[i]) for i in range(n)] if n and p else []


def _encoding(q: _QuantizeParams) -> dict[str, Any] | None:
    """A tensor's quantization, QNN's sign (real = scale * (q + offset)); None where it has none."""
    if q.encodingDefinition != QNN_DEFINITION_DEFINED or q.quantizationEncoding == _UNDEFINED:
        return None
    kind = ENCODINGS.get(q.quantizationEncoding, str(q.quantizationEncoding))
    if kind == "SCALE_OFFSET":
        so = q.scaleOffsetEncoding
        return {"kind": kind, "scale": [float(so.scale)], "offset": [int(so.offset)]}
    if kind == "BW_SCALE_OFFSET":
        b = q.bwScaleOffsetEncoding
        return {"kind": kind, "bitwidth": int(b.bitwidth), "scale": [float(b.scale)], "offset": [int(b.offset)]}
    if kind == "AXIS_SCALE_OFFSET":
        a = q.axisScaleOffsetEncoding
        pairs = [a.scaleOffset[i] for i in range(a.numScaleOffsets)] if a.scaleOffset else []
        return {"kind": kind, "axis": int(a.axis), "scale": [float(p.scale) for p in pairs],
                "offset": [int(p.offset) for p in pairs]}
    if kind == "BW_AXIS_SCALE_OFFSET":
        b2 = q.bwAxisScaleOffsetEncoding
        n = int(b2.numElements)
        return {"kind": kind, "bitwidth": int(b2.bitwidth), "axis": int(b2.axis), "scale": _floats(n, b2.scales),
                "offset": [int(b2.offsets[i]) for i in range(n)] if n and b2.offsets else []}
    return {"kind": kind}  # block encodings: named, not expanded


def _tensor(t: _Tensor) -> dict[str, Any]:
    if t.version not in (1, 2):
        return {"version": int(t.version)}
    v = t.v1  # v2 begins with v1's fields
    dims = [int(v.dimensions[i]) for i in range(v.rank)] if v.dimensions else []
    return {"name": _text(v.name), "id": int(v.id), "type": TENSOR_TYPES.get(v.type, str(v.type)),
            "dtype": DATA_TYPES.get(v.dataType, hex(v.dataType)), "dims": dims,
            "encoding": _encoding(v.quantizeParams)}


def _graph(g: _GraphInfo) -> dict[str, Any]:
    if g.version not in (1, 2, 3):
        return {"version": int(g.version)}
    v = g.graphInfoV1  # v2 and v3 begin with v1's fields
    out: dict[str, Any] = {
        "name": _text(v.graphName), "version": int(g.version),
        "inputs": [_tensor(v.graphInputs[i]) for i in range(v.numGraphInputs)],
        "outputs": [_tensor(v.graphOutputs[i]) for i in range(v.numGraphOutputs)]}
    if g.version == 3:
        v3 = g.graphInfoV3
        if v3.graphBlobInfo and v3.graphBlobInfoSize >= C.sizeof(_HtpGraphBlobInfoV1):
            blob = _HtpGraphBlobInfoV1.from_address(v3.graphBlobInfo)
            if blob.version == 1:
                out["htp"] = {"vtcm_size": int(blob.vtcmSize), "optimization_level": int(blob.optimizationLevel),
                              "spill_fill_buffer_size": int(blob.spillFillBufferSize),
                              "num_hvx_threads": int(blob.numHvxThreads)}
    return out


def _platform(p: Any) -> list[dict[str, Any]]:
    """The HTP devices a context was made for (soc model, arch, VTCM), from its platform info."""
    if not p or p.contents.version != 1:
        return []
    info = p.contents.v1
    devices = []
    for i in range(info.numHwDevices):
        hw = info.hwDevices[i]
        if hw.version != 1:
            continue
        dev: dict[str, Any] = {"device_id": int(hw.v1.deviceId), "device_type": int(hw.v1.deviceType),
                               "num_cores": int(hw.v1.numCores)}
        ext = hw.v1.deviceInfoExtension
        if ext and ext.contents.devType == 0:  # QNN_HTP_DEVICE_TYPE_ON_CHIP
            chip = ext.contents.onChipDevice
            dev.update(soc_model=int(chip.socModel), htp_arch=f"v{int(chip.arch)}", vtcm_mb=int(chip.vtcmSize))
        devices.append(dev)
    return devices


def _describe(info: _BinaryInfo) -> dict[str, Any]:
    if info.version not in (1, 2, 3):
        raise ContextError(f"binary info version {info.version}: this libQnnSystem writes a version openqnn does "
                           "not read (it reads 1 to 3)")
    v = {1: info.contextBinaryInfoV1, 2: info.contextBinaryInfoV2, 3: info.contextBinaryInfoV3}[info.version]
    out: dict[str, Any] = {
        "binary_info_version": int(info.version),
        "backend_id": int(v.backendId), "backend": BACKEND_IDS.get(int(v.backendId), "unknown"),
        "build_id": _text(v.buildId), "core_api_version": _version(v.coreApiVersion),
        "backend_api_version": _version(v.backendApiVersion), "soc_version": _text(v.socVersion),
        "context_blob_version": _version(v.contextBlobVersion), "context_blob_size": int(v.contextBlobSize),
    }
    if info.version >= 2:
        out["platform"] = _platform(v.platformInfo)
    if info.version == 3:
        out["soc_model"] = int(v.socModel)
        if v.contextMetadata and v.contextMetadataSize >= C.sizeof(_HtpContextBlobInfo):
            meta = _HtpContextBlobInfo.from_address(v.contextMetadata)
            if meta.version == 1:
                out["dsp_arch"] = f"v{int(meta.dspArch)}"
    out["context_tensors"] = [_tensor(v.contextTensors[i]) for i in range(v.numContextTensors)]
    out["graphs"] = [_graph(v.graphs[i]) for i in range(v.numGraphs)]
    return out


def _library(path: str | os.PathLike[str] | None) -> Any:
    if path is None:
        from openqnn.backends.qnn_htp.provider import system_library

        path = system_library()
    return C.CDLL(str(path))


def _interface(lib: Any) -> _SystemInterface:
    get = lib.QnnSystemInterface_getProviders
    get.restype = C.c_uint64
    get.argtypes = [C.POINTER(C.POINTER(C.POINTER(_SystemInterface))), C.POINTER(C.c_uint32)]
    providers = C.POINTER(C.POINTER(_SystemInterface))()
    n = C.c_uint32(0)
    err = get(C.byref(providers), C.byref(n))
    if err or not n.value:
        raise ContextError(f"libQnnSystem lists no system interface (QnnSystemInterface_getProviders error {err})")
    found = [providers[i].contents for i in range(n.value)
             if providers[i] and providers[i].contents.systemApiVersion.major == SYSTEM_API_MAJOR]
    if not found:
        raise ContextError(f"libQnnSystem offers no system API {SYSTEM_API_MAJOR}.x interface")
    return max(found, key=lambda p: (p.systemApiVersion.minor, p.systemApiVersion.patch))


def read_binary_info(path: str | os.PathLike[str], library: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The metadata of the QNN context binary ``path`` as libQnnSystem reads it: backend, API and blob versions,
    the SoC and HTP arch it was made for, and per graph its inputs and outputs (name, data type, dims, encoding).
    ``library``: the ``libQnnSystem.so`` to use (default: the onnxruntime-qnn wheel's)."""
    p = Path(path)
    data = p.read_bytes()
    lib = _library(library)
    fns = _interface(lib).functions
    handle = _Handle()
    err = fns.systemContextCreate(C.byref(handle))
    if err:
        raise ContextError(f"{p}: QnnSystemContext_create failed (error {err})")
    try:
        buf = C.create_string_buffer(data, len(data))
        info = C.POINTER(_BinaryInfo)()
        size = C.c_uint64(0)
        err = fns.systemContextGetBinaryInfo(handle, C.cast(buf, C.c_void_p), len(data), C.byref(info), C.byref(size))
        if err or not info:
            raise ContextError(f"{p}: not a QNN context binary (QnnSystemContext_getBinaryInfo error {err})")
        return _describe(info.contents)
    finally:
        fns.systemContextFree(handle)
