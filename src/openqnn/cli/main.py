"""``openqnn``: one command with subcommands for the QNN tools' work."""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Sequence

from openqnn.cli.common import ToolParser, add_common_flags, add_placement_flags, backend_config, run_tool

# the QNN tools that are programs of their own, also as subcommands: ``openqnn profile-viewer ...`` runs
# ``qnn-profile-viewer ...`` (same flags; ``openqnn profile-viewer --help`` lists them)
TOOLS: dict[str, str] = {
    "context-binary-generator": "prepare models for a backend and save them as one context binary "
                                "(qnn-context-binary-generator)",
    "context-binary-utility": "check a context binary and write its metadata as JSON (qnn-context-binary-utility)",
    "model-lib-generator": "compile a converted model's .cpp and .bin into a model library (qnn-model-lib-generator)",
    "profile-viewer": "summarize a profiling log: text, CSV, Chrome trace, HTML report (qnn-profile-viewer)",
    "platform-validator": "check the backends on this machine (qnn-platform-validator)",
    "accuracy-debugger": "compare every layer with the framework and rank the layers by the accuracy they lose "
                         "(qnn-accuracy-debugger)",
}


def build_parser() -> argparse.ArgumentParser:
    from openqnn._version import __version__
    from openqnn.cli.converter import add_converter_flags
    from openqnn.cli.deploy import DESCRIPTION, add_deploy_flags
    from openqnn.cli.net_run import add_net_run_flags

    p = ToolParser(prog="openqnn", description="Convert, run and inspect neural networks the QNN way.")
    p.add_argument("--version", action="version", version=f"openqnn {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_converter_flags(sub.add_parser("convert", help="a model (ONNX, PyTorch, ...) -> <stem>_net.json + <stem>.bin "
                                       "(qnn-onnx-converter, qnn-pytorch-converter, ...)"),
                        source="(any kind openqnn converts: .onnx, .pt, .pt2, ...)", input_dtype=True)
    add_net_run_flags(sub.add_parser("net-run", help="run a model over an input list (qnn-net-run)"))
    info = sub.add_parser("info", help="print a converted model's graph, or with --backend where each node runs and why")
    info.add_argument("model", help="<stem>_net.json (or a model library, or a context binary with --backend)")
    info.add_argument("--backend", help="prepare the model for this backend (cpu, gpu, htp or a QNN library name) and "
                      "print its partition report: each node's op, backend and reason")
    info.add_argument("--config_file", help="backend config JSON (openqnn.force_backend forces nodes; "
                      "docs/backend-config.md)")
    add_placement_flags(info)
    add_common_flags(info)
    ops = sub.add_parser("ops", help="list the ONNX ops openqnn converts and the IR ops they become")
    ops.add_argument("--markdown", action="store_true", help="print the docs/ops.md table")
    add_common_flags(ops)
    export = sub.add_parser("export-onnx", help="write a model (quantized or float) as a standard ONNX model, "
                            "encodings as QuantizeLinear/DequantizeLinear")
    export.add_argument("model", help="<stem>_net.json")
    export.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    add_common_flags(export)
    add_deploy_flags(sub.add_parser("deploy", description=DESCRIPTION,
                                    help="write a deployment folder in one step: model library, a context binary per "
                                         "backend, quantization_config.json, input_specs.json"))
    for name, text in TOOLS.items():
        sub.add_parser(name, help=text, add_help=False)  # (main() hands these to the tool's own parser)
    demo = sub.add_parser("demo", help="build a small model, convert it, run it with qnn-net-run, print the result")
    demo.add_argument("--workdir", default="openqnn_demo", help="folder for the demo's files (default openqnn_demo)")
    add_common_flags(demo)
    return p


def _dispatch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.command == "convert":
        from openqnn.cli.converter import convert_main

        return convert_main(args, " ".join(["openqnn", *map(shlex.quote, argv)]))
    if args.command == "net-run":
        from openqnn.cli.net_run import net_run_main

        return net_run_main(args)
    if args.command == "info":
        import openqnn

        if args.backend is None:
            from openqnn.ir import format_graph

            print(format_graph(openqnn.load(args.model)))
            return 0
        session = openqnn.Session(args.model, backend=args.backend, config=backend_config(args))
        print(session.partition_report().table())
        return 0
    if args.command == "ops":
        from openqnn.docs import ops_table

        print(ops_table(markdown=args.markdown))
        return 0
    if args.command == "export-onnx":
        import openqnn
        from openqnn.quantization.qdq import export_qdq

        print(export_qdq(openqnn.load(args.model), args.output))
        return 0
    if args.command == "deploy":
        from openqnn.cli.deploy import deploy_main

        return deploy_main(args, " ".join(["openqnn", *map(shlex.quote, argv)]))
    if args.command == "demo":
        from openqnn.demo import run_demo

        return run_demo(args.workdir)
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TOOLS:
        module_name = argv[0].replace("-", "_")
        module = importlib.import_module(f"openqnn.cli.{module_name}")
        return run_tool(getattr(module, f"{module_name}_main"), module.build_parser(f"openqnn {argv[0]}"), argv[1:])
    return run_tool(lambda a: _dispatch(a, argv), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
