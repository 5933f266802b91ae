"""qnn-platform-validator: what this machine offers each backend, printed and as CSV."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openqnn.cli.common import ToolParser, add_common_flags, check_output_dir, run_tool

CSV_NAME = "platform_validator_results.csv"


def build_parser(prog: str = "qnn-platform-validator") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Check the backends on this machine: versions, CPU ISA and the int8 path, "
                                          "threads, CUDA device, QNN's HTP simulator, self-tests.")
    p.add_argument("--backend", default="all", help="cpu, gpu, htp, qnn-htp or all (default all)")
    p.add_argument("--directory", help=f"also write the results as CSV to DIR/{CSV_NAME}")
    add_common_flags(p)
    return p


def platform_validator_main(args: argparse.Namespace) -> int:
    from openqnn.errors import InvalidConfigError
    from openqnn.profiling.platform import BACKENDS, validate, write_checks_csv

    name = args.backend.strip().lower()
    if name not in (*BACKENDS, "all"):
        raise InvalidConfigError(f"--backend {args.backend}: unknown; use {', '.join(BACKENDS)} or all")
    out_dir = check_output_dir(args.directory, "--directory") if args.directory else None
    rows = validate(BACKENDS if name == "all" else [name])
    width = max(len(r.item) for r in rows)
    current = None
    for r in rows:
        if r.backend != current:
            current = r.backend
            print(f"{r.backend}:")
        print(f"  {r.item:<{width}}  [{r.status:>7}]  {r.value}")
    if out_dir is not None:
        print(f"results: {write_checks_csv(rows, out_dir / CSV_NAME)}")
    return 1 if any(r.status == "fail" for r in rows) else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(platform_validator_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
