"""What this machine offers each backend: the platform validator's checks.

Each :class:`Check` is one row (backend, item, value, status). ``status`` is ``ok``, ``info``, ``missing``
(the backend or an optional part is absent here) or ``fail`` (something present does not work). The htp
self-test runs a small quantized model through the fast integer kernels and through the executable spec
(``path="reference"``) and asks for the same bits.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openqnn.profiling.log import write_csv_table

__all__ = ["BACKENDS", "Check", "cpu_info", "htp_products", "isa_text", "torch_capability", "validate",
           "write_checks_csv"]

BACKENDS = ("cpu", "gpu", "htp", "qnn-htp")
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp",
             "i8mm", "sve")


@dataclass(frozen=True)
class Check:
    backend: str
    item: str
    value: str
    status: str  # ok | info | missing | fail


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and its feature flags (from /proc/cpuinfo where there is one)."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def isa_text(flags: set[str]) -> str:
    """The relevant ISA flags among ``flags`` (as :func:`cpu_info` gives them), comma-separated."""
    return ", ".join(f for f in ISA_FLAGS if f in flags) or "(flags unknown)"


def torch_capability() -> str:
    """The CPU kernels PyTorch dispatches to here (``?`` where this torch cannot say)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:
        return "?"


def htp_products() -> str:
    """How this machine computes the htp backend's int8 products (the path the fast kernels take)."""
    from openqnn.backends.htp import native
    from openqnn.backends.htp.kernels.gemm import int8_mm_faster

    if native.library() is None:
        return "PyTorch (no C compiler for the native kernels)"
    isa = native.int8_isa()
    if isa == "avx512-vnni":
        return ("native AVX-512 VNNI kernels (requantized in registers; k x k convolutions as uint8 im2col rows times "
                "the native GEMM), oneDNN int8 for grouped convolutions")
    if isa == "avx-vnni":
        return ("native AVX2 kernels with 256-bit VNNI (vpdpbusd GEMM on uint8 codes, requantized by the C epilogue; "
                "the depthwise one vpmaddwd's, in registers; k x k convolutions as uint8 im2col rows times the GEMM)")
    if isa == "neon-dotprod":
        return ("native aarch64 dotprod kernels (sdot GEMM on codes made signed, requantized by the C epilogue; "
                "k x k convolutions as uint8 im2col rows times the GEMM; depthwise in plain C)")
    if isa == "avx2":
        return ("native AVX2 kernels (vpmaddwd on int16-widened codes and weights, requantized by the C epilogue, "
                "the depthwise one in registers; k x k convolutions as uint8 im2col rows times the native GEMM)")
    if int8_mm_faster():
        return "torch._int_mm (measured faster than float32 here)"
    return "exact float32 (oneDNN convolutions, float32 GEMMs in chunks below 2^24)"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_checks() -> list[Check]:
    import torch

    from openqnn._version import __version__
    from openqnn.backends.cpu.native import float_isa

    model, flags = cpu_info()
    isa = float_isa()
    rows = [Check("cpu", "openqnn", __version__, "ok"),
            Check("cpu", "python", platform.python_version(), "ok"),
            Check("cpu", "torch", torch.__version__, "ok"),
            Check("cpu", "numpy", _version("numpy") or "?", "ok"),
            Check("cpu", "onnx", _version("onnx") or "not installed", "ok" if _version("onnx") else "missing"),
            Check("cpu", "onnxruntime", _version("onnxruntime") or "not installed (the accuracy debugger needs it)",
                  "ok" if _version("onnxruntime") else "missing"),
            Check("cpu", "cpu", f"{model} ({platform.machine()})", "info"),
            Check("cpu", "isa", isa_text(flags), "info"),
            Check("cpu", "pytorch kernels", torch_capability(), "info"),
            Check("cpu", "cores", str(os.cpu_count()), "info"),
            Check("cpu", "threads", f"{torch.get_num_threads()} (torch intra-op)", "info"),
            Check("cpu", "float32 kernels", f"openqnn's native kernels ({isa}) for GEMMs, 1x1, depthwise and first "
                  "convolutions; oneDNN for the other convolutions" if isa else
                  "oneDNN only (the native kernels are not built: no C compiler, or OPENQNN_NATIVE=0 / "
                  "OPENQNN_CPU_NATIVE=0)", "ok" if isa else "info")]
    rows.append(_float_self_test())
    return rows


def _float_self_test() -> Check:
    """The cpu backend against the ONNX reference evaluator on the self-test model."""
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    from openqnn.backends.cpu import CpuBackend
    from openqnn.frontends.onnx import convert_onnx

    model, x = _self_test_model()
    try:
        out = CpuBackend().prepare(convert_onnx(model)).run({"x": x})["y"]
        ref = np.asarray(next(iter(ReferenceEvaluator(model).run(None, {"x": x}))))
        ok = bool(np.allclose(out, ref, rtol=1e-4, atol=1e-4))
    except Exception as e:  # a broken install: reported, not raised
        return Check("cpu", "self-test", f"failed: {type(e).__name__}: {e}", "fail")
    return Check("cpu", "self-test", "conv, add, relu, gemm match the ONNX reference evaluator" if ok
                 else "mismatch against the ONNX reference evaluator",
                 "ok" if ok else "fail")


def _self_test_model() -> tuple[Any, Any]:
    """A small conv -> add -> relu -> fully connected ONNX model, seeded, and an input for it."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(17)

    def init(name: str, shape: tuple[int, ...]) -> Any:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "x2"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "selftest", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                          [init("w", (8, 4, 3, 3)), init("b", (8,)), init("x2", (1, 8, 6, 6)),
                           init("w2", (5, 288)), init("b2", (5,))])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    return model, x


def _htp_checks() -> list[Check]:
    import numpy as np

    from openqnn.backends.htp import native
    from openqnn.backends.htp.arch import ARCHS, DEFAULT_ARCH
    from openqnn.backends.htp.backend import HtpBackend
    from openqnn.quantization import quantize

    rows = [Check("htp", "emulated archs", ", ".join(f"{a.name} ({a.vtcm_mb} MiB VTCM)" for a in ARCHS.values()),
                  "info"),
            Check("htp", "default arch", DEFAULT_ARCH, "info"),
            Check("htp", "native kernels", "built" if native.library() is not None else
                  "not built (no C compiler, or OPENQNN_HTP_NATIVE=0): PyTorch paths, same bits",
                  "ok" if native.library() is not None else "info"),
            Check("htp", "int8 path", htp_products(), "info")]
    try:
        from openqnn.frontends.onnx import convert_onnx

        model, x = _self_test_model()
        graph = convert_onnx(model)
        rng = np.random.default_rng(18)
        q = quantize(graph, [{"x": rng.standard_normal(x.shape).astype(np.float32)} for _ in range(4)])
        fast = _native_run(HtpBackend().prepare(q), x)
        ref = _native_run(HtpBackend(path="reference").prepare(q), x)
        same = bool(np.array_equal(fast, ref))
        rows.append(Check("htp", "self-test", "integer kernels (conv, add, relu, fully connected) give the "
                          "executable spec's bits" if same else
                          f"fast kernels differ from the executable spec in {int(np.count_nonzero(fast != ref))} "
                          "code(s): please report", "ok" if same else "fail"))
    except Exception as e:
        rows.append(Check("htp", "self-test", f"failed: {type(e).__name__}: {e}", "fail"))
    return rows


def _native_run(exe: Any, x: Any) -> Any:
    """The self-test model's output codes (htp's executables take ``native_outputs``)."""
    return exe.run({"x": x}, native_outputs=True)["y"]


def _gpu_checks() -> list[Check]:
    import torch

    from openqnn.backends import backend_spec

    spec = backend_spec("gpu")
    rows = []
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        rows.append(Check("gpu", "cuda device", f"{props.name}, {props.total_memory / 2**30:.0f} GiB, "
                          f"compute {props.major}.{props.minor}; CUDA {torch.version.cuda}", "ok"))
    else:
        rows.append(Check("gpu", "cuda device", "none (torch.cuda.is_available() is False)", "missing"))
    rows.append(Check("gpu", "backend", "available" if spec.create is not None else (spec.unavailable or "absent"),
                      "ok" if spec.create is not None else "missing"))
    return rows


def _qnn_htp_checks() -> list[Check]:
    version = _version("onnxruntime-qnn")
    if version is None:
        return [Check("qnn-htp", "onnxruntime-qnn", "not installed: QNN's own HTP simulator is optional "
                      "(pip install onnxruntime-qnn on Linux x86_64, Python 3.11+)", "missing")]
    rows = [Check("qnn-htp", "onnxruntime-qnn", version, "ok")]
    try:
        import onnxruntime as ort
        import onnxruntime_qnn

        htp = Path(onnxruntime_qnn.get_qnn_htp_path())
        rows.append(Check("qnn-htp", "libQnnHtp.so", str(htp), "ok" if htp.is_file() else "fail"))
        try:
            ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
        except Exception as e:  # registered earlier in this process
            if "already" not in str(e).lower():
                raise
        has = any(d.ep_name == "QNNExecutionProvider" for d in ort.get_ep_devices())
        rows.append(Check("qnn-htp", "QNNExecutionProvider", "registered (HTP simulator on x86_64)" if has else
                          "no device after registering the wheel's library", "ok" if has else "fail"))
    except Exception as e:
        rows.append(Check("qnn-htp", "onnxruntime-qnn", f"cannot be loaded: {type(e).__name__}: {e}", "fail"))
    return rows


_CHECKS = {"cpu": _cpu_checks, "gpu": _gpu_checks, "htp": _htp_checks, "qnn-htp": _qnn_htp_checks}


def validate(backends: Sequence[str]) -> list[Check]:
    """The checks of each named backend, in order."""
    rows: list[Check] = []
    for b in backends:
        rows += _CHECKS[b]()
    return rows


def write_checks_csv(rows: Sequence[Check], path: str | os.PathLike[str]) -> Path:
    return write_csv_table(path, ("backend", "item", "value", "status"),
                           ([r.backend, r.item, r.value, r.status] for r in rows))
