"""qnn-context-binary-utility: write a context binary's metadata as JSON: the header; per graph its inputs and
outputs (name, shape, data type, layout, encoding: what an application feeds and reads), its steps by kernel,
the nodes that run on the cpu fallback with their reasons, and its arrays; the total and deduplicated sizes.

A QNN context binary (qnn-context-binary-generator --backend qnn-htp's ``<name>_qnn.bin``, or one from Qualcomm's
SDK) is told by its content and read by QNN's own ``libQnnSystem`` (``QnnSystemContext_getBinaryInfo``): backend,
API and blob versions, the SoC model and HTP arch it was made for, per graph its inputs and outputs (name, data
type, dims, encoding)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openqnn.cli.common import ToolParser, add_common_flags, run_tool


def build_parser(prog: str = "qnn-context-binary-utility") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Check a context binary and write its metadata as JSON: the header; "
                                "per graph its inputs and outputs with their encodings, its steps by kernel, "
                                "the nodes on the cpu fallback with their reasons, and its arrays; total and "
                                "deduplicated sizes. A QNN context binary is read by QNN's libQnnSystem "
                                "(the onnxruntime-qnn wheel).")
    p.add_argument("--context_binary", required=True, help="the context binary file to read (openqnn's or QNN's)")
    p.add_argument("--json_file", required=True, help="where to write the metadata JSON")
    add_common_flags(p)
    return p


def context_binary_utility_main(args: argparse.Namespace) -> int:
    from openqnn.errors import InvalidConfigError
    from openqnn.serialization.netjson import atomic_write

    out = Path(args.json_file)
    if out.is_dir():
        raise InvalidConfigError(f"--json_file {out}: is a folder; give the path of a file to write")
    info = _describe(Path(args.context_binary))
    try:
        with atomic_write(out) as f:
            json.dump(info, f, indent=2)
            f.write("\n")
    except OSError as e:
        raise InvalidConfigError(f"--json_file {out}: cannot be written ({e.strerror or e}); give a path in a "
                                 "folder you can write to") from None
    return 0


def _describe(path: Path) -> dict[str, Any]:
    """openqnn's metadata of its own context binaries; QNN's (libQnnSystem's) of QNN's."""
    from openqnn.errors import ContextError
    from openqnn.runtime.context import context_of, is_context, step_summary
    from openqnn.runtime.context_format import describe_context, read_context

    if path.is_file() and not is_context(path):
        qnn = _qnn_info(path)
        if qnn is not None:
            return qnn
    try:
        raw = read_context(path)
    except ContextError as e:
        from openqnn.backends.qnn_htp.provider import missing

        why = missing()
        raise ContextError(f"{e}; or a QNN context binary, which libQnnSystem reads: {why}" if why else str(e)) from None
    info = describe_context(raw)
    # a container whose plans are not prepared graphs (written with write_context directly): its metadata only
    if all(isinstance(g.plan, dict) and "steps" in g.plan and "io" in g.plan for g in raw.graphs.values()):
        for name, prepared in context_of(raw).graphs.items():
            info["graphs"][name] = {**step_summary(prepared), **info["graphs"][name]}
    return info


def _qnn_info(path: Path) -> dict[str, Any] | None:
    """The metadata of a QNN context binary (``format: "qnn"``), or None where ``path`` is not one or QNN's
    libQnnSystem is not installed to tell."""
    from openqnn.backends.qnn_htp.provider import missing
    from openqnn.backends.qnn_htp.system import read_binary_info
    from openqnn.errors import ContextError

    if missing() is not None:
        return None
    try:
        return {"format": "qnn", "file": str(path), "size": path.stat().st_size, **read_binary_info(path)}
    except ContextError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(context_binary_utility_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
