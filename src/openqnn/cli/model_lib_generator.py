"""qnn-model-lib-generator: compile the converter's ``<stem>.cpp`` and ``<stem>.bin`` into a model library.

``-o`` ending in ``.so`` names the library (one target); otherwise it is a folder holding
``<target>/lib<name>.so``. ``--target_backends`` checks every node against each listed backend and prints
what would run where and what would fall back, before anyone is on a device.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from openqnn.cli.common import ToolParser, add_common_flags, parse_backends, run_tool

log = logging.getLogger("openqnn.model_lib_generator")


def build_parser(prog: str = "qnn-model-lib-generator") -> argparse.ArgumentParser:
    from openqnn.modellib.build import WEIGHTS_MODES
    from openqnn.modellib.toolchain import TARGETS

    p = ToolParser(prog=prog, description="Compile a converted model's <stem>.cpp with its weights <stem>.bin into a "
                                          "shared library that qnn-net-run, qnn-context-binary-generator and "
                                          "openqnn.Session load.")
    p.add_argument("-c", "--cpp", required=True, help="the converter's graph composition source <stem>.cpp")
    p.add_argument("-b", "--bin", help="its weights <stem>.bin (default: beside the .cpp)")
    p.add_argument("-t", "--lib_targets", nargs="+", default=None, metavar="TARGET",
                   help=f"targets to build for: {', '.join(TARGETS)} (default: this machine's)")
    p.add_argument("-l", "--lib_name", default=None, help="the library's name (default: the .cpp's stem)")
    p.add_argument("-o", "--output_dir", default="model_libs",
                   help="a folder for <target>/lib<name>.so (default model_libs), or the library's path ending in .so")
    p.add_argument("--target_backends", default=None, metavar="B1,B2",
                   help="backends to check every node against (e.g. htp,gpu,cpu): prints what runs where and what "
                        "falls back to cpu, with each reason")
    p.add_argument("--weights", choices=WEIGHTS_MODES, default="auto",
                   help="embed the weights in the library, or keep them in <name>.bin beside it (auto: embed up to "
                        "1 GiB)")
    add_common_flags(p)
    return p


def model_lib_generator_main(args: argparse.Namespace) -> int:
    from openqnn.modellib import build_library
    from openqnn.modellib.build import embeds, weights_note
    from openqnn.modellib.toolchain import canonical_target, host_target

    cpp = Path(args.cpp)
    bin_path = Path(args.bin) if args.bin else cpp.with_suffix(".bin")
    targets = [canonical_target(t) for t in (args.lib_targets or [host_target()])]
    name = args.lib_name or cpp.stem
    backends = parse_backends(args.target_backends, "--target_backends") if args.target_backends else []
    built = build_library(cpp, bin_path, name=name, output=args.output_dir, targets=targets, weights=args.weights)
    size = bin_path.stat().st_size
    for target, path in built.items():
        print(f"{path}  ({target}; {weights_note(path, size, embeds(size, args.weights))})")
    if backends:
        _report_placement(built, cpp, bin_path, name, backends)
    return 0


def _report_placement(built: dict[str, Path], cpp: Path, bin_path: Path, name: str, backends: list[str]) -> None:
    """Compose the graph from a library this machine can load (one just built, or a temporary one for this
    machine) and print each backend's placement."""
    import tempfile

    import openqnn
    from openqnn.errors import LibraryBuildError
    from openqnn.modellib import build_library
    from openqnn.modellib.toolchain import host_target
    from openqnn.runtime.placement import format_placement, placement

    host = host_target()
    with tempfile.TemporaryDirectory(prefix="openqnn-placement-") as tmp:
        lib = built.get(host)
        if lib is None:
            try:
                lib = build_library(cpp, bin_path, name=name, output=Path(tmp) / f"lib{name}.so", targets=[host])[host]
            except LibraryBuildError as e:
                log.warning("--target_backends: cannot compose the graph on this machine to check placement (%s)", e)
                return
        graph = openqnn.load(lib)
        print(format_placement(graph, placement(graph, backends)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(model_lib_generator_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
