"""QNN's HTP through ONNX Runtime: the ``onnxruntime-qnn`` wheel's QNN execution provider, and sessions on it.

The wheel ships QNN's own libraries (``libQnnHtp.so``: on an x86_64 host QNN's HTP simulator, on a Snapdragon
machine the NPU; ``libQnnSystem.so``) and the execution provider that drives them. A session is built the
plugin way: the provider library is registered with ONNX Runtime once per process, its devices are added to the
session options with QNN's provider options (``backend_path``, ``htp_arch``, ``soc_model``, ...), and
``session.disable_cpu_ep_fallback`` makes a model QNN will not take entirely an error instead of running parts
of it on ONNX Runtime's CPU.

QNN EP says why it refuses a node only in its verbose log, written by the native libraries to fds 1 and 2:
:func:`captured_fds` catches that, :func:`refusal_detail` reads the refused ops and reasons from it.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from openqnn.errors import InvalidConfigError

__all__ = ["INSTALL_HINT", "WHEEL", "captured_fds", "host_is_simulator", "missing", "qnn_session", "read_log",
           "refusal_detail", "require", "system_library", "wheel_version"]

WHEEL = "onnxruntime-qnn"
INSTALL_HINT = (f"install {WHEEL} (pip install {WHEEL}, or openqnn's qnn extra; Python >= 3.11; Linux x86_64 runs "
                "QNN's HTP simulator, Windows on Snapdragon the NPU)")


def missing() -> str | None:
    """Why QNN's HTP cannot run here (None: the wheel imports)."""
    if sys.version_info < (3, 11):
        return f"the {WHEEL} wheel needs Python >= 3.11 (this is {platform.python_version()})"
    try:
        import onnxruntime_qnn  # noqa: F401
    except ImportError:
        return f"the {WHEEL} wheel is not installed on this {platform.system()} {platform.machine()}: {INSTALL_HINT}"
    return None


def require() -> None:
    """Raise a one-line :class:`InvalidConfigError` saying what to install where QNN's HTP cannot run."""
    why = missing()
    if why is not None:
        raise InvalidConfigError(f"the qnn-htp backend runs Qualcomm's QNN HTP: {why}")


def host_is_simulator() -> bool:
    """Whether the wheel's ``libQnnHtp`` here is QNN's x86_64 HTP simulator rather than an NPU's driver."""
    return platform.machine().lower() in ("x86_64", "amd64")


def wheel_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{WHEEL} {version(WHEEL)}, onnxruntime {version('onnxruntime')}"
    except PackageNotFoundError:
        return f"{WHEEL} (not installed)"


def system_library() -> Path:
    """The wheel's ``libQnnSystem`` (``QnnSystem.dll`` on Windows)."""
    require()
    import onnxruntime_qnn

    folder = Path(onnxruntime_qnn.get_qnn_htp_path()).parent
    for name in ("libQnnSystem.so", "QnnSystem.dll"):
        if (folder / name).is_file():
            return folder / name
    raise InvalidConfigError(f"the {WHEEL} wheel in {folder} has no libQnnSystem; reinstall it ({INSTALL_HINT})")


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    import onnxruntime as ort
    import onnxruntime_qnn

    try:
        ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
    except Exception as e:  # registered earlier in this process by someone else
        if "already" not in str(e).lower():
            raise
    _registered = True


def qnn_session(model: bytes | str, arch: str | None, *, fallback: bool = False, severity: int = 3,
                options: Mapping[str, str] | None = None, entries: Mapping[str, str] | None = None) -> Any:
    """An ONNX Runtime session of ``model`` (bytes or a path) on QNN's HTP for ``arch`` ("68", "73", ...; None:
    QNN's own choice, the device's on a Snapdragon machine), nothing on ONNX Runtime's CPU unless ``fallback``.
    ``options``: more QNN provider options (``soc_model``, ``device_id``, ...); ``entries``: session config
    entries (``ep.context_enable``, ...)."""
    import onnxruntime as ort
    import onnxruntime_qnn

    _register()
    so = ort.SessionOptions()
    so.log_severity_level = severity
    devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
    if not devices:
        raise InvalidConfigError("onnxruntime lists no QNNExecutionProvider device after registering the "
                                 f"{WHEEL} wheel's library; reinstall it ({INSTALL_HINT})")
    provider = {"backend_path": onnxruntime_qnn.get_qnn_htp_path(), **(options or {})}
    if arch is not None:
        provider["htp_arch"] = arch
    so.add_provider_for_devices(devices, provider)
    if not fallback:
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    for key, value in (entries or {}).items():
        so.add_session_config_entry(key, value)
    return ort.InferenceSession(model, so)


@contextlib.contextmanager
def captured_fds() -> Iterator[io.StringIO]:
    """Capture what the native libraries write to fd 1 and 2 (ONNX Runtime's and QNN's logs)."""
    buf = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield buf
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            buf.write(tmp.read().decode("utf-8", "replace"))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNIT = re.compile(r"Validation (PASSED|FAILED) for (\d+) nodes in OrtNodeUnit \((\w+)\) :\n((?:\s+Operator type:.*\n)+)"
                   r"(?:\s*REASON : (.*))?")
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def read_log(log: str, nodes: bool = False) -> tuple[list[str], list[str]]:
    """From QNN EP's verbose log of a session: (its reasons for the node units it would not take, the
    compute nodes it took alone, outside a DequantizeLinear -> op -> QuantizeLinear unit: QNN runs those
    on float values). ``nodes``: name the refused node where a unit is one node ("Erf (node_3): reason")."""
    log = _ANSI.sub("", log)
    refused: list[str] = []
    alone: list[str] = []
    for m in _UNIT.finditer(log):
        verdict, count, op, members, reason = m.groups()
        if verdict == "FAILED":
            reason = (reason or "").strip()
            if "consume a graph input" in reason or "generate a graph output" in reason:
                continue  # graph I/O Q/DQ: QNN EP leaves them to the CPU by design (offload_graph_io_quantization)
            name = re.search(r"Node name: (.*?) Node index", members)
            where = f"{op} ({name.group(1)})" if nodes and name and int(count) == 1 else op
            refused.append(f"{where}: {reason}" if reason else where)
        elif int(count) == 1 and op not in _QDQ:
            name = re.search(r"Node name: (.*?) Node index", members)
            alone.append(f"{op} ({name.group(1) if name else '?'})")
    return list(dict.fromkeys(refused)), list(dict.fromkeys(alone))


def refusal_detail(model: bytes | str, arch: str | None, log: str, options: Mapping[str, str] | None = None,
                   nodes: bool = False) -> str:
    """The ops QNN EP would not take and its reasons: from the failed session's log, else from a
    diagnostic session (CPU fallback allowed). ``nodes``: as :func:`read_log`'s."""
    refused, _ = read_log(log, nodes)
    if not refused:
        with contextlib.suppress(Exception), captured_fds() as buf:
            qnn_session(model, arch, fallback=True, severity=0, options=options)
        refused, _ = read_log(buf.getvalue(), nodes)
    if refused:
        return "; ".join(refused)
    clean = _ANSI.sub("", log)
    found = re.findall(r"Unsupported nodes in QNN EP: (\{.*?\})\s*$", clean, re.M)
    errors = [ln.split("] ", 1)[-1].strip() for ln in clean.splitlines() if "[E:" in ln]
    return "; ".join(dict.fromkeys([f"unsupported {x}" for x in found] or errors[:3]))
