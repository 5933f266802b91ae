"""qnn-context-binary-generator: prepare models for a backend once and save them as one context binary.

Writes ``<output_dir>/<binary_file>.bin`` (default ``<backend>_context.bin``), ``quantization_config.json``
(the encodings in use, AIMET 1.0.0) and ``input_specs.json`` (names, shapes, dtypes, layouts and encodings
of the inputs and outputs), as the guide's deployment folder lists them. A backend that writes QNN's own
context binaries (``capabilities.qnn_contexts``: qnn-htp) writes ``<binary_file>_qnn.bin`` instead, for
Qualcomm's ``qnn-net-run --retrieve_context`` on a device, and ``<binary_file>.onnx``, ONNX Runtime's
EPContext model that points at it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from openqnn.cli.common import (
    ToolParser,
    add_common_flags,
    add_placement_flags,
    backend_config,
    check_output_dir,
    run_tool,
)

log = logging.getLogger("openqnn.context_binary_generator")

OPTIMIZATION_LEVELS = ("high", "1", "2", "3")


def build_parser(prog: str = "qnn-context-binary-generator") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Prepare models for a backend and save them as one context binary, "
                                          "which qnn-net-run --retrieve_context and Session('x.bin') open without "
                                          "preparing again.")
    p.add_argument("--model", required=True, action="append",
                   help="a converted model (<stem>_net.json) or a model library (lib<name>.so from qnn-model-lib-generator); "
                        "give it several times for a context of several graphs")
    p.add_argument("--backend", required=True, help="htp (or libQnnHtp.so); the backend the context is prepared for. "
                   "qnn-htp: Qualcomm's QNN prepares it (the onnxruntime-qnn wheel) and a real QNN context "
                   "binary is written")
    p.add_argument("--output_dir", default="./output", help="folder for the context and its JSON files (default ./output)")
    p.add_argument("--binary_file", help="the context's file name without .bin (default <backend>_context); "
                   "qnn-htp writes <binary_file>_qnn.bin and <binary_file>.onnx")
    p.add_argument("--input_list", help="calibration data (an input list) to quantize a float model for the backend")
    p.add_argument("--optimization_level", choices=OPTIMIZATION_LEVELS,
                   help="accepted for QNN compatibility; openqnn prepares the same plan at every level")
    p.add_argument("--config_file", help="backend config JSON (e.g. htp_config.dsp_arch picks the arch; "
                   "qnn_htp_config.dsp_arch / soc_model the HTP QNN prepares for; openqnn.force_backend forces "
                   "nodes to cpu; docs/backend-config.md)")
    add_placement_flags(p)
    add_common_flags(p)
    return p


def _graphs(args: argparse.Namespace, quantized_only: bool) -> dict[str, object]:
    import openqnn
    from openqnn.errors import InvalidConfigError

    graphs: dict[str, object] = {}
    for model in args.model:
        graph = openqnn.load(model)
        if quantized_only:
            graph = _quantized(graph, model, args)
        name = graph.name if graph.name not in graphs else Path(model).name.removesuffix("_net.json").removesuffix(".so")
        if name in graphs:
            raise InvalidConfigError(f"--model {model}: a graph named '{name}' is already in the context")
        graphs[name] = graph
    return graphs


def _quantized(graph, model: str, args: argparse.Namespace):
    """``graph`` quantized for a backend that runs quantized models: as it is where every tensor that needs
    an encoding has one; otherwise calibrated over ``--input_list``, the encodings it already has (the
    converter's --quantization_overrides) kept as overrides and its quantizer settings reused."""
    from openqnn.errors import InvalidConfigError
    from openqnn.ir.tensor import TensorKind

    encoded = [t for t in graph.tensors.values() if t.encoding is not None]
    missing = [t for t in graph.tensors.values()
               if t.encoding is None and t.kind is not TensorKind.STATIC and t.dtype.is_float]
    if encoded and not missing:
        if args.input_list:
            log.info("--model %s is quantized already; --input_list is not used", model)
        return graph
    if not args.input_list:
        what = ("the model is float" if not encoded else
                f"the model is only partly quantized ({len(missing)} tensor(s) have no encoding, e.g. "
                f"'{missing[0].name}')")
        raise InvalidConfigError(f"--model {model}: {what} and the {args.backend} backend runs quantized models; give "
                                 "--input_list with calibration data, or convert it with qnn-onnx-converter "
                                 "--input_list")
    from openqnn.quantization import quantize
    from openqnn.quantization.encodings.formats import EncodingsFile
    from openqnn.quantization.export import graph_encodings
    from openqnn.quantization.quantizer import recorded_config
    from openqnn.runtime.io import read_input_list, read_raw

    inputs = graph.input_tensors()
    ilist = read_input_list(args.input_list, inputs)
    data = [{t.name: read_raw(entry[t.name], t, False) for t in inputs} for entry in ilist.inferences]
    if not encoded:
        return quantize(graph, data)
    acts, params = graph_encodings(graph)
    kept = EncodingsFile(activations={e.name: e for e in acts}, params={e.name: e for e in params})
    floating = graph.copy()
    for t in floating.tensors.values():
        t.encoding = None
    log.info("--model %s: %d tensor(s) have encodings and %d do not; calibrating the rest over --input_list, "
             "keeping those", model, len(encoded), len(missing))
    return quantize(floating, data, recorded_config(graph), kept)


def context_binary_generator_main(args: argparse.Namespace) -> int:
    from openqnn.backends import backend_spec

    spec = backend_spec(args.backend)
    out_dir = check_output_dir(args.output_dir)
    config = backend_config(args)
    if args.optimization_level:
        log.info("--optimization_level %s: openqnn prepares the same plan at every level", args.optimization_level)
    name = args.binary_file or f"{spec.name}_context"
    graphs = _graphs(args, spec.capabilities.quantized_only)
    write = _qnn_writer(graphs, spec, config.section(spec.name), name) if spec.capabilities.qnn_contexts else \
        _openqnn_writer(graphs, spec, config, name)
    written = _write_set(out_dir, graphs, write)
    if len(graphs) > 1:
        log.warning("quantization_config.json holds the encodings of the first graph (%s)", next(iter(graphs)))
    print("\n".join(map(str, written)))
    return 0


# a writer puts a context's files into a folder: (their names, input_specs.json's content)
Writer = Callable[[Path], tuple[list[str], dict[str, Any]]]


def _openqnn_writer(graphs: dict[str, object], spec: Any, config: Any, name: str) -> Writer:
    """openqnn's context binary: the graphs prepared as data (``compile_graph``, with the config's backend
    section and placement), ``<name>.bin``."""
    from openqnn.runtime.context import compile_graph, io_specs

    context = compile_graph(graphs, spec.name, config)  # type: ignore[arg-type]
    _warn_fallbacks(context)

    def write(folder: Path) -> tuple[list[str], dict[str, Any]]:
        context.save(folder / f"{name}.bin")
        specs = {g: io_specs(p.io) for g, p in context.graphs.items()}
        return [f"{name}.bin"], specs if len(specs) > 1 else next(iter(specs.values()))

    return write


def _qnn_writer(graphs: dict[str, object], spec: Any, section: Any, name: str) -> Writer:
    """QNN's own context binary, written by the backend (``write_qnn_context``): ``<name>_qnn.bin`` and what
    points at it."""
    from openqnn.backends import create_backend
    from openqnn.backends.base import QnnContextBackend
    from openqnn.backends.plan import io_graph
    from openqnn.errors import InvalidConfigError
    from openqnn.ir.graph import Graph
    from openqnn.runtime.context import io_specs

    if len(graphs) > 1:
        raise InvalidConfigError(f"--model: the {spec.name} backend writes one graph per QNN context binary here; "
                                 f"give one --model per run (got {len(graphs)}: {', '.join(graphs)})")
    graph = cast(Graph, next(iter(graphs.values())))
    backend = cast(QnnContextBackend, create_backend(spec.name, section))

    def write(folder: Path) -> tuple[list[str], dict[str, Any]]:
        files = backend.write_qnn_context(graph, folder, name)
        return [f.name for f in files], io_specs(io_graph(graph))

    return write


def _write_set(out_dir: Path, graphs: dict[str, object], write: Writer) -> list[Path]:
    """The context's files, ``quantization_config.json`` and ``input_specs.json`` in ``out_dir``: everything is
    written into a temporary folder first, so a failure leaves no half of the set behind."""
    import json
    import shutil
    import tempfile

    from openqnn.quantization.export import write_graph_encodings

    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]  # the folders this run makes
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".context.") as tmp:
            staged = Path(tmp)
            files, specs = write(staged)
            first = next(iter(graphs.values()))
            write_graph_encodings(first, staged / "quantization_config.json")  # type: ignore[arg-type]
            (staged / "input_specs.json").write_text(json.dumps(specs, indent=2) + "\n")
            written = []
            for f in (*files, "quantization_config.json", "input_specs.json"):
                shutil.move(str(staged / f), out_dir / f)
                written.append(out_dir / f)
    except BaseException:
        for d in made:  # innermost first: only folders still empty
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return written


def _warn_fallbacks(context) -> None:
    """Nodes a context runs on the cpu fallback (a model quantized only in part, say) are said, as Session says
    them: one warning per graph, each node at INFO."""
    from openqnn.backends import Fallback
    from openqnn.backends.partition import FORCED
    from openqnn.runtime.session import warn_fallbacks

    for name, prepared in context.graphs.items():
        fallbacks = [Fallback(s.node, s.op_type, str(s.attrs.get("reason", ""))) for s in prepared.steps
                     if "reason" in s.attrs]
        for f in fallbacks:
            log.info("graph %s: %s (%s) runs on cpu: %s", name, f.node, f.op_type, f.reason)
        nodes = sum(1 for s in prepared.steps if not s.attrs.get("edge"))
        warn_fallbacks(f"{context.backend} (graph {name})", [f for f in fallbacks if f.reason != FORCED], nodes)


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(context_binary_generator_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
