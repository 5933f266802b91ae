"""qnn-net-run: run a model on a backend over an input list, writing Result_<i>/<tensor>.raw, and
``partition_report.json`` (where each node ran, and why) beside them."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from openqnn.backends.settings import PERFORMANCE_MODES
from openqnn.cli.common import (
    MAX_FLAG_INT,
    ToolParser,
    add_common_flags,
    add_placement_flags,
    backend_config,
    check_output_dir,
    check_range,
    run_tool,
)

log = logging.getLogger("openqnn.net_run")

MAX_THREADS = 64  # --throughput_threads
MAX_DURATION_S = 7 * 24 * 3600  # --duration: a week at most
PARTITION_REPORT = "partition_report.json"  # written into --output_dir: where each node ran, and why


def build_parser(prog: str = "qnn-net-run") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Run a converted model over the inferences of an input list.")
    add_net_run_flags(p)
    return p


def add_net_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="the converter's <stem>_net.json (or <stem>.cpp / <stem>), or a model library "
                                  "(lib<name>.so from qnn-model-lib-generator)")
    p.add_argument("--retrieve_context", metavar="FILE",
                   help="run a context binary (qnn-context-binary-generator's) instead of --model: nothing is prepared")
    p.add_argument("--backend", help="cpu, gpu or htp, or libQnnCpu.so / libQnnGpu.so / libQnnHtp.so (default cpu; "
                   "with --retrieve_context, the context's); qnn-htp: Qualcomm's own HTP through the "
                   "onnxruntime-qnn wheel (its simulator on x86_64, the NPU on Snapdragon)")
    p.add_argument("--input_list", required=True,
                   help="text file: one inference per line, raw paths in input order or name:=path pairs")
    p.add_argument("--output_dir", default="./output", help="where Result_<i>/ folders go (default ./output)")
    p.add_argument("--use_native_input_files", action="store_true",
                   help="raw inputs hold each input's own type instead of float32")
    p.add_argument("--use_native_output_files", action="store_true",
                   help="write outputs in their own type as <tensor>_native.raw instead of float32")
    p.add_argument("--num_inferences", type=int,
                   help=f"run this many inferences (1 to {MAX_FLAG_INT}), looping over the input list")
    p.add_argument("--duration", type=float,
                   help=f"keep looping over the input list for this many seconds (more than 0, at most {MAX_DURATION_S})")
    p.add_argument("--config_file", help="backend config JSON (cpu_config / gpu_config / htp_config, openqnn: "
                   "force_backend / disable_cpu_fallback, or QNN's backend_extensions; docs/backend-config.md)")
    add_placement_flags(p)
    p.add_argument("--perf_profile", choices=PERFORMANCE_MODES,
                   help="the backend's performance_mode: on a host, a thread count and scheduling priority "
                        "(docs/backend-config.md); wins over the config file's")
    p.add_argument("--profiling_level", choices=("basic", "detailed"),
                   help="write <output_dir>/qnn-profiling-data_0.log: init, prepare, each inference and de-init "
                        "(detailed: each node too); read it with qnn-profile-viewer")
    p.add_argument("--throughput_threads", type=int, metavar="N",
                   help=f"run the inferences from N threads at once (1 to {MAX_THREADS}) and report throughput")
    add_common_flags(p)


def net_run_main(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    import openqnn
    from openqnn.backends import backend_spec
    from openqnn.errors import InvalidConfigError
    from openqnn.profiling import latency_stats
    from openqnn.profiling.throughput import drive
    from openqnn.runtime.io import ResultFolders, read_input_list, read_raw, sanitize

    check_range(args.num_inferences, "--num_inferences", 1, MAX_FLAG_INT)
    check_range(args.duration, "--duration", 0, MAX_DURATION_S, lo_open=True)
    check_range(args.throughput_threads, "--throughput_threads", 1, MAX_THREADS)
    out_dir = check_output_dir(args.output_dir)
    if bool(args.model) == bool(args.retrieve_context):
        raise InvalidConfigError("give --model (a converted model) or --retrieve_context (a context binary), one of them")
    config = backend_config(args)
    if args.retrieve_context:
        from openqnn.runtime.context import is_context
        from openqnn.runtime.context_format import read_context

        if not is_context(args.retrieve_context):
            read_context(args.retrieve_context)  # raises: one line saying what the file is not
        session = openqnn.Session(args.retrieve_context, backend=args.backend, config=config,
                                  profiling=args.profiling_level)
        graph, spec = session.graph, backend_spec(session.backend.name)
    else:
        spec = backend_spec(args.backend or "cpu")
        graph = openqnn.load(args.model)
    backend = spec.name
    inputs = graph.input_tensors()
    ilist = read_input_list(args.input_list, inputs)
    wanted = ilist.output_names or list(graph.outputs)
    unknown = [n for n in wanted if n not in graph.outputs]
    if unknown:
        raise InvalidConfigError(f"{ilist.path}: output(s) {', '.join(unknown)} are not graph outputs "
                                 f"({', '.join(graph.outputs)})")
    # read every file before running anything, so a bad file leaves no partial results
    # on htp, native files of quantized inputs hold their integers (uint8 / uint16)
    quantized_io = spec.capabilities.native_integer_io
    feeds = [{t.name: read_raw(entry[t.name], t, args.use_native_input_files,
                               quantized=quantized_io and t.encoding is not None) for t in inputs}
             for entry in ilist.inferences]
    if not args.retrieve_context:
        session = openqnn.Session(graph, backend=backend, config=config, profiling=args.profiling_level)

    total = args.num_inferences or len(feeds)
    deadline = time.perf_counter() + args.duration if args.duration else None
    with ResultFolders(out_dir) as results:
        def run_one(count: int) -> None:
            i = count % len(feeds)
            if quantized_io:
                outs = session.run(feeds[i], native_inputs=args.use_native_input_files,
                                   native_outputs=args.use_native_output_files)
            else:
                outs = session.run(feeds[i])
            if count < len(feeds):  # looping re-runs the same inputs; their results are written once
                for name in wanted:
                    if args.use_native_output_files:
                        results.write(i, f"{sanitize(name)}_native", outs[name])
                    else:
                        results.write(i, sanitize(name), np.asarray(outs[name], dtype=np.float32))

        latencies, elapsed = drive(run_one, total, deadline, args.throughput_threads or 1)
        results.write_text(PARTITION_REPORT, json.dumps(session.partition_report().to_json(), indent=2) + "\n")
    count = len(latencies)
    stats = latency_stats(latencies, elapsed)
    log.info("%d inferences in %.3f s (%.2f ms each)", count, elapsed, 1e3 * elapsed / max(count, 1))
    print(f"{count} inference(s) on {backend}: {stats.avg_ms:.3f} ms average; results in {out_dir}")
    threads = f" over {args.throughput_threads} threads" if args.throughput_threads else ""
    print(f"{stats.line()}{threads}")
    if args.profiling_level:
        print(f"profile: {session.write_profile(out_dir)} (read it with qnn-profile-viewer --input_log)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(net_run_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
