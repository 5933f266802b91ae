"""qnn-context-binary-utility: write a context binary's metadata (header, graphs, arrays) as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from openqnn.cli.common import ToolParser, add_common_flags, run_tool


def build_parser(prog: str = "qnn-context-binary-utility") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Check a context binary and write its metadata (header, "
                                "graphs, their arrays, total and deduplicated sizes) as JSON.")
    p.add_argument("--context_binary", required=True, help="the context binary file to read")
    p.add_argument("--json_file", required=True, help="where to write the metadata JSON")
    add_common_flags(p)
    return p


def context_binary_utility_main(args: argparse.Namespace) -> int:
    from openqnn.errors import InvalidConfigError
    from openqnn.runtime.context_format import describe_context
    from openqnn.serialization.netjson import atomic_write

    out = Path(args.json_file)
    if out.is_dir():
        raise InvalidConfigError(f"--json_file {out}: is a folder; give the path of a file to write")
    info = describe_context(args.context_binary)
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
