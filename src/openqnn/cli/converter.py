"""What every ``qnn-*-converter`` shares: the input, output and quantization flags, and the run itself
(convert through :func:`openqnn.convert`, quantize when asked, write ``<stem>.cpp`` / ``_net.json`` /
``.bin`` / ``_encodings.json``). A converter's module only names its tool and its source model::

    def build_parser(prog: str = "qnn-tflite-converter") -> argparse.ArgumentParser:
        p = ToolParser(prog=prog, description="Convert a TFLite model into an openqnn/QNN model ...")
        add_converter_flags(p, source="TFLite")
        return p

    def main(argv: Sequence[str] | None = None) -> int:
        return run_converter("qnn-tflite-converter", build_parser(), argv)
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from openqnn.cli.common import add_common_flags, parse_dims, run_tool

log = logging.getLogger("openqnn.converter")

__all__ = ["add_converter_flags", "add_quantization_flags", "convert_main", "run_converter"]

def add_converter_flags(p: argparse.ArgumentParser, source: str = "ONNX", *, input_dim_required: bool = False,
                        input_dtype: bool = False) -> None:
    """Every converter's flags: the source model, outputs, input dims, output picking, quantization,
    ``--target_device``/``--optimization_level`` and logging. ``input_dim_required``: a model whose inputs
    have no names or shapes of their own (PyTorch) is named and shaped by ``--input_dim``, as in QNN;
    ``input_dtype``: add ``--input_dtype`` (QNN's converters for sources without typed inputs)."""
    p.add_argument("-i", "--input_network", required=True, help=f"path to the source {source} model")
    p.add_argument("-o", "--output_path",
                   help="the graph composition source <stem>.cpp to write, with <stem>_net.json and <stem>.bin beside it "
                        "(another extension is dropped to form <stem>; default: <model>.cpp beside the model)")
    if input_dim_required:
        dim_help = ("name an input and give its dims, e.g. --input_dim input 1,3,224,224; one per model input, in "
                    "the order of the model's arguments")
    else:
        dim_help = "fix an input's dims, e.g. --input_dim input 1,3,224,224 (repeat for several inputs)"
    p.add_argument("-d", "--input_dim", nargs=2, action="append", metavar=("INPUT_NAME", "INPUT_DIM"),
                   required=input_dim_required, default=[], help=dim_help)
    if input_dtype:
        p.add_argument("--input_dtype", nargs=2, action="append", metavar=("INPUT_NAME", "INPUT_DTYPE"), default=[],
                       help="an input's data type, e.g. --input_dtype input_ids int64 (default float32)")
    p.add_argument("--out_node", "--out_name", action="append", default=[], dest="out_node",
                   help="name of a graph output (tensor or node) to keep; repeat for several (default: the model's)")
    p.add_argument("--dry_run", nargs="?", const="info", choices=["info", "debug"],
                   help="convert and report the graph without writing files")
    add_quantization_flags(p)
    p.add_argument("--target_device", help="device the model is meant for (recorded in the model), e.g. hexagon")
    p.add_argument("--optimization_level", help="optimization level (recorded in the model), e.g. high")
    add_common_flags(p)


def add_quantization_flags(p: argparse.ArgumentParser) -> None:
    """The quantization flags (QNN's names), in their own group."""
    q = p.add_argument_group("quantization")
    q.add_argument("--input_list", help="calibration data: a qnn-net-run input list of raw files; quantizes the model")
    q.add_argument("--quantization_overrides", help="encodings JSON (QNN/AIMET formats) that win over calibration")
    q.add_argument("--act_bitwidth", type=int, default=8, choices=[8, 16], help="activation bitwidth (default 8)")
    q.add_argument("--weights_bitwidth", type=int, default=8, choices=[4, 8, 16], help="weight bitwidth (default 8)")
    q.add_argument("--bias_bitwidth", type=int, default=32, choices=[8, 32], help="bias bitwidth (default 32)")
    q.add_argument("--use_per_channel_quantization", action="store_true",
                   help="per-output-channel weight encodings for convolutions")
    q.add_argument("--use_per_row_quantization", action="store_true",
                   help="per-row weight encodings for FullyConnected / MatMul")
    q.add_argument("--act_quantizer_calibration", default="min-max",
                   choices=["min-max", "sqnr", "entropy", "mse", "percentile"], help="activation range setting")
    q.add_argument("--param_quantizer_calibration", default=None,
                   choices=["min-max", "sqnr", "entropy", "mse", "percentile"],
                   help="weight range setting (default min-max; mse for per-channel/row/block 4-bit weights)")
    q.add_argument("--act_quantizer_schema", default="asymmetric", choices=["asymmetric", "symmetric"])
    q.add_argument("--param_quantizer_schema", default="symmetric", choices=["asymmetric", "symmetric"])
    q.add_argument("--act_quantizer", choices=["tf", "enhanced", "adjusted", "symmetric"],
                   help="older activation quantizer flag (enhanced: noise-optimal range for long tails)")
    q.add_argument("--param_quantizer", choices=["tf", "enhanced", "adjusted", "symmetric"],
                   help="older weight quantizer flag")
    q.add_argument("--percentile_calibration_value", type=float, default=99.99,
                   help="percentile for --*_quantizer_calibration percentile (default 99.99)")
    q.add_argument("--float_fallback", action="store_true",
                   help="tensors without an encoding (no calibration data) stay float")
    q.add_argument("--float_bitwidth", type=int, default=32, choices=[16, 32], help="bitwidth of float tensors")
    q.add_argument("--restrict_quantization_steps", nargs="+", metavar="MIN MAX",
                   help="restrict weight encodings to the signed integers [MIN, MAX] (decimal or hex), e.g. "
                        "-127 127 or \"-0x7F 0x7F\": 8-bit weights never use -128; the range is spread over "
                        "MAX - MIN steps")
    q.add_argument("--weights_block_size", type=int, metavar="N",
                   help="per-block weight encodings for Conv2d / FullyConnected / MatMul: one scale per output "
                        "channel and per N input channels (N must divide them; weights with fewer than N stay "
                        "per-channel); implies per-channel")
    q.add_argument("--weights_block_scale_bitwidth", type=int, metavar="BITS",
                   help="with --weights_block_size: LPBQ, each block scale a per-channel scale times an integer "
                        "of BITS bits (e.g. 4)")


def convert_main(args: argparse.Namespace, command: str,
                 source_of: Callable[[argparse.Namespace], object] | None = None) -> int:
    import openqnn
    from openqnn.api import encodings_path
    from openqnn.ir import format_graph

    dims = {}
    for name, text in args.input_dim:
        if name in dims:
            raise openqnn.InvalidConfigError(f"--input_dim {name} is given twice")
        dims[name] = parse_dims(text, f"--input_dim {name}")
    dtypes = _input_dtypes(getattr(args, "input_dtype", None) or [], dims)
    config = _quantizer_config(args)  # checks every quantization flag, also when not quantizing
    src = Path(args.input_network)
    source = source_of(args) if source_of is not None else src
    graph = openqnn.convert(source, input_dims=dims, out_nodes=args.out_node or None, input_dtypes=dtypes)
    graph.metadata["converter_command"] = command
    for key in ("target_device", "optimization_level"):
        if getattr(args, key):
            graph.metadata[key] = getattr(args, key)
    graph = _maybe_quantize(graph, args, config)
    if args.dry_run:
        print(format_graph(graph) if args.dry_run == "debug" else _summary(graph))
        return 0
    out = Path(args.output_path) if args.output_path else src.with_suffix(".cpp")
    if out.suffix != ".cpp":  # the composition source is always written, as <stem>.cpp
        from openqnn.serialization import model_paths

        out = model_paths(out)[1].with_suffix(".cpp")
    json_path, bin_path = openqnn.save(graph, out)  # and <stem>_encodings.json for a quantized graph
    written = [out, json_path, bin_path]
    if any(t.encoding is not None for t in graph.tensors.values()):
        written.append(encodings_path(json_path))
    log.info("wrote %s", ", ".join(map(str, written)))
    print("\n".join(map(str, written)))
    return 0


INPUT_DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")


def _input_dtypes(pairs: list[list[str]], dims: dict[str, tuple[int, ...]]) -> dict[str, str]:
    """``--input_dtype NAME TYPE`` pairs, each naming an input ``--input_dim`` names, each type one we read."""
    from openqnn.errors import InvalidConfigError

    out: dict[str, str] = {}
    for name, dtype in pairs:
        if name not in dims:
            raise InvalidConfigError(f"--input_dtype {name} {dtype}: no --input_dim names '{name}'; give its dims too")
        if dtype not in INPUT_DTYPES:
            raise InvalidConfigError(f"--input_dtype {name} {dtype}: unknown type; use one of {', '.join(INPUT_DTYPES)}")
        if name in out:
            raise InvalidConfigError(f"--input_dtype {name} is given twice")
        out[name] = dtype
    return out


def _quantizer_config(args: argparse.Namespace):
    from openqnn.quantization import QuantizerConfig

    return QuantizerConfig(
        act_bitwidth=args.act_bitwidth, weights_bitwidth=args.weights_bitwidth, bias_bitwidth=args.bias_bitwidth,
        use_per_channel_quantization=args.use_per_channel_quantization,
        use_per_row_quantization=args.use_per_row_quantization,
        act_quantizer_calibration=args.act_quantizer_calibration,
        param_quantizer_calibration=args.param_quantizer_calibration,
        act_quantizer_schema=args.act_quantizer_schema, param_quantizer_schema=args.param_quantizer_schema,
        act_quantizer=args.act_quantizer, param_quantizer=args.param_quantizer,
        percentile_calibration_value=args.percentile_calibration_value, float_fallback=args.float_fallback,
        float_bitwidth=args.float_bitwidth,
        restrict_quantization_steps=_parse_steps(args.restrict_quantization_steps),
        weights_block_size=args.weights_block_size,
        weights_block_scale_bitwidth=args.weights_block_scale_bitwidth,
    )


def _maybe_quantize(graph, args: argparse.Namespace, config):
    """Quantize when calibration data or overrides are given; otherwise the model stays float."""
    if not args.input_list and not args.quantization_overrides:
        return graph
    from openqnn.quantization import quantize
    from openqnn.quantization.encodings import read_encodings
    from openqnn.runtime.io import read_input_list, read_raw

    overrides = read_encodings(args.quantization_overrides) if args.quantization_overrides else None
    data = None
    if args.input_list:
        inputs = graph.input_tensors()
        ilist = read_input_list(args.input_list, inputs)
        data = [{t.name: read_raw(entry[t.name], t, False) for t in inputs} for entry in ilist.inferences]
    return quantize(graph, data, config, overrides)


def _parse_steps(values: list[str] | None) -> tuple[int, int] | None:
    """``--restrict_quantization_steps``: MIN MAX, or one "MIN MAX" string (QNN's form), decimal or hex."""
    if values is None:
        return None
    from openqnn.errors import InvalidConfigError

    words = [w for v in values for w in v.split()]
    text = " ".join(words)
    if len(words) != 2:
        raise InvalidConfigError(f"--restrict_quantization_steps {text}: give two integers MIN MAX, e.g. -127 127")
    try:
        lo, hi = (int(w, 0) for w in words)
    except ValueError:
        raise InvalidConfigError(f"--restrict_quantization_steps {text}: MIN and MAX must be integers "
                                 "(decimal or 0x hex), e.g. -127 127") from None
    return lo, hi


def _summary(graph) -> str:
    counts = graph.count_ops()
    lines = [f"graph {graph.name}: {len(graph.nodes)} nodes, {sum(t.size for t in graph.static_tensors())} parameters"]
    lines += [f"  {op:<24} {n}" for op, n in sorted(counts.items())]
    lines += [f"  input  {t.name}: {t.shape} {t.dtype.name}" for t in graph.input_tensors()]
    lines += [f"  output {t.name}: {t.shape} {t.dtype.name}" for t in graph.output_tensors()]
    return "\n".join(lines)


def run_converter(tool: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                  source_of: Callable[[argparse.Namespace], object] | None = None) -> int:
    """A converter's ``main``: parse ``argv`` with ``parser`` and convert, recording the command line.
    ``source_of`` makes the model to convert from the flags (default: the ``--input_network`` path), for a
    source of several files (Caffe's ``--caffe_bin``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join([tool, *map(shlex.quote, argv)])
    return run_tool(lambda a: convert_main(a, command, source_of), parser, argv)
