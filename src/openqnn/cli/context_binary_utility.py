"""qnn-context-binary-utility: write a context binary's metadata as JSON: the header; per graph its inputs and
outputs (name, shape, data type, layout, encoding: what an application feeds and reads), its steps by kernel,
the nodes that run on the cpu fallback with their reasons, and its arrays; the total and deduplicated sizes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from openqnn.cli.common import ToolParser, add_common_flags, run_tool


def build_parser(prog: str = "qnn-context-binary-utility") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Check a context binary and write its metadata as JSON: the header; "
                                "per graph its inputs and outputs with their encodings, its steps by kernel, "
                                "the nodes on the cpu fallback with their reasons, and its arrays; total and "
                                "deduplicated sizes.")
    p.add_argument("--context_binary", required=True, help="the context binary file to read")
    p.add_argument("--json_file", required=True, help="where to write the metadata JSON")
    add_common_flags(p)
    return p


def context_binary_utility_main(args: argparse.Namespace) -> int:
    from openqnn.errors import InvalidConfigError
    from openqnn.runtime.context import context_of, step_summary
    from openqnn.runtime.context_format import describe_context, read_context
    from openqnn.serialization.netjson import atomic_write

    out = Path(args.json_file)
    if out.is_dir():
        raise InvalidConfigError(f"--json_file {out}: is a folder; give the path of a file to write")
    raw = read_context(args.context_binary)
    info = describe_context(raw)
    # a container whose plans are not prepared graphs (written with write_context directly): its metadata only
    if all(isinstance(g.plan, dict) and "steps" in g.plan and "io" in g.plan for g in raw.graphs.values()):
        for name, prepared in context_of(raw).graphs.items():
            info["graphs"][name] = {**step_summary(prepared), **info["graphs"][name]}
    try:
        with atomic_write(out) as f:
            json.dump(info, f, indent=2)
            f.write("\n")
    except OSError as e:
        raise InvalidConfigError(f"--json_file {out}: cannot be written ({e.strerror or e}); give a path in a "
                                 "folder you can write to") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(context_binary_utility_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
