"""qnn-onnx-converter: ONNX model -> <stem>_net.json + <stem>.bin."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from openqnn.cli.common import add_common_flags, parse_dims, run_tool

log = logging.getLogger("openqnn.converter")


def build_parser(prog: str = "qnn-onnx-converter") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Convert an ONNX model into an openqnn/QNN model "
                                "(<stem>_net.json with the graph, <stem>.bin with the weights).")
    add_converter_flags(p)
    return p


def add_converter_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input_network", required=True, help="path to the source ONNX model")
    p.add_argument("-o", "--output_path",
                   help="output path; its extension is dropped to form <stem> (default: <model>.cpp beside the model)")
    p.add_argument("-d", "--input_dim", nargs=2, action="append", metavar=("INPUT_NAME", "INPUT_DIM"), default=[],
                   help="fix an input's dims, e.g. --input_dim input 1,3,224,224 (repeat for several inputs)")
    p.add_argument("--out_node", "--out_name", action="append", default=[], dest="out_node",
                   help="name of a graph output (tensor or node) to keep; repeat for several (default: the model's)")
    p.add_argument("--dry_run", nargs="?", const="info", choices=["info", "debug"],
                   help="convert and report the graph without writing files")
    p.add_argument("--target_device", help="device the model is meant for (recorded in the model), e.g. hexagon")
    p.add_argument("--optimization_level", help="optimization level (recorded in the model), e.g. high")
    add_common_flags(p)


def convert_main(args: argparse.Namespace, command: str) -> int:
    import openqnn
    from openqnn.ir import format_graph

    dims = {}
    for name, text in args.input_dim:
        if name in dims:
            raise openqnn.InvalidConfigError(f"--input_dim {name} is given twice")
        dims[name] = parse_dims(text, f"--input_dim {name}")
    src = Path(args.input_network)
    graph = openqnn.convert(src, input_dims=dims, out_nodes=args.out_node or None)
    graph.metadata["converter_command"] = command
    for key in ("target_device", "optimization_level"):
        if getattr(args, key):
            graph.metadata[key] = getattr(args, key)
    if args.dry_run:
        print(format_graph(graph) if args.dry_run == "debug" else _summary(graph))
        return 0
    out = Path(args.output_path) if args.output_path else src.with_suffix(".cpp")
    json_path, bin_path = openqnn.save(graph, out)
    log.info("wrote %s and %s", json_path, bin_path)
    print(f"{json_path}\n{bin_path}")
    return 0


def _summary(graph) -> str:
    counts = graph.count_ops()
    lines = [f"graph {graph.name}: {len(graph.nodes)} nodes, {sum(t.size for t in graph.static_tensors())} parameters"]
    lines += [f"  {op:<24} {n}" for op, n in sorted(counts.items())]
    lines += [f"  input  {t.name}: {t.shape} {t.dtype.name}" for t in graph.input_tensors()]
    lines += [f"  output {t.name}: {t.shape} {t.dtype.name}" for t in graph.output_tensors()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["qnn-onnx-converter", *map(shlex.quote, argv)])
    return run_tool(lambda a: convert_main(a, command), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
