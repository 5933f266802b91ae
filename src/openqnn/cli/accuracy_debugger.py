"""qnn-accuracy-debugger: a converted or quantized model, layer by layer, against its ONNX model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openqnn.cli.common import ToolParser, add_common_flags, check_output_dir, run_tool

CSV_NAME = "layer_comparison.csv"
CHART_NAME = "layer_comparison.svg"


def build_parser(prog: str = "qnn-accuracy-debugger") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Compare every layer of a converted or quantized model with the framework "
                                          "model run in ONNX Runtime: cosine, SQNR, max abs error, encoding.")
    p.add_argument("--framework_model", required=True, help="the ONNX model the model was converted from")
    p.add_argument("--model", required=True, help="<stem>_net.json, lib<name>.so or a context binary")
    p.add_argument("--input_list", required=True, help="inputs to compare on (qnn-net-run's input list format)")
    p.add_argument("--output_dir", default="./accuracy_debug", help=f"where {CSV_NAME} and {CHART_NAME} go")
    p.add_argument("--backend", default="htp", help="backend to run the model on (default htp)")
    p.add_argument("--top", type=int, default=5, help="layers to print (default 5)")
    add_common_flags(p)
    return p


def accuracy_debugger_main(args: argparse.Namespace) -> int:
    from openqnn.backends import backend_spec
    from openqnn.cli.common import check_range
    from openqnn.profiling.accuracy import compare_layers, write_layer_chart, write_layer_csv
    from openqnn.runtime.context import is_context
    from openqnn.runtime.io import read_input_list, read_raw
    from openqnn.runtime.session import Session

    check_range(args.top, "--top", 1, 10_000)
    backend = backend_spec(args.backend).name
    out_dir = check_output_dir(args.output_dir)
    if is_context(args.model):
        inputs = Session(args.model, backend=backend).graph.input_tensors()
    else:
        import openqnn

        inputs = openqnn.load(args.model).input_tensors()
    ilist = read_input_list(args.input_list, inputs)
    feeds = [{t.name: read_raw(entry[t.name], t, False) for t in inputs} for entry in ilist.inferences]
    rows = compare_layers(args.framework_model, args.model, feeds, backend)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = write_layer_csv(rows, out_dir / CSV_NAME)
    chart = write_layer_chart(rows, out_dir / CHART_NAME)
    print(f"{len(rows)} layer(s) compared over {len(feeds)} input(s) on {backend}; worst first (SQNR lost in the layer):")
    for k, e in enumerate(rows[: args.top], 1):
        print(f"  {k}. {e.node} ({e.op_type}) -> {e.layer}: loses {e.sqnr_drop_db:.1f} dB (SQNR {e.sqnr_db:.1f} dB, "
              f"cosine {e.cosine:.4f}, max abs error {e.max_abs_error:.4g}); encoding {e.encoding}")
    print(f"CSV: {csv_path}\nchart: {chart}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(accuracy_debugger_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
